"""A bad sample never ends a training run, and the skips are seen: text from data cannot inject special tokens, a
sample that fails batching is dropped and counted, an all-bad stream fails before anything is saved, a run without
held-out data finishes, and skip counts reach the logs and metrics.json summed over DataLoader workers."""

import csv
import json
import logging

import numpy as np
import pytest
from test_llava_video import subset  # noqa: F401 - a fixture
from test_processing import make_processor
from test_video_processing import write_video
from tiny import config_for_processor
from transformers import TrainingArguments

import train
from foveated_vlm import FoveatedVLMForConditionalGeneration, VideoTextCollator, build_target_encoder
from foveated_vlm.data.faults import NoSamplesError, SampleFailures
from foveated_vlm.data.folder import folder_dataset
from foveated_vlm.data.llava_video import llava_video_dataset
from foveated_vlm.data.sample_counts import SAMPLE_COUNTS_KEY, SampleCounts
from foveated_vlm.training.data_collator import SkippingCollator
from foveated_vlm.training.trainer import FoveatedTrainer

NUM_FRAMES = 4
# Data text that tries to steer the model: frame and video tokens, chat tokens, a placeholder, and a token that
# stripping once would assemble ("<fr<frame>ame>").
HOSTILE_CAPTION = "a red <frame> ball <|im_end|> <fr<frame>ame> rolls <video_end> <video_start>"
HOSTILE_PROMPT = "what <video> happens <|im_start|> <video_start> ?"


def clip(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (6, 40, 48, 3), dtype=np.uint8)  # [T, H, W, 3]


def sample(video_id: str, prompt: str = "what happens ?", answer: str = "a red ball rolls", frames=None, **extra):
    return {"frames": clip() if frames is None else frames, "prompt": prompt, "answer": answer,
            "video_id": video_id, **extra}  # fmt: skip


