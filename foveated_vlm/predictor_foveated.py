"""The FiLM prediction head: a language-model state modulates the previous target to predict the next one.

Proposal §6.2: the hidden state h_t (what the model understood from frames <= t) produces per-channel scale and
shift for a convolutional encoding of target t; a decoder maps the modulated features to target t+1. The head
predicts the whole target, not a delta, so it has no "nothing changes" collapse mode (proposal §6.4). Both passes
share it, so the only difference between their predictions is what their frame tokens carried.
"""

import torch
from torch import nn

__all__ = ["LatentPredictor"]


def _conv_stack(widths: list[int]) -> nn.Sequential:
    """3x3 convolutions through `widths`, GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if index:
            layers.append(nn.GELU())
        layers.append(nn.Conv2d(width_in, width_out, kernel_size=3, padding=1))
    return nn.Sequential(*layers)


class LatentPredictor(nn.Module):
    """Predict target t+1 from (h_t, target t).

    Args:
        hidden_size: width of the language model's hidden states.
        target_channels: C of the `[C, h, w]` targets.
        width: channels of the trunk (the seeds used 256: C -> 64 -> 128 -> 256 -> 128 -> 64 -> C).
    """

    def __init__(self, hidden_size: int, target_channels: int, width: int):
        super().__init__()
        self.width = width
        self.film = nn.Sequential(nn.Linear(hidden_size, 2 * width), nn.GELU(), nn.Linear(2 * width, 2 * width))
        self.encode = _conv_stack([target_channels, width // 4, width // 2, width])
        self.decode = _conv_stack([width, width // 2, width // 4, target_channels])

    def forward(self, hidden: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """hidden `[*passes, *lead, hidden_size]`, previous `[*lead, C, h, w]` -> `[*passes, *lead, C, h, w]`.

        Leading dims of `hidden` beyond those of `previous` are passes that read the same previous targets (the
        model's fine and coarse passes): the targets are encoded once for all of them, and the passes are decoded
        in one batch. Each prediction equals a call with that pass alone.
        """
        lead = previous.shape[:-3]
        passes = hidden.shape[: hidden.dim() - 1 - len(lead)]
        if hidden.shape[len(passes) : -1] != lead:
            raise ValueError(
                f"hidden {list(hidden.shape)} must end with the leading dims {list(lead)} of previous, then its width"
            )
        hidden = hidden.reshape(*passes, -1, hidden.shape[-1])  # [*passes, M, D]
        previous = previous.reshape(-1, *previous.shape[-3:]).to(hidden.dtype)  # [M, C, h, w]
        scale, shift = self.film(hidden)[..., None, None].chunk(2, dim=-3)  # [*passes, M, width, 1, 1] each
        # 1 + scale: the modulation starts as the identity instead of multiplying the features by ~0.
        features = self.encode(previous) * (1 + scale) + shift  # [*passes, M, width, h, w]
        predicted = self.decode(features.flatten(0, len(passes)))  # [passes*M, C, h, w]
        return predicted.reshape(*passes, *lead, *previous.shape[-3:])  # [*passes, *lead, C, h, w]
