"""Checks of what a caller hands the model and the stream, made at the entry so that bad input gets an error naming
the input, its value and what was expected, instead of a silent wrong result (NaN losses, a language model run past
the positions it was trained on, uint8 frames read as if normalised) or a traceback from deep inside (an
embedding's `IndexError`).

Shape and dtype checks cost nothing and raise at once. Checks of values (token ids inside the vocabulary, finite
frames and targets, no all-zero attention-mask row) have to read a result back from the device, which on an
accelerator is a synchronisation: `InputChecks` gathers them and reads them back together, once per call, and skips
them while compiling or tracing (reading a value back would break the graph; the shape checks still run).
"""

from collections.abc import Callable

import torch
from transformers.utils import is_tracing

__all__ = ["InputChecks", "check_video_shape"]


def check_video_shape(pixel_values_videos: torch.Tensor):
    if pixel_values_videos.dim() != 5 or pixel_values_videos.shape[2] != 3:
        raise ValueError(f"pixel_values_videos must have shape [B, T, 3, H, W]; got {tuple(pixel_values_videos.shape)}")


def _first(bad: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True element of `bad`."""
    return tuple(bad.nonzero()[0].tolist())


def _index(name: str, where: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, where))}]"


class InputChecks:
    """The checks of one call's inputs. Each method checks one input; `run()` reads every value check back at once
    and raises `ValueError` for the first that failed.

    Args:
        check_values: False skips the value checks (e.g. on a cached decoding step, whose one new token the model
            chose itself). They are skipped anyway while compiling or tracing.
    """

    def __init__(self, check_values: bool = True):
        self.check_values = check_values and not is_tracing()
        self._pending: list[tuple[torch.Tensor, Callable[[], str]]] = []  # (0-d bool "passed", message if not)

    def _require(self, passed: torch.Tensor, message: Callable[[], str]):
        self._pending.append((passed, message))

    def run(self):
        """Read the value checks back (one transfer for all) and raise for the first that failed."""
        if not self._pending:
            return
        device = self._pending[0][0].device
        passed = torch.stack([ok.to(device) for ok, _ in self._pending]).tolist()  # the one read-back of the call
        pending, self._pending = self._pending, []
        for ok, (_, message) in zip(passed, pending, strict=True):
            if not ok:
                raise ValueError(message())

    # ------------------------------------------------------------------------------------------------ inputs
    def token_ids(self, ids: torch.Tensor, vocab_size: int, name: str = "input_ids", ignore_index: int | None = None):
        """Integer ids `[B, L]`, each in `[0, vocab_size)` (or `ignore_index`, as -100 in labels)."""
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"{name} has dtype {ids.dtype}; expected integer token ids")
        if not self.check_values:
            return
        valid = (ids >= 0) & (ids < vocab_size)  # [B, L]
        if ignore_index is not None:
            valid |= ids == ignore_index

        def message():
            where = _first(~valid)
            allowed = f"[0, {vocab_size})" + ("" if ignore_index is None else f" or {ignore_index}")
            return (
                f"{_index(name, where)} = {ids[where].item()} is not a token id of the text vocabulary; expected ids "
                f"in {allowed} (text_config.vocab_size={vocab_size})"
            )

        self._require(valid.all(), message)

    def attention_mask(self, mask: torch.Tensor):
        """No row of a `[B, L]` mask may be all zeros: that row would attend to nothing."""
        if mask.dim() != 2 or not self.check_values:  # 4-D masks are built by the library, not by users
            return
        attends = mask.bool().any(dim=1)  # [B]
        self._require(
            attends.all(),
            lambda: (
                f"attention_mask row {_first(~attends)[0]} is all zeros, so that row would attend to nothing; "
                "expected at least one 1 in each row (drop empty rows from the batch)"
            ),
        )

    def frames(self, pixels: torch.Tensor, frame_size: int, name: str = "pixel_values_videos"):
        """Frames `[..., 3, H, W]`: floating point (normalised, not 0-255), `frame_size` square, finite."""
        if not pixels.is_floating_point():
            raise ValueError(
                f"{name} has dtype {pixels.dtype}; expected floating-point frames normalised for the vision encoder "
                "(what FoveatedVideoProcessor returns), not raw 0-255 pixels"
            )
        height, width = pixels.shape[-2:]
        if (height, width) != (frame_size, frame_size):
            raise ValueError(
                f"{name}: frames of {height}x{width} pixels, but the model reads {frame_size}x{frame_size} frames "
                "(config.frame_size); prepare them with the model's processor"
            )
        self.finite(pixels, name)

    def finite(self, values: torch.Tensor, name: str):
        """No NaN or inf: one would make every loss and output downstream NaN."""
        if not self.check_values:
            return

        def message():  # on failure only
            bad = ~torch.isfinite(values)
            where = _first(bad)
            return (
                f"{name} holds {bad.sum().item()} NaN/inf values, the first {_index(name, where)} = "
                f"{values[where].item()}; expected finite values"
            )

        if values.numel():
            # NaN reaches both extremes and an inf is one of them: one fast pass (isfinite().all() is ~40x slower
            # on a CPU) and no frame-sized mask.
            self._require(torch.isfinite(torch.stack(torch.aminmax(values))).all(), message)
