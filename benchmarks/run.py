"""The whole benchmark suite in one run on one machine: ratios that hold up when the machine's speed drifts.

Full-size shapes (DINOv3 ViT-S/16 at 256 px, SmolLM2-135M shape), random weights, median of repeated runs after
warm-up, interleaved where two things are compared. Measures:

- cache_overhead: `encode_patches` (patch states + cache) / plain vision forward, 8 frames, inference mode.
- query_speedup: `encode_patches(return_patch_states=False)` / `query`, 8 frames, K = 1. Each encoder figure is
  also measured, interleaved, with every linear on oneDNN's packed fp32 kernels (`precision="fp32-onednn"`), under
  `encoder_*["onednn"]`, with `patch_pass_speedup_onednn` (torch's patch pass / oneDNN's) and `query_ms_onednn`.
- query_ms_dinov2_s_224: one `query` (ms) at the nearest peer's own shape (fVLM: DINOv2-S/14 at 224 px, 8 frames,
  one query), with that shape's figures in `encoder_dinov2_s_224`. `--shape NAME` measures only the encoder at
  one shape of `encoder_cost.SHAPES` and prints that.
- two_pass_over_one_pass: training step (forward + backward) of both passes / of the coarse pass only.
- flops_utilisation: FLOP/s of the two-pass training step (FlopCounterMode) / FLOP/s of a 2048^2 fp32 matmul,
  timed interleaved with the step.
- training_floor_ratio: the foveated training step / the ViT's own forward + backward over the same T frames
  (`vit_alone`, a fresh process like the others): the floor no foveated step can go under, as every patch of
  every frame passes through the trained ViT once each way.
- step_speedup_vs_patch_tokens, memory_ratio_vs_patch_tokens: a LLaVA-style patch-token model built from the same
  ViT and LLM (`patch_baseline.py`) against the foveated model, batch 1; each (model, T) runs in a fresh spawned
  process that reports its median step time and its peak RSS increase during the steps (VmHWM, reset after the
  warm-up step, so gradient buffers already exist and the increase is the step's activations and temporaries).
  Reported in `step_time_vs_frames` for T in {4, 8, 16, 32} (--quick: {4, 8}); the ratios use T = 16 (--quick:
  T = 4, named by `patch_tokens_frames`).
- stream_overhead: one streaming push / its ViT encode of the frame; `stream_split_s` splits a push into encode,
  queries, language_model and predict. `stream_overhead_fp16` / `_int8` (and their splits): the same with
  `model.stream(precision=...)`, with `stream_max_deviation_from_fp32_*`, the largest gap of its queries and
  predictions from the fp32 stream's.
- sampled_decode_speedup: decoding all 900 frames of a 30 s clip / decoding the processor's 8 sampled frames, with
  a keyframe every 250 frames (libx264's default); `sampled_decode_speedup_gop60` with one every 2 s;
  `sampled_decode_speedup_keyframes` (and `_gop60_keyframes`) with `snap_to_keyframes=True`, which reads each
  sampled frame's nearest keyframe instead.

Each result also gets `<key>_goal` and `<key>_met`. Not a test: it reports.

    python benchmarks/run.py [--quick] [--json OUT.json]
    python benchmarks/run.py --shape dinov2-s-224 [--json OUT.json]      # the encoder alone at the peer's shape
"""

import argparse
import ctypes
import gc
import json
import multiprocessing
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from decode_sampling import FPS, decode_all, write_clip
from encoder_cost import SHAPES, encoder_costs
from patch_baseline import PatchTokenVLM
from stream_latency import stream_seconds
from timing import interleaved_medians, machine, report
from torch.utils.flop_counter import FlopCounterMode

from foveated_vlm import (
    FoveatedEncoder,
    FoveatedVideoProcessor,
    FoveatedVLMConfig,
    FoveatedVLMForConditionalGeneration,
)
from foveated_vlm.streaming_foveated import PRECISIONS

