"""From samples of any source to model-ready batches.

A sample is a dict with `frames` (anything `FoveatedVideoProcessor` reads: a `[T, H, W, 3]` uint8 array, a path,
bytes, a URL), a `prompt` and, when captions are trained, an `answer`. `VideoTextCollator` renders each prompt with
the processor's chat template (a user turn holding the prompt, then the video: see `chat_prompt`), runs the
processor (frames, tokens, caption labels) and the target encoder, and returns exactly what
`FoveatedVLMForConditionalGeneration.forward` takes (with `fixation_grid`, also where each clip's prompted target
lies, for the fixation loss). Use it as the `data_collator` of a `Trainer`, with
`remove_unused_columns=False` so the Trainer keeps the raw columns for it: without it the Trainer drops every column
the model's forward does not name, and the collator says so (a `ValueError` naming the setting) instead of a bare
`KeyError`. Frames as `datasets`' `with_format("torch")`/`("numpy")` gives them, integer tensors or arrays (int64),
are taken as uint8 when every value lies in 0..255; a value outside is a `ValueError` naming the sample.

Text from data is never markup: the collator strips from every prompt and answer the strings that steer the model
(the tokenizer's special tokens, `<frame>`, `<video_start>`, `<video_end>`, chat tokens such as `<|im_end|>`, and
the `<video>` placeholder), so a caption that mentions `<frame>` cannot change the frame-token count or end a turn.
A `<video>` that a user writes in text given to the processor directly stays the processor's error.

`SkippingCollator` wraps a collator so that a sample that makes batching fail is dropped and counted instead of
ending the run, and (for `FoveatedTrainer`) carries the skip counts of the stream into the batch.
"""

import json
import logging
import re

import numpy as np
import torch

from ..data.sample_counts import SAMPLE_COUNTS_KEY, SKIPPED_FIELD, NoSamplesError, SampleCounts, reason_of

__all__ = ["SkippingCollator", "VideoTextCollator", "chat_prompt", "ground_truth", "target_patches", "uint8_frames"]

logger = logging.getLogger(__name__)


def chat_prompt(processor, prompt: str) -> str:
    """The chat-formatted user turn, prompt then video, ending with the assistant's turn (what generation sees).

    The prompt comes first because the language model is causal: the hidden states that plan where to look in each
    frame can only read text that precedes the video. With the video first, "Track the red triangle" would arrive
    after every query was chosen, and no query could single out the target.
    """
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}, {"type": "video"}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def ground_truth(sample) -> dict | None:
    """A generated sample's ground truth (a dict; `datasets` carries it as a JSON string), or None."""
    truth = sample.get("ground_truth")
    return json.loads(truth) if isinstance(truth, str) else truth


def target_patches(sample, grid: int) -> torch.Tensor | None:
    """`[T, grid, grid]` bool: the patches the prompted target overlaps in each frame, or None unless the sample is
    a clutter clip, whose prompt names a target that its ground truth places."""
    truth = ground_truth(sample)
    if not truth or truth.get("task") != "clutter":
        return None
    target = truth["objects"][truth["target"]]
    scale = grid / truth["frame_size"]  # patches per source pixel
    centres = torch.tensor(target["positions"], dtype=torch.float32) * scale  # [T, 2] (x, y) in patch units
    radius = target["size"] / 2 * scale
    low = (centres - radius).floor().clamp(0, grid - 1)  # [T, 2] first patch overlapped
    high = (centres + radius).ceil().clamp(1, grid) - 1  # [T, 2] last patch overlapped
    index = torch.arange(grid, dtype=torch.float32)
    cols = (index >= low[:, :1]) & (index <= high[:, :1])  # [T, grid]
    rows = (index >= low[:, 1:]) & (index <= high[:, 1:])  # [T, grid]
    return rows[:, :, None] & cols[:, None, :]


