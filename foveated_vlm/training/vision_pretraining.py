"""A training stage before the main one: pretrain a fresh ViT without labels on the training stream's own frames.

A pretrained encoder's patch keys already tell objects apart, so a query that knows what it wants (the language
model's, after reading the prompt) has keys to align with; a fresh ViT's keys are dominated by position and a query
learns to single out one object only if keys and queries discover each other at once. A GPU user takes
`facebook/dinov3-*`; offline, this stage gives the same kind of start: masked-patch prediction (SimMIM: the masked
patches' embeddings replaced by the ViT's mask token, a linear head predicting their pixels from the last hidden
states, L1 on the masked patches only). It reads only the frames of each clip, never a prompt, an answer or a ground
truth, and it writes a plain DINOv2 checkpoint (`save_pretrained`) that the main stage loads with
`AutoModel.from_pretrained` like any Hub encoder (`--vision_model DIR`).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, Trainer, TrainingArguments

from ..video_processing_foveated import FoveatedVideoProcessor
from .data_collator import uint8_frames
from .model_building import init_position_embeddings

__all__ = ["MaskedFramesCollator", "MaskedPatchPretraining", "patchify", "pretrain_vision_encoder"]


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`[N, C, H, W]` -> `[N, (H/p)*(W/p), C*p*p]`, patches in the ViT's row-major order."""
    patches = F.unfold(pixel_values, kernel_size=patch_size, stride=patch_size)  # [N, C*p*p, L]
    return patches.transpose(1, 2)


class MaskedPatchPretraining(nn.Module):
    """A DINOv2 ViT and a linear pixel head; `forward` gives the L1 loss of the masked patches' pixels."""

    def __init__(self, vision_model):
        super().__init__()
        self.vision_model = vision_model
        config = vision_model.config
        self.patch_size = config.patch_size
        self.pixel_head = nn.Linear(config.hidden_size, config.num_channels * config.patch_size**2)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor) -> dict:
        # pixel_values [N, 3, H, W] (normalised frames), bool_masked_pos [N, L] with L = (H/p)*(W/p)
        hidden = self.vision_model(pixel_values=pixel_values, bool_masked_pos=bool_masked_pos).last_hidden_state
        predicted = self.pixel_head(hidden[:, 1:])  # [N, L, 3*p*p]: the CLS token is not a patch
        target = patchify(pixel_values, self.patch_size)  # [N, L, 3*p*p]
        error = (predicted - target).abs().mean(-1)  # [N, L]
        mask = bool_masked_pos.to(error.dtype)
        return {"loss": (error * mask).sum() / mask.sum().clamp_min(1)}


class MaskedFramesCollator:
    """Clips (`frames` only) -> every frame of the batch as one image batch with a random patch mask.

    Returns `pixel_values` `[B*T, 3, H, W]` and `bool_masked_pos` `[B*T, L]`, `mask_ratio` of each frame's L
    patches masked (at least one, at most L - 1)."""

    def __init__(self, video_processor: FoveatedVideoProcessor, patch_size: int, mask_ratio: float, seed: int = 0):
        if not 0 < mask_ratio < 1:
            raise ValueError(f"--vision_pretraining_mask_ratio {mask_ratio} must be in (0, 1)")
        self.video_processor, self.patch_size, self.mask_ratio = video_processor, patch_size, mask_ratio
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, samples: list[dict]) -> dict:
        videos = [uint8_frames(sample["frames"], sample.get("video_id", "?")) for sample in samples]
        pixels = self.video_processor(videos, return_tensors="pt")["pixel_values_videos"]  # [B, T, 3, H, W]
        pixels = pixels.flatten(0, 1)  # [B*T, 3, H, W]
        patches = (pixels.shape[-2] // self.patch_size) * (pixels.shape[-1] // self.patch_size)
        masked = min(max(round(self.mask_ratio * patches), 1), patches - 1)
        order = torch.rand(pixels.shape[0], patches, generator=self.generator).argsort(-1)  # [B*T, L]
        return {"pixel_values": pixels, "bool_masked_pos": order < masked}


def pretrain_vision_encoder(
    vision_config: dict,
    train_stream,
    output_dir: str,
    steps: int,
    *,
    mask_ratio: float = 0.5,
    learning_rate: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
    position_init_std: float | None = None,
    num_frames: int = 8,
    disable_tqdm: bool = False,
) -> str:
    """Pretrain a fresh DINOv2 ViT (`vision_config`, as `AutoConfig.for_model` takes it) for `steps` steps of
    `batch_size` clips of `train_stream` with a plain `Trainer`; save it to `output_dir` and return that path.

    `position_init_std` redraws the fresh position embeddings first (as `--vision_position_init_std` does);
    `num_frames` frames of each clip are read, as the main stage's processor reads them."""
    if vision_config.get("model_type") != "dinov2":
        raise ValueError(
            "vision pretraining masks patches with DINOv2's mask token; --vision_type "
            f"{vision_config.get('model_type')} has none (use --vision_type dinov2)"
        )
    torch.manual_seed(seed)
    vision = AutoModel.from_config(AutoConfig.for_model(**vision_config))
    if position_init_std is not None:
        init_position_embeddings(vision, position_init_std)
    model = MaskedPatchPretraining(vision)
    side = vision.config.image_size
    collator = MaskedFramesCollator(
        FoveatedVideoProcessor(size=side, num_frames=num_frames), vision.config.patch_size, mask_ratio, seed
    )
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=min(50, steps // 10),
        lr_scheduler_type="cosine",
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,  # the collator reads the raw `frames` column
        seed=seed,
        disable_tqdm=disable_tqdm,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_stream, data_collator=collator)
    trainer.train()
    if trainer.is_world_process_zero():  # under accelerate every rank trained its shard of the stream (DDP)
        vision.save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()  # no rank loads the checkpoint before it is written
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        print(f"vision pretraining: masked-patch L1 {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} steps", flush=True)
    return output_dir
