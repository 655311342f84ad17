"""The WebVid source against a real loopback HTTP server: good clips, dead links, slow and cut-off responses."""

import csv
import logging
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets.distributed import split_dataset_by_node
from test_video_processing import write_video
from torch.utils.data import DataLoader

from foveated_vlm.data.faults import NoSamplesError, SampleFailures
from foveated_vlm.data.webvid import FetchError, fetch_video, parse_duration, webvid_dataset

NUM_FRAMES = 4
FAST = {"timeout": 0.3, "retries": 1, "backoff": 0.01}  # keeps the slow and failing routes quick


class Handler(BaseHTTPRequestHandler):
    """Routes: /good/<i>.mp4, /missing (404), /slow (answers after 1 s), /trickle (a body slower than the
    timeout, a byte at a time), /cut (Content-Length larger than what is sent), /half (half a file), /corrupt,
    /flaky (500 once, then the video), /broken (always 500), /big (over max_bytes)."""

    videos: list[bytes] = []
    hits: Counter = Counter()

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def send(self, body: bytes, status: int = 200, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.hits[self.path] += 1
        video = self.videos[0]
        if self.path.startswith("/good/"):
            self.send(self.videos[int(self.path.split("/")[2].split(".")[0])])
        elif self.path == "/slow":
            time.sleep(1.0)
            self.send(video)
        elif self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", str(len(video)))
            self.end_headers()
            for i in range(20):  # 2 s in all, each wait far below the timeout
                self.wfile.write(video[i : i + 1])
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/cut":
            self.send(video[: len(video) // 2], length=len(video))
            self.close_connection = True
        elif self.path == "/half":
            self.send(video[: len(video) // 2])
        elif self.path == "/corrupt":
            self.send(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
        elif self.path == "/flaky" and self.hits[self.path] > 1:
            self.send(video)
        elif self.path in ("/flaky", "/broken"):
            self.send(b"busy", status=500)
        elif self.path == "/big":
            self.send(bytes(200_000))
        else:
            self.send(b"not found", status=404)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("webvid")
    Handler.videos = [
        write_video(directory / f"{i}.mp4", num_frames=6 + i, width=64, height=48).read_bytes() for i in range(8)
    ]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True  # the sleeping /slow handler must not hold the test at shutdown
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _reset_hits():
    Handler.hits.clear()


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["videoid", "contentUrl", "duration", "page_dir", "name"])
        writer.writeheader()
        for videoid, url, caption, *duration in rows:
            writer.writerow({"videoid": videoid, "contentUrl": url, "duration": (duration or ["PT00H00M05S"])[0],
                             "page_dir": "stock", "name": caption})  # fmt: skip
    return path


def run(dataset):
    start = time.monotonic()
    samples = list(dataset)
    return samples, time.monotonic() - start


@pytest.mark.parametrize("concurrency", [1, 4])
def test_good_clips_come_out_and_failures_are_counted_by_reason(server, tmp_path, concurrency, caplog):
    caplog.set_level(logging.INFO, logger="foveated_vlm.data.webvid")
    good = [(f"g{i}", f"{server}/good/{i}.mp4", f"clip number {i}") for i in range(3)]
    bad = [("404", f"{server}/missing", "gone"), ("slow", f"{server}/slow", "slow"),
           ("trickle", f"{server}/trickle", "trickle"), ("cut", f"{server}/cut", "cut off"),
           ("half", f"{server}/half", "half a file"), ("corrupt", f"{server}/corrupt", "noise"),
           ("broken", f"{server}/broken", "always 500"), ("big", f"{server}/big", "too big"),
           ("nourl", "", "no url"), ("nocaption", f"{server}/good/0.mp4", "")]  # fmt: skip
    flaky = [("flaky", f"{server}/flaky", "works the second time")]
    path = write_csv(tmp_path / "meta.csv", good[:2] + bad[:5] + flaky + bad[5:] + good[2:])
    failures = SampleFailures("webvid")
    dataset = webvid_dataset(str(path), num_frames=NUM_FRAMES, max_bytes=100_000, concurrency=concurrency,
                             failures=failures, **FAST)  # fmt: skip
    samples, seconds = run(dataset)

    assert [s["video_id"] for s in samples] == ["g0", "g1", "flaky", "g2"]  # row order survives the thread pool
    assert [s["answer"] for s in samples] == ["clip number 0", "clip number 1", "works the second time",
                                              "clip number 2"]  # fmt: skip
    for sample in samples:
        assert set(sample) == {"frames", "prompt", "answer", "video_id", "skipped"}  # skips before it, JSON
        assert sample["frames"].dtype == np.uint8 and sample["frames"].shape == (NUM_FRAMES, 48, 64, 3)
        assert sample["prompt"] == "Describe the video."
    assert failures.failed == {"http_404": 1, "timeout": 2, "truncated": 1, "decode": 2, "http_500": 1,
                               "too_large": 1, "bad_record": 2}  # fmt: skip
    assert failures.succeeded == 4 and failures.success_rate == pytest.approx(4 / 14)
    assert "4/14 succeeded (28.6%)" in failures.summary()
    assert "webvid: 4/14 succeeded (28.6%); skipped: " in caplog.text  # the stream reports it too
    # Only transient failures are retried, each exactly `retries` times; a 404 or an oversize body is final.
    assert Handler.hits["/missing"] == 1 and Handler.hits["/big"] == 1
    assert Handler.hits["/flaky"] == 2 and Handler.hits["/broken"] == 2 and Handler.hits["/slow"] == 2
    assert Handler.hits["/cut"] == 2 and Handler.hits["/trickle"] == 2
    # Two slow routes x two attempts x ~0.3 s each (plus one blocked read for /trickle): bounded, never hung.
    assert seconds < (8 if concurrency == 1 else 5)


def test_fetch_video_reports_the_reason(server):
    assert fetch_video(f"{server}/good/1.mp4") == Handler.videos[1]
    with pytest.raises(FetchError, match="http_404") as error:
        fetch_video(f"{server}/missing", **FAST)
    assert error.value.reason == "http_404" and not error.value.transient
    with pytest.raises(FetchError) as error:
        fetch_video("http://127.0.0.1:1/refused", **FAST)  # nothing listens on port 1
    assert error.value.reason == "connection" and error.value.transient


def test_max_duration_drops_long_clips_before_fetching(server, tmp_path):
    rows = [("short", f"{server}/good/0.mp4", "short", "PT00H00M12S"),
            ("long", f"{server}/good/1.mp4", "long", "PT00H01M05S"),
            ("unknown", f"{server}/good/2.mp4", "unknown", "")]  # fmt: skip
    failures = SampleFailures("webvid")
    dataset = webvid_dataset(str(write_csv(tmp_path / "m.csv", rows)), num_frames=NUM_FRAMES, max_duration=15,
                             failures=failures, **FAST)  # fmt: skip
    assert [s["video_id"] for s in dataset] == ["short", "unknown"]  # an unreadable duration is not known to be long
    assert Handler.hits["/good/1.mp4"] == 0 and failures.attempted == 2


def test_parse_duration():
    assert parse_duration("PT00H00M12S") == 12 and parse_duration("PT1H2M3.5S") == 3723.5
    assert parse_duration(7) == 7 and parse_duration(float("nan")) is None
    assert parse_duration("soon") is None and parse_duration(None) is None and parse_duration("PT") is None


def test_a_stream_where_nothing_succeeds_raises(server, tmp_path):
    rows = [(f"dead{i}", f"{server}/missing" if i % 2 else f"{server}/corrupt", "gone") for i in range(6)]
    failures = SampleFailures("webvid", give_up_after=4)
    dataset = webvid_dataset(str(write_csv(tmp_path / "dead.csv", rows)), num_frames=NUM_FRAMES, failures=failures,
                             concurrency=1, **FAST)  # fmt: skip
    with pytest.raises(NoSamplesError, match=r"no sample succeeded in 4 attempts .*decode 2, http_404 2"):
        list(dataset)
    assert sum(Handler.hits.values()) == 4  # it stops there instead of running through the rest


def test_two_ranks_fetch_disjoint_rows_covering_all(server, tmp_path):
    # Two metadata files, so shards split both by file and by row within a file.
    first = write_csv(tmp_path / "a.csv", [(f"a{i}", f"{server}/good/{i}.mp4", f"a {i}") for i in range(5)])
    second = write_csv(tmp_path / "b.csv", [(f"b{i}", f"{server}/good/{i}.mp4", f"b {i}") for i in range(3)])
    dataset = webvid_dataset([first, second], num_frames=NUM_FRAMES, num_shards=4, **FAST)  # Paths work too
    ranks = [[s["video_id"] for s in split_dataset_by_node(dataset, rank=r, world_size=2)] for r in range(2)]
    assert ranks[0] and ranks[1] and set(ranks[0]).isdisjoint(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == sorted([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(3)])
    assert sum(Handler.hits.values()) == 8  # each row fetched once: ranks split rows, not decoded samples


def test_dataloader_workers_fetch_every_row_once(server, tmp_path):
    # Inside a worker the metadata stream must not be dealt out across workers a second time (it would be, were it
    # iterated as a `datasets.IterableDataset` there): each worker reads all the rows of its own shards.
    path = write_csv(tmp_path / "m.csv", [(f"w{i}", f"{server}/good/{i}.mp4", f"w {i}") for i in range(8)])
    dataset = webvid_dataset(str(path), num_frames=NUM_FRAMES, num_shards=4, **FAST)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=list)
    assert sorted(s["video_id"] for batch in loader for s in batch) == [f"w{i}" for i in range(8)]
    assert sum(Handler.hits.values()) == 8


def test_parquet_rows_with_video_bytes(server, tmp_path):
    table = pa.table({
        "videoid": ["p0", "p1", "p2", "p3"],
        "name": ["bytes zero", "bytes one", "corrupt bytes", "by url"],
        "contentUrl": [None, None, None, f"{server}/good/3.mp4"],
        "duration": ["PT00H00M05S"] * 4,
        "video": [Handler.videos[0], Handler.videos[1], b"\x00not a video" * 50, None],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "clips.parquet")
    failures = SampleFailures("webvid")
    samples = list(webvid_dataset(str(tmp_path / "clips.parquet"), num_frames=NUM_FRAMES, failures=failures, **FAST))
    assert [(s["video_id"], s["answer"]) for s in samples] == [("p0", "bytes zero"), ("p1", "bytes one"),
                                                               ("p3", "by url")]  # fmt: skip
    assert failures.failed == {"decode": 1} and Handler.hits == {"/good/3.mp4": 1}
    # The decoded frames are the clip's: frame levels rise with the index, as `write_video` draws them.
    means = samples[1]["frames"].reshape(NUM_FRAMES, -1).mean(1)
    assert np.all(np.diff(means) > 0)


def test_large_frames_are_bounded(server, tmp_path):
    path = write_csv(tmp_path / "m.csv", [("g", f"{server}/good/0.mp4", "x")])
    (sample,) = webvid_dataset(str(path), num_frames=NUM_FRAMES, max_size=24, **FAST)
    assert sample["frames"].shape == (NUM_FRAMES, 24, 32, 3) and sample["frames"].dtype == np.uint8


def test_bad_data_files_are_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="must all be .csv or all .parquet"):
        webvid_dataset(str(tmp_path / "meta.txt"), num_frames=NUM_FRAMES)
