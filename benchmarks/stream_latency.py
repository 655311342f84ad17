"""Per-frame latency of streaming inference at full size, split into encode / queries / language model / predict,
at each inference precision of `model.stream(precision=...)`.

DINOv3 ViT-S/16 at 256 px + SmolLM2-135M shapes (random weights), one stream (B = 1), a 16-token prompt, K = 1.
One stream per precision reads the same frames, pushed in alternating order so that machine drift hits every
precision alike. Reports, per precision, the median per-frame time of each part over the pushed frames after
warm-up, the median whole push, its ratio to the same push's ViT encode (`stream_overhead`), and for non-fp32
precisions the largest deviation of its queries and predictions from the fp32 stream's. Not a test: it reports.

    python benchmarks/stream_latency.py [--frames 16] [--precisions fp32 int8] [--json OUT.json]
"""

import argparse
import statistics
import time

import torch
from timing import machine, report

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration
from foveated_vlm.streaming_foveated import PRECISIONS


def stream_seconds(model, frames: int, warmup: int, prompt_tokens: int = 16, precisions=("fp32",)) -> dict:
    """Per precision: median seconds per pushed frame of each part of the stream and of the whole push, and (for
    precisions other than fp32) the largest |query| and |prediction| deviation from the fp32 stream. B = 1, a
    random text prompt, random frames and targets, after `warmup` pushes of each stream."""
    config = model.config
    size, target = config.frame_size, (1, config.target_channels, config.target_size, config.target_size)
    prompt = torch.randint(0, config.video_start_token_id, (1, prompt_tokens))
    results = {}
    with torch.inference_mode():
        streams = {precision: model.eval().stream(input_ids=prompt, precision=precision) for precision in precisions}
        steps = {precision: [] for precision in precisions}
        totals = {precision: [] for precision in precisions}
        deviation = {precision: 0.0 for precision in precisions}
        for index in range(warmup + frames):
            frame, latent = torch.randn(1, 3, size, size), torch.randn(target)
            order = precisions if index % 2 else precisions[::-1]  # alternate who goes first
            outputs = {}
            for precision in order:
                start = time.perf_counter()
                outputs[precision] = streams[precision].push(frame, latent)
                seconds = time.perf_counter() - start
                if index >= warmup:
                    steps[precision].append(outputs[precision].timings)
                    totals[precision].append(seconds)
            if "fp32" in outputs:
                exact = outputs["fp32"]
                for precision, step in outputs.items():
                    gap = max(
                        (step.next_query - exact.next_query).abs().max().item(),
                        (step.predicted_latent - exact.predicted_latent).abs().max().item(),
                    )
                    deviation[precision] = max(deviation[precision], gap)
        for precision in precisions:
            parts = {name: statistics.median(step[name] for step in steps[precision]) for name in steps[precision][0]}
            push = statistics.median(totals[precision])
            results[precision] = {"parts": parts, "push": push, "max_deviation_from_fp32": deviation[precision]}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tokens-per-frame", type=int, default=1)
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = FoveatedVLMConfig(tokens_per_frame=args.tokens_per_frame)
    model = FoveatedVLMForConditionalGeneration(config).eval()
    measured = stream_seconds(model, args.frames, args.warmup, precisions=tuple(args.precisions))
    results = {"machine": machine(), "frames": args.frames, "tokens_per_frame": args.tokens_per_frame}
    for precision, figures in measured.items():
        prefix = "" if precision == "fp32" else f"{precision}_"  # fp32 keeps the names earlier runs reported
        results.update({f"{prefix}{name}_s": seconds for name, seconds in figures["parts"].items()})
        results[f"{prefix}push_s"] = figures["push"]
        results[f"{prefix}frames_per_second"] = 1.0 / figures["push"]
        results[f"{prefix}stream_overhead"] = figures["push"] / figures["parts"]["encode"]
        if precision != "fp32" and "fp32" in measured:
            results[f"{prefix}max_deviation_from_fp32"] = figures["max_deviation_from_fp32"]
            results[f"{prefix}overhead_vs_fp32_encode"] = figures["push"] / measured["fp32"]["parts"]["encode"]
    report(results, args.json)


if __name__ == "__main__":
    main()
