"""The processor: placeholder expansion, labels, padding, chat template, saving, and its output in the model."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from test_video_processing import write_video
from tiny import BLOCK_PACKAGE, tiny_config, tiny_text_config
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoProcessor, PreTrainedTokenizerFast

from foveated_vlm import (
    VIDEO_TOKENS,
    FoveatedVideoProcessor,
    FoveatedVLMForConditionalGeneration,
    FoveatedVLMProcessor,
    expand_video_placeholders,
)

WORDS = ["<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system", "Describe", "the", "video", "."]
WORDS += ["a", "red", "ball", "rolls", "what", "happens", "?", "blue", "cube", "falls"]


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer in SmolLM2-Instruct's style: `<|im_start|>` and `<|im_end|>` (= eos), no pad token."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )


def make_processor(k: int = 1, **video_kwargs) -> FoveatedVLMProcessor:
    video_kwargs = {"size": 32, "num_frames": 4, **video_kwargs}
    return FoveatedVLMProcessor(FoveatedVideoProcessor(**video_kwargs), make_tokenizer(), tokens_per_frame=k)


def random_video(frames: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 40, 48, 3), dtype=np.uint8)  # [T, H, W, 3]


USER_TURN = [{"role": "user", "content": [{"type": "text", "text": "Describe the video."}, {"type": "video"}]}]
SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def test_expand_video_placeholders():
    block = lambda n: "<video_start>" + "<frame>" * n + "<video_end>"  # noqa: E731
    assert expand_video_placeholders("<video>\nDescribe.", 3) == block(3) + "\nDescribe."
    assert expand_video_placeholders("<video>\nDescribe.", 3, tokens_per_frame=2) == block(6) + "\nDescribe."
    assert expand_video_placeholders("a <video> b <video>", [2, 1], 2) == f"a {block(4)} b {block(2)}"
    assert expand_video_placeholders("no video", []) == "no video"
    with pytest.raises(ValueError, match="2 <video> placeholders but 1 frame counts"):
        expand_video_placeholders("<video><video>", [4])


def test_tokens_are_added_and_ids_exposed():
    processor = make_processor()
    ids = [processor.video_start_token_id, processor.frame_token_id, processor.video_end_token_id]
    assert ids == [len(WORDS), len(WORDS) + 1, len(WORDS) + 2]
    assert ids == processor.tokenizer.convert_tokens_to_ids(list(VIDEO_TOKENS.values()))
    again = FoveatedVLMProcessor(FoveatedVideoProcessor(), processor.tokenizer)  # adding twice changes nothing
    assert len(again.tokenizer) == len(WORDS) + 3 and again.frame_token_id == ids[1]


@pytest.mark.parametrize("k", [1, 2])
def test_video_expands_to_t_times_k_frame_tokens(k):
    processor = make_processor(k)
    batch = processor(text="<video>\nDescribe the video.", videos=random_video(), num_frames=3)
    ids = batch["input_ids"][0].tolist()
    start = ids.index(processor.video_start_token_id)
    assert ids[start + 1 : start + 1 + 3 * k] == [processor.frame_token_id] * (3 * k)
    assert ids[start + 1 + 3 * k] == processor.video_end_token_id
    assert ids.count(processor.frame_token_id) == 3 * k
    assert batch["pixel_values_videos"].shape == (1, 3, 3, 32, 32)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values_videos"}


def test_placeholder_count_must_match_the_videos():
    processor = make_processor()
    with pytest.raises(ValueError, match="2 <video> placeholders but 1 videos"):
        processor(text=["<video> a", "<video> b"], videos=[random_video()])
    with pytest.raises(ValueError, match="0 <video> placeholders but 1 videos"):
        processor(text="a red ball", videos=random_video())
    with pytest.raises(ValueError, match="1 <video> placeholders but 0 videos"):
        processor(text="<video> a red ball")


def test_the_generic_call_expands_each_video_with_the_hook():
    processor = make_processor(k=2)
    video_inputs = {"pixel_values_videos": torch.zeros(2, 3, 3, 32, 32)}  # [B, T, 3, H, W]
    assert processor.replace_video_token(video_inputs, video_idx=1) == expand_video_placeholders("<video>", 3, 2)

    class OneFrameToken(FoveatedVLMProcessor):  # a hook that writes one <frame> per video, whatever T is
        def replace_video_token(self, video_inputs, video_idx, **kwargs):
            return expand_video_placeholders(self.video_token, 1)

    other = OneFrameToken(processor.video_processor, processor.tokenizer, tokens_per_frame=2)
    ids = other(text="<video> a", videos=random_video(), num_frames=3)["input_ids"][0].tolist()
    assert ids.count(processor.frame_token_id) == 1  # ProcessorMixin.__call__ asked the hook, not a copy of it


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"text": "a <video_start> red ball"}, r"text\[0\] holds '<video_start>', one of the video's own tokens"),
        ({"text": ["<video> a", "<video> <frame> b"], "videos": [random_video()] * 2}, r"text\[1\] holds '<frame>'"),
        (
            {"text": "<video> a", "videos": random_video(), "answers": "a <video_end>"},
            r"answers\[0\] holds '<video_end>'",
        ),
    ],
)
def test_the_videos_own_tokens_written_in_text_are_an_error(inputs, message):
    with pytest.raises(ValueError, match=message + ".*mark the video with <video>"):
        make_processor()(**inputs)


def test_labels_supervise_only_the_answers():
    processor = make_processor()
    prompts = ["<video>\nDescribe the video.", "<video>\nwhat happens ?"]
    answers = ["a red ball rolls", "a blue cube falls ."]
    batch = processor(text=prompts, videos=[random_video(seed=1), random_video(seed=2)], answers=answers)
    eos = processor.tokenizer.eos_token_id
    for row, answer in enumerate(answers):
        ids, labels, mask = (batch[name][row] for name in ("input_ids", "labels", "attention_mask"))
        supervised = labels != -100
        expected = processor.tokenizer(answer, add_special_tokens=False)["input_ids"] + [eos]
        assert labels[supervised].tolist() == expected  # the answer and eos, nothing else
        assert (ids[supervised] == labels[supervised]).all()  # unshifted, the model shifts
        assert processor.decode(ids[supervised], skip_special_tokens=True) == answer
        assert not (supervised & (mask == 0)).any()  # padding is never supervised
    assert not torch.isin(
        batch["labels"], torch.tensor([processor.frame_token_id, processor.video_start_token_id])
    ).any()
    with pytest.raises(ValueError, match="2 answers for 1 prompts"):
        processor(text=prompts[:1], videos=[random_video()], answers=answers)


@pytest.mark.parametrize("side", ["right", "left"])
def test_batches_are_padded_on_the_tokenizer_side(side):
    processor = make_processor()
    processor.tokenizer.padding_side = side
    batch = processor(
        text=["<video> a", "<video> a red ball rolls"], videos=[random_video(), random_video()], answers=["ball", "a"]
    )
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths[0] < lengths[1] == batch["input_ids"].shape[1]
    pad = processor.tokenizer.eos_token_id  # the tokenizer has no pad token: eos stands in
    short_ids, short_mask, short_labels = batch["input_ids"][0], batch["attention_mask"][0], batch["labels"][0]
    padding = slice(0, -lengths[0]) if side == "left" else slice(lengths[0], None)
    assert (
        (short_mask[padding] == 0).all() and (short_ids[padding] == pad).all() and (short_labels[padding] == -100).all()
    )
    kept = short_ids[short_mask.bool()]
    alone = processor(text="<video> a", videos=random_video(), answers="ball")["input_ids"][0]
    assert kept.tolist() == alone.tolist()  # padding changes nothing else


def test_chat_template():
    processor = make_processor()
    prompt = processor.apply_chat_template(USER_TURN, add_generation_prompt=True)
    assert prompt == SYSTEM + "<|im_start|>user\nDescribe the video.\n<video><|im_end|>\n<|im_start|>assistant\n"
    conversation = [
        {"role": "system", "content": "Be brief."},
        *USER_TURN,
        {"role": "assistant", "content": "a red ball"},
    ]
    assert processor.apply_chat_template(conversation) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nDescribe the video.\n<video><|im_end|>\n"
        "<|im_start|>assistant\na red ball<|im_end|>\n"
    )
    text_only = [{"role": "user", "content": [{"type": "text", "text": "what happens ?"}, {"type": "video"}]}]
    assert processor.apply_chat_template(text_only).endswith("user\nwhat happens ?\n<video><|im_end|>\n")
    # The rendered prompt goes through the processor unchanged; answers make the training sample.
    batch = processor(text=[prompt], videos=[random_video()], answers=["a red ball rolls"])
    decoded = processor.decode(batch["input_ids"][0], skip_special_tokens=True)  # word-level: joined by spaces
    assert decoded.endswith("Describe the video . assistant a red ball rolls")


def test_chat_template_tokenize_reads_the_video(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 8)
    processor = make_processor()
    conversation = [
        {"role": "user", "content": [{"type": "video", "path": str(path)}, {"type": "text", "text": "Describe"}]}
    ]
    batch = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert batch["pixel_values_videos"].shape == (1, 4, 3, 32, 32)
    assert (batch["input_ids"] == processor.frame_token_id).sum() == 4


def test_batch_decode_delegates_to_the_tokenizer():
    processor = make_processor()
    batch = processor(text=["<video> a red ball", "<video> a"], videos=[random_video(), random_video()])
    assert processor.batch_decode(batch["input_ids"], skip_special_tokens=True) == ["a red ball", "a"]
    unpadded = batch["input_ids"][1][batch["attention_mask"][1].bool()]  # processors pad on the left
    assert processor.decode(unpadded).startswith("<video_start> <frame>")


def test_text_only_and_videos_only():
    processor = make_processor()
    assert set(processor(text="a red ball")) == {"input_ids", "attention_mask"}
    out = processor(videos=[random_video(), random_video()], return_target_frames=True, return_metadata=True)
    assert set(out) == {"pixel_values_videos", "target_frames", "frame_indices", "timestamps", "video_metadata"}
    assert out["target_frames"].shape == (2, 4, 3, 32, 32)
    sampled = [[int(index) for index in video.frames_indices] for video in out["video_metadata"]]
    assert sampled == out["frame_indices"].tolist()
    grouped = processor(text=["<video> a"], videos=[random_video()], videos_kwargs={"return_metadata": True})
    assert {"frame_indices", "timestamps", "video_metadata", "input_ids"} <= set(grouped)
    assert set(processor(videos=[random_video()])) == {"pixel_values_videos"}  # metadata only on request
    with pytest.raises(ValueError, match="videos only"):
        processor(text="a", images=[np.zeros((8, 8, 3), np.uint8)])


def test_check_model_config():
    processor = make_processor(k=2)
    config = tiny_config(**model_kwargs(processor))
    processor.check_model_config(config)
    wrong = tiny_config(**{**model_kwargs(processor), "tokens_per_frame": 1, "frame_token_id": 3})
    with pytest.raises(
        ValueError, match="frame_token_id: processor 21, model 3; tokens_per_frame: processor 2, model 1"
    ):
        processor.check_model_config(wrong)
    built = FoveatedVLMProcessor.from_tokenizer(make_tokenizer(), config=config, num_frames=5)
    assert (built.tokens_per_frame, built.video_processor.frame_size, built.video_processor.num_frames) == (2, 32, 5)


def model_kwargs(processor: FoveatedVLMProcessor) -> dict:
    """Tiny model settings whose vocabulary and video token ids are the processor's."""
    return {
        "text_config": tiny_text_config(vocab_size=len(processor.tokenizer)),
        "tokens_per_frame": processor.tokens_per_frame,
        "video_start_token_id": processor.video_start_token_id,
        "frame_token_id": processor.frame_token_id,
        "video_end_token_id": processor.video_end_token_id,
    }


