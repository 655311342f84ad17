"""A stream of a few hundred frames (far past the T = 32 of training clips): still the parallel forward, with the
language-model caches growing by exactly K tokens per frame, the vision side's memory flat, and a clear error
before the push that would pass the context."""

import os
import sys

import pytest
import torch
from tiny import tiny_batch, tiny_config, tiny_text_config

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from long_stream import (  # noqa: E402
    expected_cache_bytes_per_frame,
    lm_cache_bytes,
    long_stream,
    tensor_bytes_outside,
    vit_kv_bytes,
)

FRAMES, PROMPT, MEASURED_AT = 200, 3, 50


@pytest.fixture(scope="module")
def long_run():
    """One 200-frame stream next to the parallel forward over the same clip; only numbers are kept per frame, so
    that the live tensors measured at frames 50 and 200 differ by what the stream itself holds."""
    torch.manual_seed(0)
    config = tiny_config(text_config=tiny_text_config(max_position_embeddings=256))
    model = FoveatedVLMForConditionalGeneration(config).eval()
    inputs = tiny_batch(config, batch=1, frames=FRAMES, prompt=PROMPT)
    ids = inputs["input_ids"][:, :-4]  # the prompt and the video, no caption
    frames, targets = inputs["pixel_values_videos"], inputs["target_latents"]
    with torch.no_grad():
        parallel = model(input_ids=ids, pixel_values_videos=frames, target_latents=targets)
    stream = model.stream(input_ids=ids[:, :PROMPT])
    run = {"config": config, "deviation": [], "positions": [], "cache_bytes": [lm_cache_bytes(stream)]}
    for t in range(FRAMES):
        step = stream.push(frames[:, t], targets[:, t])
        gap = (step.query - parallel.queries[:, t]).abs().max().item()
        if t + 1 < FRAMES:
            gap = max(gap, (step.predicted_latent - parallel.predicted_latents[:, t + 1]).abs().max().item())
        run["deviation"].append(gap)
        run["positions"].append(stream.cache.get_seq_length())
        run["cache_bytes"].append(lm_cache_bytes(stream))
        del step
        if t + 1 in (MEASURED_AT, FRAMES):
            run[f"outside_cache_at_{t + 1}"] = tensor_bytes_outside(stream)
    run["vit_kv_bytes"] = vit_kv_bytes(model, frames[:, 0])
    return run


def test_a_long_stream_equals_the_parallel_forward_at_every_frame(long_run):
    deviation = torch.tensor(long_run["deviation"])  # [T]
    assert deviation.max() <= 1e-4, f"worst frame {deviation.argmax().item()}: {deviation.max().item():.2e}"


def test_each_push_adds_k_tokens_to_both_caches(long_run):
    k = long_run["config"].tokens_per_frame
    assert long_run["positions"] == [PROMPT + 1 + k * (t + 1) for t in range(FRAMES)]  # prompt, <video_start>, frames
    growth = torch.tensor(long_run["cache_bytes"]).diff()  # [T]
    per_frame = expected_cache_bytes_per_frame(long_run["config"])
    assert per_frame == 2 * k * 2 * 2 * 2 * 8 * 4  # 2 streams x K x 2 layers x (K, V) x 2 kv heads x head dim 8 x fp32
    assert growth.tolist() == [per_frame] * FRAMES


def test_the_vision_side_keeps_nothing_of_past_frames(long_run):
    growth = long_run[f"outside_cache_at_{FRAMES}"] - long_run[f"outside_cache_at_{MEASURED_AT}"]
    assert long_run["vit_kv_bytes"] > 0
    assert growth < long_run["vit_kv_bytes"], f"{growth} bytes outside the LM cache over {FRAMES - MEASURED_AT} frames"


def test_the_push_past_the_context_names_the_frame_and_changes_nothing():
    config = tiny_config(tokens_per_frame=2, text_config=tiny_text_config(max_position_embeddings=64))
    model = FoveatedVLMForConditionalGeneration(config).eval()
    stream = model.stream(input_ids=torch.tensor([[5, 6, 7]]))
    assert stream.max_frames == 30  # (64 - 3 prompt tokens - <video_start>) // K
    for _ in range(30):
        stream.push(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"at frame 31, the stream would hold 66 tokens, past .* context of 64 .*"
                       r"3 prompt tokens \+ <video_start> \+ 2 tokens per frame leave room for 30 frames"):  # fmt: skip
        stream.push(torch.randn(1, 3, 32, 32))
    assert stream.frames_seen == 30 and stream.cache.get_seq_length() == 64 and stream.input_ids.shape[1] == 64
    with pytest.raises(ValueError, match="closing the video after 30 frames, the stream would hold 65 tokens"):
        stream.generate(max_new_tokens=1)
    with pytest.raises(ValueError, match="with this prompt, the stream would hold 65 tokens"):
        model.stream(input_ids=torch.ones(1, 64, dtype=torch.long))


@pytest.mark.parametrize("k, fits", [(1, True), (2, True), (3, False)])
def test_an_hour_at_one_frame_per_second_fits_the_default_context(k, fits):
    """The default config's 8192 positions, a 16-token prompt: 8175 frames at K = 1 (each stream its own sequence)."""
    limit = FoveatedVLMConfig().text_config.max_position_embeddings
    assert limit == 8192
    config = tiny_config(tokens_per_frame=k, text_config=tiny_text_config(max_position_embeddings=limit))
    stream = FoveatedVLMForConditionalGeneration(config).eval().stream(input_ids=torch.ones(1, 16, dtype=torch.long))
    assert stream.max_frames == (limit - 16 - 1) // k
    assert (stream.max_frames >= 3600) is fits


def test_the_long_stream_benchmark_measures_what_it_says():
    """`benchmarks/long_stream.py` at tiny size: exact cache growth, flat memory, a checkpoint past the context
    reported and not run."""
    config = tiny_config(text_config=tiny_text_config(max_position_embeddings=40))  # 16 prompt tokens: 23 frames
    results = long_stream(FoveatedVLMForConditionalGeneration(config).eval(), [5, 20, 30], 4, "fp32")
    assert results["max_frames"] == 23 and "checkpoint 30 not run: the context holds 23 frames" in results["stopped"]
    first, second = results["checkpoints"][5], results["checkpoints"][20]
    assert list(results["checkpoints"]) == [5, 20] and second["positions"] == 16 + 1 + 20
    assert first["lm_cache_bytes_per_frame"] == second["lm_cache_bytes_per_frame"] == 512
    assert first["tensor_bytes_outside_lm_cache"] == second["tensor_bytes_outside_lm_cache"]
