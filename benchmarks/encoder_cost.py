"""What the foveated encoder costs: the patch pass against the plain vision forward, a query against the patch pass.

Full-size shapes, random weights, inference mode, median of interleaved runs after warm-up. `--shape` picks the
vision model: `dinov3-s-256` (DINOv3 ViT-S/16 at 256 px, the default model) or `dinov2-s-224` (DINOv2-S/14 at
224 px, the shape the nearest peer, fVLM, reports its encoder on). Each figure is measured twice, interleaved: with
torch's own fp32 linears (MKL here) and with the same weights on oneDNN's packed kernels (`use_onednn_linears`, what
`precision="fp32-onednn"` runs), the latter under `onednn`. Prints a table and optionally writes JSON.
Not a test: it reports.

    python benchmarks/encoder_cost.py [--shape dinov3-s-256|dinov2-s-224] [--frames 8] [--repeats 7] [--json OUT]
"""

import argparse
import copy
from functools import partial

import torch
from timing import interleaved_medians, machine, report

from foveated_vlm import FoveatedVLMConfig
from foveated_vlm.encoder_foveated import FoveatedEncoder
from foveated_vlm.inference_precision import use_onednn_linears

# name: FoveatedVLMConfig overrides. Both are ViT-S (384 wide, 12 layers, 6 heads, MLP 1536).
SHAPES = {
    "dinov3-s-256": {},
    "dinov2-s-224": {
        "vision_config": {
            "model_type": "dinov2",
            "hidden_size": 384,
            "num_hidden_layers": 12,
            "num_attention_heads": 6,
            "patch_size": 14,
            "image_size": 224,
        },
        "target_size": 28,  # 224 px / 8
    },
}


def shape_config(shape: str, **overrides) -> FoveatedVLMConfig:
    if shape not in SHAPES:
        raise ValueError(f"shape={shape!r} is not a benchmark shape; expected one of {sorted(SHAPES)}")
    return FoveatedVLMConfig(**SHAPES[shape], **overrides)


def encoder_seconds(encoders: dict, frames: torch.Tensor, queries: torch.Tensor, repeats: int) -> dict:
    """Per encoder (name: `FoveatedEncoder`), interleaved medians (s) of the plain ViT forward, `encode_patches` with
    and without the patch states, and one `query` over the same frames `[N, 3, H, W]` with `queries`
    `[N, K, query_dim]`, in inference mode: `{name: {"plain", "patches", "cache_only", "query"}}`."""
    runs = {}
    with torch.inference_mode():
        for name, encoder in encoders.items():
            _, cache = encoder.encode_patches(frames, return_patch_states=False)
            runs[f"{name}/plain"] = partial(encoder.vision_model, frames)
            runs[f"{name}/patches"] = partial(encoder.encode_patches, frames)
            runs[f"{name}/cache_only"] = partial(encoder.encode_patches, frames, return_patch_states=False)
            runs[f"{name}/query"] = partial(encoder.query, queries, cache)
        seconds = interleaved_medians(runs, repeats)
    return {
        name: {key.split("/")[1]: value for key, value in seconds.items() if key.startswith(f"{name}/")}
        for name in encoders
    }


def ratios(seconds: dict) -> dict:
    plain, patches, cache_only, query = (seconds[k] for k in ("plain", "patches", "cache_only", "query"))
    return {
        "plain_vision_forward_s": plain,
        "encode_patches_s": patches,
        "encode_patches_cache_only_s": cache_only,
        "query_s": query,
        "cache_overhead": patches / plain,
        "cache_only_overhead": cache_only / plain,
        "query_speedup": cache_only / query,
    }


def encoder_costs(shape: str, frames: int, tokens_per_frame: int, repeats: int) -> dict:
    """The encoder's figures at `shape` (a fresh encoder, seed 0): times (s) and the ratios benchmarks/run.py reads,
    with torch's linears at the top level and oneDNN's under `onednn`."""
    torch.manual_seed(0)
    config = shape_config(shape, tokens_per_frame=tokens_per_frame)
    encoder = FoveatedEncoder(config).eval()
    onednn = use_onednn_linears(copy.deepcopy(encoder))
    pixels = torch.randn(frames, 3, config.frame_size, config.frame_size)
    queries = torch.randn(frames, tokens_per_frame, config.query_dim)
    seconds = encoder_seconds({"torch": encoder, "onednn": onednn}, pixels, queries, repeats)
    return {
        "shape": shape,
        "frames": frames,
        "tokens_per_frame": tokens_per_frame,
        **ratios(seconds["torch"]),
        "onednn": ratios(seconds["onednn"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="dinov3-s-256")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--tokens-per-frame", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {"machine": machine(), **encoder_costs(args.shape, args.frames, args.tokens_per_frame, args.repeats)}
    report(results, args.json)


if __name__ == "__main__":
    main()
