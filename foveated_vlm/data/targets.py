"""Reconstruction targets: what the model learns to predict for the next frame (DESIGN §5).

Two kinds, one interface (`encode` frames -> targets, `decode` targets -> pixels for figures):

* `pixels`: frames area-downsampled to `target_size`, 3 channels. No weights, so it serves offline runs and tests.
* `sd-vae`: the latent mean of Stable Diffusion's VAE (diffusers `AutoencoderKL`, `stabilityai/sd-vae-ft-mse` by
  default) times its scaling factor, as latent diffusion does (Rombach et al. 2022, https://arxiv.org/abs/2112.10752):
  4 channels at 1/8 of the frame size. The VAE is frozen and stays outside the model, which only takes
  `target_latents`; encode here (on the accelerator, batched over all B*T frames) or precompute to disk.

Both read frames in [-1, 1], `[B, T, 3, H, W]` (`FoveatedVideoProcessor(..., return_target_frames=True)`), and return
`[B, T, C, h, w]`. Both are deterministic (the VAE's mean, never a sample): the same frames give the same targets.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TARGET_KINDS",
    "DEFAULT_VAE",
    "PixelTargetEncoder",
    "SDVAETargetEncoder",
    "build_target_encoder",
    "pixel_targets",
]

TARGET_KINDS = ("pixels", "sd-vae")
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"


def check_frames(frames: torch.Tensor) -> None:
    """Targets read `[B, T, 3, H, W]` in [-1, 1]; encoder-normalised frames (ImageNet mean/std) are a common
    mistake that would silently give wrong targets, so the range is checked."""
    if frames.dim() != 5 or frames.shape[2] != 3 or not frames.is_floating_point():
        raise ValueError(f"frames must be a float tensor [B, T, 3, H, W]; got {frames.dtype} {tuple(frames.shape)}")
    low, high = frames.aminmax()
    if low < -1.001 or high > 1.001:
        raise ValueError(
            f"frames must lie in [-1, 1] (target_frames from the video processor); got [{low.item():.3f}, "
            f"{high.item():.3f}]; were they normalised for the vision encoder?"
        )


def pixel_targets(frames: torch.Tensor, target_size: int) -> torch.Tensor:
    """Frames `[B, T, 3, H, W]` in [-1, 1] -> their area averages `[B, T, 3, target_size, target_size]`."""
    check_frames(frames)
    batch, time = frames.shape[:2]
    small = F.interpolate(frames.flatten(0, 1), size=(target_size, target_size), mode="area")  # [B*T, 3, s, s]
    return small.unflatten(0, (batch, time))


class PixelTargetEncoder(nn.Module):
    """The `pixels` target: area-downsampled frames, 3 channels, no weights."""

    def __init__(self, target_size: int):
        super().__init__()
        if not isinstance(target_size, int) or target_size < 1:
            raise ValueError(f"target_size={target_size!r} is invalid; expected a positive integer")
        self.target_size = target_size
        self.channels = 3

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """`[B, T, 3, H, W]` in [-1, 1] -> `[B, T, 3, s, s]`."""
        return pixel_targets(frames, self.target_size)

    def decode(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets (or predictions) `[B, T, 3, s, s]` -> pixels in [-1, 1] (they already are pixels)."""
        return targets.clamp(-1, 1)


class SDVAETargetEncoder(nn.Module):
    """The `sd-vae` target: a frozen diffusers `AutoencoderKL`, `latent_dist.mean * scaling_factor`.

    Args:
        vae: an `AutoencoderKL`; it is put in eval mode and frozen.
        batch_size: frames per VAE call, bounding activation memory when B*T is large.
        target_size: if given (the model config's `target_size`), latents of another size are an error.
    Run the VAE in float32 or bfloat16: SD's VAE is known to overflow in float16.
    """

    def __init__(self, vae, batch_size: int = 32, target_size: int | None = None):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.batch_size = batch_size
        self.target_size = target_size

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_VAE, batch_size: int = 32, target_size: int | None = None, **kwargs
    ) -> "SDVAETargetEncoder":
        """Load an `AutoencoderKL` from the Hub or a local directory (`kwargs` go to diffusers: `subfolder`,
        `torch_dtype`, ...)."""
        from diffusers import AutoencoderKL  # imported here: diffusers is slow to import and only this target needs it

        return cls(
            AutoencoderKL.from_pretrained(name_or_path, **kwargs), batch_size=batch_size, target_size=target_size
        )

    @property
    def channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def downsample(self) -> int:
        """Frame size / latent size: each encoder block after the first halves the resolution (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """`[B, T, 3, H, W]` in [-1, 1] -> `[B, T, C, H / downsample, W / downsample]`, all frames batched."""
        check_frames(frames)
        batch, time = frames.shape[:2]
        parameter = next(self.vae.parameters())
        flat = frames.flatten(0, 1).to(parameter.device, parameter.dtype)  # [B*T, 3, H, W]
        latents = torch.cat([self.vae.encode(chunk).latent_dist.mean for chunk in flat.split(self.batch_size)])
        config = self.vae.config
        shift = getattr(config, "shift_factor", None) or 0.0  # SD's VAE has none; later VAEs (SD3, FLUX) do
        latents = (latents - shift) * config.scaling_factor  # [B*T, C, h, w]
        if self.target_size is not None and latents.shape[-2:] != (self.target_size, self.target_size):
            raise ValueError(
                f"frames of {tuple(frames.shape[-2:])} give latents of {tuple(latents.shape[-2:])}, but target_size="
                f"{self.target_size}; the frame size must be target_size * {self.downsample}"
            )
        return latents.unflatten(0, (batch, time))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (or predictions) `[B, T, C, h, w]` -> frames `[B, T, 3, H, W]` in [-1, 1], for figures."""
        batch, time = latents.shape[:2]
        parameter = next(self.vae.parameters())
        config = self.vae.config
        flat = latents.flatten(0, 1).to(parameter.device, parameter.dtype)  # [B*T, C, h, w]
        flat = flat / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        frames = torch.cat([self.vae.decode(chunk).sample for chunk in flat.split(self.batch_size)])
        return frames.clamp(-1, 1).unflatten(0, (batch, time))


def build_target_encoder(
    kind: str,
    *,
    target_size: int | None = None,
    vae_name_or_path: str = DEFAULT_VAE,
    batch_size: int = 32,
    **vae_kwargs,
):
    """`"pixels"` -> [`PixelTargetEncoder`] (needs `target_size`); `"sd-vae"` -> [`SDVAETargetEncoder`] loaded from
    `vae_name_or_path` (`vae_kwargs` go to `AutoencoderKL.from_pretrained`), checking `target_size` if given."""
    if kind == "pixels":
        if target_size is None:
            raise ValueError("the pixels target needs target_size (the model config's target_size)")
        return PixelTargetEncoder(target_size)
    if kind == "sd-vae":
        return SDVAETargetEncoder.from_pretrained(
            vae_name_or_path, batch_size=batch_size, target_size=target_size, **vae_kwargs
        )
    raise ValueError(f"unknown target kind {kind!r}; expected one of {TARGET_KINDS}")