TEXT_TOKENS = 16  # prompt before the video and caption after it, in every training batch
MATMUL_SIZE = 2048
# key: (comparison, goal); "<=" means lower is better.
GOALS = {
    "cache_overhead": ("<=", 1.05),
    "query_speedup": (">=", 60.0),
    "two_pass_over_one_pass": ("<=", 1.30),
    "training_floor_ratio": ("<=", 1.30),
    "step_speedup_vs_patch_tokens": (">=", 12.0),
    "memory_ratio_vs_patch_tokens": (">=", 4.0),
    "stream_overhead": ("<=", 1.5),
    "stream_overhead_int8": ("<=", 1.5),
    "sampled_decode_speedup": (">=", 3.0),
    "sampled_decode_speedup_keyframes": (">=", 3.0),
    "flops_utilisation": (">=", 0.55),
}


# ------------------------------------------------------------------------------------------------ batches
def make_batch(config: FoveatedVLMConfig, frames: int, tokens_per_frame: int) -> dict:
    """One training example (B = 1): `[prompt, <video_start>, frame tokens, <video_end>, caption]`, random frames
    and targets; only the caption is labelled. `tokens_per_frame` is K (foveated) or the patch count (baseline)."""
    prompt, caption = torch.randint(0, 49152, (2, 1, TEXT_TOKENS))
    video = torch.tensor([[config.video_start_token_id] + [config.frame_token_id] * frames * tokens_per_frame])
    input_ids = torch.cat([prompt, video, torch.tensor([[config.video_end_token_id]]), caption], dim=1)  # [1, L]
    labels = torch.full_like(input_ids, -100)
    labels[:, -TEXT_TOKENS:] = caption
    size, target = config.frame_size, (config.target_channels, config.target_size, config.target_size)
    return {
        "input_ids": input_ids,
        "pixel_values_videos": torch.randn(1, frames, 3, size, size),  # [1, T, 3, H, W]
        "target_latents": torch.randn(1, frames, *target),  # [1, T, C, h, w]
        "labels": labels,
    }


def coarse_pass_loss(
    model: FoveatedVLMForConditionalGeneration, input_ids, pixel_values_videos, target_latents, labels
):
    """The first half of `FoveatedVLMModel.forward` and its losses: patch pass, static queries, one LM pass."""
    base, config = model.model, model.config
    video = base.video_layout(input_ids, pixel_values_videos)
    coarse = base.coarse_pass(video, base.encode_video(pixel_values_videos), use_cache=False)
    _, reconstruction, caption = model.pass_losses(coarse.last_hidden_state, coarse.plan_hidden, target_latents, labels)
    return config.reconstruction_loss_weight * reconstruction + config.caption_loss_weight * caption


def build(kind: str, frames: int, config: FoveatedVLMConfig | None = None):
    """A model in training mode and a closure running one training step (forward + backward) on its batch, at the
    full-size shapes unless `config` is given."""
    config = config or FoveatedVLMConfig()
    if kind == "patch_tokens":
        model = PatchTokenVLM(config).train()
        batch = make_batch(config, frames, model.patches_per_frame())
        return model, lambda: model(**batch).backward()
    if kind == "vit_alone":  # the trained ViT's own pass over every patch of the T frames, forward and backward
        vision = FoveatedEncoder(config).vision_model.train()  # the model's ViT, without the language model
        pixels = torch.randn(frames, 3, config.frame_size, config.frame_size)
        return vision, lambda: vision(pixel_values=pixels).last_hidden_state.square().mean().backward()
    model = FoveatedVLMForConditionalGeneration(config).train()
    batch = make_batch(config, frames, config.tokens_per_frame)
    return model, lambda: model(**batch).loss.backward()