@pytest.mark.parametrize("k", [1, 2])
def test_processor_output_runs_through_the_model(k):
    processor = make_processor(k)
    model = FoveatedVLMForConditionalGeneration(tiny_config(**model_kwargs(processor))).eval()
    processor.check_model_config(model.config)
    prompt = processor.apply_chat_template(USER_TURN, add_generation_prompt=True)
    batch = processor(
        text=[prompt, "<video>\nwhat happens ?"],
        videos=[random_video(seed=3), random_video(8, seed=4)],
        answers=["a red ball rolls", "a blue cube falls"],
    )
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (*batch["input_ids"].shape, len(processor.tokenizer))
    assert out.queries.shape == (2, 4, k, model.config.query_dim)
    assert torch.isfinite(out.caption_loss_fine) and torch.isfinite(out.caption_loss_coarse)


def test_save_and_load(tmp_path):
    processor = make_processor(k=2, num_frames=3, resize_mode="squash")
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["tokens_per_frame"] == 2 and saved["video_processor"]["resize_mode"] == "squash"
    assert saved["auto_map"] == {"AutoProcessor": "processing_foveated.FoveatedVLMProcessor"}
    assert (
        saved["video_processor"]["auto_map"]["AutoVideoProcessor"] == "video_processing_foveated.FoveatedVideoProcessor"
    )
    assert {
        "processing_foveated.py",
        "video_processing_foveated.py",
        "video_decoding.py",
        "chat_template.jinja",
        "tokenizer.json",
    } <= {p.name for p in tmp_path.iterdir()}
    inputs = dict(
        text=["<video> a red ball", "<video> a"], videos=[random_video(), random_video(seed=5)], answers=["a", "b"]
    )
    expected = processor(**inputs)
    for loader in (FoveatedVLMProcessor, AutoProcessor):
        loaded = loader.from_pretrained(tmp_path)
        assert type(loaded) is FoveatedVLMProcessor and loaded.tokens_per_frame == 2
        assert loaded.chat_template == processor.chat_template
        assert loaded.video_processor.to_dict() == processor.video_processor.to_dict()
        out = loaded(**inputs)
        for name in expected:
            torch.testing.assert_close(out[name], expected[name], rtol=0, atol=0, msg=name)


