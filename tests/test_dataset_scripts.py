"""The runnable entry points in datasets_scripts/: each script run as a user runs it (another working directory, the
installed package), over tiny local files; the sources' `main`s for the cases around them, in process."""

import csv
import functools
import io
import json
import subprocess
import sys
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_video_processing import write_video

from foveated_vlm.data import folder, llava_video
from foveated_vlm.data.pipeline import build_dataset
from foveated_vlm.data.precompute import PrecomputedTargets

SCRIPTS = Path(__file__).resolve().parent.parent / "datasets_scripts"
NUM_FRAMES = 4


def run_script(name: str, *args, cwd) -> subprocess.CompletedProcess:
    """`python datasets_scripts/NAME.py ARGS` from `cwd`, outside the checkout: only the installed package serves.
    decord writes undecodable bytes of a corrupt file to stderr, hence `errors="replace"`."""
    command = [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=300)


def corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder: a.mp4 and clips/b.mp4 (good), corrupt.mp4; annotations.csv naming them, a missing clip and a row
    without a caption."""
    root = tmp_path_factory.mktemp("videos")
    (root / "clips").mkdir()
    write_video(root / "a.mp4", num_frames=6)
    write_video(root / "clips/b.mp4", num_frames=8)
    corrupt(root / "corrupt.mp4")
    rows = [("a.mp4", "a gray clip"), ("gone.mp4", "never there"), ("corrupt.mp4", "noise"),
            ("clips/b.mp4", "another clip"), ("a.mp4", "")]  # fmt: skip
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "caption"])
        writer.writerows(rows)
    return root


@pytest.fixture
def elsewhere(tmp_path):
    """A working directory that is neither the checkout nor the data's folder."""
    (tmp_path / "cwd").mkdir()
    return tmp_path / "cwd"


