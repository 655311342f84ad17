"""precompute's output folder, used as people do: a folder with their own files in it, a folder another run is
writing, a folder a run was killed in. precompute removes only what it wrote itself, never overwrites a file it did
not write, and lets one run at a time write a folder."""

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from foveated_vlm import FoveatedVideoProcessor, build_target_encoder
from foveated_vlm.data import precompute
from foveated_vlm.data.pipeline import build_dataset
from foveated_vlm.data.precompute import LOCK, MANIFEST, OutputFolderError, PrecomputedTargets, main, precompute_targets

SIZE, FRAMES = 32, 2
CLI = ["--dataset", "synthetic", "--target", "pixels", "--num_frames", str(FRAMES), "--frame_size", str(SIZE),
       "--target_size", "4", "--dtype", "float32", "--shard_size", "2"]  # fmt: skip


def clips(n):
    return list(itertools.islice(build_dataset("synthetic", seed=0, frame_size=SIZE, num_frames=FRAMES), n))


def run(samples, out, **kwargs):
    encoder = build_target_encoder("pixels", target_size=4)
    processor = FoveatedVideoProcessor(size=SIZE, num_frames=FRAMES)
    return precompute_targets(samples, out, encoder, processor, **({"shard_size": 2, "dtype": torch.float32} | kwargs))