def uint8_frames(frames, video_id="?"):
    """`frames` as the processor takes them: integer tensors and arrays other than uint8 (`datasets`' torch and numpy
    formats give int64) become uint8 once every value is checked to lie in 0..255; anything else is returned as is."""
    if isinstance(frames, np.ndarray) and np.issubdtype(frames.dtype, np.integer) and frames.dtype != np.uint8:
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor) or frames.dtype in (torch.uint8, torch.bool) or frames.is_floating_point():
        return frames
    if frames.numel() and (frames.min() < 0 or frames.max() > 255):
        raise ValueError(
            f"sample {video_id}: integer frames ({frames.dtype}) must lie in 0..255 to be read as uint8 pixels, got "
            f"values from {frames.min().item()} to {frames.max().item()}"
        )
    return frames.to(torch.uint8)


class VideoTextCollator:
    """Samples -> `input_ids`, `attention_mask`, `pixel_values_videos`, `labels`, `target_latents`
    (and `fixation_targets`).

    Args:
        processor: a `FoveatedVLMProcessor`.
        target_encoder: a target encoder (`foveated_vlm.build_target_encoder`) or None for no reconstruction.
        train_captions: supervise the samples' `answer` text (captions, answers) with `labels`.
        fixation_grid: the patch grid's side (frame size / patch size): also return `fixation_targets`
            `[B, T, grid, grid]`, the patches each clip's prompted target covers (`target_patches`), for the
            fixation loss. Every sample must then be a clutter clip, whose ground truth places its target.
    """

    def __init__(self, processor, target_encoder=None, train_captions: bool = True, fixation_grid: int | None = None):
        self.processor = processor
        self.target_encoder = target_encoder
        self.train_captions = train_captions
        self.fixation_grid = fixation_grid
        self._markup = None  # the pattern of strings `plain_text` strips, built on first use

    def plain_text(self, text: str) -> str:
        """`text` from data without any string that steers the model: the tokenizer's special tokens (including the
        video tokens and chat tokens) and the `<video>` placeholder. Stripped until none is left, so that removing
        one cannot join the pieces around it into another ("<fr<frame>ame>")."""
        if self._markup is None:
            tokenizer = self.processor.tokenizer
            special = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
            strings = special | set(tokenizer.all_special_tokens) | {self.processor.video_token}
            self._markup = re.compile("|".join(map(re.escape, sorted(strings, key=len, reverse=True))))
        while (stripped := self._markup.sub("", text)) != text:
            text = stripped
        return text

    def prompt_text(self, prompt: str) -> str:
        """The chat-formatted turn for a prompt from data (see `plain_text` and `chat_prompt`)."""
        return chat_prompt(self.processor, self.plain_text(prompt))

    def check_columns(self, samples: list[dict]) -> None:
        """Every sample holds the columns this collator reads; a `Trainer` left at `remove_unused_columns=True`
        drops them before they get here (they are no argument of the model's forward)."""
        needed = ("frames", "prompt", "answer") if self.train_captions else ("frames", "prompt")
        for sample in samples:
            missing = [name for name in needed if name not in sample]
            if missing:
                raise ValueError(
                    f"sample {sample.get('video_id', '?')} lacks {missing} (its keys: {sorted(sample)}); "
                    f"VideoTextCollator reads the raw columns {list(needed)}. A Trainer drops every column its "
                    "model's forward does not name: set TrainingArguments(remove_unused_columns=False)"
                )

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        self.check_columns(samples)
        batch = self.processor(
            text=[self.prompt_text(sample["prompt"]) for sample in samples],
            videos=[uint8_frames(sample["frames"], sample.get("video_id", "?")) for sample in samples],
            answers=[self.plain_text(sample["answer"]) for sample in samples] if self.train_captions else None,
            return_target_frames=self.target_encoder is not None,
        )
        batch = dict(batch)
        if self.target_encoder is not None:
            with torch.no_grad():
                batch["target_latents"] = self.target_encoder.encode(batch.pop("target_frames"))  # [B, T, C, h, w]
        if self.fixation_grid:
            masks = [target_patches(sample, self.fixation_grid) for sample in samples]
            ids = [sample.get("video_id", "?") for sample in samples]
            unplaced = [video_id for video_id, mask in zip(ids, masks, strict=True) if mask is None]
            if unplaced:
                raise ValueError(
                    "fixation targets need clutter clips, whose ground truth places the prompted target; "
                    f"got samples {unplaced}"
                )
            masks = torch.stack(masks)  # [B, T, grid, grid] bool, one map per frame of the clip
            if masks.shape[1] != batch["pixel_values_videos"].shape[1]:
                raise ValueError(
                    f"fixation targets place the target in the {masks.shape[1]} frames of clips {ids}, but the "
                    f"processor samples {batch['pixel_values_videos'].shape[1]}: generate clips with its num_frames"
                )
            batch["fixation_targets"] = masks
        return batch


