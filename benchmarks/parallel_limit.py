"""The parallel forward's limit in T: the longest clip one training step (forward + backward, activation
checkpointing on) fits in a memory budget, and where that memory goes.

Full-size shapes (DINOv3 ViT-S/16 at 256 px, SmolLM2-135M; random weights), batch 1 as `run.py` builds it (16 prompt
tokens, T frames, `<video_end>`, a 16-token labelled caption, targets). For T = --start, 2 --start, ... each step runs
in a fresh spawned process (as `run.py`'s frame scaling does), which reports:

- peak_rss_gib: the process's peak resident memory (VmHWM, reset after building the model) during the step: what the
  machine must hold to train (weights, gradients, activations; an AdamW step would add its two fp32 states,
  2 x weights);
- step_increase_gib: that peak over the resident memory just before the step (the gradients are allocated in it);
- weights_gib / gradients_gib: the parameters' and their gradients' bytes;
- vision_kv_gib: the cached keys/values of all frames, layers x 2 x (T x B) x tokens x width x 4 bytes (12 x 2 x T x
  261 x 384 x 4 = 9.6 MB per frame): both query passes read them, so the backward needs them whole, checkpointing
  or not; vision_boundaries_gib: the ViT's hidden states at the checkpointed layers' inputs (layers - 1 of them);
- saved_for_backward_gib: what autograd saved for the backward, weights excepted (measured with
  `saved_tensors_hooks`, each storage once): the cached keys/values, the checkpointed layers' inputs and what the
  uncheckpointed parts keep (the query passes, the last ViT layer, the prediction head's 32 x 32 feature maps:
  ~10 MB per frame over both passes, as much as the cached keys/values). The backward adds the gradients of all
  cached keys/values (the query passes' backward ends before the patch pass's begins) and one recomputed layer;
- step_s: the step's seconds.

The series stops at the first T whose peak, extrapolated linearly from the last two measured T, would pass
`--budget_gb` (default 8: what a shared 24 GB machine survives; `--budget_gb 24` for the issue's question), and
reports the largest T measured within the budget and `predicted_max_frames`, the T at which that line meets the
budget. Not a test: it reports.

    python benchmarks/parallel_limit.py [--budget_gb 8] [--start 8] [--max_frames 4096] [--json OUT.json]
"""

import argparse
import ctypes
import gc
import multiprocessing
import time
from pathlib import Path

import torch
from run import _memory_kib, make_batch
from timing import machine, report

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration

GIB = 2**30


def vision_figures(config, frames: int) -> dict:
    """Bytes the ViT's patch pass keeps for the backward over `frames` frames (B = 1), from the config's shapes."""
    vision = config.vision_config
    tokens = 1 + (getattr(vision, "num_register_tokens", 0) or 0) + (config.frame_size // config.patch_size) ** 2
    per_layer = frames * tokens * vision.hidden_size * 4  # one [T, S, D] fp32 tensor
    return {
        "vision_tokens_per_frame": tokens,
        "vision_kv_gib": vision.num_hidden_layers * 2 * per_layer / GIB,
        "vision_boundaries_gib": (vision.num_hidden_layers - 1) * per_layer / GIB,
    }


def _limit_worker(frames: int, tokens_per_frame: int) -> dict:
    """Runs in a fresh process: build, reset the RSS peak's baseline, one checkpointed training step, measure."""
    torch.manual_seed(0)
    config = FoveatedVLMConfig(tokens_per_frame=tokens_per_frame)
    model = FoveatedVLMForConditionalGeneration(config).train()
    model.activation_checkpointing_enable()  # every ViT and language-model layer (the non-reentrant default)
    batch = make_batch(config, frames, tokens_per_frame)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so VmRSS counts live memory only
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the step's peak, not the model building's
    before_step = _memory_kib("VmRSS")
    weights = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    saved = {}

    def pack(tensor):  # the weights a layer saves for its input's gradient are there anyway: not counted
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**batch).loss
    loss.backward()
    step_s = time.perf_counter() - start
    gradients = sum(parameter.grad.nbytes for parameter in model.parameters() if parameter.grad is not None)
    return {
        "frames": frames,
        "step_s": step_s,
        "peak_rss_gib": _memory_kib("VmHWM") / 2**20,
        "step_increase_gib": (_memory_kib("VmHWM") - before_step) / 2**20,
        "weights_gib": sum(parameter.nbytes for parameter in model.parameters()) / GIB,
        "gradients_gib": gradients / GIB,
        "saved_for_backward_gib": sum(saved.values()) / GIB,
        **vision_figures(config, frames),
    }


