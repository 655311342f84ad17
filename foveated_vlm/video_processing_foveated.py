"""Video processor of the foveated VLM: sample, crop, resize and normalise the frames of a video.

Follows transformers' video processors (`video_processing_utils.py`, `models/smolvlm/video_processing_smolvlm.py`):
defaults are class attributes, the work sits in `VideoProcessorMixin`'s hooks (`sample_frames` picks the indices
from a `VideoMetadata`, `_decode_and_sample_videos` and `fetch_videos` decode only those frames, `_preprocess` crops,
resizes and normalises), `size` is `{"height": S, "width": S}`, `return_metadata=True` adds one `VideoMetadata` per
video, and the settings are saved inside `processor_config.json` (or on their own in `video_preprocessor_config.json`);
`AutoVideoProcessor` finds the class once `foveated_vlm` is imported (or, with `trust_remote_code=True`, from the code
saved beside the checkpoint). It subclasses the torchvision-free `VideoProcessorMixin` rather than
`BaseVideoProcessor`, which requires torchvision: decoding goes through decord, with PyAV where decord fails
(`video_decoding`, which reads only the sampled frames), resizing through `torch.nn.functional.interpolate`.

The work per video is bounded whatever the input: at most `max_frames` frames (`DEFAULT_MAX_FRAMES` unless set, with
either sampling mode), and frames are decoded straight to at most twice the output size on their shorter side (see
`video_decoding`). A bad setting or argument (`fps=0`, `num_frames=2.5`, `size=0`, a zero in `image_std`) is a
`ValueError` naming it and its value, raised before any video is read; a video that cannot be read is a
`VideoDecodeError`, which names the source and the reason.
"""

import math
import numbers
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BatchFeature
from transformers.video_processing_utils import VideoProcessorMixin
from transformers.video_utils import VideoMetadata

from .download import DownloadError, download
from .video_decoding import VideoDecodeError, describe_source, is_rate, is_single_video, read_video

__all__ = [
    "FoveatedVideoProcessor",
    "VideoDecodeError",
    "DEFAULT_MAX_FRAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "make_video_list",
    "sample_frame_indices",
]

# DINOv2 and DINOv3 (the supported vision encoders) were trained on ImageNet-normalised images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("crop", "squash")
# The most frames one video may give when `max_frames` is not set: `fps` sampling of a long clip or a large
# `num_frames` would otherwise allocate without bound (fps=1e6 asked for 25.7 GiB for a 3 s, 64x48 clip).
DEFAULT_MAX_FRAMES = 128


class FoveatedVideoProcessorKwargs(TypedDict, total=False):
    """The saved settings; `from_pretrained(..., num_frames=16)` may override any of them."""

    size: dict[str, int] | int  # {"height": S, "width": S}; an int S in configs saved before the dict
    num_frames: int | None
    fps: float | None
    max_frames: int | None
    resize_mode: str
    snap_to_keyframes: bool
    image_mean: Sequence[float]
    image_std: Sequence[float]
    url_timeout: float
    max_download_bytes: int


def make_video_list(videos) -> list:
    """One video or a batch of videos -> a flat list with one entry per video.

    One video is a path (`str`/`Path`), an http(s) URL, raw `bytes`, a 4-D array or tensor, or a list of PIL images
    (any list holding a PIL image is one, so a stray `None` among the images is named as such, not read as a batch);
    a 5-D array or tensor is a batch. Lists of per-sample lists (what `apply_chat_template(tokenize=True)` passes)
    are flattened in order.
    """
    if is_single_video(videos):
        return [videos]
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:  # [B, T, ...]
        return list(videos)
    if not isinstance(videos, (list, tuple)):  # anything else is one video, which the reader accepts or names
        return [videos]
    if len(videos) == 0:
        raise ValueError("videos is an empty list; pass at least one video")
    flat = []
    for video in videos:
        nested = isinstance(video, (list, tuple)) and not is_single_video(video)
        flat.extend(video if nested else [video])
    return flat


