"""Pictures of where the model looked: fixation overlays, side-by-side panels, GIFs (PIL and torch only)."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["overlay_fixation", "panel", "save_gif", "to_uint8_image"]


def to_uint8_image(frame: torch.Tensor) -> np.ndarray:
    """`[3, H, W]` in [-1, 1] -> `[H, W, 3]` uint8."""
    image = ((frame.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return image.permute(1, 2, 0).cpu().numpy()


def overlay_fixation(image: np.ndarray, fixation: torch.Tensor, strength: float = 0.7, full_at: float = 4.0):
    """Tint `image` `[H, W, 3]` uint8 red where `fixation` `[gh, gw]` (or `[K, gh, gw]`, averaged) exceeds uniform.

    The tint grows with attention above the uniform share of a patch and is full at `full_at` times it, so
    uniform attention leaves the image untinted instead of painting everything as "looked at".
    """
    fixation = fixation.detach().float()
    if fixation.dim() == 3:
        fixation = fixation.mean(0)
    height, width = image.shape[:2]
    excess = (fixation * fixation.numel() - 1) / (full_at - 1)  # 0 at uniform, 1 at `full_at` x uniform
    heat = F.interpolate(excess.clamp(0, 1)[None, None], size=(height, width), mode="nearest")[0, 0]  # [H, W]
    heat = heat.cpu().numpy()[..., None]
    red = np.array([255.0, 0.0, 0.0])
    blended = image.astype(np.float32) * (1 - strength * heat) + red * strength * heat
    return blended.clip(0, 255).astype(np.uint8)


def panel(images: list[np.ndarray], height: int | None = None) -> np.ndarray:
    """Images side by side, each resized to a common height `[H, sum(W), 3]`."""
    height = height or max(image.shape[0] for image in images)
    resized = []
    for image in images:
        width = round(image.shape[1] * height / image.shape[0])
        resized.append(np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST)))
    return np.concatenate(resized, axis=1)


def save_gif(frames: list[np.ndarray], path: str, fps: float = 4.0) -> None:
    """Write `[H, W, 3]` uint8 frames as a looping GIF."""
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