FRESH_PROCESS = BLOCK_PACKAGE + textwrap.dedent(
    """
    import numpy as np
    import torch

    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert not any(m.split(".")[0] == "foveated_vlm" for m in sys.modules), "the package was imported"
    batch = processor(text=["<video> a red ball"], videos=[np.load(sys.argv[2])], answers=["a"])
    with torch.no_grad():
        logits = model(**batch).logits
    torch.save({"batch": dict(batch), "logits": logits, "module": type(processor).__module__,
                "video_module": type(processor.video_processor).__module__}, sys.argv[3])
    """
)


def test_fresh_process_loads_with_trust_remote_code(tmp_path):
    """A checkpoint holding model and processor loads both where `foveated_vlm` cannot be imported."""
    processor = make_processor(k=2)
    model = FoveatedVLMForConditionalGeneration(tiny_config(**model_kwargs(processor))).eval()
    model.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    video = random_video()
    np.save(tmp_path / "video.npy", video)
    (tmp_path / "load.py").write_text(FRESH_PROCESS)
    subprocess.run(
        [sys.executable, "load.py", str(tmp_path / "checkpoint"), "video.npy", "out.pt"],
        check=True,
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")},
    )
    result = torch.load(tmp_path / "out.pt")
    assert result["module"].startswith("transformers_modules.")
    assert result["video_module"].startswith("transformers_modules.")
    expected = processor(text=["<video> a red ball"], videos=[video], answers=["a"])
    for name in expected:
        torch.testing.assert_close(result["batch"][name], expected[name], rtol=0, atol=0, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(result["logits"], model(**expected).logits, rtol=0, atol=0)