def step_in_fresh_process(frames: int, tokens_per_frame: int) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_limit_worker, (frames, tokens_per_frame))


def predicted_peak(points: list[dict], frames: int) -> float:
    """The peak at `frames` on the line through the last two measured points."""
    (t0, p0), (t1, p1) = [(point["frames"], point["peak_rss_gib"]) for point in points[-2:]]
    return p1 + (p1 - p0) / (t1 - t0) * (frames - t1)


def frames_at_budget(points: list[dict], budget_gib: float) -> int:
    """Where the line through the last two measured points reaches the budget."""
    (t0, p0), (t1, p1) = [(point["frames"], point["peak_rss_gib"]) for point in points[-2:]]
    slope = (p1 - p0) / (t1 - t0)
    return int(t1 + (budget_gib - p1) / slope) if slope > 0 else -1


def parallel_limit(budget_gib: float, start: int, max_frames: int, tokens_per_frame: int) -> dict:
    points, stopped = [], f"reached --max_frames {max_frames}"
    frames = start
    while frames <= max_frames:
        if len(points) >= 2 and predicted_peak(points, frames) > budget_gib:
            stopped = f"T = {frames} not run: predicted peak {predicted_peak(points, frames):.2f} GiB > budget"
            break
        point = step_in_fresh_process(frames, tokens_per_frame)
        print(
            f"T = {frames}: peak {point['peak_rss_gib']:.2f} GiB, step +{point['step_increase_gib']:.2f} GiB, "
            f"vision K/V {point['vision_kv_gib']:.2f} GiB, {point['step_s']:.1f} s",
            flush=True,
        )
        points.append(point)
        if point["peak_rss_gib"] > budget_gib:
            stopped = f"T = {frames} passed the budget: peak {point['peak_rss_gib']:.2f} GiB"
            break
        frames *= 2
    within = [point["frames"] for point in points if point["peak_rss_gib"] <= budget_gib]
    results = {
        "budget_gib": budget_gib,
        "largest_frames_within_budget": max(within) if within else None,
        "predicted_max_frames": frames_at_budget(points, budget_gib) if len(points) >= 2 else None,
        "stopped": stopped,
        "points": points,
    }
    if len(points) >= 2:  # what each extra frame costs, and how much of it is the cached K/V
        (first, last), span = points[-2:], points[-1]["frames"] - points[-2]["frames"]
        per_frame = (last["peak_rss_gib"] - first["peak_rss_gib"]) / span
        kv_per_frame = (last["vision_kv_gib"] - first["vision_kv_gib"]) / span
        results["peak_mib_per_frame"] = per_frame * 1024
        saved = last["saved_for_backward_gib"] - first["saved_for_backward_gib"]
        results["saved_for_backward_mib_per_frame"] = saved / span * 1024
        results["vision_kv_mib_per_frame"] = kv_per_frame * 1024
        results["vision_kv_share_of_growth"] = kv_per_frame / per_frame
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget_gb", type=float, default=8.0, help="GiB of peak RSS a step may reach")
    parser.add_argument("--start", type=int, default=8, help="the first T; each next one doubles it")
    parser.add_argument("--max_frames", type=int, default=4096)
    parser.add_argument("--tokens_per_frame", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    began = time.perf_counter()
    measured = parallel_limit(args.budget_gb, args.start, args.max_frames, args.tokens_per_frame)
    results = {"machine": machine(), **measured}
    results["seconds_total"] = time.perf_counter() - began
    report(results, args.json)


if __name__ == "__main__":
    main()
