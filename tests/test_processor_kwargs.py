"""Processor options as transformers takes them, left padding for generation, batched generate, one prompt order."""

import json
import warnings

import pytest
import torch
from test_processing import USER_TURN, make_processor, make_tokenizer, model_kwargs, random_video
from test_video_processing import write_video
from tiny import tiny_config, tiny_text_config
from transformers import AutoProcessor

from foveated_vlm import FoveatedVideoProcessor, FoveatedVLMForConditionalGeneration, FoveatedVLMProcessor

PROMPTS = ["<video> a", "what happens ? the red ball rolls <video> Describe the video ."]  # different lengths


def videos(count: int = 2) -> list:
    return [random_video(seed=seed) for seed in range(1, count + 1)]


def test_text_and_video_options_are_accepted_flat_or_grouped():
    processor = make_processor()
    flat = processor(
        text=PROMPTS, videos=videos(), padding="max_length", max_length=24, padding_side="right", num_frames=3
    )
    grouped = processor(
        text=PROMPTS,
        videos=videos(),
        text_kwargs={"padding": "max_length", "max_length": 24, "padding_side": "right"},
        videos_kwargs={"num_frames": 3},
    )
    for name in ("input_ids", "attention_mask", "pixel_values_videos"):
        torch.testing.assert_close(flat[name], grouped[name], rtol=0, atol=0, msg=name)
    assert flat["input_ids"].shape == (2, 24) and flat["pixel_values_videos"].shape[1] == 3
    assert flat["attention_mask"][:, -1].tolist() == [0, 0]  # padded on the right, as asked
    multiple = processor(text=PROMPTS, videos=videos(), pad_to_multiple_of=8)
    assert multiple["input_ids"].shape[1] % 8 == 0
    unpadded = processor(text=PROMPTS, videos=videos(), padding=False, return_tensors=None)
    assert [len(ids) for ids in unpadded["input_ids"]] == [len(mask) for mask in unpadded["attention_mask"]]
    assert len(unpadded["input_ids"][0]) < len(unpadded["input_ids"][1])


def test_truncation_cuts_the_text_and_never_the_video():
    processor = make_processor()
    processor.tokenizer.padding_side = "right"
    answers = ["a red ball rolls", "a"]
    whole = processor(text=PROMPTS, videos=videos(), answers=answers)
    cut = processor(text=PROMPTS, videos=videos(), answers=answers, truncation=True, max_length=13)
    assert cut["input_ids"].shape[1] == 13 < whole["input_ids"].shape[1]
    torch.testing.assert_close(cut["input_ids"], whole["input_ids"][:, :13], rtol=0, atol=0)
    torch.testing.assert_close(cut["labels"], whole["labels"][:, :13], rtol=0, atol=0)  # labels cut with their ids
    # Row 1's video (4 frames) takes positions 7-12: max_length 13 keeps it whole, 12 would cut <video_end> off.
    with pytest.raises(ValueError, match=r"text\[1\].*max_length=12.*cut into the video's tokens.*max_length >= 13"):
        processor(text=PROMPTS, videos=videos(), truncation=True, max_length=12)
    processor.tokenizer.truncation_side = "left"
    left = processor(text=PROMPTS, videos=videos(), truncation="longest_first", max_length=10, padding_side="left")
    kept = left["input_ids"][1].tolist()
    assert kept[0] == processor.video_start_token_id and kept.count(processor.frame_token_id) == 4  # prompt cut
    with pytest.raises(ValueError, match=r"text\[0\].*on the left would cut into the video's tokens.*max_length >= 12"):
        processor(text=PROMPTS, videos=videos(), answers=answers, truncation=True, max_length=10)


def test_misspelt_and_unsupported_options_are_named():
    processor = make_processor()
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['paddin'\]"):
        processor(text=PROMPTS, videos=videos(), paddin=True)
    with pytest.raises(ValueError, match=r"text options \{'stride': 3\} are not supported"):
        processor(text=PROMPTS, videos=videos(), stride=3)
    with pytest.raises(ValueError, match=r"video options \{'do_normalize': False\} are not supported"):
        processor(text=PROMPTS, videos=videos(), videos_kwargs={"do_normalize": False})
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        processor(text=PROMPTS, videos=videos(), padding="max_length")
    with pytest.raises(ValueError, match="always samples frames"):
        processor(text=PROMPTS, videos=videos(), do_sample_frames=False)


def test_token_types_and_offsets():
    processor = make_processor()
    out = processor(
        text=PROMPTS[1],
        videos=videos(1),
        return_mm_token_type_ids=True,
        return_offsets_mapping=True,
        return_text_replacement_offsets=True,
    )
    ids, types = out["input_ids"][0], out["mm_token_type_ids"][0]
    video_ids = torch.tensor([processor.video_start_token_id, processor.frame_token_id, processor.video_end_token_id])
    assert torch.equal(types == 2, torch.isin(ids, video_ids)) and set(types.tolist()) == {0, 2}
    (replacement,) = out["text_replacement_offsets"][0]
    start = PROMPTS[1].index("<video>")
    assert replacement["span"] == (start, start + len("<video>"))
    video_start = ids.tolist().index(processor.video_start_token_id)
    assert out["offset_mapping"][0, video_start, 0].item() == replacement["new_span"][0]