# ------------------------------------------------------------------------------------- one step per process
def _memory_kib(field: str) -> int:
    """A `/proc/self/status` field in KiB (VmRSS: resident now, VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _step_worker(kind: str, frames: int, max_repeats: int, budget_s: float) -> dict:
    """Runs in a fresh process: warm-up step, reset the RSS peak, then timed steps (as many as fit the budget)."""
    torch.manual_seed(0)
    _, step = build(kind, frames)
    start = time.perf_counter()
    step()
    warmup_s = time.perf_counter() - start
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so VmRSS counts live memory only
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    resident = _memory_kib("VmRSS")
    times = []
    for _ in range(max(1, min(max_repeats, int(budget_s / warmup_s)))):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "step_s": statistics.median(times),
        "peak_rss_increase_mib": (_memory_kib("VmHWM") - resident) / 1024,
        "repeats": len(times),
    }


def step_in_fresh_process(kind: str, frames: int, max_repeats: int, budget_s: float) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_step_worker, (kind, frames, max_repeats, budget_s))


# ---------------------------------------------------------------------------------------------- measures
def encoder_figures(frames: int, repeats: int) -> dict:
    """cache_overhead and query_speedup at the default shape (K = 1, inference mode, `encoder_cost.py`), and the
    query at the peer's shape."""
    default = encoder_costs("dinov3-s-256", frames, tokens_per_frame=1, repeats=repeats)
    peer_shape = encoder_costs("dinov2-s-224", frames, tokens_per_frame=1, repeats=repeats)
    return {
        "cache_overhead": default["cache_overhead"],
        "query_speedup": default["query_speedup"],
        "query_ms": 1e3 * default["query_s"],
        "query_ms_dinov2_s_224": 1e3 * peer_shape["query_s"],
        "query_speedup_onednn": default["onednn"]["query_speedup"],
        "query_ms_onednn": 1e3 * default["onednn"]["query_s"],
        "query_ms_dinov2_s_224_onednn": 1e3 * peer_shape["onednn"]["query_s"],
        "patch_pass_speedup_onednn": default["encode_patches_cache_only_s"]
        / default["onednn"]["encode_patches_cache_only_s"],
        "encoder_dinov3_s_256": default,
        "encoder_dinov2_s_224": peer_shape,
    }


def training_costs(frames: int, repeats: int) -> dict:
    """Two passes against the coarse pass alone, and the step's FLOP/s against a matmul's, all interleaved."""
    torch.manual_seed(0)
    model, two_pass = build("foveated", frames)
    batch = make_batch(model.config, frames, model.config.tokens_per_frame)
    a, b = torch.randn(2, MATMUL_SIZE, MATMUL_SIZE)
    with FlopCounterMode(display=False) as counter:
        two_pass()
    step_flops = counter.get_total_flops()
    seconds = interleaved_medians(
        {
            "two_pass": two_pass,
            "coarse_only": lambda: coarse_pass_loss(model, **batch).backward(),
            "matmul": lambda: a @ b,
        },
        repeats,
    )
    step_flops_per_s = step_flops / seconds["two_pass"]
    matmul_flops_per_s = 2 * MATMUL_SIZE**3 / seconds["matmul"]
    return {
        "two_pass_over_one_pass": seconds["two_pass"] / seconds["coarse_only"],
        "flops_utilisation": step_flops_per_s / matmul_flops_per_s,
        "train_frames": frames,
        "train_step_s": seconds,
        "step_gflop": step_flops / 1e9,
        "step_gflops_per_s": step_flops_per_s / 1e9,
        "matmul_gflops_per_s": matmul_flops_per_s / 1e9,
    }


def stream_costs(model, frames: int, warmup: int) -> dict:
    """Median per-frame push time and its split at each stream precision, as `stream_latency.py` measures them
    (B = 1, 16-token prompt, the precisions' pushes interleaved). `stream_overhead` is fp32's (the exact default)."""
    measured = stream_seconds(model, frames, warmup, prompt_tokens=TEXT_TOKENS, precisions=PRECISIONS)
    results = {}
    for precision, figures in measured.items():
        suffix = precision_suffix(precision)
        results[f"stream_overhead{suffix}"] = figures["push"] / figures["parts"]["encode"]
        results[f"stream_split_s{suffix}"] = {**figures["parts"], "push": figures["push"]}
        if precision != "fp32":
            results[f"stream_max_deviation_from_fp32{suffix}"] = figures["max_deviation_from_fp32"]
    return results


def precision_suffix(precision: str) -> str:
    """The key suffix of a stream precision: none for fp32 (the names earlier runs reported), `_fp32_onednn`, ..."""
    return "" if precision == "fp32" else "_" + precision.replace("-", "_")


