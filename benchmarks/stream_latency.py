"""Per-frame latency of streaming inference at full size, split into encode / queries / language model / predict.

DINOv3 ViT-S/16 at 256 px + SmolLM2-135M shapes (random weights), one stream (B = 1), a 16-token prompt, K = 1.
Reports the median per-frame time of each part over the pushed frames after warm-up, and the ratio of a whole
push to the ViT encode of one frame. Not a test: it reports.

    python benchmarks/stream_latency.py [--frames 16] [--json OUT.json]
"""

import argparse
import statistics
import time

import torch
from timing import machine, report

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration


def stream_seconds(model, frames: int, warmup: int, prompt_tokens: int = 16) -> tuple[dict, float]:
    """Median seconds per pushed frame, split into the stream's parts, and of the whole push (B = 1, a random
    text prompt, random frames and targets, after `warmup` pushes)."""
    config = model.config
    size, target = config.frame_size, (1, config.target_channels, config.target_size, config.target_size)
    with torch.inference_mode():
        stream = model.eval().stream(input_ids=torch.randint(0, config.video_start_token_id, (1, prompt_tokens)))
        for _ in range(warmup):
            stream.push(torch.randn(1, 3, size, size), torch.randn(target))
        steps, totals = [], []
        for _ in range(frames):
            frame, latent = torch.randn(1, 3, size, size), torch.randn(target)
            start = time.perf_counter()
            steps.append(stream.push(frame, latent).timings)
            totals.append(time.perf_counter() - start)
    return {name: statistics.median(step[name] for step in steps) for name in steps[0]}, statistics.median(totals)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tokens-per-frame", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = FoveatedVLMConfig(tokens_per_frame=args.tokens_per_frame)
    model = FoveatedVLMForConditionalGeneration(config).eval()
    parts, push = stream_seconds(model, args.frames, args.warmup)
    results = {
        "machine": machine(),
        "frames": args.frames,
        "tokens_per_frame": args.tokens_per_frame,
        **{f"{name}_s": seconds for name, seconds in parts.items()},
        "push_s": push,
        "frames_per_second": 1.0 / push,
        "stream_overhead": push / parts["encode"],
    }
    report(results, args.json)


if __name__ == "__main__":
    main()
