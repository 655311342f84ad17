"""Video processor of the foveated VLM: decode, sample, crop, resize and normalise the frames of a video.

Follows transformers' video processors (`video_processing_utils.py`, `models/smolvlm/video_processing_smolvlm.py`):
defaults are class attributes, the settings are saved inside `processor_config.json` (or on their own in
`video_preprocessor_config.json`), and `AutoVideoProcessor` finds the class once `foveated_vlm` is imported (or,
with `trust_remote_code=True`, from the code saved beside the checkpoint). It subclasses the torchvision-free
`VideoProcessorMixin` rather than `BaseVideoProcessor`, which requires torchvision: decoding goes through decord,
resizing through `torch.nn.functional.interpolate`.

Decoding seeks to the sampled frames (`decord.VideoReader.get_batch`) and decodes only from each one's keyframe,
never the whole clip (`benchmarks/decode_sampling.py`: 8 frames of a 30 s clip cost 2.5x less than all 900 with
libx264's 250-frame keyframe interval, 3.8x less with a 2 s one). A fresh reader is opened per video, so no reader
is shared across DataLoader worker processes (dmlc/decord#194). Anything that cannot be read raises
`VideoDecodeError`, which names the source and the reason; no frame is ever made up.
"""

import io
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import decord
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.video_processing_utils import VideoProcessorMixin

__all__ = [
    "FoveatedVideoProcessor",
    "VideoDecodeError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "make_video_list",
    "sample_frame_indices",
]

# DINOv2 and DINOv3 (the supported vision encoders) were trained on ImageNet-normalised images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("crop", "squash")


class VideoDecodeError(ValueError):
    """A video that cannot be read: a missing, corrupt or truncated file, no video stream, zero frames, an
    unreachable URL, or an array of the wrong rank, dtype or channel count."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"cannot read video {source}: {reason}")


class FoveatedVideoProcessorKwargs(TypedDict, total=False):
    """The saved settings; `from_pretrained(..., num_frames=16)` may override any of them."""

    size: int
    num_frames: int | None
    fps: float | None
    max_frames: int | None
    resize_mode: str
    image_mean: Sequence[float]
    image_std: Sequence[float]
    url_timeout: float
    max_download_bytes: int


def make_video_list(videos) -> list:
    """One video or a batch of videos -> a flat list with one entry per video.

    One video is a path (`str`/`Path`), an http(s) URL, raw `bytes`, a 4-D array or tensor, or a list of PIL images;
    a 5-D array or tensor is a batch. Lists of per-sample lists (what `apply_chat_template(tokenize=True)` passes)
    are flattened in order.
    """
    if _is_single_video(videos):
        return [videos]
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:  # [B, T, ...]
        return list(videos)
    if not isinstance(videos, (list, tuple)):  # anything else is one video, which the reader accepts or names
        return [videos]
    if len(videos) == 0:
        raise ValueError("videos is an empty list; pass at least one video")
    flat = []
    for video in videos:
        nested = isinstance(video, (list, tuple)) and not _is_single_video(video)
        flat.extend(video if nested else [video])
    return flat


def _is_single_video(video) -> bool:
    if isinstance(video, (str, os.PathLike, bytes, bytearray)):
        return True
    if isinstance(video, (list, tuple)):
        return len(video) > 0 and all(isinstance(frame, Image.Image) for frame in video)
    return False


def sample_frame_indices(
    total_frames: int,
    num_frames: int | None = None,
    fps: float | None = None,
    video_fps: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Indices `[T]` of the frames to read.

    With `num_frames`: `num_frames` indices uniform over the clip, `round(linspace(0, n - 1, num_frames))`; a clip
    shorter than that repeats frames, so every video gives exactly `num_frames` (the model needs one T per batch).
    With `fps`: one frame every `video_fps / fps` frames over the whole clip; when that exceeds `max_frames`,
    `max_frames` uniform ones instead, so a long clip is covered end to end rather than cut off.
    """
    if total_frames < 1:
        raise ValueError(f"cannot sample from a video with {total_frames} frames")
    if fps is not None:
        if not video_fps or video_fps <= 0:
            raise ValueError(f"sampling at fps={fps} needs the video's frame rate; got video_fps={video_fps}")
        count = max(1, int(total_frames * fps / video_fps + 1e-6))  # frames at `fps` within the clip's duration
        if max_frames is None or count <= max_frames:
            return np.minimum(np.round(np.arange(count) * video_fps / fps), total_frames - 1).astype(np.int64)
        num_frames = max_frames
    if num_frames is None or num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r} is invalid; expected a positive integer (or pass fps)")
    return np.round(np.linspace(0, total_frames - 1, num_frames)).astype(np.int64)


