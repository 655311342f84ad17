"""Decoding for the video processor: the sampled frames of a file, in-memory file, URL, array or image list.

Where decord fails (it cannot copy frames 48 px wide, among other widths up to 72, cannot open some files that
FFmpeg reads, and seeks to the wrong frames where frames are reordered across a keyframe) the same sampled frames
are decoded with PyAV (`pyav_decoding.PyAVVideo`); only when both fail is the video unreadable, and the error
gives both reasons.

Decoding seeks to the sampled frames (`decord.VideoReader.get_batch`) and decodes only from each one's keyframe,
never the whole clip (`benchmarks/decode_sampling.py`: 8 frames of a 30 s clip cost 2.5x less than all 900 with
libx264's 250-frame keyframe interval, 3.8x less with a 2 s one). With `snap_to_keyframes`, each sampled frame is
moved to the nearest keyframe first, so each costs one frame's decode, not up to a keyframe interval's (the frames
and timestamps returned are the keyframes'). A fresh reader is opened per video, so no reader is shared across
DataLoader worker processes (dmlc/decord#194). Anything that cannot be read raises `VideoDecodeError`, which names
the source and the reason; no frame is ever made up.

With `max_size`, a large video is decoded straight to that bound on its shorter side (decord's reader resizes as it
decodes) and large arrays and images are downscaled before any float copy (a 4000x4000 8-frame clip at 256 px peaks
at +0.5 GB, +3.5 GB when it was decoded at full size): the video processor asks for twice its output size.
"""

import io
import logging
import math
import numbers
import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

# PyAV's FFmpeg libraries load before decord's: decord bundles an older libvpx that, loaded first, takes the place of
# PyAV's, whose VP8/VP9 encoders then fail to open (a user writing .webm with PyAV after importing this package).
import av  # noqa: F401
import decord
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.video_utils import VideoMetadata

from .download import looks_like_url
from .pyav_decoding import PyAVError, PyAVVideo

__all__ = [
    "VideoDecodeError",
    "decode_file",
    "describe_source",
    "is_rate",
    "is_single_video",
    "read_video",
]

logger = logging.getLogger(__name__)

# decord fails on frames 1, 2, 3, 4, 6, 8, 12, 16, 24, 48 or 72 px wide (see `pyav_decoding`), so a reader is never
# asked to resize below this; a smaller bound is reached by downscaling after decoding. PyAV keeps the same bound, so
# a video gives frames of one size whichever backend decodes it.
DECORD_MIN_SIDE = 128
# decord writes in-memory input it cannot open into its error log, up to the first zero byte: a megabyte of text
# would land in stderr. Every container's header holds a zero byte early (MP4 at byte 0, Matroska within ~50);
# text holds none.
TEXT_PROBE_BYTES = 1024