class SequenceTooLong(ValueError):
    """A sample with more tokens than the language model has positions."""


class SkippingCollator:
    """Wraps a collator (`VideoTextCollator`, `PrecomputedTargetsCollator`, ...): a sample that makes batching fail
    is dropped and counted instead of ending the run.

    Only when the whole batch fails is each sample batched alone; those that fail are dropped (logged at WARNING,
    counted as "collate_<error class>") and the others batched again. If every sample of the batch fails, the data
    or the setup is broken rather than one sample (a tokenizer without an eos token, a setting no sample meets, or
    a batch-size run of bad samples), and a Trainer cannot take an empty batch: it raises `NoSamplesError` with the
    counts, chained to the first error.

    Args:
        collator: samples -> batch dict.
        report_counts: add `sample_counts` to every batch: {"succeeded": samples batched, "skipped": reason ->
            count}, the samples dropped here plus the skips the samples' streams stamped on them
            (`SampleFailures.stamp`). For `FoveatedTrainer`, which pops and logs them; a plain `Trainer` would pass
            the key on to the model's forward.
        max_length: a sample whose tokens are more than this (the language model's `max_position_embeddings`,
            which the model refuses to run past) is dropped and counted as "collate_sequence_too_long".
    """

    def __init__(self, collator, report_counts: bool = False, max_length: int | None = None):
        self.collator = collator
        self.report_counts = report_counts
        self.max_length = max_length

    def __call__(self, samples: list[dict]) -> dict:
        counts = SampleCounts()  # of this batch: the samples dropped here and the skips the samples carry
        try:
            batch = self._collate(samples)
        except Exception as error:  # noqa: BLE001 - a bad sample must never end the run; every one is tried alone
            samples = self._batchable(samples, error, counts)
            batch = self._collate(samples)
        if self.report_counts:
            for sample in samples:
                counts.add_stamp(sample.get(SKIPPED_FIELD))
            counts.succeeded = len(samples)
            batch[SAMPLE_COUNTS_KEY] = counts.as_dict()
        return batch

    def _collate(self, samples: list[dict]) -> dict:
        batch = self.collator(samples)
        if self.max_length is not None:
            lengths = batch["attention_mask"].sum(dim=1)  # [B] tokens per row, padding excluded
            if int(lengths.max()) > self.max_length:
                raise SequenceTooLong(
                    f"{int(lengths.max())} tokens, more than the language model's {self.max_length} positions "
                    "(a long text or too many frames)"
                )
        return batch

    def _batchable(self, samples: list[dict], batch_error: Exception, counts: SampleCounts) -> list[dict]:
        """The samples that batch alone; the others are counted in `counts` (with the skips they carried)."""
        kept, first = [], None
        for sample in samples:
            try:
                self._collate([sample])
            except Exception as error:  # noqa: BLE001 - counted and named below
                reason = reason_of(error, "collate_")
                counts.skipped[reason] += 1
                if self.report_counts:
                    counts.add_stamp(sample.get(SKIPPED_FIELD))
                first = first or error
                logger.warning("skipped sample %s while batching (%s): %s", sample.get("video_id", "?"), reason, error)
            else:
                kept.append(sample)
        if not kept:
            raise NoSamplesError(
                f"every sample of a batch of {len(samples)} failed while batching ({counts.summary()}); "
                f"the first error: {type(first).__name__}: {first}"
            ) from first
        if first is None:  # each sample batches alone: the error comes from the samples together, not from one
            raise batch_error
        return kept
