"""The local-folder source: CSV and JSONL annotations, per-row prompts, bad files skipped and counted, batches."""

import csv
import json

import numpy as np
import pytest
from datasets.distributed import split_dataset_by_node
from test_processing import make_processor
from test_video_processing import write_video

from foveated_vlm import VideoTextCollator, build_target_encoder
from foveated_vlm.data.faults import NoSamplesError, SampleFailures
from foveated_vlm.data.folder import folder_dataset, read_annotations

NUM_FRAMES = 4
ROWS = [
    {"video": "clips/a.mp4", "caption": "a red ball rolls", "prompt": "what happens ?"},
    {"video": "clips/b.mp4", "caption": "a blue cube falls", "prompt": ""},  # empty: the default prompt
    {"video": "clips/gone.mp4", "caption": "never there", "prompt": ""},
    {"video": "clips/corrupt.mp4", "caption": "noise", "prompt": ""},
    {"video": "clips/c.mp4", "caption": "", "prompt": ""},  # no caption: a bad record
    {"video": "c.mp4", "caption": "the video", "prompt": ""},
]
GOOD = ["clips/a.mp4", "clips/b.mp4", "c.mp4"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "clips").mkdir()
    for name, frames in [("clips/a.mp4", 6), ("clips/b.mp4", 8), ("clips/c.mp4", 5), ("c.mp4", 10)]:
        write_video(root / name, num_frames=frames, width=64, height=48)
    (root / "clips/corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["video", "caption", "prompt"])
        writer.writeheader()
        writer.writerows(ROWS)
    with open(root / "captions.jsonl", "w") as handle:  # no prompt key at all
        for row in ROWS:
            handle.write(json.dumps({"video": row["video"], "caption": row["caption"]}) + "\n\n")
    return root


def test_csv_rows_become_samples_and_bad_files_are_counted(folder):
    failures = SampleFailures("folder")
    samples = list(folder_dataset(folder, num_frames=NUM_FRAMES, failures=failures))  # finds annotations.csv
    assert [s["video_id"] for s in samples] == GOOD
    assert [s["prompt"] for s in samples] == ["what happens ?", "Describe the video.", "Describe the video."]
    assert [s["answer"] for s in samples] == ["a red ball rolls", "a blue cube falls", "the video"]
    for sample in samples:
        assert sample["frames"].dtype == np.uint8 and sample["frames"].shape == (NUM_FRAMES, 48, 64, 3)
    assert failures.failed == {"missing_file": 1, "decode": 1, "bad_record": 1}
    assert failures.succeeded == 3 and failures.success_rate == 0.5


def test_jsonl_annotations_and_a_custom_prompt(folder):
    failures = SampleFailures("folder")
    dataset = folder_dataset(folder, folder / "captions.jsonl", num_frames=NUM_FRAMES, prompt="Caption it.",
                             failures=failures)  # fmt: skip
    samples = list(dataset)
    assert [s["video_id"] for s in samples] == GOOD and {s["prompt"] for s in samples} == {"Caption it."}
    assert failures.failed == {"missing_file": 1, "decode": 1, "bad_record": 1}


def test_frames_are_the_sampled_ones_and_bounded_in_size(folder):
    (sample,) = [s for s in folder_dataset(folder, num_frames=NUM_FRAMES, max_size=24) if s["video_id"] == "c.mp4"]
    assert sample["frames"].shape == (NUM_FRAMES, 24, 32, 3)
    # `write_video` draws frame i at a gray level rising with i: 4 of 10 frames, evenly spread, rise too.
    means = sample["frames"].reshape(NUM_FRAMES, -1).mean(1)
    assert np.all(np.diff(means) > 0)


def test_collator_turns_samples_into_a_batch(folder):
    samples = list(folder_dataset(folder, num_frames=NUM_FRAMES))
    processor = make_processor(num_frames=NUM_FRAMES)
    batch = VideoTextCollator(processor, build_target_encoder("pixels", target_size=8))(samples)
    assert batch["pixel_values_videos"].shape == (3, NUM_FRAMES, 3, 32, 32)
    assert batch["target_latents"].shape == (3, NUM_FRAMES, 3, 8, 8)
    assert batch["input_ids"].shape[0] == 3 and (batch["labels"] != -100).any(1).all()


def test_ranks_get_disjoint_clips_and_seed_shuffles_shards(folder):
    ranks = [
        [s["video_id"] for s in split_dataset_by_node(folder_dataset(folder, num_frames=2), rank=r, world_size=2)]
        for r in range(2)
    ]
    assert ranks[0] and ranks[1] and sorted(ranks[0] + ranks[1]) == sorted(GOOD)
    shuffled = [s["video_id"] for s in folder_dataset(folder, num_frames=2, seed=3, num_shards=6)]
    assert sorted(shuffled) == sorted(GOOD) and shuffled != GOOD  # seed 3 happens to reorder these shards


def test_nothing_succeeding_raises_and_wrong_files_are_clear_errors(folder, tmp_path):
    dead = tmp_path / "dead.csv"
    dead.write_text("video,caption\n" + "".join(f"missing{i}.mp4,x\n" for i in range(5)))
    dataset = folder_dataset(folder, dead, num_frames=2, failures=SampleFailures("folder", give_up_after=3))
    with pytest.raises(NoSamplesError, match="no sample succeeded in 3 attempts .*missing_file 3"):
        list(dataset)
    (tmp_path / "bad.csv").write_text("path,text\na.mp4,x\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['video', 'caption'\]"):
        read_annotations(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"video": "a.mp4", "caption": "x"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: expected a JSON object"):
        read_annotations(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match="no annotation file"):
        folder_dataset(tmp_path, num_frames=2)