def test_assistant_tokens_mask_marks_the_answers(tmp_path):
    processor = make_processor()
    path = str(write_video(tmp_path / "clip.mp4", 8))
    conversations = [
        [
            {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "video", "path": path}]},
            {"role": "assistant", "content": answer},
        ]
        for answer in ("a red ball rolls", "a")
    ]  # fmt: skip
    out = processor.apply_chat_template(
        conversations, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    masks = out["assistant_masks"].bool()
    decoded = [processor.decode(ids[mask]) for ids, mask in zip(out["input_ids"], masks, strict=True)]
    assert decoded == ["a red ball rolls <|im_end|>", "a <|im_end|>"]  # the shorter row is left-padded


def test_processors_pad_on_the_left_and_save_it(tmp_path):
    processor = make_processor()
    assert processor.tokenizer.padding_side == "left"
    batch = processor(text=PROMPTS, videos=videos())
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].tolist() == [1, 1]
    processor.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())["padding_side"] == "left"
    assert AutoProcessor.from_pretrained(tmp_path / "saved").tokenizer.padding_side == "left"
    # An explicit choice is the user's; building a processor for a model (from_tokenizer) pads for generation.
    explicit = make_tokenizer()
    explicit.init_kwargs["padding_side"] = "right"
    assert FoveatedVLMProcessor(FoveatedVideoProcessor(size=32), explicit).tokenizer.padding_side == "right"
    assert FoveatedVLMProcessor.from_tokenizer(explicit, size=32).tokenizer.padding_side == "left"


def tiny_model(processor, **overrides) -> FoveatedVLMForConditionalGeneration:
    # Wide embeddings make the random model's greedy text vary from step to step.
    kwargs = {**model_kwargs(processor), "target_channels": 3, "target_size": 8, **overrides}
    kwargs["text_config"] = tiny_text_config(vocab_size=len(processor.tokenizer), initializer_range=0.5)
    return FoveatedVLMForConditionalGeneration(tiny_config(**kwargs)).eval()


@pytest.mark.parametrize("k", [1, 2])
def test_training_losses_are_the_same_for_left_and_right_padding(k):
    processor = make_processor(k)
    model = tiny_model(processor, tokens_per_frame=k)
    targets = torch.randn(2, 4, 3, 8, 8)
    outputs = {}
    for side in ("left", "right"):
        batch = processor(text=PROMPTS, videos=videos(), answers=["a red ball rolls", "a"], padding_side=side)
        with torch.no_grad():
            outputs[side] = model(**batch, target_latents=targets)
    for name in ("loss", "loss_fine", "loss_coarse", "caption_loss_fine", "caption_loss_coarse"):
        torch.testing.assert_close(getattr(outputs["left"], name), getattr(outputs["right"], name), msg=name)
    torch.testing.assert_close(outputs["left"].queries, outputs["right"].queries)


def never_stop(processor) -> dict:
    """Greedy settings that keep the random model writing text (no video tokens, no eos) for every step."""
    ids = [processor.video_start_token_id, processor.frame_token_id, processor.video_end_token_id]
    return dict(do_sample=False, max_new_tokens=6, suppress_tokens=[*ids, processor.tokenizer.eos_token_id])


def test_batched_greedy_generate_equals_generating_each_alone():
    processor = make_processor()  # pads on the left, as saved processors do
    model = tiny_model(processor)
    settings = never_stop(processor)
    batch = processor(text=PROMPTS, videos=videos())
    assert (batch["attention_mask"] == 0).any(), "the prompts must differ in length for this test to mean anything"
    together = model.generate(**batch, **settings)[:, batch["input_ids"].shape[1] :]
    for row, (prompt, video) in enumerate(zip(PROMPTS, videos(), strict=True)):
        alone = processor(text=prompt, videos=video)
        assert together[row].tolist() == model.generate(**alone, **settings)[0, alone["input_ids"].shape[1] :].tolist()
    assert len(set(together.flatten().tolist())) > 2, "degenerate text would prove nothing"


def test_chat_template_puts_the_text_before_the_video():
    processor = make_processor()
    video_first = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}]
    with pytest.warns(UserWarning, match="video item before its text"):
        prompt = processor.apply_chat_template(video_first, add_generation_prompt=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the trained order is silent
        trained = processor.apply_chat_template(USER_TURN, add_generation_prompt=True)
    assert prompt == trained and trained.endswith(
        "user\nDescribe the video.\n<video><|im_end|>\n<|im_start|>assistant\n"
    )
    # Text after the video (a question following the clip) moves before it too; text-only turns are unchanged.
    mixed = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "video"}, {"type": "text", "text": "b"}]}
    ]
    with pytest.warns(UserWarning):
        assert "user\na\nb\n<video><|im_end|>" in processor.apply_chat_template(mixed)
    assert "user\nwhat happens ?<|im_end|>" in processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "what happens ?"}]}]
    )
