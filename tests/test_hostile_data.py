"""Hostile data for the folder and LLaVA-Video sources: paths that leave the root, broken annotation files, big
annotation files read lazily, tar members too big to hold, and a shard given where a folder belongs."""

import csv
import json
import logging
import os
import pickle
import tarfile
import tracemalloc

import pytest
from datasets.distributed import split_dataset_by_node
from test_llava_video import mp4, turn, write_shard
from test_video_processing import write_video

from foveated_vlm.data import annotations
from foveated_vlm.data.annotations import contiguous_blocks, read_json_list, scan_json_list
from foveated_vlm.data.faults import SampleFailures
from foveated_vlm.data.folder import folder_dataset
from foveated_vlm.data.llava_video import iter_llava_video, llava_video_dataset
from foveated_vlm.data.pipeline import build_dataset

FRAMES = 2


def record(index, video, answer="An answer."):
    """A LLaVA-Video annotation record."""
    return {"id": str(index), "video": video, "conversations": [turn("human", "<video>\nWhat?"), turn("gpt", answer)]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def escaping_root(tmp_path):
    """A root holding one good clip, a symlink to it and a symlink pointing out, beside a valid clip outside it; and
    the `video` values that reach that outside clip (each must be refused) or stay inside (each must be read)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    write_video(outside / "x.mp4", num_frames=4)
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    write_video(root / "good.mp4", num_frames=4)
    os.symlink(outside / "x.mp4", root / "out_link.mp4")
    os.symlink(root / "good.mp4", root / "in_link.mp4")
    escapes = ["../outside/x.mp4", "a/../../outside/x.mp4", str(outside / "x.mp4"), "out_link.mp4"]
    inside = ["good.mp4", "in_link.mp4", str(root / "good.mp4"), "a/../good.mp4"]
    return root, escapes, inside


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_folder_never_reads_a_video_outside_its_root(escaping_root, kind):
    root, escapes, inside = escaping_root
    rows = [{"video": video, "caption": f"row {i}"} for i, video in enumerate(escapes + inside)]
    if kind == "csv":
        with open(root / "annotations.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["video", "caption"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        write_jsonl(root / "annotations.jsonl", rows)
    failures = SampleFailures("folder")
    samples = list(folder_dataset(root, num_frames=FRAMES, failures=failures))
    assert [s["video_id"] for s in samples] == inside  # the outside clip, valid as it is, gives no sample
    assert dict(failures.failed) == {"outside_root": len(escapes)}


def test_llava_video_root_never_reads_a_video_outside_it(escaping_root, tmp_path):
    root, escapes, inside = escaping_root
    annotation = tmp_path / "a.json"
    nul = ["good\0.mp4"]  # not a path at all: the OS would refuse it with a bare ValueError
    annotation.write_text(json.dumps([record(i, video) for i, video in enumerate(escapes + inside + nul)]))
    failures = SampleFailures("llava_video")
    samples = list(iter_llava_video(annotation, num_frames=FRAMES, video_root=root, failures=failures))
    assert len(samples) == len(inside)
    assert dict(failures.failed) == {"outside_root": len(escapes), "bad_annotation": 1}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("latin.csv", "video,caption\ngood.mp4,ok\ngood.mp4,café au lait\n".encode("latin-1"),
         r"latin\.csv:3: not UTF-8 \(byte 0xe9 at column 13\)"),
        ("latin.jsonl", '{"video": "good.mp4", "caption": "café"}\n'.encode("latin-1"), r"latin\.jsonl:1: not UTF-8"),
        ("list.jsonl", b'[{"video": "good.mp4"}]\n', r"list\.jsonl:1: one JSON object per line .* list"),
        ("broken.jsonl", b'\n{"video": "good.mp4", \n', r"broken\.jsonl:2: one JSON object per line .*not valid JSON"),
    ],
)  # fmt: skip
def test_folder_wrong_annotation_file_is_an_error_naming_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        folder_dataset(tmp_path, tmp_path / name, num_frames=FRAMES)  # at construction, before any sample


def test_folder_bad_records_are_counted_with_their_line(tmp_path, caplog):
    write_video(tmp_path / "good.mp4", num_frames=4)
    lines = [
        json.dumps({"video": "good.mp4", "caption": "a good row"}),
        '{"video": "good.mp4", "caption": ',  # broken JSON, mid-file: one bad record, not a wrong file
        json.dumps({"video": "good.mp4", "caption": ["list"]}),  # JSON has types: none of these is text
        json.dumps({"video": "good.mp4", "caption": 1984}),
        json.dumps({"video": "good.mp4", "caption": "ok", "prompt": {"a": 1}}),
        json.dumps({"video": ["good.mp4"], "caption": "ok"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"video": "good\u0000.mp4", "caption": "ok"}),
        json.dumps({"video": "good.mp4", "caption": "another good row"}),
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    failures = SampleFailures("folder")
    with caplog.at_level(logging.DEBUG, logger="foveated_vlm.data.faults"):
        samples = list(folder_dataset(tmp_path, tmp_path / "rows.jsonl", num_frames=FRAMES, failures=failures))
    assert [s["answer"] for s in samples] == ["a good row", "another good row"]
    assert dict(failures.failed) == {"bad_record": 7}
    reasons = {2: "not valid JSON", 3: "caption must be text, got list ['list']",
               4: "caption must be text, got int 1984", 5: "prompt must be text", 6: "video must be text",
               7: "expected a JSON object", 8: "'good\\x00.mp4' holds a NUL character"}  # fmt: skip
    for line, reason in reasons.items():
        assert any(f"rows.jsonl:{line} (bad_record): {reason}" in m for m in caplog.messages), (line, caplog.messages)


def test_folder_csv_cells_are_text_and_extra_cells_are_a_bad_record(tmp_path):
    write_video(tmp_path / "good.mp4", num_frames=4)
    (tmp_path / "rows.csv").write_text(
        "\ufeffvideo,caption\n"  # a spreadsheet's byte order mark
        "good.mp4,1984\n"  # a number in a CSV is its text
        "good.mp4,a dog, running\n"  # an unquoted comma: the caption would be cut to "a dog"
        'good.mp4,"a caption\nover two lines"\n'
    )
    failures = SampleFailures("folder")
    samples = list(folder_dataset(tmp_path, tmp_path / "rows.csv", num_frames=FRAMES, failures=failures))
    assert [s["answer"] for s in samples] == ["1984", "a caption\nover two lines"]
    assert dict(failures.failed) == {"bad_record": 1}


@pytest.mark.parametrize(
    "content, message",
    [
        (json.dumps({"a": record(0, "v.mp4")}), r"a\.json: expected a JSON list of records .*got a JSON object"),
        (json.dumps("v.mp4"), r"a\.json: expected a JSON list .*got a JSON string"),
        (json.dumps([record(0, "v.mp4")])[:-1] + ', {"id": 1,]', r"a\.json\[1\] \(byte \d+\): not valid JSON"),
        (json.dumps([record(0, "v.mp4")]) + "[]", r"a\.json: extra data after the list"),
        ("", r"a\.json: expected a JSON list .*an empty file"),
    ],
)
def test_llava_wrong_annotation_file_is_an_error_naming_file_and_record(tmp_path, content, message):
    (tmp_path / "a.json").write_text(content)
    for source in ({"video_root": tmp_path}, {"shards": [tmp_path / "none.tar.gz"]}):
        with pytest.raises(ValueError, match=message):
            llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, **source)  # at construction


def test_llava_annotation_not_utf8_names_the_record(tmp_path):
    text = json.dumps([record(i, "v.mp4", answer=f"answer {i} é") for i in range(4)], ensure_ascii=False)
    data = text.encode("utf-8").replace("answer 3 é".encode(), "answer 3 é".encode("latin-1"))
    (tmp_path / "a.json").write_bytes(data)
    with pytest.raises(ValueError, match=r"a\.json\[3\] \(byte \d+\): not UTF-8 \(byte 0xe9 at byte \d+\)"):
        llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, video_root=tmp_path)


def test_json_list_reader_is_exact_across_chunk_boundaries(tmp_path, monkeypatch):
    # Records that end in numbers, hold multi-byte characters and escapes: with 7-byte chunks every boundary case
    # (a number cut in two, a character split between chunks, a string running past the buffer) comes up.
    records = [{"id": i, "text": 'héllo "wörld" \\u00e9 ✓' * (i % 3), "n": 10**i} for i in range(12)]
    records += [123456789, "plain", [1, [2, {"deep": None}]], True]
    (tmp_path / "a.json").write_text(" [ " + ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in records) + " ] \n")
    monkeypatch.setattr(annotations, "_CHUNK", 7)
    scan = scan_json_list(tmp_path / "a.json")
    assert len(scan.offsets) == len(records)
    for num_shards in (1, 5, len(records)):
        blocks = contiguous_blocks([scan], num_shards)
        read = [(location, value) for block in blocks for segment in block for location, value, _ in
                read_json_list(segment)]  # fmt: skip
        assert [value for _, value in read] == records
        assert [location for location, _ in read] == [f"{tmp_path / 'a.json'}[{i}]" for i in range(len(records))]


def test_big_annotation_files_are_read_lazily(tmp_path):
    """What `datasets` fingerprints and what each DataLoader worker receives is the pickled dataset: file names and
    block offsets, not the 20k records (1.9 MB of JSON), which are read from disk as the stream reaches them."""
    write_video(tmp_path / "good.mp4", num_frames=4)
    write_jsonl(
        tmp_path / "rows.jsonl", [{"video": "good.mp4", "caption": f"row {i} " + "x" * 80} for i in range(20_000)]
    )
    (tmp_path / "a.json").write_text(json.dumps([record(i, "good.mp4", "y" * 80) for i in range(20_000)]))
    datasets = {
        "folder": folder_dataset(tmp_path, tmp_path / "rows.jsonl", num_frames=FRAMES),
        "llava video_root": llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, video_root=tmp_path),
        "llava shards": llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, shards=[tmp_path / "s.tar.gz"]),
    }
    for name, dataset in datasets.items():
        assert len(pickle.dumps(dataset)) < 100_000, name
    first = next(iter(datasets["folder"]))
    assert first["answer"].startswith("row 0 ")


def test_lazy_blocks_give_ranks_disjoint_contiguous_records(tmp_path):
    write_video(tmp_path / "good.mp4", num_frames=4)
    write_jsonl(tmp_path / "rows.jsonl", [{"video": "good.mp4", "caption": str(i)} for i in range(24)])
    (tmp_path / "a.json").write_text(json.dumps([record(i, "good.mp4", str(i)) for i in range(24)]))
    for dataset in (
        folder_dataset(tmp_path, tmp_path / "rows.jsonl", num_frames=FRAMES, num_shards=8),
        llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, video_root=tmp_path, num_shards=8),
    ):
        ranks = [{int(s["answer"]) for s in split_dataset_by_node(dataset, rank, 2)} for rank in range(2)]
        assert len(ranks[0]) == len(ranks[1]) == 12 and ranks[0] | ranks[1] == set(range(24))
        for block in (set(range(3 * j, 3 * j + 3)) for j in range(8)):  # 8 blocks of 3, each read whole by one rank
            assert block <= ranks[0] or block <= ranks[1]


def test_unannotated_tar_member_is_skipped_without_being_read(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(64 << 20)  # 64 MiB of zeros, sparse on disk, a few hundred KB compressed
    (tmp_path / "v.mp4").write_bytes(mp4(60))
    shard = tmp_path / "s.tar.gz"
    with tarfile.open(shard, "w:gz", compresslevel=1) as tar:
        tar.add(big, arcname="big.bin")  # no annotation names it
        tar.add(tmp_path / "v.mp4", arcname="v.mp4")
    (tmp_path / "a.json").write_text(json.dumps([record(0, "v.mp4")]))
    failures = SampleFailures("llava_video")
    tracemalloc.start()
    try:
        samples = list(iter_llava_video(tmp_path / "a.json", num_frames=FRAMES, shards=[shard], failures=failures))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(samples) == 1 and failures.succeeded == 1 and not failures.failed
    assert peak < 24 << 20, f"peak {peak / 2**20:.0f} MiB: the unannotated member was held in memory"


def test_annotated_member_over_the_size_cap_is_skipped_and_counted(tmp_path):
    video = mp4(60)
    shard = tmp_path / "s.tar.gz"
    small = mp4(20, frames=2)
    assert len(small) < len(video)
    write_shard(shard, {"big.mp4": video, "small.mp4": small})
    records = [record(0, "big.mp4"), record(1, "big.mp4", "Another."), record(2, "small.mp4")]
    (tmp_path / "a.json").write_text(json.dumps(records))
    failures = SampleFailures("llava_video")
    cap = len(video) - 1
    samples = list(
        iter_llava_video(
            tmp_path / "a.json", num_frames=FRAMES, shards=[shard], failures=failures, max_member_bytes=cap
        )
    )
    assert [s["video_id"] for s in samples] == ["small.mp4"]
    assert dict(failures.failed) == {"too_large": 2}  # both records of the big video; not "missing_file" later
    with pytest.raises(ValueError, match="max_member_bytes must be a positive number of bytes, got 0"):
        llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, shards=[shard], max_member_bytes=0)


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_llava_shard_given_as_video_root_is_read_as_a_shard(tmp_path, suffix, mode):
    shard = tmp_path / f"videos{suffix}"
    with tarfile.open(shard, mode) as tar:
        (tmp_path / "v.mp4").write_bytes(mp4(60))
        tar.add(tmp_path / "v.mp4", arcname="clips/v.mp4")
    (tmp_path / "a.json").write_text(json.dumps([record(0, "clips/v.mp4")]))
    dataset = build_dataset("llava_video", seed=0, frame_size=32, num_frames=FRAMES,
                            data_files=[str(tmp_path / "a.json")], video_root=str(shard))  # fmt: skip
    assert [s["video_id"] for s in dataset] == ["clips/v.mp4"]


def test_a_file_or_missing_folder_as_video_root_is_refused_before_training(tmp_path):
    shard = tmp_path / "videos.tar.gz"
    write_shard(shard, {"v.mp4": mp4(60)})
    write_jsonl(tmp_path / "rows.jsonl", [{"video": "v.mp4", "caption": "x"}])
    with pytest.raises(ValueError, match=r"--video_root .*videos\.tar\.gz is a file; it must be the folder"):
        build_dataset("folder", seed=0, frame_size=32, num_frames=FRAMES, video_root=str(shard),
                      data_files=[str(tmp_path / "rows.jsonl")])  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps([record(0, "v.mp4")]))
    with pytest.raises(FileNotFoundError, match=r"video_root .*nowhere does not exist"):
        llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, video_root=tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError, match=r"video_root .*rows\.jsonl is a file, not a folder"):
        llava_video_dataset(tmp_path / "a.json", num_frames=FRAMES, video_root=tmp_path / "rows.jsonl")


def test_real_video_sources_bound_the_frame_size_when_decoding(tmp_path):
    # A large clip must not sit in shuffle buffers at full size: every real source decodes to MAX_FRAME_SIDE.
    write_video(tmp_path / "wide.mp4", num_frames=2, width=1280, height=720)
    (tmp_path / "annotations.csv").write_text("video,caption\nwide.mp4,a wide clip\n")
    (tmp_path / "a.json").write_text(json.dumps([record(0, "wide.mp4")]))
    folder = next(iter(folder_dataset(tmp_path, num_frames=2)))
    llava = next(iter_llava_video(tmp_path / "a.json", num_frames=2, video_root=tmp_path))
    for frames in (folder["frames"], llava["frames"]):
        assert frames.shape[1:] == (512, 910, 3)  # [T, H, W, 3]: the shorter side at 512, the aspect kept