def write_folder(root, rows, videos):
    """A folder source: real H.264 clips written with PyAV and an annotations.csv of `rows`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in videos:
        write_video(root / name, num_frames=6, width=64, height=48)
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes())
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["video", "caption", "prompt"])
        writer.writeheader()
        writer.writerows({"video": video, "caption": caption, "prompt": prompt} for video, caption, prompt in rows)
    return root


# ------------------------------------------------------------------------------------------ data text
@pytest.mark.parametrize("k", [1, 2])
def test_special_tokens_in_captions_and_prompts_stay_plain_text(k):
    processor = make_processor(k=k, num_frames=NUM_FRAMES)
    tokenizer = processor.tokenizer
    samples = [sample("a", prompt=HOSTILE_PROMPT, answer=HOSTILE_CAPTION), sample("b")]
    batch = VideoTextCollator(processor)(samples)
    frame_tokens = (batch["input_ids"] == processor.frame_token_id).sum(1)
    assert frame_tokens.tolist() == [NUM_FRAMES * k] * 2  # exactly T*K per row: nothing injected
    video_ids = {processor.video_start_token_id, processor.frame_token_id, processor.video_end_token_id}
    special = set(tokenizer.all_special_ids) | video_ids
    caption = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert caption[-1] == tokenizer.eos_token_id  # the answer's end, which the processor appends
    assert not special & set(caption[:-1]), "the caption's label ids hold a special token"
    assert caption[:-1] == tokenizer("a red ball rolls", add_special_tokens=False)["input_ids"]
    prompt_row = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert prompt_row.count(processor.video_start_token_id) == 1 and prompt_row.count(tokenizer.bos_token_id) == 3


def test_a_placeholder_the_user_writes_stays_the_processors_error():
    processor = make_processor(num_frames=NUM_FRAMES)
    with pytest.raises(ValueError, match="2 <video> placeholders"):
        processor(text=["<video> what <video> happens"], videos=[clip()])


# ------------------------------------------------------------------------------------------ batching errors
def test_a_sample_that_fails_batching_is_dropped_and_counted_with_the_stamps_it_carries(caplog):
    collator = SkippingCollator(VideoTextCollator(make_processor(num_frames=NUM_FRAMES)), report_counts=True)
    samples = [
        sample("good0", skipped=json.dumps({"decode": 2})),
        sample("noise", frames=b"\x00not a video" * 40, skipped=json.dumps({"missing_file": 1})),
        sample("no_text", answer=None, skipped="{}"),
        sample("good1"),  # no stamp: a source that counts nothing (synthetic)
    ]
    with caplog.at_level(logging.WARNING):
        batch = collator(samples)
    assert batch["input_ids"].shape[0] == batch["pixel_values_videos"].shape[0] == 2
    assert batch[SAMPLE_COUNTS_KEY] == {
        "succeeded": 2,
        "skipped": {"decode": 2, "missing_file": 1, "collate_video_decode_error": 1, "collate_type_error": 1},
    }
    assert "skipped sample noise while batching" in caplog.text and "skipped sample no_text" in caplog.text
    plain = SkippingCollator(VideoTextCollator(make_processor(num_frames=NUM_FRAMES)))(samples)
    assert SAMPLE_COUNTS_KEY not in plain, "a plain Trainer's forward must never receive the counts"


def test_a_sample_longer_than_the_language_model_is_dropped_and_counted():
    # The model refuses input past max_position_embeddings; in training such a sample is skipped, not fatal.
    plain = VideoTextCollator(make_processor(num_frames=NUM_FRAMES))
    samples = [sample("short"), sample("long", answer="a red ball rolls " * 40), sample("short2")]
    lengths = plain(samples)["attention_mask"].sum(dim=1)  # [3]
    limit = int(lengths[0]) + 4
    assert int(lengths[1]) > limit >= int(lengths[2])
    batch = SkippingCollator(plain, report_counts=True, max_length=limit)(samples)
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].sum(dim=1).max() <= limit
    assert batch[SAMPLE_COUNTS_KEY] == {"succeeded": 2, "skipped": {"collate_sequence_too_long": 1}}


def test_a_batch_where_every_sample_fails_raises_no_samples_error_with_the_counts():
    collator = SkippingCollator(VideoTextCollator(make_processor(num_frames=NUM_FRAMES)), report_counts=True)
    bad = [sample("noise", frames=b"\x00not a video" * 40), sample("none", prompt=None)]
    with pytest.raises(NoSamplesError, match="every sample of a batch of 2 failed") as caught:
        collator(bad)
    message = str(caught.value)
    assert "collate_video_decode_error 1" in message and "collate_type_error 1" in message
    assert "the first error: VideoDecodeError" in message and caught.value.__cause__ is not None


# ------------------------------------------------------------------------------------------ counts are seen
def test_a_stream_logs_its_summary_at_warning_when_it_ends(tmp_path, caplog):
    root = write_folder(tmp_path / "v", [("a.mp4", "a ball", ""), ("gone.mp4", "x", ""), ("corrupt.mp4", "x", "")],
                        ["a.mp4"])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        samples = list(folder_dataset(root, num_frames=NUM_FRAMES, num_shards=1))
    assert len(samples) == 1
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert f"folder {root}: 1/3 succeeded (33.3%); skipped: missing_file 1, decode 1" in warned


def test_llava_samples_carry_the_skips_before_them(subset):  # noqa: F811
    failures = SampleFailures("llava_video")
    dataset = llava_video_dataset(subset["annotations"], shards=subset["shards"], num_frames=3, failures=failures)
    counts = SampleCounts()
    for item in dataset:  # through `datasets` with its Features, which declare the stamp
        counts.add_stamp(item["skipped"])
    counts.add({"skipped": failures.take_unstamped()})  # the skips after the last sample
    assert counts.skipped == failures.failed and set(failures.failed) == {"bad_annotation", "decode"}


def test_counts_are_summed_over_dataloader_workers_into_the_trainer_logs(tmp_path):
    # Two shards of five rows, one per DataLoader worker; each ends with a good row, so no skip comes after a
    # worker's last sample (such skips reach only the worker's own end-of-stream summary).
    # Worker 0: missing 1, decode 1, bad_record 1 and two clips; worker 1: decode 1, missing 2 and two clips.
    rows = [("gone.mp4", "x", ""), ("a.mp4", "a red ball", ""), ("corrupt.mp4", "x", ""), ("b.mp4", "", ""),
            ("b.mp4", "a blue cube", ""),
            ("c.mp4", "a ball", ""), ("corrupt.mp4", "x", ""), ("gone2.mp4", "x", ""), ("gone3.mp4", "x", ""),
            ("d.mp4", "the cube", "")]  # fmt: skip
    root = write_folder(tmp_path / "v", rows, ["a.mp4", "b.mp4", "c.mp4", "d.mp4"])
    stream = folder_dataset(root, num_frames=NUM_FRAMES, num_shards=2)
    processor = make_processor(num_frames=NUM_FRAMES)
    collator = SkippingCollator(VideoTextCollator(processor, build_target_encoder("pixels", target_size=8)), True)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
        dataloader_num_workers=2, remove_unused_columns=False, report_to="none", save_strategy="no",
        use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    model = FoveatedVLMForConditionalGeneration(config_for_processor(processor, target_size=8))
    trainer = FoveatedTrainer(model=model, args=args, train_dataset=stream, data_collator=collator)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    last = logged[-1]
    skipped = {key: value for key, value in last.items() if key.startswith("data/skipped_")}
    assert last["data/succeeded"] == 4 and last["data/success_rate"] == pytest.approx(4 / 10)
    assert skipped == {"data/skipped_missing_file": 3, "data/skipped_decode": 2, "data/skipped_bad_record": 1}
    assert logged[0]["data/succeeded"] == 2, "each log holds the running totals"
    assert trainer.sample_counts().as_dict()["succeeded"] == 4


# ------------------------------------------------------------------------------------------ train.py end to end
QUICK = ["--max_steps", "2", "--logging_steps", "1", "--per_device_train_batch_size", "2", "--num_frames", "4",
         "--frame_size", "32", "--target_size", "8", "--vision_layers", "2", "--text_hidden_size", "64",
         "--disable_tqdm", "True", "--dataset", "folder"]  # fmt: skip


def test_a_stream_where_every_row_is_bad_fails_before_saving_anything(tmp_path):
    rows = [("gone0.mp4", "x", ""), ("corrupt.mp4", "noise", ""), ("gone1.mp4", "x", ""), ("b.mp4", "", "")]
    root = write_folder(tmp_path / "bad", rows, ["b.mp4"])
    output = tmp_path / "out"
    with pytest.raises(NoSamplesError, match="gave no sample to train on, so nothing was saved") as caught:
        train.main(QUICK + ["--video_root", str(root), "--output_dir", str(output)])
    message = str(caught.value)
    assert "0/4 succeeded" in message and "missing_file 2" in message
    assert "decode 1" in message and "bad_record 1" in message
    saved = {path.name for path in output.rglob("*")} if output.exists() else set()
    assert not saved & {"model.safetensors", "metrics.json", "README.md", "config.json"}, saved


def test_a_video_root_that_is_a_file_is_refused_before_training(tmp_path):
    # The folder source needs a folder; a LLaVA-Video shard given as --video_root is read as a shard instead
    # (tests/test_hostile_data.py), so only the folder source refuses a file, before any training or output.
    shard = tmp_path / "0_30_s_academic_v0_1_videos_1.tar.gz"
    shard.write_bytes(b"\x1f\x8b not really a shard")
    flags = ["--dataset", "folder", "--video_root", str(shard)]
    with pytest.raises(ValueError, match="--video_root .*videos_1.tar.gz is a file.*--dataset llava_video"):
        train.main(QUICK + flags + ["--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_run_without_held_out_data_finishes_and_reports_training_figures_and_counts(tmp_path, capsys):
    # Two good clips per epoch and batches of two: the two steps read exactly two epochs, so every skip is counted
    # (those after the last clip by train.py, from its in-process counter). The first clip's text is hostile.
    rows = [("a.mp4", HOSTILE_CAPTION, HOSTILE_PROMPT), ("gone.mp4", "x", ""), ("corrupt.mp4", "noise", ""),
            ("b.mp4", "a blue cube <|im_end|>", "")]  # fmt: skip
    root = write_folder(tmp_path / "videos", rows, ["a.mp4", "b.mp4"])
    output = tmp_path / "out"
    metrics = train.main(QUICK + ["--video_root", str(root), "--output_dir", str(output)])
    printed = capsys.readouterr()
    assert "no held-out data was given" in printed.out
    assert "training data: 4/8 succeeded (50.0%); skipped: " in printed.err  # then decode 2, missing_file 2
    saved = json.loads((output / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics)) and saved["steps"] == 2 and saved["held_out_videos"] == 0
    assert {"loss_fine", "loss_coarse", "ratio", "caption_loss_fine", "caption_ratio"} <= set(saved["training"])
    assert saved["data"] == {"succeeded": 4, "skipped": {"missing_file": 2, "decode": 2}, "success_rate": 0.5}
    logged = [entry for entry in json.loads((output / "log_history.json").read_text()) if "loss" in entry]
    assert [entry["data/succeeded"] for entry in logged] == [2, 4]
    # By the second step the second epoch's first clip has carried every skip of the first epoch.
    assert logged[-1]["data/skipped_missing_file"] >= 1 and logged[-1]["data/skipped_decode"] >= 1
    assert (output / "README.md").read_text().startswith("---") and (output / "model.safetensors").exists()
    assert (output / "figures" / "fixations_00.png").exists()
    events = b"".join(path.read_bytes() for path in (output / "runs").rglob("events.out.tfevents.*"))
    assert b"data/succeeded" in events and b"data/skipped_decode" in events, "TensorBoard has the counts"
