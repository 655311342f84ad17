"""Sampled decoding with PyAV: the second backend of `video_decoding`, used where decord fails.

decord (the default backend) raises `DECORDArrayCopyFromTo: The size must exactly match` for frames 1, 2, 3, 4, 6,
8, 12, 16, 24, 48 or 72 pixels wide, whatever the height, codec or pixel format (decord 0.6.0, measured over every
width up to 259: all others decode), and it cannot open some files that FFmpeg reads. `PyAVVideo` reads those with
the same results as decord where both work: the same frame count (one per video packet), frame rate, timestamps
(`pts * time_base`) and, for the same sampled indices, the same uint8 RGB frames: at full size equal to the bit for
H.264, VP8 and VP9, within 1 level for MPEG-4 Part 2 (decord bundles FFmpeg 4.1, PyAV FFmpeg 8, whose MPEG-4 IDCT
rounds differently); resized, equal for yuv444p and VP8, and close for H.264/MPEG-4 yuv420p (swscale 5 and 9 resample
the chroma differently: under 1 level on average on smooth content).

Only the sampled frames are decoded: the packets are demuxed once (no decoding) to number the frames in presentation
order and find the keyframes; then, for each wanted frame, the decoder seeks to the last keyframe before it unless
it already stands at or past that keyframe (decoding on then passes no more frames than seeking would).
"""

import io
from fractions import Fraction

import av
import numpy as np

__all__ = ["PyAVError", "PyAVVideo"]

# FFmpeg renders text files as "video" (the tty demuxer draws the characters): decord refuses those files, and so must
# the fallback, or a text file would give made-up frames.
TEXT_ART_CODECS = frozenset({"ansi", "bintext", "idf", "xbin"})


class PyAVError(Exception):
    """PyAV could not read the video; the message is the reason, without the source (the caller names it)."""


class PyAVVideo:
    """One video stream opened with PyAV: its frames in presentation order, decoded on request."""

    def __init__(self, data: str | io.BytesIO):
        if isinstance(data, io.BytesIO):
            data.seek(0)
        try:
            self.container = av.open(data, "r")
        except av.FFmpegError as error:
            raise PyAVError(f"not a readable video ({reason(error)})") from error
        try:
            if not self.container.streams.video:
                raise PyAVError("the file holds no video stream")
            self.stream = self.container.streams.video[0]
            codec = self.stream.codec_context.name
            if codec in TEXT_ART_CODECS:
                raise PyAVError(f"looks like text, not a video (FFmpeg would draw its characters as {codec} art)")
            self.pts, self.keyframes = self._frame_index()  # [N] sorted pts: frame i is the i-th shown; [K] indices
        except BaseException:
            self.container.close()
            raise
        self.rank = {pts: i for i, pts in enumerate(self.pts.tolist())}  # pts -> frame index

    def _frame_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Demux every packet (no decoding): one frame per packet, as decord counts them. Returns the frames' pts in
        presentation order `[N]` and the indices of the keyframes among them `[K]`."""
        times, keys = [], []
        try:
            for packet in self.container.demux(self.stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or stamp is None:  # the demuxer's closing empty packet
                    continue
                times.append(stamp)
                keys.append(packet.is_keyframe)
        except av.FFmpegError as error:
            raise PyAVError(f"reading the packets failed, the file may be truncated ({reason(error)})") from error
        order = np.argsort(times, kind="stable")
        return np.asarray(times, dtype=np.int64)[order], np.flatnonzero(np.asarray(keys, dtype=bool)[order])

    def __len__(self) -> int:
        return len(self.pts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.container.close()

    @property
    def average_fps(self) -> float | None:
        rate = self.stream.average_rate or self.stream.guessed_rate
        return float(rate) if rate else None

    @property
    def frame_size(self) -> tuple[int, int]:
        """`(height, width)` the stream's header gives; 0 where it does not say."""
        return self.stream.codec_context.height, self.stream.codec_context.width

    def timestamps(self, indices: np.ndarray) -> np.ndarray:
        """Start of each frame at `indices`, in seconds `[U]`."""
        time_base = self.stream.time_base or Fraction(1, 1)
        return self.pts[indices] * float(time_base)

    def read(self, indices: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Frames `[U, H, W, 3]` uint8 RGB at `indices` (sorted, distinct), converted straight to `shape`
        `(height, width)` when given, so no full-size RGB copy is made.
        """
        # Without a resize, swscale's defaults: decord's conversion to the bit. A resize is bilinear, as decord's:
        # equal to the bit from yuv444p; from yuv420p the chroma is resampled in one step where decord takes two.
        convert = {"format": "rgb24"}
        if shape is not None:
            convert.update(height=shape[0], width=shape[1], interpolation="BILINEAR")
        wanted, frames = set(indices.tolist()), {}
        position, decoded = -1, None  # position: index of the last frame decoded
        for index in indices.tolist():
            if index in frames:  # met on the way to an earlier wanted frame
                continue
            keyframe = self._keyframe_before(index)
            if decoded is None or position + 1 < keyframe:  # more frames to pass than from the keyframe: seek
                self.container.seek(int(self.pts[keyframe]), stream=self.stream, backward=True, any_frame=False)
                decoded = self.container.decode(self.stream)
            position = self._decode_until(decoded, index, wanted, frames, convert)
            if index not in frames:
                raise PyAVError(f"frame {index} could not be decoded, the file may be truncated")
        try:
            return np.stack([frames[index] for index in indices.tolist()])
        except ValueError as error:  # the frame size changes within the stream and no `shape` unified it
            sizes = sorted({frame.shape[:2] for frame in frames.values()})
            raise PyAVError(f"the frames differ in size (height, width): {sizes}") from error

    def _keyframe_before(self, index: int) -> int:
        """The last keyframe at or before frame `index` (frame 0 when none is marked)."""
        before = np.searchsorted(self.keyframes, index, side="right")
        return int(self.keyframes[before - 1]) if before else 0

    def _decode_until(self, decoded, index: int, wanted: set, frames: dict, convert: dict) -> int:
        """Decode up to frame `index`, keeping the wanted frames met on the way; returns the last index decoded."""
        position = -1
        try:
            for frame in decoded:
                position = self.rank.get(frame.pts, -1)  # -1: a frame the demuxer did not list (never wanted)
                if position in wanted and position not in frames:
                    frames[position] = frame.to_ndarray(**convert)  # [H, W, 3] uint8
                if position >= index:
                    break
        except av.FFmpegError as error:
            raise PyAVError(f"decoding failed, the file may be truncated ({reason(error)})") from error
        return position


def reason(error: Exception) -> str:
    """FFmpeg's message without PyAV's `[Errno N]` prefix and the file name it appends."""
    return getattr(error, "strerror", None) or str(error)