def sample_frame_indices(
    total_frames: int,
    num_frames: int | None = None,
    fps: float | None = None,
    video_fps: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Indices `[T]` of the frames to read, never more than `max_frames` (None: `DEFAULT_MAX_FRAMES`).

    With `num_frames`: `num_frames` indices uniform over the clip, `round(linspace(0, n - 1, num_frames))`; a clip
    shorter than that repeats frames, so every video gives exactly `num_frames` (the model needs one T per batch),
    and a `num_frames` above `max_frames` is an error rather than a silently shorter clip.
    With `fps`: one frame every `video_fps / fps` frames over the whole clip; when that exceeds `max_frames`,
    `max_frames` uniform ones instead, so a long clip is covered end to end rather than cut off.
    """
    num_frames, fps, max_frames = check_sampling(num_frames, fps, max_frames)
    if total_frames < 1:
        raise ValueError(f"cannot sample from a video with {total_frames} frames")
    if fps is not None:
        if not is_rate(video_fps):
            raise ValueError(f"sampling at fps={fps} needs the video's frame rate; got video_fps={video_fps!r}")
        # Frames at `fps` within the clip's duration, clamped before int() so that no rate can overflow it.
        count = max(1, int(min(total_frames * fps / video_fps + 1e-6, max_frames + 1)))
        if count <= max_frames:
            return np.minimum(np.round(np.arange(count) * video_fps / fps), total_frames - 1).astype(np.int64)
        num_frames = max_frames
    return np.round(np.linspace(0, total_frames - 1, num_frames)).astype(np.int64)


def check_sampling(num_frames, fps, max_frames) -> tuple[int | None, float | None, int]:
    """`(num_frames, fps, max_frames)` checked and as Python numbers; exactly one of `num_frames` and `fps` is set,
    and `max_frames` None is `DEFAULT_MAX_FRAMES`."""
    max_frames = DEFAULT_MAX_FRAMES if max_frames is None else positive_int("max_frames", max_frames)
    if num_frames is not None and fps is not None:
        raise ValueError("num_frames and fps are mutually exclusive; pass one of them")
    if fps is not None:
        if not is_rate(fps):
            raise ValueError(f"fps={fps!r} is invalid; expected a finite number of frames per second above 0")
        return None, float(fps), max_frames
    if num_frames is None:
        raise ValueError("num_frames=None is invalid; expected a positive integer (or pass fps)")
    num_frames = positive_int("num_frames", num_frames)
    if num_frames > max_frames:
        raise ValueError(
            f"num_frames={num_frames} is more than max_frames={max_frames}, the most frames one video may give; "
            "raise max_frames to sample more"
        )
    return num_frames, None, max_frames


def positive_int(name: str, value) -> int:
    """`value` as an `int`, or a `ValueError` naming `name` unless it is an integer >= 1 (`True` and 2.5 are not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected a positive integer")
    return int(value)


def square_side(size) -> int:
    """The side S of the square output frames from `size`: `{"height": S, "width": S}`, or an int S (configs saved
    before `size` was a dict); anything else, or a non-square size, is a `ValueError` naming the value."""
    if not isinstance(size, dict):
        return positive_int("size", size)
    if set(size) != {"height", "width"}:
        raise ValueError(f"size={size!r} is invalid; expected {{'height': S, 'width': S}} (or an int S)")
    height, width = size["height"], size["width"]
    if height != width:
        raise ValueError(
            f"size={size!r} is invalid; the model reads square frames, so height and width must be equal "
            "(the model config's frame_size)"
        )
    try:
        return positive_int("size", height)
    except ValueError:
        raise ValueError(f"size={size!r} is invalid; expected a positive integer side S") from None


def channel_values(name: str, values, positive: bool = False) -> tuple[float, float, float]:
    """Three finite numbers, one per RGB channel (above 0 with `positive`: `image_std` divides the pixels)."""
    try:
        checked = tuple(float(value) for value in values) if not isinstance(values, (str, bytes)) else ()
    except (TypeError, ValueError):
        checked = ()
    if len(checked) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in checked):
        expected = "3 finite numbers above 0" if positive else "3 finite numbers"
        raise ValueError(f"{name}={values!r} is invalid; expected {expected}, one per RGB channel")
    return checked


class FoveatedVideoProcessor(VideoProcessorMixin):
    r"""
    Turns videos into `pixel_values_videos` `[B, T, 3, S, S]` for the foveated model.

    Accepts, per video: a file path, an http(s) URL (an overall deadline and a size cap), raw `bytes`, a
    `numpy` array or `torch` tensor `[T, H, W, C]` or `[T, C, H, W]` (`uint8`, or float in [0, 1]; C = 1, 3 or 4),
    or a list of PIL images. Grayscale becomes RGB; alpha is dropped.

    Frames are centre-cropped to a square and then resized (`resize_mode="crop"`, the default) rather than squashed:
    the ViT was trained on undistorted images, and the reconstruction target is the frame itself, so a squashed
    16:9 frame would both move the features off the encoder's training distribution and teach the model to predict
    distorted frames. The price is the sides of wide videos; `resize_mode="squash"` keeps the whole field of view.
    Resizing is bilinear with antialiasing, so downscaling does not alias.

    Limits: a video gives at most `max_frames` frames (128 unless set), whichever the sampling, and frames whose
    shorter side is longer than `2 * S` are decoded straight to that (decord resizes as it decodes; arrays and
    images are downscaled before any float copy), keeping the aspect ratio: a 4000x4000 clip is never held at full
    size but for the one frame that tells decord's reader its size. Twice the output size keeps the crop and the
    antialiased resize as sharp as from the source.

    Args:
        size (`dict[str, int]`, defaults to `{"height": 256, "width": 256}`): the square output frames (the model
            config's `frame_size`); an int S means `{"height": S, "width": S}` (configs saved before the dict).
        num_frames (`int`, defaults to 8): frames sampled uniformly over each clip; at most `max_frames`.
        fps (`float`, *optional*): sample at this rate instead; a clip that would give more than `max_frames`
            frames gives `max_frames` uniform ones.
        max_frames (`int`, *optional*): most frames one video may give, with either sampling; `None` means
            `DEFAULT_MAX_FRAMES` (128), so there is always a cap.
        resize_mode (`str`, defaults to `"crop"`): `"crop"` (centre square, then resize) or `"squash"`.
        snap_to_keyframes (`bool`, defaults to False): move each sampled frame of a file to its nearest keyframe,
            so decoding it costs one frame, not a run from the keyframe before it (8 frames of a 30 s clip with
            libx264's 250-frame interval: 12.6x faster than decoding all 900 in `benchmarks/decode_sampling.py`,
            against 1.89x exact). Frames repeat where two samples share a keyframe; `frame_indices` and
            `timestamps` report the keyframes read.
        image_mean, image_std: normalisation for the vision encoder (ImageNet's, as DINOv2/DINOv3 use).
        url_timeout (`float`, defaults to 30): seconds a URL download may take in all (not per read).
        max_download_bytes (`int`, defaults to 1 GiB): largest video a URL may deliver.
    """

    size = {"height": 256, "width": 256}
    num_frames = 8
    fps = None
    max_frames = None
    resize_mode = "crop"
    snap_to_keyframes = False
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
        # Every setting is checked here, so a bad one fails when the processor is built, not at its first video.
        side, self.resize_mode = self._resize_settings(self.size, self.resize_mode)
        self.size = {"height": side, "width": side}
        self.image_mean = channel_values("image_mean", self.image_mean)
        self.image_std = channel_values("image_std", self.image_std, positive=True)
        self.snap_to_keyframes = self._snap_setting(None)
        if self.max_frames is not None:
            self.max_frames = positive_int("max_frames", self.max_frames)
        if self.num_frames is not None:
            self.num_frames = positive_int("num_frames", self.num_frames)
        if self.num_frames is not None or self.fps is not None:
            self._sampling(None, None, None)  # the saved mode as a whole: a valid fps, or num_frames within the cap

    @property
    def frame_size(self) -> int:
        """The side S of the square output frames (the model config's `frame_size`)."""
        return self.size["height"]

    def preprocess(
        self,
        videos,
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        size: dict[str, int] | int | None = None,
        resize_mode: str | None = None,
        video_fps: float | None = None,
        snap_to_keyframes: bool | None = None,
        return_target_frames: bool = False,
        return_metadata: bool | None = None,
        do_sample_frames: bool | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Decode, sample, resize and normalise one video or a batch of videos.

        Returns a `BatchFeature` with `pixel_values_videos` `[B, T, 3, S, S]`; with `return_target_frames=True` also
        `target_frames` `[B, T, 3, S, S]` in [-1, 1] (the input of the reconstruction targets, see
        `foveated_vlm.data.targets`); with `return_metadata=True` also `video_metadata` (one `VideoMetadata` per
        video: total frames, frame rate, duration, source size, backend, the sampled `frames_indices`),
        `frame_indices` `[B, T]` and `timestamps` `[B, T]` (seconds: the frames' own, `index / video_fps` for
        arrays and images, NaN when that is unknown). With `return_tensors=None` every field is a list with one
        entry per video instead, which allows `fps` sampling to give videos of different lengths.
        """
        # Not the mixin's `preprocess`, which runs these hooks too: it decodes before it checks the options (`size=0`
        # would fail after a download), hands the decode step no output size (4000 px frames would be decoded at full
        # size) and type-checks with huggingface_hub errors that are no `ValueError` naming the option.
        side, resize_mode = self._resize_settings(size, resize_mode)
        sampling = self._sampling(num_frames, fps, max_frames)
        video_fps = check_video_fps(video_fps)
        snap_to_keyframes = self._snap_setting(snap_to_keyframes)
        if do_sample_frames is False:
            raise ValueError(
                "do_sample_frames=False is invalid; the foveated processor always samples frames (set "
                "num_frames or fps instead)"
            )
        return_metadata = self.return_metadata if return_metadata is None else return_metadata
        frames, metadata, timestamps = self._decode_and_sample_videos(
            videos, partial(self.sample_frames, **sampling), video_fps, 2 * side, snap_to_keyframes
        )
        features = self._preprocess(frames, side, resize_mode, return_target_frames, return_tensors)
        if return_metadata:
            indices = [torch.tensor(video.frames_indices, dtype=torch.int64) for video in metadata]
            clocks = [torch.from_numpy(clock) for clock in timestamps]
            features.update(batch_feature({"frame_indices": indices, "timestamps": clocks}, return_tensors))
            features["video_metadata"] = metadata  # after the tensor conversion, as the mixin adds it
        return features

    # ------------------------------------------------------------------------------------- sampling (a hook)
    def sample_frames(
        self,
        metadata: VideoMetadata,
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames=None,
        **kwargs,
    ) -> np.ndarray:
        """Indices `[T]` of the frames to read from a video that `metadata` describes (`total_num_frames`, and `fps`
        for sampling at a rate): the call's `num_frames` / `fps` / `max_frames` over the saved settings, see
        `sample_frame_indices`. Other keywords (the mixin passes every call option) do not change the sampling."""
        sampling = self._sampling(num_frames, fps, max_frames)
        return sample_frame_indices(metadata.total_num_frames, video_fps=metadata.fps, **sampling)

    def _sampling(self, num_frames, fps, max_frames) -> dict:
        """Call arguments over saved settings, checked; an explicit `num_frames` or `fps` picks the sampling mode."""
        if num_frames is None and fps is None:
            num_frames, fps = (None, self.fps) if self.fps is not None else (self.num_frames, None)
        max_frames = self.max_frames if max_frames is None else max_frames  # and DEFAULT_MAX_FRAMES if both are None
        num_frames, fps, max_frames = check_sampling(num_frames, fps, max_frames)
        return {"num_frames": num_frames, "fps": fps, "max_frames": max_frames}

    def _snap_setting(self, snap_to_keyframes) -> bool:
        """The call's `snap_to_keyframes` over the saved setting, checked: a bool, not a truthy string."""
        value = self.snap_to_keyframes if snap_to_keyframes is None else snap_to_keyframes
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"snap_to_keyframes={value!r} is invalid; expected True or False")
        return bool(value)

    # ------------------------------------------------------------------------------------- decoding (hooks)
    def _decode_and_sample_videos(
        self,
        videos,
        sample_indices_fn: Callable,
        video_fps: float | None = None,
        max_size: int | None = None,
        snap_to_keyframes: bool | None = None,
    ) -> tuple[list[torch.Tensor], list[VideoMetadata], list[np.ndarray]]:
        """Read the sampled frames of every video: `(frames, metadata, timestamps)`, one entry per video, frames
        `[T, 3, H, W]` with the shorter side at most `max_size`. The mixin's version decodes whole files with
        torchcodec (not a dependency) and samples arrays itself; here one reader per video decodes only the
        frames `sample_indices_fn(metadata=...)` picks (or their nearest keyframes), straight to the bounded size."""
        snap = self._snap_setting(snap_to_keyframes)
        read = [
            read_video(video, sample_indices_fn, video_fps, max_size, self.fetch_url, snap)
            for video in make_video_list(videos)
        ]
        frames, metadata, timestamps = zip(*read, strict=True)
        return list(frames), list(metadata), list(timestamps)

    def fetch_videos(self, video_url_or_urls, sample_indices_fn: Callable | None = None):
        """The mixin's hook for videos given by URL (or path): `(frames [T, 3, H, W], VideoMetadata)`, or a list of
        frames and a list of metadata for a list, through this processor's download (an overall deadline, a size
        cap, http(s) only) and decoders, sampled by `sample_indices_fn` (the saved settings when None)."""
        sample_indices_fn = sample_indices_fn or self.sample_frames
        if isinstance(video_url_or_urls, list):
            frames, metadata, _ = self._decode_and_sample_videos(video_url_or_urls, sample_indices_fn)
            return frames, metadata
        snap = self.snap_to_keyframes
        frames, metadata, _ = read_video(video_url_or_urls, sample_indices_fn, None, None, self.fetch_url, snap)
        return frames, metadata

    def load_frames(
        self,
        video,
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        video_fps: float | None = None,
        max_size: int | None = None,
        snap_to_keyframes: bool | None = None,
    ):
        """Read the sampled frames of one video (at most `max_frames`), decoding only those (or, with
        `snap_to_keyframes`, their nearest keyframes; the saved setting when None).

        Returns `(frames, indices, timestamps)`: frames `[T, 3, H, W]` (`uint8`, or float in [0, 1] for float
        arrays) at the source resolution, or, with `max_size`, with the shorter side at most `max_size` (keeping the
        aspect ratio: a file is decoded straight to that size, arrays and images are downscaled before any float
        copy), the frame indices `[T]` and their times in seconds `[T]`. Arrays and image lists carry no clock: their
        timestamps are `index / video_fps`, NaN when `video_fps` is not given. A bad argument is a `ValueError` that
        names it, raised before the video is read.
        """
        sample = partial(self.sample_frames, **self._sampling(num_frames, fps, max_frames))
        video_fps = check_video_fps(video_fps)
        if max_size is not None:
            max_size = positive_int("max_size", max_size)
        snap = self._snap_setting(snap_to_keyframes)
        frames, metadata, timestamps = read_video(video, sample, video_fps, max_size, self.fetch_url, snap)
        return frames, np.asarray(metadata.frames_indices, dtype=np.int64), timestamps

    def fetch_url(self, url: str) -> bytes:
        """Download a video over http(s) within `url_timeout` seconds in all, however slowly the server sends, and
        at most `max_download_bytes`; other schemes (file://, ftp://, data:) and redirects to them are refused."""
        try:
            return download(url, timeout=self.url_timeout, max_bytes=self.max_download_bytes)
        except DownloadError as error:
            setting = {"timeout": "url_timeout", "too_large": "max_download_bytes"}.get(error.reason)
            bound = f"; {setting}={getattr(self, setting)}" if setting else ""
            reason = f"download failed: {error.reason} ({error.detail}{bound})"
            raise VideoDecodeError(describe_source(url), reason) from error

    # --------------------------------------------------------------------------------- preprocessing (a hook)
    def _preprocess(
        self, videos: list[torch.Tensor], size, resize_mode=None, return_target_frames=False, return_tensors="pt"
    ) -> BatchFeature:
        """Frames `[T, 3, H, W]` per video -> `pixel_values_videos` (and `target_frames`), see `preprocess`.

        Each video's frames are cropped, resized and normalised in one batched call. Unlike the mixin's grouping
        by shape, videos are not stacked across the batch first: a batch's sources rarely share a size, and
        stacking would copy every video once more."""
        pixel_values, target_frames = [], []
        for frames in videos:
            unit = self.resize_frames(frames, size, resize_mode)  # [T, 3, S, S] in [0, 1]
            pixel_values.append(self.normalize_frames(unit))
            if return_target_frames:
                target_frames.append(unit * 2 - 1)
        data = {"pixel_values_videos": pixel_values}
        if return_target_frames:
            data["target_frames"] = target_frames
        return batch_feature(data, return_tensors)

    def _resize_settings(self, size, resize_mode) -> tuple[int, str]:
        """`(S, resize_mode)` of a call, the saved settings where None, checked (0 is an error, not the default)."""
        side = square_side(self.size if size is None else size)
        resize_mode = self.resize_mode if resize_mode is None else resize_mode
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={resize_mode!r} is invalid; expected one of {RESIZE_MODES}")
        return side, resize_mode

    def resize_frames(self, frames: torch.Tensor, size=None, resize_mode: str | None = None):
        """Frames `[T, 3, H, W]` (`uint8` or float in [0, 1]) -> float `[T, 3, S, S]` in [0, 1]."""
        side, resize_mode = self._resize_settings(size, resize_mode)
        if resize_mode == "crop":  # crop before converting to float: less to convert and to resize
            height, width = frames.shape[-2:]
            short = min(height, width)
            top, left = (height - short) // 2, (width - short) // 2
            frames = frames[..., top : top + short, left : left + short]
        frames = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
        if frames.shape[-2:] != (side, side):
            frames = F.interpolate(frames, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return frames

    def normalize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1] `[..., 3, H, W]` -> normalised for the vision encoder."""
        mean = torch.tensor(self.image_mean, dtype=frames.dtype).view(3, 1, 1)
        std = torch.tensor(self.image_std, dtype=frames.dtype).view(3, 1, 1)
        return (frames - mean) / std


def batch_feature(data: dict[str, list], return_tensors: str | None) -> BatchFeature:
    """Per-video lists -> a `BatchFeature`: lists with `return_tensors=None`, else each stacked into `[B, T, ...]`
    (which needs one frame count for all the videos)."""
    if return_tensors is None:
        return BatchFeature(data)
    lengths = [len(values) for values in next(iter(data.values()))]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"the videos gave different frame counts {lengths}, which cannot be stacked into [B, T, ...]; "
            "sample with num_frames (one T for all) or pass return_tensors=None"
        )
    return BatchFeature({name: torch.stack(values) for name, values in data.items()}, tensor_type=return_tensors)


def check_video_fps(video_fps) -> float | None:
    """The frame rate of arrays and images, checked: None or a finite number above 0."""
    if video_fps is not None and not is_rate(video_fps):
        raise ValueError(f"video_fps={video_fps!r} is invalid; expected the frames' rate, a finite number above 0")
    return video_fps
