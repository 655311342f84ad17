"""LLaVA-Video-178K source: a tiny subset in the Hub's layout, read from an extracted folder and from its .tar.gz."""

import io
import itertools
import json
import tarfile

import av
import numpy as np
import pytest
from datasets.distributed import split_dataset_by_node

from foveated_vlm.data.faults import SampleFailures
from foveated_vlm.data.llava_video import iter_llava_video, llava_video_dataset, parse_conversation

SUBSET = "0_30_s_academic_v0_1"
NUM_FRAMES = 3


def mp4(level: int, frames: int = 5, width: int = 64, height: int = 48) -> bytes:
    """A short mp4 whose frame i is a flat grey of `level + 20 * i`, so frames name their video and their index."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), level + 20 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def turn(role, value):
    return {"from": role, "value": value}


VIDEOS = {f"academic_source/clips/v{i}.mp4": 20 + 40 * i for i in range(4)}  # path -> grey level of frame 0
CAPTIONS = [
    {"id": "c0", "video": "academic_source/clips/v0.mp4", "data_source": "x",
     "conversations": [turn("human", "<image>\nDescribe the video."), turn("gpt", "Grey, brightening.")]},
    {"id": "c1", "video": "academic_source/clips/v1.mp4",
     "conversations": [turn("human", "<video>\n  Describe it. "), turn("gpt", " A lighter grey. ")]},
    {"id": "c2", "video": "academic_source/clips/v2.mp4",
     "conversations": [turn("human", "<image>\nDescribe the video."), turn("gpt", "Lighter still.")]},
    {"id": "gone", "video": "academic_source/clips/missing.mp4",  # in no shard and not in the folder
     "conversations": [turn("human", "<image>\nDescribe."), turn("gpt", "Nothing.")]},
    {"id": "broken", "video": "academic_source/clips/corrupt.mp4",  # not a video
     "conversations": [turn("human", "<image>\nDescribe."), turn("gpt", "Noise.")]},
    {"id": "no_gpt", "video": "academic_source/clips/v0.mp4", "conversations": [turn("human", "<image>\nHi?")]},
    {"id": "empty", "video": "academic_source/clips/v1.mp4",
     "conversations": [turn("human", "<image>\n"), turn("gpt", "An answer to nothing.")]},
    {"id": "no_video", "conversations": [turn("human", "<image>\nDescribe."), turn("gpt", "Something.")]},
]  # fmt: skip
OPEN_ENDED = [
    {"id": "q0", "video": "academic_source/clips/v0.mp4",
     "conversations": [turn("human", "<image>\nHow bright is it?"), turn("gpt", "Dim.")]},
    {"id": "q3", "video": "academic_source/clips/v3.mp4",  # multi-turn: one sample per pair
     "conversations": [turn("human", "<image>\nWhat colour?"), turn("gpt", "Grey."),
                       turn("human", "Does it change?"), turn("gpt", "It brightens.")]},
]  # fmt: skip
EXPECTED = {  # (video_id, prompt, answer) of every good sample
    ("academic_source/clips/v0.mp4", "Describe the video.", "Grey, brightening."),
    ("academic_source/clips/v1.mp4", "Describe it.", "A lighter grey."),
    ("academic_source/clips/v2.mp4", "Describe the video.", "Lighter still."),
    ("academic_source/clips/v0.mp4", "How bright is it?", "Dim."),
    ("academic_source/clips/v3.mp4", "What colour?", "Grey."),
    ("academic_source/clips/v3.mp4", "Does it change?", "It brightens."),
}
SKIPS = {"bad_annotation": 3, "missing_file": 1, "decode": 1}


def write_shard(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """The subset as on the Hub (annotation JSON + two video shards), and the shards extracted into a folder."""
    root = tmp_path_factory.mktemp("llava") / SUBSET
    root.mkdir()
    videos = {path: mp4(level) for path, level in VIDEOS.items()}
    paths = list(videos)
    shards = [root / f"{SUBSET}_videos_{n}.tar.gz" for n in (1, 2)]
    write_shard(shards[0], {paths[0]: videos[paths[0]], paths[1]: videos[paths[1]],
                            "academic_source/clips/corrupt.mp4": b"\x00not a video" * 50,
                            "academic_source/clips/unannotated.mp4": mp4(0)})  # fmt: skip
    write_shard(shards[1], {paths[2]: videos[paths[2]], paths[3]: videos[paths[3]]})
    annotations = [root / f"{SUBSET}_cap_processed.json", root / f"{SUBSET}_oe_qa_processed.json"]
    annotations[0].write_text(json.dumps(CAPTIONS))
    annotations[1].write_text(json.dumps(OPEN_ENDED))
    video_root = root / "extracted"
    for shard in shards:
        with tarfile.open(shard) as tar:
            tar.extractall(video_root, filter="data")
    return {"annotations": annotations, "shards": shards, "video_root": video_root}


def check_samples(samples):
    assert {(s["video_id"], s["prompt"], s["answer"]) for s in samples} == EXPECTED
    assert len(samples) == len(EXPECTED)
    for sample in samples:
        frames = sample["frames"]
        assert frames.dtype == np.uint8 and frames.shape == (NUM_FRAMES, 48, 64, 3)  # [T, H, W, 3]
        # Frames 0, 2, 4 of 5 (uniform sampling): grey levels level, level + 40, level + 80 (mpeg4 is lossy).
        level = VIDEOS[sample["video_id"]]
        np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), [level, level + 40, level + 80], atol=4)


@pytest.mark.parametrize("mode", ["video_root", "shards"])
def test_reads_samples_and_counts_skips(subset, mode):
    failures = SampleFailures("test")
    source = {mode: subset[mode]}
    samples = list(iter_llava_video(subset["annotations"], num_frames=NUM_FRAMES, failures=failures, **source))
    check_samples(samples)
    assert dict(failures.failed) == SKIPS
    assert failures.succeeded == 5  # records: c0, c1, c2, q0 and the two-pair q3


def test_dataset_and_rank_sharding(subset):
    dataset = llava_video_dataset(subset["annotations"], shards=subset["shards"], num_frames=NUM_FRAMES)
    assert dataset.num_shards == 2 and set(dataset.features) == {"frames", "prompt", "answer", "video_id", "skipped"}
    check_samples(list(dataset))
    ranks = [list(split_dataset_by_node(dataset, rank, 2)) for rank in range(2)]
    videos = [{s["video_id"] for s in rank} for rank in ranks]
    assert videos == [{"academic_source/clips/v0.mp4", "academic_source/clips/v1.mp4"},
                      {"academic_source/clips/v2.mp4", "academic_source/clips/v3.mp4"}]  # fmt: skip
    check_samples(ranks[0] + ranks[1])  # disjoint, and together everything

    folder = llava_video_dataset(subset["annotations"], video_root=subset["video_root"], num_frames=NUM_FRAMES)
    halves = [list(split_dataset_by_node(folder, rank, 2)) for rank in range(2)]
    assert halves[0] and halves[1]
    check_samples(halves[0] + halves[1])


def test_truncated_shard_keeps_what_was_read(tmp_path):
    # Random bytes do not compress, so cutting the file in half lands inside the junk member, after v0.
    junk = np.random.default_rng(0).bytes(1 << 16)
    paths = list(VIDEOS)
    shard = tmp_path / "s.tar.gz"
    write_shard(shard, {paths[0]: mp4(VIDEOS[paths[0]]), "junk.bin": junk, paths[1]: mp4(VIDEOS[paths[1]])})
    shard.write_bytes(shard.read_bytes()[: (1 << 15)])
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps(CAPTIONS[:2]))
    failures = SampleFailures("test")
    samples = list(iter_llava_video([annotations], shards=[shard], num_frames=NUM_FRAMES, failures=failures))
    assert [s["video_id"] for s in samples] == [paths[0]]  # read before the cut
    assert dict(failures.failed) == {"truncated_shard": 1, "missing_file": 1}  # v1 lay after it


def test_members_under_a_folder_join_by_suffix(tmp_path):
    shard = tmp_path / "s.tar.gz"
    write_shard(shard, {f"{SUBSET}/academic_source/clips/v1.mp4": mp4(60)})
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps([CAPTIONS[1]]))
    (sample,) = iter_llava_video([annotations], shards=[shard], num_frames=NUM_FRAMES)
    assert sample["video_id"] == "academic_source/clips/v1.mp4" and sample["answer"] == "A lighter grey."


def test_parse_conversation():
    assert parse_conversation(OPEN_ENDED[1]) == [("What colour?", "Grey."), ("Does it change?", "It brightens.")]
    for record, message in [
        (CAPTIONS[5], "pairs"),
        (CAPTIONS[6], "empty"),
        (CAPTIONS[7], r"missing keys \['video'\]"),
        (CAPTIONS[0] | {"conversations": [turn("gpt", "a"), turn("human", "b")]}, "alternate human, gpt"),
        (CAPTIONS[0] | {"video": ""}, "relative path"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_conversation(record)


def test_needs_exactly_one_video_source(subset):
    with pytest.raises(ValueError, match="exactly one of video_root"):
        llava_video_dataset(subset["annotations"], num_frames=NUM_FRAMES)
    with pytest.raises(ValueError, match="exactly one of video_root"):
        next(iter_llava_video(subset["annotations"], num_frames=2, video_root="x", shards=subset["shards"]))


def test_a_stream_of_nothing_but_failures_is_an_error(subset, tmp_path):
    from foveated_vlm.data.faults import NoSamplesError

    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps([CAPTIONS[3]] * 5))
    failures = SampleFailures("test", give_up_after=5)
    with pytest.raises(NoSamplesError, match="missing_file 5"):
        list(
            itertools.islice(
                iter_llava_video([annotations], shards=subset["shards"], num_frames=2, failures=failures), 1
            )
        )
