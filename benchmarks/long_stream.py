"""An hour of video through `model.stream` at full size: speed and memory as the stream grows to thousands of frames.

DINOv3 ViT-S/16 at 256 px + SmolLM2-135M shapes (random weights), one stream (B = 1), a 16-token prompt, K = 1 and
fp32 unless told otherwise. The clip is synthetic and looped: `--clip_frames` random frames and targets, pushed in
turn (the weights are random, so what the frames show does not matter; a fixed loop keeps the frames' own memory
constant). At each checkpoint (a count of pushed frames, `--frames 100 1000 3600`) it reports:

- frames_per_second over the window since the previous checkpoint (pushes only; the first window includes the
  first calls' warm-up) and the median split of a push in that window;
- peak_rss_mib (VmHWM of the process) and rss_mib (VmRSS now);
- lm_cache_bytes: every tensor of the stream's language-model cache (both streams: coarse rows and fine rows), and
  lm_cache_bytes_per_frame, its growth over the window per frame, next to lm_cache_bytes_per_frame_expected
  (2 streams x layers x 2 (keys, values) x kv heads x head dim x bytes x K: 92,160 for SmolLM2-135M in fp32);
- tensor_bytes_outside_lm_cache: every live tensor of the process (found through `gc`) but the language-model cache
  and the stream's token ids and mask: the weights and nothing per frame. It must not grow: a stream keeps no patch
  keys/values of past frames (one frame's are vit_kv_bytes_per_frame, ~9.6 MB, what a stream that kept them would
  add per frame); rss_minus_lm_cache_mib is the same check read from the process's resident memory;
- positions: the tokens each stream holds (its next RoPE position), against max_frames, the most frames the
  language model's `max_position_embeddings` leaves room for after the prompt (each stream is its own sequence).

A checkpoint past max_frames is not run (the stream would refuse push max_frames + 1, naming it): `stopped` says so.
Not a test: it reports.

    python benchmarks/long_stream.py [--frames 100 1000 3600] [--precision fp32] [--json OUT.json]
"""

import argparse
import gc
import statistics
import time
import warnings
from pathlib import Path

import torch
from timing import machine, report

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration
from foveated_vlm.streaming_foveated import PRECISIONS

PROMPT_TOKENS = 16


def memory_mib(field: str) -> float:
    """A `/proc/self/status` field (VmRSS: resident now, VmHWM: peak resident) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def storages(tensors) -> dict:
    """{storage address: bytes} of `tensors`, each storage once (views share their base's)."""
    found = {}
    for tensor in tensors:
        try:
            storage = tensor.untyped_storage()
            found[storage.data_ptr()] = storage.nbytes()
        except (NotImplementedError, RuntimeError):  # quantised, sparse, meta or fake tensors have no plain storage
            continue
    return found


def cache_tensors(cache) -> list:
    """The keys and values of every layer of a `DynamicCache`."""
    return [tensor for layer in cache.layers for tensor in (layer.keys, layer.values) if tensor is not None]


def lm_cache_bytes(stream) -> int:
    return sum(storages(cache_tensors(stream.cache)).values())


def expected_cache_bytes_per_frame(config) -> int:
    """What one frame adds to both streams' caches: K tokens of keys and values in every layer, two streams."""
    text = config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    per_token = text.num_hidden_layers * 2 * text.num_key_value_heads * head_dim * torch.finfo(torch.float32).bits // 8
    return 2 * config.tokens_per_frame * per_token


def tensor_bytes_outside(stream, keep=()) -> int:
    """Bytes of every live tensor of the process but the stream's language-model cache, its token ids and mask,
    and `keep` (what the caller holds on purpose)."""
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on every object touches deprecated torch.distributed attributes
        warnings.simplefilter("ignore", FutureWarning)
        live = storages([obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)])
    own = storages([*cache_tensors(stream.cache), stream.input_ids, stream.attention_mask, *keep])
    return sum(nbytes for address, nbytes in live.items() if address not in own)


def vit_kv_bytes(model, frame: torch.Tensor) -> int:
    """One frame's patch keys/values: what the stream drops after each push."""
    with torch.inference_mode():
        _, kv = model.model.foveated_encoder.encode_patches(frame, return_patch_states=False)
    return sum(storages([*kv.keys, *kv.values]).values())


def long_stream(model, checkpoints: list[int], clip_frames: int, precision: str) -> dict:
    """Push a looped clip into one stream up to each checkpoint in turn; measure at each (see the module doc)."""
    config = model.config
    size, target = config.frame_size, (1, config.target_channels, config.target_size, config.target_size)
    clip = torch.randn(clip_frames, 1, 3, size, size)  # [N, B=1, 3, H, W]
    targets = torch.randn(clip_frames, *target)  # [N, B=1, C, h, w]
    prompt = torch.randint(0, config.video_start_token_id, (1, PROMPT_TOKENS))
    results = {
        "vit_kv_bytes_per_frame": vit_kv_bytes(model, clip[0]),
        "lm_cache_bytes_per_frame_expected": expected_cache_bytes_per_frame(config),
        "checkpoints": {},
    }
    with torch.inference_mode():
        stream = model.eval().stream(input_ids=prompt, precision=precision)
        results.update(max_frames=stream.max_frames, max_position_embeddings=stream.max_length)
        pushed, previous_bytes = 0, lm_cache_bytes(stream)
        for checkpoint in sorted(checkpoints):
            if checkpoint > stream.max_frames:  # the stream would refuse push max_frames + 1, naming it
                results["stopped"] = f"checkpoint {checkpoint} not run: the context holds {stream.max_frames} frames"
                break
            window, splits = checkpoint - pushed, []
            begin = time.perf_counter()
            for index in range(pushed, checkpoint):
                splits.append(stream.push(clip[index % clip_frames], targets[index % clip_frames]).timings)
            seconds = time.perf_counter() - begin
            pushed, cache_bytes = checkpoint, lm_cache_bytes(stream)
            results["checkpoints"][checkpoint] = {
                "frames_per_second": window / seconds,
                "window_s": seconds,
                "push_split_s": {name: statistics.median(split[name] for split in splits) for name in splits[0]},
                "peak_rss_mib": memory_mib("VmHWM"),
                "rss_mib": memory_mib("VmRSS"),
                "lm_cache_bytes": cache_bytes,
                "lm_cache_bytes_per_frame": (cache_bytes - previous_bytes) / window,
                "tensor_bytes_outside_lm_cache": tensor_bytes_outside(stream, keep=(clip, targets, prompt)),
                "rss_minus_lm_cache_mib": memory_mib("VmRSS") - cache_bytes / 2**20,
                "positions": stream.cache.get_seq_length(),
            }
            previous_bytes = cache_bytes
            del splits
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000, 3600], help="checkpoints, in frames")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--tokens_per_frame", type=int, default=1)
    parser.add_argument("--clip_frames", type=int, default=16, help="frames of the looped synthetic clip")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = FoveatedVLMForConditionalGeneration(FoveatedVLMConfig(tokens_per_frame=args.tokens_per_frame)).eval()
    began = time.perf_counter()
    measured = long_stream(model, args.frames, args.clip_frames, args.precision)
    checkpoints = measured.pop("checkpoints")
    results = {
        "machine": machine(),
        "precision": args.precision,
        "tokens_per_frame": args.tokens_per_frame,
        "prompt_tokens": PROMPT_TOKENS,
        **measured,
    }
    for frames, figures in checkpoints.items():
        results.update({f"{name}@{frames}": value for name, value in figures.items()})
    results["seconds_total"] = time.perf_counter() - began
    report(results, args.json)


if __name__ == "__main__":
    main()
