"""The video processor against hostile settings and inputs: every one gives a clear error naming the argument or the
input and its value, before any video is read; no setting makes it allocate without bound (fps=1e6, a huge
num_frames, 4000 px frames); and bytes that are text never reach decord, which would copy them into stderr."""

import functools
import http.server
import math
import threading

import decord
import numpy as np
import pytest
import torch
from PIL import Image
from test_video_processing import frame_codes, level, write_video

from foveated_vlm import FoveatedVideoProcessor, VideoDecodeError
from foveated_vlm.video_processing_foveated import DEFAULT_MAX_FRAMES, sample_frame_indices

FPS = 10  # write_video's frame rate


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """30 frames of 64x48, frame i gray at level(i)."""
    return write_video(tmp_path_factory.mktemp("hostile") / "thirty.mp4", 30)


@pytest.fixture
def spy_readers(monkeypatch):
    """Every decord reader the processor opens: its (width, height) request and the indices of each `get_batch`."""
    opened = []

    class Recording(decord.VideoReader):
        def __init__(self, uri, ctx, width=-1, height=-1, **kwargs):
            super().__init__(uri, ctx, width=width, height=height, **kwargs)
            self.request, self.batches = (width, height), []
            opened.append(self)

        def get_batch(self, indices):
            self.batches.append(list(indices))
            return super().get_batch(indices)

    monkeypatch.setattr(decord, "VideoReader", Recording)
    return opened


# ------------------------------------------------------------------------------------------ unbounded work
def test_fps_far_above_the_clip_rate_gives_at_most_the_default_cap(clip):
    """fps=1e6 on a 3 s clip asked for 3,000,000 frames (25.7 GiB); now it gives DEFAULT_MAX_FRAMES uniform ones."""
    processor = FoveatedVideoProcessor(size=8)
    out = processor(clip, fps=1e6, return_metadata=True)
    assert out["pixel_values_videos"].shape == (1, DEFAULT_MAX_FRAMES, 3, 8, 8)
    assert out["frame_indices"][0].tolist() == np.round(np.linspace(0, 29, DEFAULT_MAX_FRAMES)).astype(int).tolist()
    array = np.zeros((5000, 4, 4, 3), np.uint8)  # arrays have the same cap
    assert processor.load_frames(array, fps=1e6, video_fps=FPS)[0].shape[0] == DEFAULT_MAX_FRAMES
    assert processor.load_frames(clip, fps=1e6, max_frames=5)[1].tolist() == [0, 7, 14, 22, 29]


def test_num_frames_above_the_cap_is_an_error_until_the_cap_is_raised(clip):
    processor = FoveatedVideoProcessor(size=8)
    with pytest.raises(ValueError, match=r"num_frames=100000 is more than max_frames=128"):
        processor(clip, num_frames=100_000)
    with pytest.raises(ValueError, match=r"num_frames=200 is more than max_frames=128"):
        FoveatedVideoProcessor(num_frames=200)  # a saved count fails when the processor is built
    assert processor(clip, num_frames=200, max_frames=200)["pixel_values_videos"].shape[1] == 200
    assert FoveatedVideoProcessor(num_frames=200, max_frames=200).num_frames == 200


def test_a_large_video_is_decoded_straight_to_twice_the_output_size(tmp_path, spy_readers):
    """A 1000x600 clip for 100 px frames: decord is asked for 333x200 and decodes only the first sampled frame at
    full size (to learn that size); the frames keep their content and aspect ratio."""
    path = write_video(tmp_path / "wide.mp4", 6, width=1000, height=600)
    processor = FoveatedVideoProcessor(size=100, num_frames=3)
    frames, indices, _ = processor.load_frames(path, max_size=200)
    assert frames.shape == (3, 3, 200, 333) and frames.dtype == torch.uint8
    assert frame_codes(frames) == indices.tolist() == [0, 2, 5]
    full_size, bounded = spy_readers
    assert full_size.request == (-1, -1) and full_size.batches == [[0]]
    assert bounded.request == (333, 200) and bounded.batches == [[0, 2, 5]]

    spy_readers.clear()
    out = processor(path, return_target_frames=True)  # the processor reads at 2 * size
    assert [reader.request for reader in spy_readers] == [(-1, -1), (333, 200)]
    assert frame_codes((out["target_frames"][0] + 1) / 2) == [0, 2, 5]


