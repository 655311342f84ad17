"""MVBench and Video-MME in their published layouts (tiny fixtures, PyAV videos), scored both ways, one patch pass
per video."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_processing import WORDS
from test_video_processing import write_video
from tiny import tiny_config, tiny_text_config
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AddedToken, PreTrainedTokenizerFast

from foveated_vlm import FoveatedVideoProcessor, FoveatedVLMForConditionalGeneration, FoveatedVLMProcessor
from foveated_vlm.cli import main
from foveated_vlm.data.sample_counts import SampleCounts
from foveated_vlm.evaluation.video_benchmark_scoring import (
    encode_video,
    evaluate_benchmark,
    extract_answer_letter,
    generate_answer,
    score_choices,
)
from foveated_vlm.evaluation.video_benchmarks import (
    MVBENCH_ANSWER_PREFIX,
    MVBENCH_SYSTEM,
    VIDEOMME_INSTRUCTION,
    benchmark_prompt,
    load_mvbench,
    load_videomme,
)

LETTERS = ["A", "B", "C", "D"]


def make_benchmark_processor() -> FoveatedVLMProcessor:
    """The test tokenizer (`test_processing.make_tokenizer`'s words) plus the option letters as whole words."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tokenizer.add_tokens([AddedToken(letter, single_word=True) for letter in LETTERS])
    return FoveatedVLMProcessor(FoveatedVideoProcessor(size=32, num_frames=4), tokenizer)


def make_model(processor) -> FoveatedVLMForConditionalGeneration:
    tokenizer = processor.tokenizer
    text = tiny_text_config(vocab_size=len(tokenizer), max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id)
    ids = {f"{name}_token_id": getattr(processor, f"{name}_token_id") for name in ("video_start", "frame", "video_end")}
    torch.manual_seed(0)
    return FoveatedVLMForConditionalGeneration(tiny_config(text_config=text, **ids)).eval()


@pytest.fixture(scope="module")
def processor():
    return make_benchmark_processor()


@pytest.fixture(scope="module")
def model(processor):
    return make_model(processor)


@pytest.fixture(scope="module")
def mvbench_dir(tmp_path_factory):
    """json/<task>.json and video/<source>/ as in OpenGVLab/MVBench."""
    root = tmp_path_factory.mktemp("mvbench")
    (root / "json").mkdir()
    star = root / "video" / "star" / "Charades_segment"
    perception = root / "video" / "perception" / "videos"
    star.mkdir(parents=True), perception.mkdir(parents=True)
    write_video(star / "A1.mp4", 12), write_video(star / "B2.mp4", 12), write_video(perception / "c.mp4", 12)
    (perception / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows = [
        {"video": "A1.mp4", "question": "What did the person do first?", "candidates": ["Sat.", "Ran.", "Ate."],
         "answer": "Ran.", "start": 1.0, "end": 5.0},
        {"video": "B2.mp4", "question": "What happens?", "candidates": ["a red ball rolls", "a blue cube falls"],
         "answer": "a blue cube falls"},
        {"video": "gone.mp4", "question": "Where is it?", "candidates": ["x", "y"], "answer": "x"},  # no such video
    ]  # fmt: skip
    (root / "json" / "action_sequence.json").write_text(json.dumps(rows))
    rows = [
        {"video": "c.mp4", "question": "Where is the ball?", "candidates": ["left", "right"], "answer": "left"},
        {"video": "c.mp4", "question": "Which cup?", "candidates": ["1", "2"], "answer": "3"},  # answer not an option
        {"video": "../../../etc/passwd", "question": "?", "candidates": ["a", "b"], "answer": "a"},  # leaves DIR
        {"question": "no video field", "candidates": ["a", "b"], "answer": "a"},
        "not a row",
        {"video": "broken.mp4", "question": "Is it readable?", "candidates": ["yes", "no"], "answer": "no"},
    ]
    (root / "json" / "object_shuffle.json").write_text(json.dumps(rows))
    (root / "json" / "action_count.json").write_text("{not json")  # an unreadable task file
    return root


@pytest.fixture(scope="module")
def videomme_dir(tmp_path_factory):
    """videomme/test-00000-of-00001.parquet and data/<videoID>.mp4 as in lmms-lab/Video-MME."""
    root = tmp_path_factory.mktemp("videomme")
    (root / "videomme").mkdir(), (root / "data").mkdir()
    write_video(root / "data" / "001.mp4", 12), write_video(root / "data" / "002.mp4", 12)

    def row(video, number, duration, task_type, answer, options=None):
        return {
            "video_id": video, "duration": duration, "domain": "Knowledge", "sub_category": "Astronomy",
            "url": f"https://www.youtube.com/watch?v={video}", "videoID": video, "question_id": f"{video}-{number}",
            "task_type": task_type, "question": f"Question {number} about the video?",
            "options": options or ["A. a red ball", "B. a blue cube", "C. nothing", "D. both"], "answer": answer,
        }  # fmt: skip

    rows = [
        row("001", 1, "short", "Counting Problem", "A"),
        row("001", 2, "short", "Object Recognition", "B"),
        row("001", 3, "short", "Counting Problem", "C"),
        row("002", 1, "medium", "OCR Problems", "D"),
        row("003", 1, "long", "OCR Problems", "A"),  # its video is not on disk
        row("002", 2, "medium", "OCR Problems", "A", options=["a red ball", "a blue cube"]),  # options not lettered
        row("002", 3, "medium", "OCR Problems", "E"),  # answer beyond the options
    ]
    pq.write_table(pa.Table.from_pylist(rows), root / "videomme" / "test-00000-of-00001.parquet")
    return root


def test_mvbench_loader_reads_the_published_layout_and_counts_skips(mvbench_dir):
    counts = SampleCounts()
    items = list(load_mvbench(mvbench_dir, counts=counts))
    assert [(item.metadata["task"], item.question, item.answer) for item in items] == [
        ("action_sequence", "What did the person do first?", "B"),
        ("action_sequence", "What happens?", "B"),
        ("object_shuffle", "Where is the ball?", "A"),
        ("object_shuffle", "Is it readable?", "B"),  # a file that exists: decoding it is the scorer's business
    ]
    assert items[0].options == ["Sat.", "Ran.", "Ate."] and items[0].letters == ["A", "B", "C"]
    assert items[0].video == str((mvbench_dir / "video/star/Charades_segment/A1.mp4").resolve())
    assert dict(counts.skipped) == {"missing_video": 1, "malformed_row": 4, "unreadable_annotations": 1}
    assert [item.question for item in load_mvbench(mvbench_dir, subset=["object_shuffle"])][:1] == [
        "Where is the ball?"
    ]
    with pytest.raises(ValueError, match="not MVBench tasks"):
        load_mvbench(mvbench_dir, subset=["action_seqence"])  # at the call, before any row is read


def test_videomme_loader_reads_the_published_layout_and_counts_skips(videomme_dir):
    counts = SampleCounts()
    items = list(load_videomme(videomme_dir, counts=counts))
    assert [(item.metadata["question_id"], item.answer, item.metadata["duration"]) for item in items] == [
        ("001-1", "A", "short"),
        ("001-2", "B", "short"),
        ("001-3", "C", "short"),
        ("002-1", "D", "medium"),
    ]
    assert items[0].options == ["a red ball", "a blue cube", "nothing", "both"]
    assert items[1].metadata["task_type"] == "Object Recognition"
    assert dict(counts.skipped) == {"missing_video": 1, "malformed_row": 2}
    assert [item.metadata["question_id"] for item in load_videomme(videomme_dir, subset=["medium"])] == ["002-1"]


def test_loaders_name_a_wrong_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no json/<task>.json"):
        load_mvbench(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no videomme/test-00000-of-00001.parquet"):
        load_videomme(tmp_path)
    (tmp_path / "videomme").mkdir()
    (tmp_path / "videomme" / "test-00000-of-00001.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        load_videomme(tmp_path)


def test_prompts_are_the_benchmarks_own(processor, mvbench_dir, videomme_dir):
    mvbench = benchmark_prompt(processor, next(load_mvbench(mvbench_dir)))
    assert MVBENCH_SYSTEM in mvbench
    assert "Question: What did the person do first?\nOptions:\n(A) Sat.\n(B) Ran.\n(C) Ate.\nOnly give the best " in (
        mvbench
    )
    assert mvbench.endswith("<|im_start|>assistant\n" + MVBENCH_ANSWER_PREFIX)
    videomme = benchmark_prompt(processor, next(load_videomme(videomme_dir)))
    assert (
        f"{VIDEOMME_INSTRUCTION}\nQuestion 1 about the video?\nA. a red ball\nB. a blue cube\nC. nothing\nD. both\n"
        "The best answer is:\n<video>" in videomme
    )  # the question before the video: the queries are planned from it


def test_likelihood_equals_a_full_forward_per_option(model, processor, videomme_dir):
    item = next(load_videomme(videomme_dir))
    prompt = benchmark_prompt(processor, item)
    continuations = ["A", "a red ball", "B"]  # of different lengths: padded rows must not change the numbers
    frames = processor.video_processor(videos=[item.video])["pixel_values_videos"][0]
    scores = score_choices(model, processor, frames, prompt, continuations)
    for index, continuation in enumerate(continuations):  # the model's own forward, video encoded every time
        batch = processor(text=[prompt], videos=[item.video], answers=[continuation])
        labels = batch["labels"].clone()
        labels[0, -1] = -100  # the end-of-sequence token the processor appends is not part of the option
        tokens = (labels[0, 1:] != -100).sum()
        with torch.no_grad():
            out = model(**{**batch, "labels": labels})
        assert abs(scores["fine"][index] + out.caption_loss_fine * tokens) < 1e-5
        assert abs(scores["coarse"][index] + out.caption_loss_coarse * tokens) < 1e-5
    assert not torch.allclose(scores["fine"], scores["coarse"])  # the passes are scored apart


def test_one_patch_pass_per_video_for_all_questions_options_and_passes(model, processor, videomme_dir, monkeypatch):
    encoder = model.foveated_encoder
    calls = []
    encode = encoder.encode_patches
    monkeypatch.setattr(encoder, "encode_patches", lambda *a, **k: calls.append(a[0].shape) or encode(*a, **k))
    report = evaluate_benchmark(model, processor, load_videomme(videomme_dir), scoring="both", max_new_tokens=3)
    # 4 questions x 4 options x 2 passes + 4 generations, on 2 videos: 2 patch passes of 4 frames each.
    assert calls == [torch.Size([4, 3, 32, 32])] * 2
    assert report["num_videos"] == 2 and report["num_questions"] == 4


def test_generation_reuses_the_patch_pass_and_matches_generate(model, processor, mvbench_dir):
    item = next(load_mvbench(mvbench_dir))
    prompt = benchmark_prompt(processor, item)
    frames = processor.video_processor(videos=[item.video])["pixel_values_videos"][0]
    text = generate_answer(model, processor, frames, prompt, max_new_tokens=5, vision_cache=encode_video(model, frames))
    batch = processor(text=[prompt], videos=[item.video])
    ids = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert text == processor.tokenizer.decode(ids[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_answer_letter_extraction():
    assert extract_answer_letter("The best answer is: B", LETTERS) == "B"
    assert extract_answer_letter("C) a blue cube", LETTERS) == "C"
    assert extract_answer_letter(" (D)", LETTERS) == "D"
    assert extract_answer_letter("no letter here", LETTERS) == ""
    assert extract_answer_letter("E", LETTERS) == ""  # not an option of this question


def test_report_accuracy_by_group_and_counts_unreadable_videos(model, processor, mvbench_dir):
    counts = SampleCounts()
    report = evaluate_benchmark(
        model, processor, load_mvbench(mvbench_dir, counts=counts), max_new_tokens=2, counts=counts
    )
    assert report["num_questions"] == 3  # broken.mp4 could not be decoded
    assert report["data"]["skipped"] == {
        "missing_video": 1, "malformed_row": 4, "unreadable_annotations": 1, "unreadable_video": 1,
    }  # fmt: skip
    likelihood, generation = report["scoring"]["likelihood"], report["scoring"]["generation"]
    assert set(likelihood["by_task"]) == {"action_sequence", "object_shuffle"}
    assert likelihood["by_task"]["action_sequence"]["count"] == 2
    for value in (likelihood["accuracy_fine"], likelihood["accuracy_coarse"], generation["accuracy"]):
        assert 0.0 <= value <= 1.0
    assert report["accuracy_fine"] == likelihood["accuracy_fine"]
    assert abs(report["chance"] - (1 / 3 + 1 / 2 + 1 / 2) / 3) < 1e-9


def test_vision_cache_must_match_the_frames(model, processor, videomme_dir):
    item = next(load_videomme(videomme_dir))
    frames = processor.video_processor(videos=[item.video])["pixel_values_videos"][0]
    cache = encode_video(model, frames[:2])
    with pytest.raises(ValueError, match="vision_cache holds 2 frames but pixel_values_videos has 1x4"):
        score_choices(model, processor, frames, benchmark_prompt(processor, item), ["A"], vision_cache=cache)


def test_cli_evaluate_benchmark_writes_the_json(processor, videomme_dir, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint"
    make_model(processor).save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    out = tmp_path / "videomme.json"
    argv = ["evaluate", "--model", str(checkpoint), "--benchmark", "videomme", "--data_dir", str(videomme_dir)]
    main([*argv, "--num_frames", "3", "--subset", "short", "--scoring", "likelihood", "--json", str(out)])
    metrics = json.loads(out.read_text())
    assert metrics["benchmark"] == "videomme" and metrics["num_frames"] == 3 and metrics["num_questions"] == 3
    assert set(metrics["scoring"]) == {"likelihood"}
    assert set(metrics["scoring"]["likelihood"]["by_duration"]) == {"short"}
    assert set(metrics["scoring"]["likelihood"]["by_task_type"]) == {"Counting Problem", "Object Recognition"}
    assert metrics["data"] == {"succeeded": 3, "skipped": {}, "success_rate": 1.0}  # --subset short: 001's three
    with pytest.raises(ValueError, match="pass --data_dir DIR"):
        main(["evaluate", "--model", str(checkpoint), "--benchmark", "mvbench"])
