"""From samples of any source to model-ready batches.

A sample is a dict with `frames` (anything `FoveatedVideoProcessor` reads: a `[T, H, W, 3]` uint8 array, a path,
bytes, a URL), a `prompt` and, when captions are trained, an `answer`. `VideoTextCollator` renders each prompt with
the processor's chat template (a user turn holding the prompt, then the video: see `chat_prompt`), runs the
processor (frames, tokens, caption labels) and the target encoder, and returns exactly what
`FoveatedVLMForConditionalGeneration.forward` takes (with `fixation_grid`, also where each clip's prompted target
lies, for the fixation loss). Use it as the `data_collator` of a `Trainer`, with
`remove_unused_columns=False` so the Trainer keeps the raw columns for it.
"""

import json

import torch

__all__ = ["VideoTextCollator", "chat_prompt", "ground_truth", "target_patches"]


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

    def prompt_text(self, prompt: str) -> str:
        return chat_prompt(self.processor, prompt)

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.processor(
            text=[self.prompt_text(sample["prompt"]) for sample in samples],
            videos=[sample["frames"] for sample in samples],
            answers=[sample["answer"] for sample in samples] if self.train_captions else None,
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