def snapshot(folder) -> dict:
    """name -> sha256 of every file in `folder` (recursively), to show what a run changed."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}  # fmt: skip


def consistent(out) -> bool:
    """Every video the index lists is in the shard the index names."""
    index = json.loads((out / "index.json").read_text())
    return all(set(shard["video_ids"]) <= set(safe_open(out / shard["file"], "pt").keys()) for shard in index["shards"])


def test_files_precompute_did_not_write_survive_a_run(tmp_path):
    out = tmp_path / "targets"
    (out / "notes").mkdir(parents=True)
    foreign = {".notes.tmp": b"my notes", "README.md": b"# my targets\n", "notes/shard-00000.safetensors": b"x",
               ".index.json.tmp.bak": b"backup", "shard-1.safetensors": b"not precompute's name"}  # fmt: skip
    for name, data in foreign.items():
        (out / name).write_bytes(data)
    (tmp_path / "outside.txt").write_bytes(b"outside the folder")
    before = snapshot(out)

    report = main([*CLI, "--out", str(out), "--max_videos", "5"])
    assert (report["videos"], report["shards"]) == (5, 3)
    after = snapshot(out)
    assert {name: after[name] for name in before} == before  # byte-identical, all of them
    shards = {f"shard-0000{i}.safetensors" for i in range(3)}
    assert set(after) - set(before) == {LOCK, MANIFEST, "index.json", *shards}  # and nothing else was added

    # A manifest that names other files (forged, or damaged) never points the cleaning at them.
    with open(out / MANIFEST, "a") as handle:
        handle.write("../outside.txt\nREADME.md\n.notes.tmp\nnotes/shard-00000.safetensors\n")
    main([*CLI, "--out", str(out), "--max_videos", "7"])
    assert {name: snapshot(out)[name] for name in before} == before
    assert (tmp_path / "outside.txt").read_bytes() == b"outside the folder"


@pytest.mark.parametrize("name", ["shard-00007.safetensors", "shard-00000.safetensors", ".index.json.tmp"])
def test_a_foreign_file_with_a_name_precompute_writes_stops_the_run(tmp_path, capsys, name):
    out = tmp_path / "targets"
    out.mkdir()
    data = safetensors_bytes({"someone-else": torch.zeros(2)})  # a real safetensors file, just not precompute's
    (out / name).write_bytes(data)
    with pytest.raises(SystemExit) as exit_info:
        main([*CLI, "--out", str(out), "--max_videos", "3"])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert f"{out} holds files that precompute did not write but could overwrite: ['{name}']" in message
    assert (out / name).read_bytes() == data
    assert sorted(path.name for path in out.iterdir()) == sorted([LOCK, name])  # nothing was written


def test_an_unlisted_shard_in_a_resumed_folder_stops_the_run(tmp_path):
    out = tmp_path / "targets"
    run(clips(4), out, max_videos=2)
    planted = safetensors_bytes({"copied-from-elsewhere": torch.zeros(2)})
    (out / "shard-00001.safetensors").write_bytes(planted)  # the name the next shard would get
    with pytest.raises(OutputFolderError, match=r"could overwrite: \['shard-00001.safetensors'\]"):
        run(clips(4), out)
    assert (out / "shard-00001.safetensors").read_bytes() == planted
    assert len(PrecomputedTargets(out)) == 2


@pytest.mark.parametrize("content", [b"{not json", b'{"hello": "world"}', b"\xff\xfe", b"[]"])
def test_an_index_of_another_kind_is_refused(tmp_path, content):
    out = tmp_path / "targets"
    out.mkdir()
    (out / "index.json").write_bytes(content)
    with pytest.raises(OutputFolderError, match=f"{out / 'index.json'} is not an index precompute wrote"):
        run(clips(2), out)
    assert (out / "index.json").read_bytes() == content


def held_samples(n, started: threading.Event, release: threading.Event):
    """n clips; after the first two (one shard), waits until `release` is set: a run in progress."""
    for i, sample in enumerate(clips(n)):
        if i == 3:
            started.set()
            assert release.wait(10), "the test never released the first run"
        yield sample


def test_a_second_run_on_a_folder_in_use_fails_at_once(tmp_path):
    out = tmp_path / "targets"
    started, release, result = threading.Event(), threading.Event(), {}
    first = threading.Thread(target=lambda: result.update(report=run(held_samples(6, started, release), out)))
    first.start()
    try:
        assert started.wait(10)
        in_progress = snapshot(out)
        start = time.monotonic()
        with pytest.raises(OutputFolderError) as error:
            run(clips(6), out)
        seconds = time.monotonic() - start
        assert snapshot(out) == in_progress  # the refused run changed nothing
    finally:
        release.set()
        first.join(10)
    print(f"second run refused after {seconds:.3f} s")
    assert str(error.value) == (f"{out} is in use by another precompute run, which holds the lock {out / LOCK};"
                                " wait for it to finish, or choose another --out")  # fmt: skip
    assert seconds < 0.5 and "shard-00000.safetensors" in in_progress  # refused while the first was mid-way
    assert result["report"]["videos"] == 6 and consistent(out)  # the first run was not disturbed
    assert run(clips(6), out)["written"] == 0  # and once it is done the folder is free again


def test_a_lock_held_by_another_process_stops_the_cli(tmp_path, capsys):
    out = tmp_path / "targets"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
         "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(out / LOCK)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        start = time.monotonic()
        with pytest.raises(SystemExit) as exit_info:
            main([*CLI, "--out", str(out), "--max_videos", "3"])
        seconds = time.monotonic() - start
    finally:
        holder.communicate("", timeout=10)  # closing its stdin ends it, and the kernel drops its lock
    assert exit_info.value.code == 1 and seconds < 1.0
    assert f"is in use by another precompute run, which holds the lock {out / LOCK}" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == [LOCK]
    assert main([*CLI, "--out", str(out), "--max_videos", "3"])["videos"] == 3


def test_a_killed_run_resumes_and_removes_only_its_own_leftovers(tmp_path, monkeypatch):
    samples = clips(7)
    whole = tmp_path / "whole"
    run(samples, whole)
    out = tmp_path / "resumed"
    out.mkdir()
    (out / ".notes.tmp").write_bytes(b"mine")
    real_replace = os.replace

    def dying_replace(source, target):  # killed after the second shard's rename, before the index lists it
        real_replace(source, target)
        if str(target).endswith("shard-00001.safetensors"):
            raise KeyboardInterrupt

    monkeypatch.setattr(precompute.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        run(samples, out)
    monkeypatch.undo()
    # What a SIGKILL leaves as well: its temporary file, and the manifest's last line cut off mid-write.
    (out / ".shard-00002.safetensors.tmp").write_bytes(b"half a shard")
    with open(out / MANIFEST, "a") as handle:
        handle.write(".shard-00002.safetensors.tmp\nshard-000")
    assert {"shard-00001.safetensors", ".shard-00002.safetensors.tmp"} <= set(os.listdir(out))

    report = run(samples, out)
    assert report["written"] == 5 and report["videos"] == 7
    assert (out / ".notes.tmp").read_bytes() == b"mine"
    assert ".shard-00002.safetensors.tmp" not in os.listdir(out)
    assert json.loads((out / "index.json").read_text()) == json.loads((whole / "index.json").read_text())
    resumed, reference = PrecomputedTargets(out), PrecomputedTargets(whole)
    for sample in samples:
        assert torch.equal(resumed.get(sample["video_id"]), reference.get(sample["video_id"]))
    manifest = (out / MANIFEST).read_text()
    assert manifest.endswith("\n") and "shard-000shard" not in manifest  # the cut-off line was closed first
