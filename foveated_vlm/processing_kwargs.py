"""The keyword arguments `FoveatedVLMProcessor` takes, as transformers processors take them, and the truncation and
padding of token rows they ask for.

transformers 5.23's `ProcessorMixin` groups call options by modality: `text_kwargs` for the tokenizer (`padding`,
`padding_side`, `truncation`, `max_length`, ...), `videos_kwargs` for the video processor (`num_frames`, `fps`, ...),
each given flat (`processor(..., padding="max_length")`) or nested (`processor(..., text_kwargs={...})`), and merged
with the processor's defaults by `ProcessorMixin._merge_kwargs`. The generic `ProcessorMixin.__call__` tokenises the
prompts; the foveated processor truncates and pads the rows after it rather than in the tokenizer call, because the
video's tokens are one block the model checks: truncation cuts the text around the video, never into it (a row that
cannot fit its video is an error naming the row), and captions' labels, appended after the prompts, are cut and padded
with the ids they label.
"""

import math
import reprlib
from dataclasses import dataclass

from transformers.processing_utils import ProcessingKwargs, TextKwargs, VideosKwargs
from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

__all__ = ["FoveatedProcessingKwargs", "FoveatedVideosKwargs", "TextLayout", "truncate_rows", "pad_rows"]


class FoveatedVideosKwargs(VideosKwargs, total=False):
    """`VideosKwargs` and the foveated video processor's own call options."""

    max_frames: int | None
    resize_mode: str | None
    video_fps: float | None
    snap_to_keyframes: bool | None
    return_target_frames: bool | None


class FoveatedProcessingKwargs(ProcessingKwargs, total=False):
    videos_kwargs: FoveatedVideosKwargs


# Text options the processor reads; any other text option set to a true value is refused rather than ignored.
TEXT_OPTIONS = {
    "add_special_tokens", "padding", "padding_side", "truncation", "max_length", "pad_to_multiple_of",
    "return_attention_mask", "return_offsets_mapping", "return_tensors", "verbose",
    "return_mm_token_type_ids", "return_text_replacement_offsets",
}  # fmt: skip


def accepted_keywords(video_processor) -> set[str]:
    """Every keyword `__call__` takes in `**kwargs`: the groups, the flat processor options and each group's keys."""
    video_keys = getattr(getattr(video_processor, "valid_kwargs", None), "__annotations__", {})
    return {
        *FoveatedProcessingKwargs.__annotations__,
        *TextKwargs.__annotations__,
        *FoveatedVideosKwargs.__annotations__,
        *video_keys,
        "common_kwargs",
    }


def _choice(name: str, value, enum, allowed):
    """`value` as the member of a transformers strategy `enum` (`True`/`False` as the enum's yes/no), or an error."""
    try:
        member = enum(value) if isinstance(value, str) else None
    except ValueError:
        member = None
    if member is None or member.value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; expected True, False or one of {sorted(allowed)}")
    return member.value


