"""The full-size training step on a GPU: samples/s and peak memory, beside fVLM's published figure.

The `webvid-reconstruction` preset's shapes (DINOv3 ViT-S/16 at 256 px + SmolLM2-135M, 16 frames, SD-VAE latent
targets 4 x 32 x 32, batch 2), random weights (no download), SDPA attention, bf16 autocast over fp32 weights as
`Trainer(bf16=True)` runs it, fused AdamW; each step is forward + backward + optimizer step on a fresh random
batch, timed after warm-up steps with the device synchronised. fVLM (spsanps/nanoSmol) reports 46.5 samples/s for
its 135M model on one RTX 5090; its frames per sample and step are its own, so the two figures sit side by side,
not as a ratio. `benchmarks/gpu.sh` installs and runs this; without a GPU, `--device cpu --tiny` checks the path.

    python benchmarks/gpu_step.py [--device cuda] [--steps 20] [--warmup 3] [--batch 2] [--frames 16] [--json OUT]
"""

import argparse
import time

import torch
from run import make_batch
from timing import machine, report

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration

FVLM_SAMPLES_PER_S = 46.5  # fVLM's published training throughput, 135M, one RTX 5090


def random_batch(config: FoveatedVLMConfig, batch: int, frames: int, device) -> dict:
    rows = [make_batch(config, frames, config.tokens_per_frame) for _ in range(batch)]
    return {key: torch.cat([row[key] for row in rows]).to(device) for key in rows[0]}


def measure(
    config: FoveatedVLMConfig, device: str, dtype: torch.dtype, batch: int, frames: int, steps: int, warmup: int
):
    """Median-free throughput: total samples over total seconds of `steps` timed steps, after `warmup` steps."""
    torch.manual_seed(0)
    device = torch.device(device)
    model = FoveatedVLMForConditionalGeneration(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> float:
        inputs = random_batch(config, batch, frames, device)
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    synchronise()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    synchronise()
    seconds = time.perf_counter() - start
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else machine(),
        "dtype": str(dtype).removeprefix("torch."),
        "attention": config.text_config._attn_implementation,
        "batch": batch,
        "frames": frames,
        "steps": steps,
        "seconds_per_step": seconds / steps,
        "samples_per_s": batch * steps / seconds,
        "frames_per_s": batch * frames * steps / seconds,
        "final_loss": float(losses[-1]),
        "fvlm_published_samples_per_s": FVLM_SAMPLES_PER_S,
    }
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return results


def tiny_config() -> FoveatedVLMConfig:
    """A few-layer model of the same structure, for checking the path on a CPU."""
    return FoveatedVLMConfig(
        vision_config={"model_type": "dinov3_vit", "hidden_size": 32, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "intermediate_size": 64, "patch_size": 8, "image_size": 32},
        text_config={"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "intermediate_size": 128, "vocab_size": 49155},
        target_size=4, predictor_channels=16,
    )  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the same structure (path check)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or check the path with --device cpu --tiny")
    config = tiny_config() if args.tiny else FoveatedVLMConfig()
    config.text_config._attn_implementation = "sdpa"
    config.vision_config._attn_implementation = "sdpa"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    report(measure(config, args.device, dtype, args.batch, args.frames, args.steps, args.warmup), args.json)


if __name__ == "__main__":
    main()
