"""Pictures of where the model looked: fixation overlays, titled side-by-side panels, GIFs (PIL and torch only).

    cell = fixation_cell(frame_image, fixation, height=128)   # tinted where attention exceeds uniform, labelled
                                                             # "attention ~uniform" when it does not single anything out
    row = titled_panel([frame, coarse, fine], ["frame 1/8", "static query", "planned query"], caption=prompt)
    save_gif([row, ...], "fixations.gif")

The tint is pink (`TINT_RGB`), a colour no object of the synthetic generator has (`foveated_vlm/data/synthetic.py`
`PALETTE`: red, green, blue, yellow, magenta, cyan, white, orange), so a tinted red object still reads as tinted.
"""

import textwrap

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "TINT_RGB",
    "UNIFORM_RATIO",
    "UNIFORM_LABEL",
    "TITLE_HEIGHT",
    "PANEL_GAP",
    "to_uint8_image",
    "overlay_fixation",
    "is_uniform",
    "fixation_cell",
    "titled_panel",
    "save_gif",
]

# Pink: at least 39 CIELAB units from every palette colour, both over the dark background and blended into an
# object at full strength (red, the seeds' tint, moved a red object by 16 and hid it).
TINT_RGB = (255, 135, 180)
# A map whose most attended patch gets less than twice the share of its least attended one looks at nothing in
# particular; the overlay then shows almost no tint, and the label says why instead of leaving a blank picture.
UNIFORM_RATIO = 2.0
UNIFORM_LABEL = "attention ~uniform"
TITLE_HEIGHT = 20  # px strip above each panel of `titled_panel`
PANEL_GAP = 2  # px of white between panels, so neighbouring pictures with dark backgrounds stay apart
_FONT_SIZE = 14
_LINE_HEIGHT = 17  # px per caption line at `_FONT_SIZE`


def to_uint8_image(frame: torch.Tensor) -> np.ndarray:
    """`[3, H, W]` in [-1, 1] -> `[H, W, 3]` uint8."""
    image = ((frame.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return image.permute(1, 2, 0).cpu().numpy()


def _mean_map(fixation: torch.Tensor) -> torch.Tensor:
    """`[gh, gw]`, or `[K, gh, gw]` averaged over the K glimpses -> `[gh, gw]` float."""
    fixation = fixation.detach().float()
    return fixation.mean(0) if fixation.dim() == 3 else fixation


def overlay_fixation(image: np.ndarray, fixation: torch.Tensor, strength: float = 0.7, full_at: float = 4.0):
    """Tint `image` `[H, W, 3]` uint8 with `TINT_RGB` where `fixation` `[gh, gw]` (or `[K, gh, gw]`, averaged)
    exceeds uniform.

    The tint grows with attention above the uniform share of a patch and is full at `full_at` times it, so
    uniform attention leaves the image untinted instead of painting everything as "looked at".
    """
    fixation = _mean_map(fixation)
    height, width = image.shape[:2]
    excess = (fixation * fixation.numel() - 1) / (full_at - 1)  # 0 at uniform, 1 at `full_at` x uniform
    heat = F.interpolate(excess.clamp(0, 1)[None, None], size=(height, width), mode="nearest")[0, 0]  # [H, W]
    heat = heat.cpu().numpy()[..., None]
    blended = image.astype(np.float32) * (1 - strength * heat) + np.array(TINT_RGB) * strength * heat
    return blended.clip(0, 255).astype(np.uint8)


def is_uniform(fixation: torch.Tensor, ratio: float = UNIFORM_RATIO) -> bool:
    """Whether the most attended patch of `fixation` (`[gh, gw]` or `[K, gh, gw]`) has under `ratio` times the
    share of the least attended one."""
    fixation = _mean_map(fixation)
    return bool(fixation.max() < ratio * fixation.min())


def _font(size: int = _FONT_SIZE) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _resize_to_height(image: np.ndarray, height: int) -> np.ndarray:
    width = round(image.shape[1] * height / image.shape[0])
    return np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST))


def fixation_cell(image: np.ndarray, fixation: torch.Tensor, height: int) -> np.ndarray:
    """`image` `[H, W, 3]` tinted by `fixation`, nearest-scaled to `height` (aspect kept) and, when the map is
    uniform (`is_uniform`), labelled `UNIFORM_LABEL` along its bottom edge: `[height, W * height / H, 3]`."""
    cell = _resize_to_height(overlay_fixation(image, fixation), height)
    if not is_uniform(fixation):
        return cell
    canvas = Image.fromarray(cell).convert("RGBA")
    band = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    # The largest font up to 12 px that fits the cell's width, so a 128 px cell carries the whole label.
    size = 12
    while size > 6 and draw.textlength(UNIFORM_LABEL, font=_font(size)) > canvas.width - 4:
        size -= 1
    # A half-transparent band, so the objects under the label still show.
    draw.rectangle((0, canvas.height - size - 6, canvas.width, canvas.height), fill=(0, 0, 0, 150))
    draw.text((canvas.width // 2, canvas.height - 3), UNIFORM_LABEL, fill="white", font=_font(size), anchor="md")
    return np.asarray(Image.alpha_composite(canvas, band).convert("RGB"))


def _caption_lines(caption: str | None, width: int) -> list[str]:
    if not caption:
        return []
    characters = max(8, width // 8)  # about 7-8 px a character at `_FONT_SIZE`
    return textwrap.wrap(caption, width=characters)


def titled_panel(
    images: list[np.ndarray], titles: list[str], caption: str | None = None, height: int | None = None
) -> np.ndarray:
    """Images side by side, each scaled to a common `height` (default: the tallest), each under its title, with
    `caption` (the prompt) wrapped beneath them all.

    Returns `[TITLE_HEIGHT + height + caption lines, sum(W) + PANEL_GAP (n - 1), 3]` uint8 on white: image i starts
    at row `TITLE_HEIGHT` and column `sum(W_<i) + i PANEL_GAP`.
    """
    if len(images) != len(titles):
        raise ValueError(f"titled_panel got {len(images)} images but {len(titles)} titles; expected one title each")
    height = height or max(image.shape[0] for image in images)
    resized = [_resize_to_height(image, height) for image in images]
    width = sum(image.shape[1] for image in resized) + PANEL_GAP * (len(resized) - 1)
    lines = _caption_lines(caption, width)
    caption_height = _LINE_HEIGHT * len(lines) + 4 if lines else 0
    canvas = Image.new("RGB", (width, TITLE_HEIGHT + height + caption_height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font()
    left = 0
    for image, title in zip(resized, titles, strict=True):
        canvas.paste(Image.fromarray(image), (left, TITLE_HEIGHT))
        draw.text((left + image.shape[1] // 2, TITLE_HEIGHT // 2), title, fill="black", font=font, anchor="mm")
        left += image.shape[1] + PANEL_GAP
    if lines:
        draw.multiline_text(
            (4, TITLE_HEIGHT + height + 2), "\n".join(lines), fill="black", font=font, spacing=_LINE_HEIGHT - 14
        )
    return np.asarray(canvas)


def save_gif(frames: list[np.ndarray], path: str, fps: float = 4.0) -> None:
    """Write `[H, W, 3]` uint8 frames as a looping GIF."""
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