@dataclass(frozen=True)
class TextLayout:
    """What the merged `text_kwargs` ask of the token rows."""

    add_special_tokens: bool = True
    padding: str = "longest"  # "longest", "max_length" or "do_not_pad"
    padding_side: str = "right"
    truncation: bool = False
    truncation_side: str = "right"
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_attention_mask: bool = True
    return_offsets_mapping: bool = False

    @classmethod
    def from_text_kwargs(cls, text_kwargs: dict, tokenizer) -> "TextLayout":
        """Read merged `text_kwargs`; the tokenizer gives the sides and the length `truncation=True` cuts to when no
        `max_length` is given."""
        unsupported = {key: value for key, value in text_kwargs.items() if key not in TEXT_OPTIONS and value}
        if unsupported:
            raise ValueError(
                f"text options {reprlib.repr(unsupported)} are not supported by the foveated processor; it reads "
                f"{sorted(TEXT_OPTIONS)}"
            )
        padding = text_kwargs.get("padding", "longest")
        if isinstance(padding, bool):
            padding = "longest" if padding else "do_not_pad"
        padding = _choice("padding", padding, PaddingStrategy, {"longest", "max_length", "do_not_pad"})
        truncation = text_kwargs.get("truncation") or False
        if truncation is not True and truncation is not False:
            # A row holds one sequence, so "only_first" and "longest_first" both cut it; "only_second" has nothing.
            truncation = _choice(
                "truncation", truncation, TruncationStrategy, {"longest_first", "only_first", "do_not_truncate"}
            )
            truncation = truncation != "do_not_truncate"
        padding_side = text_kwargs.get("padding_side") or tokenizer.padding_side
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side={padding_side!r} is invalid; expected 'left' or 'right'")
        max_length = text_kwargs.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length={max_length!r} is invalid; expected a positive integer")
        if truncation and max_length is None:
            max_length = tokenizer.model_max_length  # transformers' default for truncation=True
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length=N (the length every row is padded to)")
        multiple = text_kwargs.get("pad_to_multiple_of")
        if multiple is not None and (not isinstance(multiple, int) or multiple < 1):
            raise ValueError(f"pad_to_multiple_of={multiple!r} is invalid; expected a positive integer")
        return cls(
            add_special_tokens=text_kwargs.get("add_special_tokens", True) is not False,
            padding=padding,
            padding_side=padding_side,
            truncation=truncation,
            truncation_side=tokenizer.truncation_side,
            max_length=max_length,
            pad_to_multiple_of=multiple,
            return_attention_mask=text_kwargs.get("return_attention_mask", True) is not False,
            return_offsets_mapping=bool(text_kwargs.get("return_offsets_mapping")),
        )


def truncate_rows(rows: list[dict[str, list]], videos: list[tuple[int, int] | None], layout: TextLayout) -> None:
    """Cut every row (a dict of equally long per-token lists) to `layout.max_length` on the tokenizer's
    `truncation_side`, in place; `videos[i]` is row i's video block (first and last index) or None.

    The model checks each video's T*K frame tokens, so a cut that would reach into the block is an error that says
    how long the row must be kept, not a row the model would refuse (or, cut after `<video_end>`, silently accept).
    """
    if not layout.truncation:
        return
    limit = layout.max_length
    for index, (row, video) in enumerate(zip(rows, videos, strict=True)):
        length = len(row["input_ids"])
        if length <= limit:
            continue
        excess = length - limit
        left = layout.truncation_side == "left"
        if video is not None and (video[0] < excess if left else video[1] >= limit):
            need = length - video[0] if left else video[1] + 1
            raise ValueError(
                f"text[{index}]: truncating its {length} tokens to max_length={limit} on the {layout.truncation_side} "
                f"would cut into the video's tokens (positions {video[0]}-{video[1]}); the video needs "
                f"max_length >= {need}: raise max_length, shorten the text or sample fewer frames"
            )
        for name, values in row.items():
            row[name] = values[excess:] if left else values[:limit]


def pad_rows(rows: list[dict[str, list]], pad_values: dict, layout: TextLayout) -> dict[str, list]:
    """Rows of per-token lists -> one list of rows per name, padded on `layout.padding_side` with `pad_values[name]`,
    with an `attention_mask` (1 on tokens, 0 on padding) when `layout.return_attention_mask`."""
    lengths = [len(row["input_ids"]) for row in rows]
    target = max(lengths)
    if layout.padding == "max_length":
        target = max(target, layout.max_length)  # a longer row (no truncation) stays whole, as the tokenizer does
    if layout.pad_to_multiple_of is not None and layout.padding != "do_not_pad":
        target = math.ceil(target / layout.pad_to_multiple_of) * layout.pad_to_multiple_of
    if layout.padding == "do_not_pad":
        target = None
    names = list(rows[0]) + (["attention_mask"] if layout.return_attention_mask else [])
    values = {**pad_values, "attention_mask": 0}
    columns = {name: [] for name in names}
    for row, length in zip(rows, lengths, strict=True):
        row = {**row, "attention_mask": [1] * length}
        filler = 0 if target is None else target - length
        for name in names:
            padding = [values[name]] * filler
            columns[name].append(padding + row[name] if layout.padding_side == "left" else row[name] + padding)
    return columns