def decode_costs(repeats: int, seconds: int = 30) -> dict:
    """Decoding every frame of a 30 s clip against the processor decoding its 8 sampled frames (exact, and snapped
    to their nearest keyframes), for a keyframe every 250 frames (libx264's default; the headline) and every 2 s
    (60 frames, as streaming sites encode)."""
    processor = FoveatedVideoProcessor(num_frames=8)
    results, times = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        for gop in (250, 2 * FPS):
            path = Path(directory) / f"clip_gop{gop}.mp4"
            write_clip(path, seconds * FPS, gop)
            measured = interleaved_medians(
                {
                    "decode_all": partial(decode_all, path),
                    "sampled": partial(processor.load_frames, path),
                    "sampled_keyframes": partial(processor.load_frames, path, snap_to_keyframes=True),
                },
                repeats,
            )
            name = "sampled_decode_speedup" + ("" if gop == 250 else f"_gop{gop}")
            results[name] = measured["decode_all"] / measured["sampled"]
            results[name + "_keyframes"] = measured["decode_all"] / measured["sampled_keyframes"]
            times[f"gop{gop}"] = measured
    return {**results, "decode_s": times}


def frame_scaling(frame_counts: list[int], max_repeats: int, budget_s: float) -> dict:
    """Step time and peak RSS increase of both models and of the ViT alone at each T, one fresh process per
    (model, T)."""
    return {
        kind: {frames: step_in_fresh_process(kind, frames, max_repeats, budget_s) for frames in frame_counts}
        for kind in ("foveated", "patch_tokens", "vit_alone")
    }


# ----------------------------------------------------------------------------------------------- report
def add_goals(results: dict) -> None:
    for key, (comparison, goal) in GOALS.items():
        value = results[key]
        results[f"{key}_goal"] = goal
        results[f"{key}_met"] = bool(value <= goal if comparison == "<=" else value >= goal)


def print_table(results: dict) -> None:
    print(f"{'key':<30}  {'value':>9}  {'goal':>9}  met")
    for key, (comparison, goal) in GOALS.items():
        print(f"{key:<30}  {results[key]:>9.3f}  {comparison} {goal:>6.2f}  {results[key + '_met']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, T in {4, 8}: minutes on 2 cores")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="only the encoder's figures at this shape")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    repeats = 3 if args.quick else 7
    if args.shape:
        report({"machine": machine(), **encoder_costs(args.shape, 8, tokens_per_frame=1, repeats=repeats)}, args.json)
        return
    frame_counts = [4, 8] if args.quick else [4, 8, 16, 32]
    patch_tokens_frames = 4 if args.quick else 16  # the patch-token model at T = 16 takes minutes per step on CPU
    began = time.perf_counter()

    results = {"machine": machine(), "quick": args.quick}
    results.update(encoder_figures(frames=8, repeats=repeats))
    torch.manual_seed(0)
    model = FoveatedVLMForConditionalGeneration(FoveatedVLMConfig())
    results.update(stream_costs(model, frames=8 if args.quick else 16, warmup=2))
    del model
    results.update(training_costs(frames=8 if args.quick else 16, repeats=repeats))
    results.update(decode_costs(repeats=repeats))

    scaling = frame_scaling(frame_counts, max_repeats=repeats, budget_s=20 if args.quick else 60)
    foveated, patch_tokens = scaling["foveated"][patch_tokens_frames], scaling["patch_tokens"][patch_tokens_frames]
    results["training_floor_ratio"] = foveated["step_s"] / scaling["vit_alone"][patch_tokens_frames]["step_s"]
    results["step_speedup_vs_patch_tokens"] = patch_tokens["step_s"] / foveated["step_s"]
    results["memory_ratio_vs_patch_tokens"] = patch_tokens["peak_rss_increase_mib"] / foveated["peak_rss_increase_mib"]
    results["patch_tokens_frames"] = patch_tokens_frames
    results["step_time_vs_frames"] = scaling
    results["seconds_total"] = time.perf_counter() - began

    add_goals(results)
    print_table(results)
    splits = [f"stream_split_s{precision_suffix(precision)}" for precision in PRECISIONS]
    print(json.dumps({key: results[key] for key in ("step_time_vs_frames", *splits)}, indent=1))
    print(f"machine: {results['machine']}; took {results['seconds_total']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