class FoveatedVideoProcessor(VideoProcessorMixin):
    r"""
    Turns videos into `pixel_values_videos` `[B, T, 3, size, size]` for the foveated model.

    Accepts, per video: a file path, an http(s) URL (downloaded with a timeout and a size bound), raw `bytes`, a
    `numpy` array or `torch` tensor `[T, H, W, C]` or `[T, C, H, W]` (`uint8`, or float in [0, 1]; C = 1, 3 or 4),
    or a list of PIL images. Grayscale becomes RGB; alpha is dropped.

    Frames are centre-cropped to a square and then resized (`resize_mode="crop"`, the default) rather than squashed:
    the ViT was trained on undistorted images, and the reconstruction target is the frame itself, so a squashed
    16:9 frame would both move the features off the encoder's training distribution and teach the model to predict
    distorted frames. The price is the sides of wide videos; `resize_mode="squash"` keeps the whole field of view.
    Resizing is bilinear with antialiasing, so downscaling does not alias.

    Args:
        size (`int`, defaults to 256): side of the square output frames (the model config's `frame_size`).
        num_frames (`int`, defaults to 8): frames sampled uniformly over each clip.
        fps (`float`, *optional*): sample at this rate instead (capped by `max_frames`).
        max_frames (`int`, *optional*): most frames `fps` sampling may return.
        resize_mode (`str`, defaults to `"crop"`): `"crop"` (centre square, then resize) or `"squash"`.
        image_mean, image_std: normalisation for the vision encoder (ImageNet's, as DINOv2/DINOv3 use).
        url_timeout (`float`, defaults to 30): seconds before a URL download gives up.
        max_download_bytes (`int`, defaults to 1 GiB): largest video a URL may deliver.
    """

    size = 256
    num_frames = 8
    fps = None
    max_frames = None
    resize_mode = "crop"
    image_mean = IMAGENET_MEAN
    image_std = IMAGENET_STD
    url_timeout = 30.0
    max_download_bytes = 1 << 30
    valid_kwargs = FoveatedVideoProcessorKwargs
    model_input_names = ["pixel_values_videos"]

    def __init__(self, **kwargs):
        kwargs.pop("video_processor_type", None)  # written by `to_dict`; the class itself says it
        settings = {name: kwargs.pop(name, getattr(self, name)) for name in self.valid_kwargs.__annotations__}
        super().__init__(**kwargs)  # what is left is saved metadata such as `auto_map`
        # Every setting lives on the instance so that the saved config is complete, not relative to class defaults.
        for name, value in settings.items():
            setattr(self, name, value)
        self.image_mean, self.image_std = tuple(map(float, self.image_mean)), tuple(map(float, self.image_std))
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size={self.size!r} is invalid; expected a positive integer")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={self.resize_mode!r} is invalid; expected one of {RESIZE_MODES}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values; got {self.image_mean}, {self.image_std}")

    # -------------------------------------------------------------------------------------------- decoding
    def load_frames(
        self,
        video,
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        video_fps: float | None = None,
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Read the sampled frames of one video, decoding only those.

        Returns `(frames, indices, timestamps)`: frames `[T, 3, H, W]` (`uint8`, or float in [0, 1] for float
        arrays) at the source resolution, the frame indices `[T]` and their times in seconds `[T]`. Arrays and image
        lists carry no clock: their timestamps are `index / video_fps`, NaN when `video_fps` is not given.
        """
        sampling = self._sampling(num_frames, fps, max_frames)
        source = describe_source(video)
        if isinstance(video, (str, os.PathLike)) and str(video).startswith(("http://", "https://")):
            return self._decode(io.BytesIO(self.fetch_url(str(video))), source, sampling)
        if isinstance(video, (str, os.PathLike)):
            path = Path(video)
            if not path.is_file():
                raise VideoDecodeError(source, "no such file" if not path.exists() else "not a regular file")
            return self._decode(str(path), source, sampling)
        if isinstance(video, (bytes, bytearray)):
            return self._decode(io.BytesIO(bytes(video)), source, sampling)
        if isinstance(video, (list, tuple)) and video and all(isinstance(f, Image.Image) for f in video):
            indices = sample_frame_indices(len(video), video_fps=video_fps, **sampling)
            frames = [np.asarray(video[i].convert("RGB")) for i in indices]  # only the sampled images are converted
            if len({frame.shape for frame in frames}) > 1:
                raise VideoDecodeError(source, f"the images differ in size: {sorted({f.shape for f in frames})}")
            frames = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W]
            return frames, indices, self._clock(indices, video_fps)
        if isinstance(video, (np.ndarray, torch.Tensor)):
            frames = array_to_frames(video, source)  # [N, 3, H, W]
            indices = sample_frame_indices(frames.shape[0], video_fps=video_fps, **sampling)
            return frames[torch.from_numpy(indices)], indices, self._clock(indices, video_fps)
        raise VideoDecodeError(
            source, "unsupported input; expected a path, URL, bytes, an array/tensor [T, H, W, C] or a list of images"
        )

    def fetch_url(self, url: str) -> bytes:
        """Download a video, bounded in time (`url_timeout`) and size (`max_download_bytes`)."""
        try:
            with urllib.request.urlopen(url, timeout=self.url_timeout) as response:
                data = response.read(self.max_download_bytes + 1)
        except (urllib.error.URLError, OSError, ValueError) as error:  # HTTP errors, refusals and timeouts
            raise VideoDecodeError(describe_source(url), f"download failed: {error}") from error
        if len(data) > self.max_download_bytes:
            raise VideoDecodeError(describe_source(url), f"larger than max_download_bytes={self.max_download_bytes}")
        return data

    def _decode(self, data, source: str, sampling: dict):
        """Open with decord and read only the sampled frames; duplicates (short clips) are decoded once."""
        try:
            reader = decord.VideoReader(data, ctx=decord.cpu(0))
            total = len(reader)
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(source, f"not a readable video ({decord_reason(error)})") from error
        if total < 1:
            raise VideoDecodeError(source, "the video has no frames")
        indices = sample_frame_indices(total, video_fps=reader.get_avg_fps(), **sampling)
        unique, inverse = np.unique(indices, return_inverse=True)
        try:
            frames = reader.get_batch(unique.tolist()).asnumpy()  # [U, H, W, 3] uint8
            timestamps = reader.get_frame_timestamp(unique.tolist())[:, 0]  # start of each frame, seconds
        except (RuntimeError, IndexError, decord.DECORDError) as error:
            raise VideoDecodeError(
                source, f"decoding failed, the file may be truncated ({decord_reason(error)})"
            ) from error
        if frames.ndim != 4 or frames.shape[0] != len(unique) or frames.shape[-1] != 3:
            raise VideoDecodeError(
                source, f"the decoder returned frames of shape {frames.shape} for {len(unique)} frames"
            )
        frames = torch.from_numpy(frames[inverse]).permute(0, 3, 1, 2)  # [T, 3, H, W]
        return frames, indices, timestamps[inverse].astype(np.float64)

    def _sampling(self, num_frames, fps, max_frames) -> dict:
        """Call arguments over saved settings; an explicit `num_frames` or `fps` picks the sampling mode."""
        if num_frames is not None and fps is not None:
            raise ValueError("num_frames and fps are mutually exclusive; pass one of them")
        if num_frames is None and fps is None:
            num_frames, fps = (None, self.fps) if self.fps is not None else (self.num_frames, None)
        return {
            "num_frames": num_frames,
            "fps": fps,
            "max_frames": max_frames if max_frames is not None else self.max_frames,
        }

    @staticmethod
    def _clock(indices: np.ndarray, video_fps: float | None) -> np.ndarray:
        return indices / video_fps if video_fps else np.full(len(indices), np.nan)

    # ----------------------------------------------------------------------------------------- preprocessing
    def resize_frames(self, frames: torch.Tensor, size: int | None = None, resize_mode: str | None = None):
        """Frames `[T, 3, H, W]` (`uint8` or float in [0, 1]) -> float `[T, 3, size, size]` in [0, 1]."""
        size, resize_mode = size or self.size, resize_mode or self.resize_mode
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={resize_mode!r} is invalid; expected one of {RESIZE_MODES}")
        if resize_mode == "crop":  # crop before converting to float: less to convert and to resize
            height, width = frames.shape[-2:]
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            frames = frames[..., top : top + side, left : left + side]
        frames = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
        if frames.shape[-2:] != (size, size):
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return frames

    def normalize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1] `[..., 3, H, W]` -> normalised for the vision encoder."""
        mean = torch.tensor(self.image_mean, dtype=frames.dtype).view(3, 1, 1)
        std = torch.tensor(self.image_std, dtype=frames.dtype).view(3, 1, 1)
        return (frames - mean) / std

    def preprocess(
        self,
        videos,
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        size: int | None = None,
        resize_mode: str | None = None,
        video_fps: float | None = None,
        return_target_frames: bool = False,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Decode, sample, resize and normalise one video or a batch of videos.

        Returns a `BatchFeature` with `pixel_values_videos` `[B, T, 3, size, size]`, `frame_indices` `[B, T]` and
        `timestamps` `[B, T]` (seconds), and, with `return_target_frames=True`, `target_frames` `[B, T, 3, size,
        size]` in [-1, 1] (the input of the reconstruction targets, see `foveated_vlm.targets`). With
        `return_tensors=None` every field is a list with one entry per video instead, which allows `fps` sampling to
        give videos of different lengths.
        """
        pixel_values, target_frames, frame_indices, timestamps = [], [], [], []
        for video in make_video_list(videos):
            frames, indices, clock = self.load_frames(video, num_frames, fps, max_frames, video_fps)
            frames = self.resize_frames(frames, size, resize_mode)  # [T, 3, S, S] in [0, 1]
            pixel_values.append(self.normalize_frames(frames))
            if return_target_frames:
                target_frames.append(frames * 2 - 1)
            frame_indices.append(torch.from_numpy(indices))
            timestamps.append(torch.from_numpy(clock))

        data = {"pixel_values_videos": pixel_values, "frame_indices": frame_indices, "timestamps": timestamps}
        if return_target_frames:
            data["target_frames"] = target_frames
        if return_tensors is None:
            return BatchFeature(data)
        lengths = [len(indices) for indices in frame_indices]
        if len(set(lengths)) > 1:
            raise ValueError(
                f"the videos gave different frame counts {lengths}, which cannot be stacked into [B, T, ...]; "
                "sample with num_frames (one T for all) or pass return_tensors=None"
            )
        return BatchFeature({name: torch.stack(values) for name, values in data.items()}, tensor_type=return_tensors)


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
    if frames.dtype != torch.uint8:
        if not frames.is_floating_point():
            raise VideoDecodeError(source, f"dtype {frames.dtype} is not supported; expected uint8 or float in [0, 1]")
        if not torch.isfinite(frames).all() or frames.min() < 0 or frames.max() > 1:
            raise VideoDecodeError(source, "float frames must be finite and lie in [0, 1] (already normalised?)")
    channels = frames.shape[1]
    if channels == 1:  # grayscale
        return frames.expand(-1, 3, -1, -1)
    return frames[:, :3]  # RGB, or RGBA with its alpha dropped


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