class VideoDecodeError(ValueError):
    """A video that cannot be read: a missing, corrupt or truncated file, no video stream, zero frames, an
    unreachable URL, or an array of the wrong rank, dtype or channel count."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"cannot read video {source}: {reason}")


def read_video(
    video,
    sample_indices_fn: Callable,
    video_fps: float | None,
    max_size: int | None,
    fetch_url: Callable[[str], bytes],
    snap_to_keyframes: bool = False,
):
    """One video of any kind -> `(frames [T, 3, H', W'], VideoMetadata, timestamps [T])`: only the frames that
    `sample_indices_fn(metadata=...)` picks, with the shorter side at most `max_size` when given. `video_fps` is the
    rate of arrays and images (files carry their own); `fetch_url` downloads a URL's bytes (the video processor's,
    with its deadline and size cap). `snap_to_keyframes`: a file's sampled frames move to their nearest keyframes
    (arrays and images have none: every frame is as cheap as another)."""
    source = describe_source(video)
    decode = partial(
        decode_file, source=source, sample_indices_fn=sample_indices_fn, max_size=max_size, snap=snap_to_keyframes
    )
    if isinstance(video, (str, os.PathLike)) and looks_like_url(str(video)):  # never read as a local path
        return decode(io.BytesIO(fetch_url(str(video))))
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        if not path.is_file():
            raise VideoDecodeError(source, "no such file" if not path.exists() else "not a regular file")
        return decode(str(path))
    if isinstance(video, (bytes, bytearray)):
        return decode(io.BytesIO(bytes(video)))
    if isinstance(video, (list, tuple)) and is_single_video(video):  # a list holding PIL images
        width, height = next(image.size for image in video if isinstance(image, Image.Image))
        metadata = video_metadata(len(video), video_fps, height, width, backend=None)
        indices = sample_indices(sample_indices_fn, metadata)
        return images_to_frames(video, indices, source, max_size), metadata, clock(indices, video_fps)
    if isinstance(video, (np.ndarray, torch.Tensor)):
        frames = array_to_frames(video, source)  # [N, 3, H, W], a view of the input
        metadata = video_metadata(frames.shape[0], video_fps, *frames.shape[-2:], backend=None)
        indices = sample_indices(sample_indices_fn, metadata)
        frames = bound_frames(frames[torch.from_numpy(indices)], max_size)  # [T, 3, H', W'], still uint8
        return frames, metadata, clock(indices, video_fps)
    raise VideoDecodeError(
        source, "unsupported input; expected a path, URL, bytes, an array/tensor [T, H, W, C] or a list of images"
    )


def decode_file(data, source: str, sample_indices_fn: Callable, max_size: int | None, snap: bool = False):
    """Read only the sampled frames of a file or in-memory file (moved to their nearest keyframes with `snap`),
    with the shorter side at most `max_size` when given: with decord, and with PyAV where decord fails (see
    `pyav_decoding`); duplicates are decoded once."""
    if isinstance(data, io.BytesIO):
        refuse_text(data, source)
    try:
        return decode_with_decord(data, source, sample_indices_fn, max_size, snap)
    except VideoDecodeError as decord_error:
        logger.debug("decord cannot read %s (%s); decoding with PyAV", source, decord_error.reason)
        try:
            return decode_with_pyav(data, source, sample_indices_fn, max_size, snap)
        except VideoDecodeError as pyav_error:
            reason = f"{decord_error.reason}; PyAV: {pyav_error.reason}"
            raise VideoDecodeError(source, reason) from decord_error


def decode_with_decord(data, source: str, sample_indices_fn: Callable, max_size: int | None, snap: bool = False):
    """`decode_file` with decord: one seek-batch, or, for a frame larger than `max_size`, a second reader that resizes
    as it decodes (never below `DECORD_MIN_SIDE`: a smaller `max_size` is reached by downscaling after decoding)."""
    reader = open_reader(data, source)
    metadata = video_metadata(len(reader), reader.get_avg_fps(), None, None, backend="decord")
    keyframes = decord_keyframes(data, reader, source)  # [K]; refuses a file decord would seek wrongly in
    unique, inverse = sample_file_frames(metadata, sample_indices_fn, source, keyframes if snap else None)
    try:
        timestamps = reader.get_frame_timestamp(unique.tolist())[:, 0]  # start of each frame, seconds
    except (RuntimeError, IndexError, decord.DECORDError) as error:
        reason = f"no frame timestamps, the file may be truncated ({decord_reason(error)})"
        raise VideoDecodeError(source, reason) from error
    if max_size is None:
        frames = read_batch(reader, unique, source)  # [U, H, W, 3] uint8: one seek-batch
        metadata.height, metadata.width = frames.shape[1:3]
    else:
        frames = read_batch(reader, unique[:1], source)  # decord tells the frame size only by decoding a frame
        metadata.height, metadata.width = frames.shape[1:3]
        shape = bounded_shape(*frames.shape[1:3], max(max_size, DECORD_MIN_SIDE))
        if shape == frames.shape[1:3]:  # small enough: this reader reads the rest, the first frame decoded once
            if len(unique) > 1:
                frames = np.concatenate([frames, read_batch(reader, unique[1:], source)])
        else:  # decode straight to the bounded size, after letting the full-size reader and frame go
            del reader, frames
            frames = read_batch(open_reader(data, source, shape), unique, source)  # [U, H', W', 3]
    return sampled_result(frames, inverse, timestamps, max_size, metadata)


def decode_with_pyav(data, source: str, sample_indices_fn: Callable, max_size: int | None, snap: bool = False):
    """`decode_file` with PyAV (`pyav_decoding.PyAVVideo`), to the same sizes as `decode_with_decord`."""
    try:
        with PyAVVideo(data) as video:
            height, width = video.frame_size  # from the stream's header: PyAV can resize from the first frame
            metadata = video_metadata(len(video), video.average_fps, height, width, backend="pyav")
            unique, inverse = sample_file_frames(metadata, sample_indices_fn, source, video.keyframes if snap else None)
            # decord's bound, so that a video gives frames of one size whichever backend decodes it
            bound = None if max_size is None else max(max_size, DECORD_MIN_SIDE)
            shape = bounded_shape(height, width, bound) if height and width else None
            frames = video.read(unique, None if shape == (height, width) else shape)  # [U, H', W', 3] uint8
            timestamps = video.timestamps(unique)
    except PyAVError as error:
        raise VideoDecodeError(source, str(error)) from error
    return sampled_result(frames, inverse, timestamps, max_size, metadata)


def is_single_video(video) -> bool:
    """Whether `video` is one video rather than a batch: a path, URL or bytes, or a list holding a PIL image."""
    if isinstance(video, (str, os.PathLike, bytes, bytearray)):
        return True
    if isinstance(video, (list, tuple)):
        return any(isinstance(frame, Image.Image) for frame in video)
    return False


def is_rate(value) -> bool:
    """A frame rate: a finite real number above 0 (not a bool, NaN, inf or a string)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def video_metadata(total: int, fps, height: int | None, width: int | None, backend: str | None) -> VideoMetadata:
    """transformers' description of a video before sampling; the decoder fills `frames_indices`."""
    fps = float(fps) if fps is not None else None
    duration = total / fps if is_rate(fps) else None
    return VideoMetadata(
        total_num_frames=int(total), fps=fps, height=height or None, width=width or None, duration=duration,
        video_backend=backend,
    )  # fmt: skip


