"""URL downloads against hostile loopback servers: trickling, redirecting to file:// and ftp://, not speaking HTTP,
lying about sizes. Every case ends within the deadline with an error that names the URL and the reason, and nothing
but http(s) is ever read, through the video processor and through the WebVid stream alike."""

import csv
import socket
import socketserver
import threading
import time

import numpy as np
import pytest
from test_video_processing import write_video

from foveated_vlm import FoveatedVideoProcessor, VideoDecodeError
from foveated_vlm.data.faults import SampleFailures
from foveated_vlm.data.webvid import FetchError, fetch_video, webvid_dataset
from foveated_vlm.download import DownloadError, download

DEADLINE = 1.0  # seconds; the servers trickle a byte every 0.5 s, so a per-read timeout of 1 s never fires
MARGIN = 0.5  # what the deadline may be overrun by on a loaded machine
TRICKLE_GAP = 0.5
TRICKLE_BYTES = 60  # a trickle stops by itself after 30 s, so a test that hangs cannot hang for ever
CAP = 50_000  # bytes


class HostileHandler(socketserver.StreamRequestHandler):
    """Answers by path, writing raw bytes so that it can break HTTP in ways `http.server` will not."""

    timeout = 5  # a client that never sends its request does not hold the thread
    video: bytes = b""
    ftp_port = 0
    secret_path = ""
    stop = threading.Event()
    hits: dict = {}

    def head(self, status: str, *headers: str):
        self.wfile.write(f"HTTP/1.1 {status}\r\n".encode())
        for header in headers:
            self.wfile.write(f"{header}\r\n".encode())
        self.wfile.write(b"Connection: close\r\n\r\n")

    def trickle(self, data: bytes):
        for i in range(TRICKLE_BYTES):
            if self.stop.is_set():
                return
            self.wfile.write(data[i % len(data) : i % len(data) + 1])
            self.wfile.flush()
            time.sleep(TRICKLE_GAP)

    def handle(self):
        try:
            path = self.rfile.readline().split()[1].decode()
            while self.rfile.readline() not in (b"\r\n", b""):  # the request's headers
                pass
            self.hits[path] = self.hits.get(path, 0) + 1
            self.respond(path)
        except (OSError, IndexError):  # the client hung up (as a client at its deadline does), or sent nonsense
            pass

    def respond(self, path: str):
        video = self.video
        if path == "/clip.mp4":
            self.head("200 OK", f"Content-Length: {len(video)}")
            self.wfile.write(video)
        elif path == "/redirect-to-clip":
            self.head("302 Found", "Location: /clip.mp4")
        elif path == "/trickle-status":  # the status line itself, a byte at a time
            self.trickle(b"HTTP/1.1 200 OK\r\n")
        elif path == "/trickle-headers":  # a header line that never ends
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self.trickle(b"a")
        elif path == "/trickle-body":
            self.head("200 OK", f"Content-Length: {len(video)}")
            self.trickle(video)
        elif path == "/to-file":
            self.head("302 Found", f"Location: file://{self.secret_path}")
        elif path == "/to-ftp":
            self.head("301 Moved Permanently", f"Location: ftp://127.0.0.1:{self.ftp_port}/clip.mp4")
        elif path == "/garbage":  # another protocol's greeting
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        elif path == "/declared-too-large":
            self.head("200 OK", f"Content-Length: {100 * CAP}")
            self.wfile.write(bytes(CAP // 2))
        elif path == "/undeclared-too-large":  # no Content-Length: the body runs on past the cap
            self.head("200 OK")
            self.wfile.write(bytes(3 * CAP))
        elif path == "/cut-short":  # promises the clip, sends half of it and closes
            self.head("200 OK", f"Content-Length: {len(video)}")
            self.wfile.write(video[: len(video) // 2])
        else:
            self.head("404 Not Found", "Content-Length: 9")
            self.wfile.write(b"not found")


class ConnectionCounter:
    """A port an ftp:// URL points at: counts the connections made to it (none may be) and closes each at once."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    path = tmp_path_factory.mktemp("private") / "secret.txt"
    path.write_text("THE SECRET CONTENT\n")
    return path


@pytest.fixture(scope="module")
def ftp():
    counter = ConnectionCounter()
    yield counter
    counter.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, secret, ftp):
    clip = write_video(tmp_path_factory.mktemp("clips") / "clip.mp4", num_frames=6)
    HostileHandler.video, HostileHandler.ftp_port, HostileHandler.secret_path = clip.read_bytes(), ftp.port, secret
    HostileHandler.stop.clear()
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), HostileHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "clip": clip}
    HostileHandler.stop.set()  # ends the trickles still running
    httpd.shutdown()
    httpd.server_close()
    thread.join(2)


@pytest.fixture(autouse=True)
def _reset_hits():
    HostileHandler.hits = {}


def processor():
    return FoveatedVideoProcessor(size=16, num_frames=2, url_timeout=DEADLINE, max_download_bytes=CAP)


def fetch(url, **kwargs):
    return fetch_video(url, **({"timeout": DEADLINE, "max_bytes": CAP, "retries": 0} | kwargs))


def read(entry: str, url: str):
    """The URL through one of the two ways in: the video processor, or WebVid's `fetch_video`."""
    return processor()(url) if entry == "processor" else fetch(url)


def timed(call, *args, **kwargs):
    """The error `call(*args, **kwargs)` raises, and the seconds it took to raise it."""
    start = time.monotonic()
    with pytest.raises((VideoDecodeError, DownloadError)) as error:
        call(*args, **kwargs)
    return error.value, time.monotonic() - start


@pytest.mark.parametrize("route", ["/trickle-status", "/trickle-headers", "/trickle-body"])
@pytest.mark.parametrize("entry", ["processor", "fetch_video"])
def test_a_trickling_server_is_cut_off_at_the_overall_deadline(server, route, entry):
    url = server["url"] + route
    error, seconds = timed(read, entry, url)
    print(f"{entry} {route}: held the call {seconds:.2f} s (deadline {DEADLINE} s)")
    assert DEADLINE * 0.9 <= seconds < DEADLINE + MARGIN
    assert url in str(error) and "timeout" in str(error) and f"{DEADLINE} s deadline" in str(error)
    if entry == "processor":
        assert "url_timeout=1.0" in str(error)  # the setting to change
    else:
        assert error.reason == "timeout" and error.transient


def test_retries_of_a_trickle_are_each_bounded(server):
    """WebVid's retry rule is kept: a timeout is transient, so it is tried `retries` more times, each attempt
    within the deadline; the whole call takes (retries + 1) deadlines plus the backoff."""
    start = time.monotonic()
    with pytest.raises(FetchError) as error:
        fetch(server["url"] + "/trickle-headers", retries=1, backoff=0.05)
    seconds = time.monotonic() - start
    print(f"fetch_video /trickle-headers with one retry: {seconds:.2f} s")
    assert error.value.reason == "timeout" and HostileHandler.hits["/trickle-headers"] == 2
    assert 2 * DEADLINE <= seconds < 2 * DEADLINE + 0.05 + 2 * MARGIN


@pytest.mark.parametrize("entry", ["processor", "fetch_video"])
def test_redirects_to_other_schemes_are_refused(server, secret, ftp, entry):
    for route, target in [("/to-file", f"file://{secret}"), ("/to-ftp", f"ftp://127.0.0.1:{ftp.port}/clip.mp4")]:
        url = server["url"] + route
        error, _ = timed(read, entry, url)
        message = str(error)
        assert url in message and "unsupported_scheme" in message and f"redirected to '{target}'" in message
        assert "SECRET" not in message
    assert ftp.connections == 0  # urllib alone follows the ftp:// redirect and connects


@pytest.mark.parametrize("entry", ["processor", "fetch_video"])
def test_urls_of_other_schemes_are_refused_before_any_read(secret, ftp, entry):
    urls = [f"file://{secret}", f"FILE://{secret}", f"ftp://127.0.0.1:{ftp.port}/clip.mp4",
            "data:text/plain;base64,VEhFIFNFQ1JFVA=="]  # fmt: skip
    for url in urls:
        error, _ = timed(read, entry, url)
        scheme = url.split(":")[0].lower()
        assert f"unsupported_scheme (scheme '{scheme}'; only http and https URLs are downloaded)" in str(error), url
        assert "SECRET" not in str(error)
    assert ftp.connections == 0


def test_a_reply_that_is_not_http_is_named(server):
    url = server["url"] + "/garbage"
    error, _ = timed(processor(), url)
    assert str(error) == (
        f"cannot read video '{url}': download failed: not_http (not an HTTP response: 'SSH-2.0-OpenSSH_9.6')"
    )
    error, _ = timed(fetch, url, retries=2)
    assert error.reason == "not_http" and not error.transient and url in str(error)
    assert HostileHandler.hits["/garbage"] == 2  # one each: another try would get the same answer


def test_a_missing_clip_is_a_404_tried_once(server):
    url = server["url"] + "/missing.mp4"
    error, _ = timed(processor(), url)
    assert f"cannot read video '{url}': download failed: http_404" in str(error)
    error, _ = timed(fetch, url, retries=2)
    assert error.reason == "http_404" and not error.transient
    assert HostileHandler.hits["/missing.mp4"] == 2


@pytest.mark.parametrize(
    "route, reason, detail",
    [
        ("/declared-too-large", "too_large", f"Content-Length {100 * CAP} exceeds the {CAP}-byte limit"),
        ("/undeclared-too-large", "too_large", f"the body exceeds the {CAP}-byte limit"),
        ("/cut-short", "truncated", "of"),  # a prefix is never taken for the clip
    ],
)
def test_sizes_are_capped_and_checked(server, route, reason, detail):
    url = server["url"] + route
    error, _ = timed(processor(), url)
    assert f"download failed: {reason} (" in str(error) and detail in str(error)
    if reason == "too_large":
        assert f"max_download_bytes={CAP}" in str(error)
    error, _ = timed(fetch, url)
    assert error.reason == reason and url in str(error)


def test_a_normal_server_still_works(server):
    clip = server["clip"]
    assert fetch(server["url"] + "/clip.mp4") == clip.read_bytes()
    assert fetch(server["url"] + "/redirect-to-clip") == clip.read_bytes()  # http -> http redirects are followed
    expected = processor()(str(clip))["pixel_values_videos"]
    for route in ("/clip.mp4", "/redirect-to-clip"):
        got = processor()(server["url"] + route)["pixel_values_videos"]  # decoded from the downloaded bytes
        assert got.shape == (1, 2, 3, 16, 16)
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_webvid_counts_hostile_urls_by_reason(server, tmp_path, ftp):
    rows = [("good", server["url"] + "/clip.mp4"), ("garbage", server["url"] + "/garbage"),
            ("to-ftp", server["url"] + "/to-ftp"), ("local", "file:///etc/hostname"),
            ("trickle", server["url"] + "/trickle-headers")]  # fmt: skip
    path = tmp_path / "meta.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        writer.writerows([videoid, url, "PT00H00M05S", "stock", f"caption {videoid}"] for videoid, url in rows)
    failures = SampleFailures("webvid")
    start = time.monotonic()
    samples = list(webvid_dataset(str(path), num_frames=2, timeout=DEADLINE, retries=0, failures=failures))
    seconds = time.monotonic() - start
    assert [sample["video_id"] for sample in samples] == ["good"]
    assert failures.failed == {"not_http": 1, "unsupported_scheme": 2, "timeout": 1}
    assert ftp.connections == 0 and seconds < DEADLINE + 3  # the trickle is cut while the others are fetched


def test_download_bounds_are_checked():
    for bounds, named in [({"timeout": 0}, "timeout=0"), ({"timeout": float("inf")}, "timeout=inf"),
                          ({"max_bytes": 0}, "max_bytes=0"), ({"retries": -1}, "retries=-1")]:  # fmt: skip
        with pytest.raises(ValueError, match=named):
            download("http://127.0.0.1:1/x", **({"timeout": 1.0, "max_bytes": 10} | bounds))
    with pytest.raises(ValueError, match="timeout=0 is invalid"):  # when the stream is built, not once per row
        webvid_dataset("never-read.csv", timeout=0)
