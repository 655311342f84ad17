"""Reconstruction targets: area-downsampled pixels and a (tiny, offline) SD-VAE."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from foveated_vlm import FoveatedVideoProcessor, PixelTargetEncoder, SDVAETargetEncoder, build_target_encoder
from foveated_vlm.data.targets import pixel_targets


def frames(batch: int = 2, time: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, time, 3, size, size, generator=generator) * 2 - 1  # [B, T, 3, H, W] in [-1, 1]


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    """A tiny AutoencoderKL (2 blocks: latents at 1/2 size, 4 channels), saved like a Hub checkpoint."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    directory = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(directory)
    return directory


def test_pixel_targets_are_block_means():
    x = frames()
    targets = build_target_encoder("pixels", target_size=8).encode(x)
    assert targets.shape == (2, 3, 3, 8, 8)
    blocks = x.reshape(2, 3, 3, 8, 4, 8, 4).mean(dim=(4, 6))  # 4x4 block averages
    torch.testing.assert_close(targets, blocks)
    torch.testing.assert_close(PixelTargetEncoder(8).encode(x), targets, rtol=0, atol=0)  # same frames, same targets
    assert PixelTargetEncoder(8).channels == 3
    torch.testing.assert_close(PixelTargetEncoder(8).decode(targets * 3), (targets * 3).clamp(-1, 1))


def test_pixel_targets_of_processor_frames():
    video = np.random.default_rng(0).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    out = FoveatedVideoProcessor(size=32, num_frames=4)(video, return_target_frames=True)
    targets = pixel_targets(out["target_frames"], 8)
    assert targets.shape == (1, 4, 3, 8, 8) and targets.min() >= -1 and targets.max() <= 1
    with pytest.raises(ValueError, match="normalised for the vision encoder"):
        pixel_targets(out["pixel_values_videos"], 8)  # ImageNet-normalised frames are not targets' input


def test_frames_are_checked():
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        pixel_targets(torch.zeros(2, 3, 32, 32), 8)
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        pixel_targets(torch.zeros(1, 2, 4, 32, 32), 8)


def test_unknown_kind_and_missing_size():
    with pytest.raises(ValueError, match=r"unknown target kind 'vqgan'; expected one of \('pixels', 'sd-vae'\)"):
        build_target_encoder("vqgan")
    with pytest.raises(ValueError, match="target_size"):
        build_target_encoder("pixels")


def test_sd_vae_targets(tiny_vae_dir):
    encoder = build_target_encoder("sd-vae", vae_name_or_path=str(tiny_vae_dir), target_size=16)
    assert isinstance(encoder, SDVAETargetEncoder) and (encoder.channels, encoder.downsample) == (4, 2)
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.vae.training
    x = frames()
    latents = encoder.encode(x)
    assert latents.shape == (2, 3, 4, 16, 16)
    vae = AutoencoderKL.from_pretrained(tiny_vae_dir).eval()
    with torch.no_grad():
        expected = vae.encode(x.flatten(0, 1)).latent_dist.mean * vae.config.scaling_factor  # [B*T, 4, 16, 16]
    torch.testing.assert_close(latents, expected.unflatten(0, (2, 3)))
    torch.testing.assert_close(encoder.encode(x), latents, rtol=0, atol=0)  # the mean, never a sample
    chunked = SDVAETargetEncoder(encoder.vae, batch_size=2).encode(x)  # B*T = 6 frames in 3 VAE calls
    torch.testing.assert_close(chunked, latents, rtol=1e-5, atol=1e-6)
    decoded = encoder.decode(latents)
    assert decoded.shape == x.shape and decoded.min() >= -1 and decoded.max() <= 1
    with pytest.raises(ValueError, match="target_size=8"):
        SDVAETargetEncoder(encoder.vae, target_size=8).encode(x)