def clock(indices: np.ndarray, video_fps: float | None) -> np.ndarray:
    """Times in seconds `[T]` of frames that carry no clock of their own (arrays, images): NaN without a rate."""
    return indices / video_fps if video_fps else np.full(len(indices), np.nan)


def array_to_frames(video, source: str) -> torch.Tensor:
    """A `[T, H, W, C]` or `[T, C, H, W]` array or tensor -> `[T, 3, H, W]` (`uint8`, or float in [0, 1])."""
    frames = torch.from_numpy(np.ascontiguousarray(video)) if isinstance(video, np.ndarray) else video.detach().cpu()
    if frames.ndim != 4:
        raise VideoDecodeError(
            source, f"expected 4 dimensions [T, H, W, C] or [T, C, H, W], got shape {tuple(frames.shape)}"
        )
    if frames.shape[0] == 0:
        raise VideoDecodeError(source, "the video has no frames")
    if frames.shape[-1] in (1, 3, 4):  # channels last, the decoders' layout, wins when both would fit
        frames = frames.permute(0, 3, 1, 2)
    elif frames.shape[1] not in (1, 3, 4):
        raise VideoDecodeError(source, f"expected 1, 3 or 4 channels first or last, got shape {tuple(frames.shape)}")
    check_frame_size(*frames.shape[-2:], source)
    if frames.dtype != torch.uint8:
        if not frames.is_floating_point():
            raise VideoDecodeError(source, f"dtype {frames.dtype} is not supported; expected uint8 or float in [0, 1]")
        if not torch.isfinite(frames).all() or frames.min() < 0 or frames.max() > 1:
            raise VideoDecodeError(source, "float frames must be finite and lie in [0, 1] (already normalised?)")
    channels = frames.shape[1]
    if channels == 1:  # grayscale
        return frames.expand(-1, 3, -1, -1)
    return frames[:, :3]  # RGB, or RGBA with its alpha dropped


def images_to_frames(images, indices: np.ndarray, source: str, max_size: int | None) -> torch.Tensor:
    """The images at `indices` of a list of PIL images -> uint8 `[T, 3, H, W]`; each is converted and downscaled to
    `max_size` on its own, so no full-size stack of the sampled images is ever made."""
    stray = next((i for i, image in enumerate(images) if not isinstance(image, Image.Image)), None)
    if stray is not None:
        raise VideoDecodeError(source, f"item {stray} is {type(images[stray]).__name__}, not a PIL image")
    sizes = sorted({images[i].size for i in indices})  # (width, height): only the sampled images matter
    if len(sizes) > 1:
        raise VideoDecodeError(source, f"the images differ in size (width, height): {sizes}")
    check_frame_size(sizes[0][1], sizes[0][0], source)
    frames = [torch.from_numpy(np.array(images[i].convert("RGB"))).permute(2, 0, 1)[None] for i in indices]
    return torch.cat([bound_frames(frame, max_size) for frame in frames])  # [T, 3, H', W']


