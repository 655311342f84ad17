"""How long a stream over a big annotation file takes to give its first sample, and how much memory it takes.

Writes one small clip and annotation files of `--records` records that all name it: a JSONL for the folder source,
and a JSON list (the Hub's layout) for the LLaVA-Video source, read from an extracted folder (`video_root`) and from
a `.tar.gz` shard (`shards`). Each case runs in a fresh Python process, so its peak RSS is its own: it builds the
stream and takes the first sample, and reports the seconds that took and the peak RSS above the process's footprint
after its imports. Not a test: it reports.

    python benchmarks/annotation_startup.py [--records 300000] [--json OUT.json]
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import av
import numpy as np

CASES = ("folder", "llava_video video_root", "llava_video shards")
CAPTION = "A person walks along a beach at sunset while waves roll in and a dog runs ahead of them. " * 2


def write_clip(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(8):
            image = np.full((48, 64, 3), 20 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def write_corpus(root: Path, records: int) -> None:
    """The clip, `annotations.jsonl` (folder), `llava.json` (a JSON list) and `shard.tar.gz` holding the clip."""
    write_clip(root / "clip.mp4")
    with open(root / "annotations.jsonl", "w") as handle:
        for i in range(records):
            handle.write(json.dumps({"video": "clip.mp4", "caption": f"{i}: {CAPTION}"}) + "\n")
    conversation = [{"from": "human", "value": "<image>\nDescribe the video."}, {"from": "gpt", "value": CAPTION}]
    with open(root / "llava.json", "w") as handle:
        json.dump([{"id": str(i), "video": "clip.mp4", "conversations": conversation} for i in range(records)], handle)
    with tarfile.open(root / "shard.tar.gz", "w:gz") as tar:
        tar.add(root / "clip.mp4", arcname="clip.mp4")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(case: str, root: Path) -> dict:
    """Build the stream of `case` over the corpus in `root` and take its first sample, in this process."""
    from foveated_vlm.data.folder import folder_dataset
    from foveated_vlm.data.llava_video import llava_video_dataset

    baseline = peak_rss_mb()
    start = time.perf_counter()
    if case == "folder":
        dataset = folder_dataset(root, root / "annotations.jsonl", num_frames=4)
    elif case == "llava_video video_root":
        dataset = llava_video_dataset(root / "llava.json", video_root=root, num_frames=4)
    else:
        dataset = llava_video_dataset(root / "llava.json", shards=[root / "shard.tar.gz"], num_frames=4)
    built = time.perf_counter() - start
    sample = next(iter(dataset))
    assert sample["frames"].shape[0] == 4
    return {"build_s": built, "first_sample_s": time.perf_counter() - start, "added_rss_mb": peak_rss_mb() - baseline}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.root))))
        return

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_corpus(root, args.records)
        sizes = {name: (root / name).stat().st_size for name in ("annotations.jsonl", "llava.json")}
        results = {}
        for case in CASES:
            command = [sys.executable, __file__, "--child", case, "--root", str(root)]
            finished = subprocess.run(command, capture_output=True, text=True, check=True)
            results[case] = json.loads(finished.stdout.strip().splitlines()[-1])
            built, first, added = (results[case][key] for key in ("build_s", "first_sample_s", "added_rss_mb"))
            print(f"{case:24s} built in {built:6.2f} s, first sample at {first:6.2f} s, +{added:7.1f} MB peak RSS")
    report = {"machine": f"{platform.machine()}, {platform.python_version()}", "records": args.records,
              "annotation_bytes": sizes, "cases": results}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
