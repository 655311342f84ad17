"""How many clips per second each video source delivers, alone and through the collator into model batches.

Writes `--clips` small H.264 clips (320x180, 4 s at 25 fps, WebVid-like content that changes every frame) to a
temporary folder, then measures, in one process as a DataLoader with `num_workers=0` would run them:

* `synthetic`: the procedural source at the model's frame size (`--size`);
* `folder`: the local-folder source over those clips;
* `webvid`: the WebVid path, fetching the same clips by URL from a loopback HTTP server, with `concurrency` 1 and
  4 downloads in flight, with no added latency and with `--latency` seconds added per request (a remote CDN).
  One shard holds all the rows, as each of the 64 shards of the real metadata holds ~170k: downloads run ahead
  only within a shard, and 32 rows cut into 64 shards would leave nothing to run ahead of.

Each source yields `--frames` decoded frames per clip; "source" is the rate of the stream alone, "with collator"
adds `VideoTextCollator` (chat template, tokenising, crop/resize/normalise to `--size`, `pixels` targets) over
batches of `--batch`, with `--threads` torch threads (1, as in each DataLoader worker). Median of `--repeats`
passes. Not a test: it reports.

    python benchmarks/dataset_throughput.py [--clips 32] [--frames 8] [--size 256] [--latency 0.05] [--json OUT.json]
"""

import argparse
import csv
import itertools
import json
import platform
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from foveated_vlm import FoveatedVideoProcessor, FoveatedVLMProcessor, VideoTextCollator, build_target_encoder
from foveated_vlm.data.folder import folder_dataset
from foveated_vlm.data.synthetic import SyntheticVideoConfig, synthetic_dataset
from foveated_vlm.data.webvid import webvid_dataset

WIDTH, HEIGHT, FPS, SECONDS = 320, 180, 25, 4
WORDS = ["<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system", "Describe", "the", "video", "."]


def write_clip(path: Path, seed: int) -> None:
    """A drifting colour gradient with a moving square, so every frame differs as in real footage."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(2 * FPS)}  # a keyframe every 2 s, as streaming sites use
        for t in range(SECONDS * FPS):
            image = np.stack([(xs + 3 * t + seed) % 256, (ys + 2 * t) % 256, (xs + ys + t) % 256], -1).astype(np.uint8)
            x, y = (7 * t + seed) % (WIDTH - 30), (5 * t) % (HEIGHT - 30)
            image[y : y + 30, x : x + 30] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def serve(directory: Path, latency: float):
    """A loopback HTTP server for the files of `directory`, answering each request after `latency` seconds."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            time.sleep(latency)
            body = (directory / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def make_collator(size: int, num_frames: int) -> VideoTextCollator:
    """The collator with a word-level tokenizer: tokenising costs the same order as SmolLM2's, with no download."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    processor = FoveatedVLMProcessor(FoveatedVideoProcessor(size=size, num_frames=num_frames), tokenizer)
    return VideoTextCollator(processor, build_target_encoder("pixels", target_size=32))


def measure(make_dataset, clips: int, collator, batch: int, repeats: int) -> dict:
    """Median clips/s of the stream alone and of stream + collator, over `repeats` fresh passes."""
    source_s, collate_s = [], []
    collator(list(itertools.islice(make_dataset(), 1)))  # warm-up: first-call setup is not throughput
    for _ in range(repeats):
        start = time.perf_counter()
        samples = list(itertools.islice(make_dataset(), clips))
        source_s.append(time.perf_counter() - start)
        if len(samples) != clips:
            raise RuntimeError(f"the source gave {len(samples)} clips, expected {clips}")
        start = time.perf_counter()
        for first in range(0, clips, batch):
            collator(samples[first : first + batch])
        collate_s.append(time.perf_counter() - start)
    source, collate = statistics.median(source_s), statistics.median(collate_s)
    return {"source_clips_per_s": clips / source, "with_collator_clips_per_s": clips / (source + collate)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per clip")
    parser.add_argument("--size", type=int, default=256, help="the model's frame size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request in the slow runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; DataLoader workers use 1 each")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    collator = make_collator(args.size, args.frames)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for i in range(args.clips):
            write_clip(root / f"{i:03d}.mp4", seed=i)
        names = [f"{i:03d}.mp4" for i in range(args.clips)]
        with open(root / "annotations.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("video", "caption"), *((name, "the video .") for name in names)])
        synthetic = SyntheticVideoConfig(frame_size=args.size, num_frames=args.frames)
        sources = {
            "synthetic": lambda: synthetic_dataset(synthetic),
            "folder": lambda: folder_dataset(root, num_frames=args.frames),
        }
        servers = []
        for latency in (0.0, args.latency):
            httpd = serve(root, latency)
            servers.append(httpd)
            metadata = root / f"webvid_{len(servers)}.csv"
            with open(metadata, "w", newline="") as handle:
                rows = [(i, f"http://127.0.0.1:{httpd.server_address[1]}/{name}", "PT00H00M04S", "stock", "the video .")
                        for i, name in enumerate(names)]  # fmt: skip
                csv.writer(handle).writerows([("videoid", "contentUrl", "duration", "page_dir", "name"), *rows])
            for concurrency in (1, 4):
                sources[f"webvid +{latency * 1000:.0f} ms, concurrency {concurrency}"] = (
                    lambda metadata=metadata, concurrency=concurrency: webvid_dataset(
                        str(metadata), num_frames=args.frames, concurrency=concurrency, timeout=5.0, num_shards=1
                    )
                )
        rates = {name: measure(make, args.clips, collator, args.batch, args.repeats) for name, make in sources.items()}
        clip_bytes = (root / names[0]).stat().st_size
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()

    results = {
        "machine": f"{platform.machine()}, {platform.python_version()}, PyAV {av.__version__}",
        "clips": f"{args.clips} x {WIDTH}x{HEIGHT} H.264, {SECONDS} s at {FPS} fps, {clip_bytes} bytes each",
        "sampled_frames": args.frames,
        "frame_size": args.size,
        "batch": args.batch,
        "torch_threads": args.threads,
        "rates": rates,
    }
    print(
        f"{results['machine']}; {results['clips']}; {args.frames} frames to {args.size} px, batch {args.batch}, "
        f"{args.threads} torch thread(s)"
    )
    width = max(map(len, rates))
    print(f"{'source':<{width}}  {'source clips/s':>15}  {'with collator':>14}")
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate['source_clips_per_s']:>15.1f}  {rate['with_collator_clips_per_s']:>14.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
