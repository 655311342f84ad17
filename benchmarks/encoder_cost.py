"""What the foveated encoder costs: the patch pass against the plain vision forward, a query against the patch pass.

Full-size shapes (DINOv3 ViT-S/16 at 256 px by default, random weights), inference mode, median of repeated runs
after warm-up. Prints a table and optionally writes JSON. Not a test: it reports.

    python benchmarks/encoder_cost.py [--frames 8] [--repeats 7] [--json OUT.json]
"""

import argparse

import torch
from timing import interleaved_medians, machine, report

from foveated_vlm import FoveatedVLMConfig
from foveated_vlm.encoder_foveated import FoveatedEncoder


def encoder_seconds(encoder, frames: torch.Tensor, queries: torch.Tensor, repeats: int) -> dict:
    """Interleaved medians (s) of the plain ViT forward, `encode_patches` with and without the patch states, and
    one `query` over the same frames `[N, 3, H, W]` with `queries` `[N, K, query_dim]`, in inference mode."""
    with torch.inference_mode():
        _, cache = encoder.encode_patches(frames, return_patch_states=False)
        return interleaved_medians(
            {
                "plain": lambda: encoder.vision_model(frames),
                "patches": lambda: encoder.encode_patches(frames),
                "cache_only": lambda: encoder.encode_patches(frames, return_patch_states=False),
                "query": lambda: encoder.query(queries, cache),
            },
            repeats,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--tokens-per-frame", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = FoveatedVLMConfig(tokens_per_frame=args.tokens_per_frame)  # DINOv3 ViT-S/16 at 256 px
    encoder = FoveatedEncoder(config).eval()
    frames = torch.randn(args.frames, 3, config.frame_size, config.frame_size)
    queries = torch.randn(args.frames, args.tokens_per_frame, config.query_dim)

    seconds = encoder_seconds(encoder, frames, queries, args.repeats)
    plain, patches, cache_only, query = (seconds[k] for k in ("plain", "patches", "cache_only", "query"))

    results = {
        "machine": machine(),
        "frames": args.frames,
        "tokens_per_frame": args.tokens_per_frame,
        "plain_vision_forward_s": plain,
        "encode_patches_s": patches,
        "encode_patches_cache_only_s": cache_only,
        "query_s": query,
        "cache_overhead": patches / plain,
        "cache_only_overhead": cache_only / plain,
        "query_speedup": cache_only / query,
    }
    report(results, args.json)


if __name__ == "__main__":
    main()