def test_a_small_video_is_read_once_by_one_reader(clip, spy_readers):
    """No frame is decoded twice: the first sampled frame, which tells the frame size, is kept; without a bound the
    sampled frames are one seek-batch, as before."""
    processor = FoveatedVideoProcessor(size=32, num_frames=4)
    frames, indices, _ = processor.load_frames(clip, max_size=64)
    assert frames.shape == (4, 3, 48, 64) and frame_codes(frames) == indices.tolist()
    (reader,) = spy_readers
    assert reader.request == (-1, -1) and reader.batches == [[0], indices[1:].tolist()]
    spy_readers.clear()
    processor.load_frames(clip)
    assert [reader.batches for reader in spy_readers] == [[indices.tolist()]]


def test_a_bound_below_what_decord_can_resize_to_is_reached_after_decoding(tmp_path, spy_readers):
    """decord mis-sizes frames 16 px wide (and other widths up to 72), so it is never asked for them."""
    path = write_video(tmp_path / "square.mp4", 4, width=96, height=96)
    frames, indices, _ = FoveatedVideoProcessor(size=8, num_frames=2).load_frames(path, max_size=16)
    assert frames.shape == (2, 3, 16, 16) and frame_codes(frames) == indices.tolist() == [0, 3]
    assert [reader.request for reader in spy_readers] == [(-1, -1)]


@pytest.mark.parametrize("kind", ["uint8 array", "float tensor", "PIL images"])
def test_large_arrays_and_images_are_downscaled_before_any_float_copy(kind):
    rows, cols = np.mgrid[0:1200, 0:800]
    smooth = (127 + 100 * np.sin(rows / 150) * np.cos(cols / 110)).astype(np.uint8)  # [1200, 800]
    video = np.repeat(np.stack([smooth, smooth[::-1]])[..., None], 3, axis=-1)  # [2, 1200, 800, 3]
    video = {
        "uint8 array": video,
        "float tensor": torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255,  # [T, 3, H, W] in [0, 1]
        "PIL images": [Image.fromarray(frame) for frame in video],
    }[kind]
    processor = FoveatedVideoProcessor(size=100, num_frames=2)
    frames, _, _ = processor.load_frames(video, max_size=200)
    assert frames.shape == (2, 3, 300, 200)
    assert frames.dtype == (torch.float32 if kind == "float tensor" else torch.uint8)  # no float copy of uint8
    # Twice the output size loses nothing: the processor's frames match a resize straight from the full size.
    direct = processor.resize_frames(processor.load_frames(video)[0])  # [2, 3, 100, 100] from 1200x800
    bounded = (processor(video, return_target_frames=True)["target_frames"][0] + 1) / 2
    torch.testing.assert_close(bounded, direct, rtol=0, atol=2.5 / 255)