def test_folder_script_counts_what_it_read_and_what_it_skipped(videos, elsewhere):
    result = run_script("folder", "--check", videos / "annotations.csv", "--num_frames", NUM_FRAMES, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "folder: 2 sample(s) read (limit 16); 2/5 succeeded (40.0%)" in result.stdout
    assert "skipped: " in result.stdout
    for reason in ("missing_file 1", "decode 1", "bad_record 1"):
        assert reason in result.stdout


def test_folder_check_stops_at_the_limit_and_reads_a_relative_path(videos, monkeypatch, capsys):
    monkeypatch.chdir(videos)  # the videos are relative to the annotation file's folder: "." here
    assert folder.main(["--check", "annotations.csv", "--limit", "1", "--num_frames", str(NUM_FRAMES)]) == 0
    assert capsys.readouterr().out == "folder: 1 sample(s) read (limit 1); 1/1 succeeded (100.0%); skipped: none\n"


def test_folder_check_fails_with_one_line_when_nothing_is_read(videos, tmp_path, capsys):
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text("video,caption\ngone.mp4,x\ncorrupt.mp4,y\n")
    assert folder.main(["--check", str(only_bad), "--video_root", str(videos)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "folder: error: no sample read; 0/2 succeeded" in captured.err
    assert "missing_file 1" in captured.err and "decode 1" in captured.err

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("path,text\na.mp4,x\n")  # no video/caption header: the file is wrong, not a row
    assert folder.main(["--check", str(wrong), "--video_root", str(videos)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("folder: error: ") and "wrong.csv" in captured.err


def test_bad_arguments_are_a_usage_error(capsys):
    for argv in (["--check", "a.csv", "--limit", "0"], [], ["--check", "a.csv", "b.csv"]):
        with pytest.raises(SystemExit) as exit_info:
            folder.main(argv)
        assert exit_info.value.code == 2
    assert "must be > 0, got 0" in capsys.readouterr().err


@pytest.fixture(scope="module")
def http_root(videos):
    """The videos folder served over http on 127.0.0.1 (a missing file answers 404)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(videos)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_webvid_script_fetches_the_rows_and_counts_failures_by_reason(http_root, tmp_path, elsewhere):
    metadata = tmp_path / "webvid.csv"
    with open(metadata, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        for videoid, path in [("w0", "a.mp4"), ("w1", "gone.mp4"), ("w2", "corrupt.mp4"), ("w3", "clips/b.mp4")]:
            writer.writerow([videoid, f"{http_root}/{path}", "PT00H00M05S", "stock", f"clip {videoid}"])
    result = run_script("webvid", "--check", metadata, "--num_frames", NUM_FRAMES, "--timeout", 5, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "webvid: 2 sample(s) read (limit 16); 2/4 succeeded (50.0%)" in result.stdout
    assert "http_404 1" in result.stdout and "decode 1" in result.stdout


def turns(*pairs):
    return [{"from": role, "value": text} for pair in pairs for role, text in zip(("human", "gpt"), pair, strict=True)]


@pytest.fixture(scope="module")
def llava(videos):
    """Annotations: two questions about a.mp4, one record whose video is missing, one without conversations."""
    records = [
        {"id": "r0", "video": "a.mp4", "conversations": turns(("<image>\nWhat is it?", "Gray."), ("How?", "Still."))},
        {"id": "r1", "video": "gone.mp4", "conversations": turns(("What?", "Nothing."))},
        {"id": "r2", "video": "clips/b.mp4"},
    ]
    path = videos / "llava_cap.json"
    path.write_text(json.dumps(records))
    return path


def test_llava_video_script_reads_an_extracted_folder(llava, elsewhere):
    result = run_script("llava_video", "--check", llava, "--num_frames", NUM_FRAMES, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    # Two samples (question-answer pairs) from the one record that succeeded, of three records.
    assert "llava_video: 2 sample(s) read (limit 16); 1/3 succeeded (33.3%)" in result.stdout
    assert "missing_file 1" in result.stdout and "bad_annotation 1" in result.stdout


def test_llava_video_check_reads_shards(llava, videos, tmp_path, capsys):
    shard = tmp_path / "videos_1.tar.gz"
    with tarfile.open(shard, "w:gz") as tar:
        data = (videos / "a.mp4").read_bytes()
        info = tarfile.TarInfo("a.mp4")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    argv = ["--check", str(llava), "--shards", str(shard), "--limit", "1", "--num_frames", str(NUM_FRAMES)]
    assert llava_video.main(argv) == 0
    assert capsys.readouterr().out == "llava_video: 1 sample(s) read (limit 1); 1/1 succeeded (100.0%); skipped: none\n"

    with pytest.raises(SystemExit) as exit_info:  # a folder and shards: one or the other
        llava_video.main(["--check", str(llava), "--shards", str(shard), "--video_root", str(videos)])
    assert exit_info.value.code == 2


def test_precompute_script_writes_targets_that_training_reads(tmp_path, elsewhere):
    out = tmp_path / "targets"
    args = ["--dataset", "synthetic", "--out", out, "--target", "pixels", "--max_videos", 3, "--num_frames", NUM_FRAMES,
            "--frame_size", 32, "--batch_size", 2, "--device", "cpu"]  # fmt: skip
    result = run_script("precompute", *args, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["written"] == 3 and report["videos"] == 3 and report["skipped"] == {}

    stored = PrecomputedTargets(out)
    assert len(stored) == 3 and stored.settings["target"] == "pixels" and stored.settings["num_frames"] == NUM_FRAMES
    # The stream the script read, built again here: the first three synthetic clips of seed 0, by their ids.
    for sample in build_dataset("synthetic", seed=0, frame_size=32, num_frames=NUM_FRAMES).take(3):
        assert stored.get(sample["video_id"]).shape == (NUM_FRAMES, 3, 4, 4)  # [T, C, h, w]: frame_size / 8


def test_scripts_are_entry_points_not_a_package():
    assert not (SCRIPTS / "__init__.py").exists()
    assert sorted(path.stem for path in SCRIPTS.glob("*.py")) == ["folder", "llava_video", "precompute", "webvid"]
