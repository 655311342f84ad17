"""The video processor: every input kind, sampling, resizing, and a clear error for every unreadable video."""

import functools
import http.server
import re
import socket
import subprocess
import sys
import textwrap
import threading

import av
import decord
import numpy as np
import pytest
import torch
from PIL import Image
from tiny import BLOCK_PACKAGE
from transformers.models.auto.video_processing_auto import AutoVideoProcessor
from transformers.video_utils import VideoMetadata

from foveated_vlm import FoveatedVideoProcessor, VideoDecodeError
from foveated_vlm.video_processing_foveated import IMAGENET_MEAN, IMAGENET_STD, sample_frame_indices

FPS = 10


def level(index: int) -> int:
    """Gray level of frame `index` in the test videos: steps of 8 survive lossy coding, so frames name themselves."""
    return 8 * index + 8


def write_video(path, num_frames: int, width: int = 64, height: int = 48, fps: int = FPS, faststart: bool = False):
    """An H.264 mp4 (yuv420p) whose frame i is uniformly gray at `level(i)`; at most 30 frames."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            image = np.full((height, width, 3), level(i), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
        if num_frames == 0:
            container.start_encoding()  # write the header of a video stream that holds no frames
    return path


def frame_codes(frames: torch.Tensor) -> list[int]:
    """Frame indices encoded in `[T, 3, H, W]` frames, uint8 or float in [0, 1]."""
    scale = 255 if frames.is_floating_point() else 1
    means = frames.double().flatten(1).mean(1) * scale
    return [round((m - 8) / 8) for m in means.tolist()]


def decode_all(path) -> np.ndarray:
    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy()  # [N, H, W, 3]


@pytest.fixture(scope="module")
def video30(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "thirty.mp4", 30)


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """A local http.server on 127.0.0.1 serving a directory; yields (directory, base URL)."""
    root = tmp_path_factory.mktemp("served")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_defaults():
    processor = FoveatedVideoProcessor()
    assert (processor.size, processor.num_frames, processor.resize_mode) == ({"height": 256, "width": 256}, 8, "crop")
    assert processor.frame_size == 256
    assert processor.image_mean == IMAGENET_MEAN and processor.image_std == IMAGENET_STD


def test_uniform_sampling_reads_the_sampled_frames(video30):
    out = FoveatedVideoProcessor(size=32, num_frames=8)(str(video30), return_target_frames=True, return_metadata=True)
    expected = np.round(np.linspace(0, 29, 8)).astype(int)
    assert out["pixel_values_videos"].shape == (1, 8, 3, 32, 32) and out["pixel_values_videos"].dtype == torch.float32
    assert out["frame_indices"][0].tolist() == expected.tolist()
    torch.testing.assert_close(out["timestamps"][0], torch.tensor(expected / FPS), rtol=0, atol=1e-6)
    assert frame_codes((out["target_frames"][0] + 1) / 2) == expected.tolist()


def test_sample_frame_indices():
    assert sample_frame_indices(30, num_frames=8).tolist() == [0, 4, 8, 12, 17, 21, 25, 29]
    assert sample_frame_indices(3, num_frames=8).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]  # short clips repeat
    assert sample_frame_indices(1, num_frames=4).tolist() == [0, 0, 0, 0]
    assert sample_frame_indices(30, fps=2, video_fps=10).tolist() == [0, 5, 10, 15, 20, 25]
    assert sample_frame_indices(30, fps=2, video_fps=10, max_frames=4).tolist() == [0, 10, 19, 29]  # whole clip
    with pytest.raises(ValueError, match="frame rate"):
        sample_frame_indices(30, fps=2)


def test_short_clip_repeats_frames(tmp_path):
    path = write_video(tmp_path / "three.mp4", 3)
    frames, indices, timestamps = FoveatedVideoProcessor().load_frames(path, num_frames=8)
    assert frames.shape == (8, 3, 48, 64) and frames.dtype == torch.uint8
    assert indices.tolist() == frame_codes(frames) == [0, 0, 1, 1, 1, 1, 2, 2]
    np.testing.assert_allclose(timestamps, indices / FPS)


def test_fps_sampling(video30):
    processor = FoveatedVideoProcessor(size=16)
    frames, indices, _ = processor.load_frames(video30, fps=2)
    assert indices.tolist() == frame_codes(frames) == [0, 5, 10, 15, 20, 25]
    assert processor.load_frames(video30, fps=2, max_frames=4)[1].tolist() == [0, 10, 19, 29]
    saved = FoveatedVideoProcessor(size=16, fps=2.0, max_frames=3)  # sampling rate as a saved setting
    assert saved.load_frames(video30)[1].tolist() == [0, 14, 29]
    assert saved.load_frames(video30, num_frames=2)[1].tolist() == [0, 29]  # an explicit count wins
    with pytest.raises(ValueError, match="mutually exclusive"):
        processor(video30, num_frames=4, fps=2)


def test_every_input_kind_gives_the_same_frames(video30, http_root):
    root, base_url = http_root
    (root / "clip.mp4").write_bytes(video30.read_bytes())
    everything = decode_all(video30)  # [30, H, W, 3] uint8, the same decoder
    inputs = {
        "path": str(video30),
        "pathlib": video30,
        "bytes": video30.read_bytes(),
        "url": f"{base_url}/clip.mp4",
        "numpy [T, H, W, 3]": everything,
        "tensor [T, 3, H, W]": torch.from_numpy(everything).permute(0, 3, 1, 2),
        "float [0, 1]": everything.astype(np.float32) / np.float32(255),
        "PIL images": [Image.fromarray(frame) for frame in everything],
    }
    processor = FoveatedVideoProcessor(size=32, num_frames=6)
    reference = processor(inputs["path"], return_metadata=True)
    for name, video in inputs.items():
        out = processor(video, return_metadata=True)
        torch.testing.assert_close(
            out["pixel_values_videos"], reference["pixel_values_videos"], rtol=0, atol=1e-6, msg=name
        )
        assert out["frame_indices"].tolist() == reference["frame_indices"].tolist(), name
    # A batch mixes kinds; a 5-D array is a batch of videos.
    batch = processor([inputs["bytes"], inputs["PIL images"], inputs["url"]])["pixel_values_videos"]
    assert batch.shape == (3, 6, 3, 32, 32)
    torch.testing.assert_close(batch, reference["pixel_values_videos"].expand(3, -1, -1, -1, -1), rtol=0, atol=1e-6)
    assert processor(np.stack([everything, everything]))["pixel_values_videos"].shape == (2, 6, 3, 32, 32)


def test_arrays_without_a_clock_have_nan_timestamps_unless_given():
    video = np.zeros((20, 8, 8, 3), np.uint8)
    processor = FoveatedVideoProcessor(size=8, num_frames=5)
    assert torch.isnan(processor(video, return_metadata=True)["timestamps"]).all()
    out = processor(video, video_fps=4, fps=1, return_metadata=True)
    assert out["frame_indices"][0].tolist() == [0, 4, 8, 12, 16]
    assert out["timestamps"][0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("height, width", [(37, 53), (53, 37), (17, 101), (200, 9), (32, 32)])
def test_odd_sizes_and_aspect_ratios(height, width):
    video = np.random.default_rng(0).integers(0, 256, (3, height, width, 3), dtype=np.uint8)
    for mode in ("crop", "squash"):
        pixels = FoveatedVideoProcessor(size=24, num_frames=3, resize_mode=mode)(video)["pixel_values_videos"]
        assert pixels.shape == (1, 3, 3, 24, 24) and torch.isfinite(pixels).all()


def test_odd_sized_video_file(tmp_path):
    path = write_video(tmp_path / "wide.mp4", 5, width=96, height=40)
    out = FoveatedVideoProcessor(size=20, num_frames=5)(path, return_target_frames=True)
    assert out["target_frames"].shape == (1, 5, 3, 20, 20)
    assert frame_codes((out["target_frames"][0] + 1) / 2) == [0, 1, 2, 3, 4]


def test_crop_keeps_the_centre_and_squash_the_whole_frame():
    video = np.zeros((2, 30, 90, 3), np.uint8)  # 3:1, red sides, green centre square
    video[:, :, :30, 0] = video[:, :, 60:, 0] = 255
    video[:, :, 30:60, 1] = 255
    cropped = FoveatedVideoProcessor(size=16, num_frames=2)(video, return_target_frames=True)["target_frames"]
    torch.testing.assert_close(cropped[0, :, 0], torch.full((2, 16, 16), -1.0))  # no red at all
    torch.testing.assert_close(cropped[0, :, 1], torch.ones(2, 16, 16))
    squashed = FoveatedVideoProcessor(size=16, num_frames=2, resize_mode="squash")(video, return_target_frames=True)
    assert squashed["target_frames"][0, :, 0, :, :4].min() > 0.9  # the red sides are still there
    with pytest.raises(ValueError, match="resize_mode"):
        FoveatedVideoProcessor(resize_mode="stretch")


def test_downscaling_is_antialiased():
    stripes = np.zeros((1, 256, 256, 3), np.uint8)
    stripes[:, :, ::2] = 255  # 1-pixel stripes: without antialiasing a 8x downscale picks one phase
    target = FoveatedVideoProcessor(size=32, num_frames=1)(stripes, return_target_frames=True)["target_frames"]
    assert target.abs().max() < 0.05  # averaged to mid-gray


def test_normalisation_and_target_frames_agree():
    video = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = FoveatedVideoProcessor(size=32, num_frames=4)(video, return_target_frames=True)
    unit = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255  # no resize at the same size
    torch.testing.assert_close(out["target_frames"][0], unit * 2 - 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out["pixel_values_videos"][0], (unit - mean) / std)


def test_grayscale_and_alpha_become_rgb():
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    rgb = np.repeat(gray, 3, axis=-1)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)], axis=-1)
    processor = FoveatedVideoProcessor(size=16, num_frames=3)
    reference = processor(rgb)["pixel_values_videos"]
    for video in (
        gray,
        rgba,
        torch.from_numpy(gray).permute(0, 3, 1, 2),
        [Image.fromarray(f[..., 0], "L") for f in gray],
    ):
        torch.testing.assert_close(processor(video)["pixel_values_videos"], reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(processor([Image.fromarray(f, "RGBA") for f in rgba])["pixel_values_videos"], reference)


def test_batches_of_different_lengths(video30, tmp_path):
    short = write_video(tmp_path / "short.mp4", 10)
    processor = FoveatedVideoProcessor(size=8)
    with pytest.raises(ValueError, match=r"different frame counts \[6, 2\]"):
        processor([video30, short], fps=2)
    lists = processor([video30, short], fps=2, return_tensors=None)
    assert [v.shape[0] for v in lists["pixel_values_videos"]] == [6, 2]


def bad_videos(tmp_path, base_url):
    """(name, input, text the error must contain) for every way a video can be unreadable."""
    good = write_video(tmp_path / "good.mp4", 30).read_bytes()
    faststart = write_video(tmp_path / "faststart.mp4", 30, faststart=True).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.txt").write_text("not a video\n" * 50)
    rng = np.random.default_rng(3)
    port = closed_port()
    return [
        ("missing file", str(tmp_path / "missing.mp4"), "no such file"),
        ("directory", tmp_path, "not a regular file"),
        ("truncated file", str(tmp_path / "truncated.mp4"), "truncated.mp4"),
        ("truncated faststart bytes", faststart[: int(len(faststart) * 0.8)], "bytes"),
        ("random bytes", rng.bytes(4000), "4000 bytes"),
        ("empty bytes", b"", "0 bytes"),
        ("text file", str(tmp_path / "notes.txt"), "notes.txt"),
        ("zero-frame video", str(write_video(tmp_path / "empty.mp4", 0)), "empty.mp4"),
        ("zero-frame array", np.zeros((0, 8, 8, 3), np.uint8), "no frames"),
        ("unreachable URL", f"http://127.0.0.1:{port}/clip.mp4", "download failed"),
        ("missing URL", f"{base_url}/missing.mp4", "404"),
        ("rank 3", np.zeros((8, 8, 3), np.uint8), "4 dimensions"),
        ("rank 5 inside a list", [np.zeros((1, 2, 8, 8, 3), np.uint8)], "4 dimensions"),
        ("int64", np.zeros((2, 8, 8, 3), np.int64), "dtype"),
        ("two channels", np.zeros((2, 8, 8, 2), np.uint8), "channels"),
        ("out-of-range floats", np.full((2, 8, 8, 3), 2.0, np.float32), "[0, 1]"),
        ("NaN floats", np.full((2, 8, 8, 3), np.nan, np.float32), "finite"),
        ("images of different sizes", [Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8))], "differ in size"),
        ("an integer", 7, "unsupported"),
    ]


def test_every_bad_input_raises_a_named_error(tmp_path, http_root):
    processor = FoveatedVideoProcessor(size=8, num_frames=2, url_timeout=5)
    for name, video, expected in bad_videos(tmp_path, http_root[1]):
        with pytest.raises(VideoDecodeError) as error:
            processor(video)
        assert expected in str(error.value) and str(error.value).startswith("cannot read video"), name
        assert isinstance(error.value, ValueError)


def test_download_size_is_bounded(video30, http_root):
    root, base_url = http_root
    (root / "big.mp4").write_bytes(video30.read_bytes())
    with pytest.raises(VideoDecodeError, match="max_download_bytes"):
        FoveatedVideoProcessor(max_download_bytes=100)(f"{base_url}/big.mp4")


def test_save_and_load(tmp_path, video30):
    processor = FoveatedVideoProcessor(size=40, num_frames=3, resize_mode="squash", image_mean=(0.5, 0.5, 0.5))
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "video_preprocessor_config.json").exists()
    for loader in (FoveatedVideoProcessor, AutoVideoProcessor):
        loaded = loader.from_pretrained(tmp_path)
        assert type(loaded) is FoveatedVideoProcessor and loaded.to_dict() == processor.to_dict()
        torch.testing.assert_close(loaded(video30)["pixel_values_videos"], processor(video30)["pixel_values_videos"])
    assert FoveatedVideoProcessor.from_pretrained(tmp_path, num_frames=5).num_frames == 5


FRESH_PROCESS = BLOCK_PACKAGE + textwrap.dedent(
    """
    import sys, torch
    from transformers.models.auto.video_processing_auto import AutoVideoProcessor  # the top level wants torchvision

    checkpoint, video, out_file = sys.argv[1:]
    processor = AutoVideoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    out = processor(video, return_metadata=True)
    assert not any(m.split(".")[0] == "foveated_vlm" for m in sys.modules), "the package was imported"
    result = {"pixels": out["pixel_values_videos"], "backend": out["video_metadata"][0].video_backend}
    torch.save(result | {"module": type(processor).__module__}, out_file)
    """
)


def test_saved_code_decodes_in_a_fresh_process(tmp_path, video30):
    """The decoding modules travel with the saved video processor (transformers copies its relative imports), so a
    process without the package decodes with the saved code alone, as the package does."""
    processor = FoveatedVideoProcessor(size=40, num_frames=3)
    processor.save_pretrained(tmp_path / "saved")
    saved_code = {path.name for path in (tmp_path / "saved").glob("*.py")}
    assert saved_code == {"video_processing_foveated.py", "video_decoding.py", "pyav_decoding.py", "download.py"}
    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "saved"), str(video30), str(tmp_path / "out.pt")],
        check=True,
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")},
        timeout=120,
    )
    result = torch.load(tmp_path / "out.pt")
    assert result["module"].startswith("transformers_modules.") and result["backend"] == "decord"
    torch.testing.assert_close(result["pixels"], processor(video30)["pixel_values_videos"], rtol=0, atol=0)


def test_size_is_a_square_height_and_width_or_an_old_int(video30):
    processor = FoveatedVideoProcessor(size={"height": 24, "width": 24}, num_frames=2)
    assert processor.to_dict() == FoveatedVideoProcessor(size=24, num_frames=2).to_dict()  # an int is that dict
    assert processor.size == {"height": 24, "width": 24} and processor.frame_size == 24
    assert processor(video30)["pixel_values_videos"].shape == (1, 2, 3, 24, 24)
    assert processor(video30, size={"height": 16, "width": 16})["pixel_values_videos"].shape == (1, 2, 3, 16, 16)
    assert processor(video30, size=8)["pixel_values_videos"].shape == (1, 2, 3, 8, 8)
    old = FoveatedVideoProcessor.from_dict(
        {"size": 32, "num_frames": 4, "video_processor_type": "FoveatedVideoProcessor"}
    )
    assert old.size == {"height": 32, "width": 32}  # a config saved before the dict
    for size in ({"height": 24, "width": 32}, {"shortest_edge": 24}, {"height": 0, "width": 0}):
        with pytest.raises(ValueError, match=re.escape(f"size={size!r} is invalid")):
            FoveatedVideoProcessor(size=size)
        with pytest.raises(ValueError, match=re.escape(f"size={size!r} is invalid")):
            processor(video30, size=size)
    with pytest.raises(ValueError, match="height and width must be equal"):
        processor(video30, size={"height": 24, "width": 32})


def test_metadata_only_on_request(video30):
    processor = FoveatedVideoProcessor(size=8, num_frames=4)
    assert set(processor(video30)) == {"pixel_values_videos"}  # what the model's forward takes, nothing else
    out = processor([video30, np.zeros((6, 8, 8, 3), np.uint8)], video_fps=2, return_metadata=True)
    assert set(out) == {"pixel_values_videos", "video_metadata", "frame_indices", "timestamps"}
    file, array = out["video_metadata"]
    assert isinstance(file, VideoMetadata) and isinstance(array, VideoMetadata)
    assert (file.total_num_frames, file.fps, file.duration, file.height, file.width) == (30, FPS, 3.0, 48, 64)
    assert file.frames_indices == out["frame_indices"][0].tolist() == [0, 10, 19, 29]
    assert file.video_backend == "decord" and file.timestamps == pytest.approx(out["timestamps"][0].tolist())
    assert (array.total_num_frames, array.fps, array.duration, array.video_backend) == (6, 2.0, 3.0, None)
    assert array.frames_indices == [0, 2, 3, 5] and out["timestamps"][1].tolist() == [0, 1, 1.5, 2.5]
    assert set(FoveatedVideoProcessor(size=8, num_frames=4, return_metadata=True)(video30)) == set(out)


def test_sample_frames_reads_the_metadata():
    """The mixin's sampling hook: indices from a `VideoMetadata`, the call's options over the saved settings."""
    saved_rate = FoveatedVideoProcessor(fps=2.0, max_frames=3)
    assert saved_rate.sample_frames(VideoMetadata(total_num_frames=30, fps=10.0)).tolist() == [0, 14, 29]
    processor = FoveatedVideoProcessor(num_frames=4)
    assert processor.sample_frames(VideoMetadata(total_num_frames=30, fps=10.0)).tolist() == [0, 10, 19, 29]
    assert processor.sample_frames(VideoMetadata(total_num_frames=30, fps=10.0), fps=2).tolist() == [
        0,
        5,
        10,
        15,
        20,
        25,
    ]
    with pytest.raises(ValueError, match="needs the video's frame rate"):
        processor.sample_frames(VideoMetadata(total_num_frames=30), fps=2)


def test_fetch_videos_downloads_and_decodes_the_sampled_frames(video30, http_root):
    root, base_url = http_root
    (root / "fetched.mp4").write_bytes(video30.read_bytes())
    processor = FoveatedVideoProcessor(num_frames=3)
    frames, metadata = processor.fetch_videos(f"{base_url}/fetched.mp4")
    assert frames.shape == (3, 3, 48, 64) and frame_codes(frames) == metadata.frames_indices == [0, 14, 29]
    every_other = processor.fetch_videos(
        [f"{base_url}/fetched.mp4", str(video30)], lambda metadata: np.arange(0, 30, 2)
    )
    assert [m.frames_indices for m in every_other[1]] == [list(range(0, 30, 2))] * 2
    assert [frame_codes(frames) for frames in every_other[0]] == [list(range(0, 30, 2))] * 2


def test_do_sample_frames_false_is_refused(video30):
    with pytest.raises(ValueError, match="do_sample_frames=False is invalid"):
        FoveatedVideoProcessor(size=8)(video30, do_sample_frames=False)