def sample_file_frames(metadata: VideoMetadata, sample_indices_fn: Callable, source: str, keyframes=None):
    """`(unique [U], inverse [T])` of a file's sampled frames, recorded in `metadata.frames_indices`: the distinct
    ones to decode (sorted) and where each sampled frame is among them; a file's flaw is a `VideoDecodeError`.
    With `keyframes` `[K]`, each sampled frame is first moved to its nearest keyframe."""
    if metadata.total_num_frames < 1:
        raise VideoDecodeError(source, "the video has no frames")
    try:
        indices = sample_indices(sample_indices_fn, metadata)
    except ValueError as error:  # the arguments are checked already: what is left is the file's frame rate
        raise VideoDecodeError(source, str(error)) from error
    if keyframes is not None:
        indices = nearest_keyframes(indices, keyframes)
        metadata.frames_indices = indices.tolist()
    unique, inverse = np.unique(indices, return_inverse=True)
    return unique, inverse


def decord_keyframes(data, reader: decord.VideoReader, source: str) -> np.ndarray:
    """The keyframes' indices `[K]` among the frames in presentation order, the order decord's frame indices use;
    a `VideoDecodeError` (so that PyAV decodes the file) where decord's seeking would land on other frames.

    decord counts keyframes in decoding order (`get_key_indices`) and seeks by that count. Where frames are
    reordered across a keyframe (open GOPs: x265's default, many cameras' files) the two orders differ, and a frame
    decord reads after a seek is off by the frames reordered (index 10 gave frame 11, tested). PyAV's index (a demux
    of every packet, no decoding: ~3 ms for 900 frames) sorts by presentation time, so the two lists tell such a
    file; where PyAV cannot index it, decord's list is used as it is."""
    try:
        decoded = np.asarray(reader.get_key_indices(), dtype=np.int64)
    except (RuntimeError, decord.DECORDError) as error:
        raise VideoDecodeError(source, f"no keyframe index ({decord_reason(error)})") from error
    position = data.tell() if isinstance(data, io.BytesIO) else None
    try:
        with PyAVVideo(data) as video:
            shown = video.keyframes if len(video) == len(reader) else None
    except PyAVError as error:
        logger.debug("PyAV cannot index %s (%s); trusting decord's keyframes", source, error)
        shown = None
    finally:
        if position is not None:
            data.seek(position)  # where decord's reader left the in-memory file
    if shown is not None and not np.array_equal(shown, decoded):
        reason = "decord would seek to the wrong frames: frames are reordered across its keyframes (an open GOP)"
        raise VideoDecodeError(source, reason)
    return decoded


def nearest_keyframes(indices: np.ndarray, keyframes) -> np.ndarray:
    """Each of `indices` `[T]` moved to the nearest of `keyframes` (sorted; the earlier one on a tie); a file whose
    index marks no keyframe keeps its exact frames."""
    keyframes = np.asarray(keyframes, dtype=np.int64)
    if keyframes.size == 0:
        return indices
    after = np.searchsorted(keyframes, indices).clip(max=len(keyframes) - 1)  # first keyframe >= index, or the last
    before = np.maximum(after - 1, 0)
    earlier = indices - keyframes[before] <= keyframes[after] - indices
    return np.where(earlier, keyframes[before], keyframes[after])


def sample_indices(sample_indices_fn: Callable, metadata: VideoMetadata) -> np.ndarray:
    """The indices `[T]` that `sample_indices_fn` (the mixin's signature: `metadata=`) picks, recorded in
    `metadata.frames_indices`."""
    indices = np.asarray(sample_indices_fn(metadata=metadata), dtype=np.int64)  # [T]
    metadata.frames_indices = indices.tolist()
    return indices


