"""The benchmarks' own parts, at tiny shapes: what they time must be what they say (timings are never tested)."""

import math
import os
import subprocess
import sys

import pytest
import torch
from tiny import tiny_batch, tiny_config, video_input_ids

from foveated_vlm import FoveatedVLMForConditionalGeneration

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import decode_sampling  # noqa: E402
import gpu_step  # noqa: E402
import run  # noqa: E402
from patch_baseline import PatchTokenVLM  # noqa: E402


def test_the_one_pass_step_is_the_models_coarse_half():
    """`two_pass_over_one_pass` divides by this: it must be exactly the coarse pass and its losses."""
    torch.manual_seed(0)
    config = tiny_config(reconstruction_loss_weight=0.7, caption_loss_weight=1.3)
    model = FoveatedVLMForConditionalGeneration(config).eval()
    batch = tiny_batch(config)
    batch.pop("attention_mask")  # all ones: the positions the coarse half uses by default
    calls = []
    with torch.no_grad():
        both = model(**batch)
        hook = model.model.language_model.register_forward_hook(lambda *args: calls.append(1))
        one = run.coarse_pass_loss(model, **batch)
        hook.remove()
    expected = 0.7 * both.loss_coarse + 1.3 * both.caption_loss_coarse
    torch.testing.assert_close(one, expected, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1  # one language-model pass: the fine half is not run and thrown away


def test_the_training_floor_is_the_vits_own_pass_over_every_frame():
    """`training_floor_ratio` divides by this: the model's own ViT, forward and backward over T full frames."""
    config = tiny_config()
    vision, step = run.build("vit_alone", 3, config)
    assert type(vision) is type(FoveatedVLMForConditionalGeneration(config).model.foveated_encoder.vision_model)
    calls = []
    vision.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(kwargs["pixel_values"].shape), with_kwargs=True
    )
    step()
    assert calls == [(3, 3, config.frame_size, config.frame_size)]  # one pass over the T frames, at full size
    untrained = [name for name, p in vision.named_parameters() if p.grad is None]
    assert vision.training and untrained == ["embeddings.mask_token"]  # used only for masked pretraining


def patch_batch(model: PatchTokenVLM, frames: int = 3) -> dict:
    config = model.config
    input_ids = video_input_ids(2, frames, k=model.patches_per_frame())
    labels = torch.full_like(input_ids, -100)
    labels[:, -4:] = input_ids[:, -4:]  # the caption after <video_end>
    size, target = config.frame_size, (config.target_channels, config.target_size, config.target_size)
    return {
        "input_ids": input_ids,
        "pixel_values_videos": torch.randn(2, frames, 3, size, size),
        "target_latents": torch.randn(2, frames, *target),
        "labels": labels,
    }


def test_patch_token_baseline_reads_every_patch_of_every_frame_and_trains_end_to_end():
    torch.manual_seed(0)
    model = PatchTokenVLM(tiny_config())
    config = model.config
    assert model.patches_per_frame() == (config.frame_size // config.patch_size) ** 2
    batch = patch_batch(model)
    assert (batch["input_ids"] == config.frame_token_id).sum() == 2 * 3 * model.patches_per_frame()
    loss = model(**batch)
    assert loss.isfinite()
    loss.backward()
    for part in (model.vision_model, model.vision_to_text, model.language_model, model.predictor):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), type(part).__name__
    # One patch of the last frame changes the caption loss: every patch reaches the language model.
    with torch.no_grad():
        changed = {**batch, "pixel_values_videos": batch["pixel_values_videos"].clone()}
        changed["pixel_values_videos"][:, -1, :, : config.patch_size, : config.patch_size] += 1.0
        assert model(**changed) != model(**batch)


def test_goals_are_met_in_their_own_direction():
    results = {key: goal for key, (_, goal) in run.GOALS.items()}  # exactly at every goal: met
    results["cache_overhead"] = 1.2  # lower is better: missed
    results["query_speedup"] = 100.0  # higher is better: met
    results["stream_overhead"] = 2.0
    run.add_goals(results)
    assert not results["cache_overhead_met"] and not results["stream_overhead_met"]
    assert results["query_speedup_met"] and results["two_pass_over_one_pass_met"]
    assert results["cache_overhead_goal"] == 1.05


@pytest.mark.parametrize("gop", [10, 250])
def test_the_decode_benchmarks_clip_has_every_frame(tmp_path, gop):
    path = tmp_path / "clip.mp4"
    decode_sampling.write_clip(path, 45, gop)
    assert decode_sampling.decode_all(path, chunk=16) == 45


def test_the_gpu_step_trains_and_reports_throughput():
    """`gpu_step.measure` at a tiny size on the CPU: the same path gpu.sh runs on CUDA, every step an update."""
    config = gpu_step.tiny_config()
    results = gpu_step.measure(config, "cpu", torch.bfloat16, batch=2, frames=3, steps=2, warmup=1)
    assert results["samples_per_s"] > 0 and results["frames_per_s"] == pytest.approx(3 * results["samples_per_s"])
    assert math.isfinite(results["final_loss"]) and results["dtype"] == "bfloat16"
    assert results["fvlm_published_samples_per_s"] == 46.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine gpu.sh installs and runs the benchmark")
def test_gpu_sh_refuses_a_machine_without_cuda_before_installing_anything():
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "gpu.sh")
    environment = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", script], capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 1 and "gpu.sh: no CUDA device here" in result.stderr
    assert "pip" not in result.stderr and "Successfully installed" not in result.stdout
