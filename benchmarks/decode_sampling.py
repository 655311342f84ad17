"""What sampling saves: decoding every frame of a clip against decoding only the frames the model reads.

Writes (with PyAV) a 30 s 320x240 H.264 clip at 30 fps, 900 frames of moving content, to a temporary directory,
then times, median over repeated interleaved runs: decord decoding all 900 frames, `FoveatedVideoProcessor`'s
decoding of 8 uniformly sampled frames (`load_frames`, which seeks with `get_batch`), the same with
`snap_to_keyframes=True` (each sampled frame's nearest keyframe instead), and the processor's whole call (decode,
crop, resize to 256, normalise). The cost of seeking grows with the keyframe interval (`--gop`;
libx264's default is 250 frames, streaming sites use about 2 s). Not a test: it reports.

    python benchmarks/decode_sampling.py [--seconds 30] [--gop 250] [--frames 8] [--repeats 5] [--json OUT.json]
"""

import argparse
import platform
import tempfile
from pathlib import Path

import av
import decord
import numpy as np
from timing import interleaved_medians, report

from foveated_vlm import FoveatedVideoProcessor

WIDTH, HEIGHT, FPS = 320, 240, 30


def write_clip(path: Path, num_frames: int, gop: int) -> None:
    """A moving colour gradient with a bouncing square: content that changes every frame, as real video does."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(gop)}
        for t in range(num_frames):
            image = np.stack([(xs + 3 * t) % 256, (ys + 2 * t) % 256, (xs + ys + t) % 256], axis=-1).astype(np.uint8)
            x, y = (7 * t) % (WIDTH - 40), (5 * t) % (HEIGHT - 40)
            image[y : y + 40, x : x + 40] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def decode_all(path: Path, chunk: int = 64) -> int:
    """Every frame, in order, in chunks (sequential reads are decord's fast path)."""
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    total = len(reader)
    for start in range(0, total, chunk):
        reader.get_batch(list(range(start, min(start + chunk, total)))).asnumpy()
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval in frames")
    parser.add_argument("--frames", type=int, default=8, help="frames the processor samples")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    processor = FoveatedVideoProcessor(num_frames=args.frames)  # 256 px, as the model reads
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "clip.mp4"
        write_clip(path, args.seconds * FPS, args.gop)
        seconds = interleaved_medians(
            {
                "decode_all": lambda: decode_all(path),
                "sampled_decode": lambda: processor.load_frames(path),
                "keyframes_decode": lambda: processor.load_frames(path, snap_to_keyframes=True),
                "sampled_preprocess": lambda: processor(path),
            },
            args.repeats,
        )
        total_frames, size_bytes = decode_all(path), path.stat().st_size

    results = {
        "machine": f"{platform.machine()}, decord {decord.__version__}, PyAV {av.__version__}",
        "clip": f"{WIDTH}x{HEIGHT} H.264 at {FPS} fps, {args.seconds} s, keyframe every {args.gop} frames",
        "total_frames": total_frames,
        "sampled_frames": args.frames,
        "file_bytes": size_bytes,
        "decode_all_s": seconds["decode_all"],
        "sampled_decode_s": seconds["sampled_decode"],
        "sampled_preprocess_s": seconds["sampled_preprocess"],
        "keyframes_decode_s": seconds["keyframes_decode"],
        "speedup_decode": seconds["decode_all"] / seconds["sampled_decode"],
        "speedup_keyframes_decode": seconds["decode_all"] / seconds["keyframes_decode"],
        "speedup_preprocess": seconds["decode_all"] / seconds["sampled_preprocess"],
    }
    report(results, args.json)


if __name__ == "__main__":
    main()