def sampled_result(frames: np.ndarray, inverse, timestamps, max_size: int | None, metadata: VideoMetadata):
    """Decoded distinct frames `[U, H, W, 3]` -> `(frames [T, 3, H', W'], metadata, timestamps [T])`."""
    frames = torch.from_numpy(frames[inverse]).permute(0, 3, 1, 2)  # [T, 3, H, W]
    return bound_frames(frames, max_size), metadata, np.asarray(timestamps)[inverse].astype(np.float64)


def check_frame_size(height: int, width: int, source: str):
    if height < 1 or width < 1:
        raise VideoDecodeError(source, f"the frames are {width} pixels wide and {height} high; expected at least 1")


def bounded_shape(height: int, width: int, max_size: int | None) -> tuple[int, int]:
    """`(height, width)` scaled so that the shorter side is at most `max_size`, keeping the aspect ratio."""
    if max_size is None or min(height, width) <= max_size:
        return height, width
    scale = max_size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def bound_frames(frames: torch.Tensor, max_size: int | None) -> torch.Tensor:
    """Frames `[T, 3, H, W]` downscaled so the shorter side is at most `max_size`, in their own dtype where torch can
    (uint8 stays uint8: no 4x larger float copy of a full-size frame); bilinear with antialiasing."""
    shape = bounded_shape(*frames.shape[-2:], max_size)
    if shape == tuple(frames.shape[-2:]):
        return frames
    if frames.dtype not in (torch.uint8, torch.float32, torch.float64):  # torch cannot resize half floats on a CPU
        frames = frames.float()
    return F.interpolate(frames, size=shape, mode="bilinear", antialias=True, align_corners=False)


def refuse_text(data: io.BytesIO, source: str):
    """Raise `VideoDecodeError` for in-memory input that is empty or holds no zero byte early: text (an HTML error
    page, a Git LFS pointer), which decord would copy whole into its error log (see `TEXT_PROBE_BYTES`)."""
    with data.getbuffer() as view:
        head = bytes(view[:TEXT_PROBE_BYTES])
    if not head:
        raise VideoDecodeError(source, "it is empty")
    if b"\0" not in head:
        raise VideoDecodeError(
            source,
            f"looks like text, not a video: its first {len(head)} bytes hold no zero byte, which every video "
            f"container's header has (it starts with {head[:40]!r}); a raw .y4m stream has none either: pass it as a "
            "path",
        )


def open_reader(data, source: str, shape: tuple[int, int] | None = None) -> decord.VideoReader:
    """A decord reader of a path or an in-memory file, resizing to `shape` `(height, width)` as it decodes."""
    height, width = shape or (-1, -1)
    if isinstance(data, io.BytesIO):
        data.seek(0)  # decord reads the buffer from where it stands, at each opening
    try:
        return decord.VideoReader(data, ctx=decord.cpu(0), width=width, height=height)
    except (RuntimeError, decord.DECORDError) as error:
        raise VideoDecodeError(source, f"not a readable video ({decord_reason(error)})") from error


def read_batch(reader: decord.VideoReader, indices: np.ndarray, source: str) -> np.ndarray:
    """Frames `[U, H, W, 3]` uint8 at `indices` (sorted, distinct), seeking to each from its keyframe."""
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()
    except (RuntimeError, IndexError, decord.DECORDError) as error:
        reason = f"decoding failed, the file may be truncated ({decord_reason(error)})"
        raise VideoDecodeError(source, reason) from error
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise VideoDecodeError(source, f"the decoder returned frames of shape {frames.shape} for {len(indices)} frames")
    return frames


def describe_source(video) -> str:
    """A short name for a video in error messages (never its content)."""
    if isinstance(video, (str, os.PathLike)):
        return repr(str(video))
    if isinstance(video, (bytes, bytearray)):
        return f"<{len(video)} bytes>"
    if isinstance(video, (np.ndarray, torch.Tensor)):
        return f"<{type(video).__name__} of shape {tuple(video.shape)}, dtype {video.dtype}>"
    if isinstance(video, (list, tuple)):
        return f"<list of {len(video)} items>"
    return f"<{type(video).__name__}>"


def decord_reason(error: Exception) -> str:
    """decord's messages start with a timestamp and a C++ source location and run over many lines: keep the gist."""
    lines = [re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", line).strip() for line in str(error).splitlines()]
    return next((line for line in lines if line), type(error).__name__)