# ------------------------------------------------------------------------------------- settings and arguments
BAD_SETTINGS = [
    ("fps", 0),
    ("fps", -1.0),
    ("fps", math.nan),
    ("fps", math.inf),
    ("fps", "2"),
    ("num_frames", 2.5),
    ("num_frames", "8"),
    ("num_frames", True),
    ("num_frames", 0),
    ("max_frames", 0),
    ("max_frames", 2.5),
    ("size", True),  # 0 and 2.5 were refused already
    ("image_std", (0.229, 0.0, 0.225)),  # divides the pixels: inf everywhere
    ("image_std", (0.2, 0.2)),
    ("image_std", 0.5),
    ("image_std", "abc"),
    ("image_mean", (math.nan, 0.456, 0.406)),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_bad_settings_fail_when_the_processor_is_built(name, value):
    with pytest.raises(ValueError) as error:
        FoveatedVideoProcessor(**{name: value})
    assert f"{name}={value!r} is invalid" in str(error.value)


BAD_ARGUMENTS = [
    ("fps", 0),
    ("fps", -2),
    ("fps", math.nan),
    ("fps", math.inf),
    ("num_frames", 2.5),
    ("num_frames", "8"),
    ("num_frames", True),
    ("max_frames", 0),
    ("size", 0),
    ("size", -4),
    ("video_fps", 0),
    ("video_fps", -5),
]


@pytest.mark.parametrize("name, value", BAD_ARGUMENTS)
def test_bad_call_arguments_fail_before_the_video_is_read(tmp_path, name, value):
    """The missing file is never looked at: the argument's error comes first, and it is not a VideoDecodeError."""
    extra = {"fps": 2} if name == "max_frames" else {}
    with pytest.raises(ValueError) as error:
        FoveatedVideoProcessor(size=8)(str(tmp_path / "missing.mp4"), **{name: value}, **extra)
    assert type(error.value) is ValueError and f"{name}={value!r} is invalid" in str(error.value)


def test_arguments_that_used_to_give_silent_results(clip):
    """Each of these returned frames before: backwards sampling, the default size, one frame, NaN timestamps."""
    processor = FoveatedVideoProcessor(size=8, num_frames=2)
    array = np.zeros((4, 8, 8, 3), np.uint8)
    calls = {
        "fps=-2": lambda: processor(clip, fps=-2),
        "size=0": lambda: processor(clip, size=0),
        "resize_frames size=0": lambda: processor.resize_frames(torch.zeros(1, 3, 8, 8), size=0),
        "num_frames=True": lambda: processor(clip, num_frames=True),
        "video_fps=0": lambda: processor(array, video_fps=0),
        "video_fps=-5": lambda: processor(array, video_fps=-5),
    }
    for call, run in calls.items():
        with pytest.raises(ValueError, match=f"^{call.split()[-1]} is invalid"):
            run()


def test_sampling_needs_a_real_frame_rate():
    with pytest.raises(ValueError, match=r"needs the video's frame rate; got video_fps=nan"):
        sample_frame_indices(30, fps=2, video_fps=math.nan)


# ------------------------------------------------------------------------------------------------ bad inputs
def bad_inputs():
    image = Image.new("RGB", (8, 8))
    return [
        ("zero-height array", np.zeros((2, 0, 8, 3), np.uint8), "0 high"),
        ("zero-width tensor [T, C, H, W]", torch.zeros(2, 3, 8, 0, dtype=torch.uint8), "0 pixels wide"),
        ("zero-size image", [Image.new("RGB", (0, 8))], "0 pixels wide"),
        ("None among images", [image, None, image], "item 1 is NoneType, not a PIL image"),
        ("None among one sample's images", [[image, None]], "item 1 is NoneType, not a PIL image"),
        ("a string among images", [image, "frame.png"], "item 1 is str, not a PIL image"),
    ]


@pytest.mark.parametrize("name, video, expected", bad_inputs(), ids=[case[0] for case in bad_inputs()])
def test_bad_inputs_are_named(name, video, expected):
    with pytest.raises(VideoDecodeError) as error:
        FoveatedVideoProcessor(size=8, num_frames=2)(video)
    assert expected in str(error.value) and str(error.value).startswith("cannot read video <")


TEXTS = {
    "1.2 MB of text": b"not a video\n" * 100_000,
    "an HTML error page": b"<!DOCTYPE html><html><body>" + b"<p>404 Not Found</p>" * 5000 + b"</body></html>",
    "a Git LFS pointer": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 123\n",
}


@pytest.mark.parametrize("name", TEXTS)
def test_text_bytes_are_refused_before_decord_can_log_them(capfd, name):
    """decord copies in-memory input it cannot open into stderr, up to the first zero byte: 1.2 MB of text made
    1.2 MB of log. Text is refused before decord sees it, with a short message."""
    data = TEXTS[name]
    with pytest.raises(VideoDecodeError, match=r"looks like text, not a video") as error:
        FoveatedVideoProcessor(size=8, num_frames=2)(data)
    assert f"<{len(data)} bytes>" in str(error.value) and len(str(error.value)) < 400
    assert len(capfd.readouterr().err) == 0


def test_binary_garbage_is_unreadable_and_empty_bytes_are_named(capfd):
    garbage = np.random.default_rng(0).bytes(1 << 20)  # a zero byte comes early, so decord echoes little
    with pytest.raises(VideoDecodeError, match="not a readable video"):
        FoveatedVideoProcessor(size=8, num_frames=2)(garbage)
    with pytest.raises(VideoDecodeError, match="it is empty"):
        FoveatedVideoProcessor(size=8, num_frames=2)(b"")
    assert len(capfd.readouterr().err) < 1200  # at most the 1024 bytes before a zero byte, and decord's prefix


@pytest.fixture
def html_server():
    """A loopback server answering every GET with 200 and an HTML page, as a captive portal or a CDN error does."""
    page = TEXTS["an HTML error page"]

    class Portal(http.server.BaseHTTPRequestHandler):
        timeout = 5  # a client that never sends its request does not hold the thread

        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    thread = threading.Thread(target=functools.partial(server.serve_forever, poll_interval=0.05), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_url_that_answers_with_a_web_page(capfd, html_server):
    with pytest.raises(VideoDecodeError, match=r"looks like text.*<!DOCTYPE html>"):
        FoveatedVideoProcessor(size=8, num_frames=2, url_timeout=5)(html_server)
    assert len(capfd.readouterr().err) == 0


def test_the_limits_leave_ordinary_inputs_unchanged(clip):
    """Below the bound nothing is resized at decoding: a 64x48 clip gives its own pixels, and level(i) survives."""
    frames, indices, _ = FoveatedVideoProcessor(size=16, num_frames=5).load_frames(clip, max_size=32 * 2)
    assert frames.shape == (5, 3, 48, 64)
    assert frames.double().mean((1, 2, 3)).round().tolist() == pytest.approx([level(i) for i in indices], abs=2)
