"""`snap_to_keyframes`: each sampled frame of a file moves to its nearest keyframe, so each costs one decoded frame.

Real H.264 files written with PyAV (a keyframe every 10 frames, scene cuts off so that libx264 adds none), read by
decord and, for a width decord cannot copy (48 px), by PyAV; the frames name their own index (`frame_codes`).
"""

import av
import decord
import numpy as np
import pytest
import torch
from test_decode_grid import gray_frames, pyav_videos  # noqa: F401 - pyav_videos is a fixture
from test_processing import make_processor
from test_video_processing import frame_codes

from foveated_vlm import FoveatedVideoProcessor
from foveated_vlm.video_decoding import nearest_keyframes

GOP = 10


def write_gop_clip(path, width: int = 64, frames: int = 30, open_gop: bool = False):
    """Gray frames at level(i), H.264 with a keyframe exactly every GOP frames; with `open_gop`, B-frames shown
    before a keyframe are decoded after it (x264's open GOPs), so decoding order and presentation order differ."""
    options = {"g": str(GOP), "sc_threshold": "0"}
    if open_gop:
        options.update({"bf": "2", "x264-params": "open-gop=1"})
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options=options)
        stream.width, stream.height, stream.pix_fmt = width, 32, "yuv420p"
        for image in gray_frames(frames, width, 32):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_nearest_keyframes():
    keyframes = np.array([0, 10, 20])
    indices = np.array([0, 4, 5, 6, 15, 16, 29, 100])
    assert nearest_keyframes(indices, keyframes).tolist() == [0, 0, 0, 10, 10, 20, 20, 20]  # a tie takes the earlier
    assert nearest_keyframes(np.array([1, 3]), np.array([2])).tolist() == [2, 2]  # before the first keyframe too
    assert nearest_keyframes(indices, np.array([], dtype=np.int64)).tolist() == indices.tolist()  # none marked: exact


def test_decord_reads_the_nearest_keyframes(tmp_path):
    path = write_gop_clip(tmp_path / "gop.mp4")
    processor = FoveatedVideoProcessor(size=16, num_frames=4)
    exact_frames, exact, _ = processor.load_frames(path)
    frames, indices, timestamps = processor.load_frames(path, snap_to_keyframes=True)
    assert exact.tolist() == [0, 10, 19, 29]
    assert indices.tolist() == [0, 10, 20, 20]  # 19 and 29 are nearest to 20 (the last keyframe)
    assert frame_codes(frames) == [0, 10, 20, 20] and frame_codes(exact_frames) == [0, 10, 19, 29]
    np.testing.assert_allclose(timestamps, [0.0, 1.0, 2.0, 2.0], atol=1e-6)
    # Through the processor's call and its metadata, as a saved setting and as a call option.
    snapping = FoveatedVideoProcessor(size=16, num_frames=4, snap_to_keyframes=True)
    out = snapping(str(path), return_metadata=True)
    assert out["frame_indices"].tolist() == [[0, 10, 20, 20]] and out["video_metadata"][0].video_backend == "decord"
    assert out["video_metadata"][0].frames_indices == [0, 10, 20, 20]
    exact_call = snapping(str(path), snap_to_keyframes=False, return_metadata=True)
    assert exact_call["frame_indices"].tolist() == [exact.tolist()]


def test_open_gops_are_read_by_pyav_exactly_and_snapped_to_the_keyframes_shown(tmp_path):
    """decord counts keyframes in decoding order ([0, 9, 19] here: the B-frames shown before each keyframe are
    decoded after it) and seeks by that count, which reads frame 11 for index 10. Such a file is decoded by PyAV:
    exact frames are exact, and snapped ones are the keyframes as shown, from a file and from its bytes alike."""
    path = write_gop_clip(tmp_path / "open.mp4", open_gop=True)
    reader = decord.VideoReader(str(path))
    assert reader.get_key_indices() == [0, 9, 19]  # the trap
    assert frame_codes(torch.from_numpy(reader.get_batch([10]).asnumpy()).permute(0, 3, 1, 2)) == [11]
    processor = FoveatedVideoProcessor(size=16, num_frames=4)
    for video in (path, path.read_bytes()):
        frames, indices, _ = processor.load_frames(video)
        assert indices.tolist() == [0, 10, 19, 29] and frame_codes(frames) == [0, 10, 19, 29]
        frames, indices, _ = processor.load_frames(video, snap_to_keyframes=True)
        assert indices.tolist() == [0, 10, 20, 20] and frame_codes(frames) == [0, 10, 20, 20]
    out = processor(str(path), return_metadata=True)
    assert out["video_metadata"][0].video_backend == "pyav"


def test_pyav_reads_the_nearest_keyframes_and_decodes_only_them(tmp_path, pyav_videos):  # noqa: F811
    path = write_gop_clip(tmp_path / "narrow.mp4", width=48, frames=30)  # decord cannot copy 48-px frames out
    processor = FoveatedVideoProcessor(size=16, num_frames=4)
    frames, indices, _ = processor.load_frames(path, snap_to_keyframes=True)
    assert indices.tolist() == [0, 10, 20, 20] and frame_codes(frames) == [0, 10, 20, 20]
    (video,) = pyav_videos
    assert video.keyframes.tolist() == [0, 10, 20]
    assert video.decoded == 3  # one frame per distinct keyframe
    exact, _, _ = processor.load_frames(path)
    # exact: 0, 10 (a seek), 11..19 decoded on, 20..29 decoded on (the keyframe 20 is where the decoder stands)
    assert frame_codes(exact) == [0, 10, 19, 29] and pyav_videos[-1].decoded == 1 + 1 + 9 + 10


def test_arrays_have_no_keyframes_to_snap_to():
    video = np.stack([np.full((32, 32, 3), 8 * i + 8, np.uint8) for i in range(30)])
    processor = FoveatedVideoProcessor(size=16, num_frames=4, snap_to_keyframes=True)
    frames, indices, _ = processor.load_frames(video)
    assert indices.tolist() == [0, 10, 19, 29] and frame_codes(frames) == [0, 10, 19, 29]


def test_the_setting_is_saved_and_checked(tmp_path):
    FoveatedVideoProcessor(snap_to_keyframes=True).save_pretrained(tmp_path)
    assert FoveatedVideoProcessor.from_pretrained(tmp_path).snap_to_keyframes is True
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match=rf"snap_to_keyframes={bad!r} is invalid; expected True or False"):
            FoveatedVideoProcessor(snap_to_keyframes=bad)
    with pytest.raises(ValueError, match="snap_to_keyframes='no' is invalid"):
        FoveatedVideoProcessor().load_frames(np.zeros((2, 8, 8, 3), np.uint8), snap_to_keyframes="no")


def test_the_processor_passes_it_to_the_video_processor(tmp_path):
    path = write_gop_clip(tmp_path / "gop.mp4")
    processor = make_processor()
    out = processor(text="<video> Describe", videos=str(path), snap_to_keyframes=True, return_metadata=True)
    assert out["frame_indices"].tolist() == [[0, 10, 20, 20]]
    assert processor(text="<video> Describe", videos=str(path), return_metadata=True)["frame_indices"].tolist() == [
        [0, 10, 19, 29]
    ]
