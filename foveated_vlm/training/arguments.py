"""`train.py`'s command line: its argument groups, the parser that puts a preset's flags under the user's, and the
checks that refuse conflicting settings before any work.

Four groups: `ModelArguments` (what model to build), `DataArguments` (what it reads), `FoveationArguments` (the
foveation experiment's training terms) and transformers' `TrainingArguments`.
"""

import json
import os
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from ..data.pipeline import DATASETS
from .foveation_losses import FoveationLosses
from .presets import PRESETS, preset_flags

__all__ = ["DataArguments", "FoveationArguments", "ModelArguments", "check_arguments", "parse"]


@dataclass
class ModelArguments:
    preset: str = field(default="synthetic", metadata={"help": f"one of {sorted(PRESETS)}"})
    vision_model: str | None = field(default=None, metadata={"help": "vision checkpoint; None: fresh from the sizes"})
    vision_hidden_size: int = 64
    vision_layers: int = 4
    vision_heads: int = 4
    patch_size: int = 8
    text_model: str = field(
        default="config", metadata={"help": "'config' (fresh from the sizes), 'smollm2-gguf' or a checkpoint"}
    )
    tokenizer: str = field(default="smollm2-gguf", metadata={"help": "'smollm2-gguf' or a tokenizer checkpoint"})
    text_hidden_size: int = 128
    text_layers: int = 2
    text_heads: int = 4
    tokens_per_frame: int = 1
    query_dim: int | None = None
    predictor_channels: int = 64
    reconstruction_loss_weight: float = 1.0
    caption_loss_weight: float = 1.0
    coarse_loss_weight: float = 1.0
    query_temperature: float = 1.0
    query_top_k: int = field(default=0, metadata={"help": "hard top-k attention of the queries in the ViT; 0: off"})
    query_norm: str = field(default="none", metadata={"help": "'batch': standardise planned queries over the batch"})
    token_norm: str = field(default="none", metadata={"help": "'batch': standardise frame tokens over the batch"})
    prompt_query: bool = field(
        default=False, metadata={"help": "add a query planned from the prompt (<video_start>) to every frame's query"}
    )
    glimpse_location: bool = field(
        default=False, metadata={"help": "each frame token also embeds where its glimpse looked (fixation centroid)"}
    )
    static_query_base: bool = field(
        default=False, metadata={"help": "planned queries are the static queries plus what the heads plan"}
    )
    vision_initializer_range: float = field(
        default=0.02, metadata={"help": "std of a fresh ViT's weights; larger gives its attention logits room"}
    )
    vision_position_init_std: float | None = field(
        default=None,
        metadata={
            "help": "dinov2: std of a fresh ViT's position embeddings (default: --vision_initializer_range); "
            "0: no positions (zeros, never trained)"
        },
    )
    vision_type: str = field(
        default="dinov3_vit", metadata={"help": "fresh ViT layout: dinov3_vit (RoPE) or dinov2 (learned positions)"}
    )
    vision_pretraining_steps: int = field(
        default=0,
        metadata={
            "help": "first pretrain the fresh ViT this many steps by masked-patch prediction on the training frames "
            "(no labels), save it to <output_dir>/vision_pretrained and train from it; 0: off"
        },
    )
    vision_pretraining_mask_ratio: float = 0.5
    vision_pretraining_learning_rate: float = 1e-3
    freeze_vision: bool = False
    freeze_language_model: bool = False
    lora_rank: int = field(default=0, metadata={"help": "LoRA rank on the language model; 0 trains it fully"})
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    backbone_learning_rate: float | None = field(
        default=None, metadata={"help": "learning rate of the vision encoder and language model (default: the same)"}
    )


# The foveation experiment's flags (--fine_queries, --contrastive_loss_weight, --entropy_margin_loss_weight,
# --entropy_margin, --fixation_loss_weight, --fixation_loss_steps): how the model is trained, never stored in its
# config. The loss module's dataclass is the argument group itself, so the flags and the trainer cannot drift apart.
FoveationArguments = FoveationLosses


@dataclass
class DataArguments:
    dataset: str = field(default="synthetic", metadata={"help": f"one of {sorted(DATASETS)}"})
    task: str = field(default="caption", metadata={"help": "synthetic task: caption or clutter"})
    question: str = field(default="direction", metadata={"help": "clutter question: direction, quadrant or mark"})
    caption_mix: float = field(
        default=0.0, metadata={"help": "clutter: share of training clips described whole instead of questioned"}
    )
    curriculum_clips: int = field(
        default=0, metadata={"help": "clutter: first about this many clips of 1, 2, 3 objects, then the full scene"}
    )
    num_frames: int = 8
    frame_size: int = 64
    target: str = field(default="pixels", metadata={"help": "reconstruction target: pixels or sd-vae"})
    target_size: int = 16
    train_captions: bool = True
    eval_videos: int = 64
    data_seed_offset: int = field(default=1, metadata={"help": "synthetic held-out stream seed = seed + this"})
    data_files: list[str] | None = field(
        default=None, metadata={"help": "webvid: CSV/parquet metadata; folder: the CSV/JSONL; llava_video: JSON"}
    )
    video_root: str | None = field(default=None, metadata={"help": "folder / llava_video: the videos' folder"})
    shards: list[str] | None = field(default=None, metadata={"help": "llava_video: tar.gz shards to stream"})
    eval_data_files: list[str] | None = field(default=None, metadata={"help": "held-out files (real datasets)"})
    eval_video_root: str | None = None
    eval_shards: list[str] | None = None
    precomputed_targets: str | None = field(
        default=None,
        metadata={"help": "targets written by `python -m foveated_vlm.data.precompute`; clips without one are skipped"},
    )


def parse(argv: list[str]) -> tuple[ModelArguments, DataArguments, FoveationArguments, TrainingArguments]:
    """`(model_args, data_args, foveation_args, training_args)`. Preset flags first, the user's after them: argparse
    keeps the last value of a repeated flag.

    The preset is read with the same parser as every other flag (`--preset clutter`, `--preset=clutter`), in a
    first pass that ignores the rest; the second pass parses the preset's flags and then the user's."""
    parser = HfArgumentParser((ModelArguments, DataArguments, FoveationArguments, TrainingArguments))
    preset = parser.parse_known_args(argv)[0].preset
    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return parser.parse_args_into_dataclasses(args=preset_flags(preset) + argv)


def check_arguments(
    model_args: ModelArguments,
    data_args: DataArguments,
    foveation_args: FoveationArguments,
    training_args: TrainingArguments,
) -> None:
    """Conflicting or unusable settings are an error before any work."""
    if model_args.reconstruction_loss_weight <= 0 and (
        model_args.caption_loss_weight <= 0 or not data_args.train_captions
    ):
        raise SystemExit("nothing to train: the reconstruction weight is 0 and captions are off or weighted 0")
    if data_args.task != "caption" and data_args.dataset != "synthetic":
        raise SystemExit(f"--task {data_args.task} is a synthetic task; --dataset {data_args.dataset} has its own")
    if data_args.caption_mix and data_args.dataset != "clutter":
        raise SystemExit(
            f"--caption_mix mixes described clips into --dataset clutter; got --dataset {data_args.dataset}"
        )
    if data_args.curriculum_clips and data_args.dataset != "clutter":
        raise SystemExit(f"--curriculum_clips grows clutter scenes; got --dataset {data_args.dataset}")
    clutter = data_args.dataset == "clutter" or (data_args.dataset == "synthetic" and data_args.task == "clutter")
    if foveation_args.fixation_loss_weight and not clutter:
        raise SystemExit(
            f"--fixation_loss_weight needs clips whose ground truth places the prompted object (--dataset clutter); "
            f"got --dataset {data_args.dataset} --task {data_args.task}"
        )
    if foveation_args.fixation_loss_weight and data_args.caption_mix:
        raise SystemExit(
            f"--fixation_loss_weight needs a prompted object in every clip; --caption_mix {data_args.caption_mix} "
            "mixes in described clips, which name none"
        )
    if foveation_args.fixation_loss_steps and not foveation_args.fixation_loss_weight:
        raise SystemExit(f"--fixation_loss_steps {foveation_args.fixation_loss_steps} ends a fixation loss that is off")
    if foveation_args.glimpse_draw_loss_weight and not foveation_args.glimpse_samples:
        raise SystemExit(
            f"--glimpse_draw_loss_weight {foveation_args.glimpse_draw_loss_weight} trains on drawn glimpses' answers: "
            "it needs --glimpse_samples 2 or more"
        )
    if foveation_args.restart_step and not (data_args.train_captions and model_args.caption_loss_weight > 0):
        raise SystemExit(
            f"--restart_step {foveation_args.restart_step} compares the passes' caption losses: it needs captions "
            "trained (--train_captions True, --caption_loss_weight > 0)"
        )
    if (
        foveation_args.restart_step
        and training_args.max_steps > 0
        and foveation_args.restart_step >= training_args.max_steps
    ):
        raise SystemExit(
            f"--restart_step {foveation_args.restart_step} must come before the end of the run "
            f"(--max_steps {training_args.max_steps})"
        )
    if model_args.vision_pretraining_steps < 0:
        raise SystemExit(f"--vision_pretraining_steps {model_args.vision_pretraining_steps} must be >= 0 (0: off)")
    if model_args.vision_pretraining_steps and (model_args.vision_model or model_args.vision_type != "dinov2"):
        raise SystemExit(
            "--vision_pretraining_steps pretrains a fresh DINOv2 ViT: it needs --vision_type dinov2 and no "
            f"--vision_model (got --vision_type {model_args.vision_type}, --vision_model {model_args.vision_model})"
        )
    if data_args.curriculum_clips < 0:
        raise SystemExit(f"--curriculum_clips {data_args.curriculum_clips} must be >= 0 (0: no curriculum)")
    clips = training_args.max_steps * training_args.per_device_train_batch_size
    clips *= training_args.gradient_accumulation_steps * training_args.world_size
    if data_args.curriculum_clips and training_args.max_steps > 0 and data_args.curriculum_clips >= clips:
        raise SystemExit(
            f"--curriculum_clips {data_args.curriculum_clips} leaves no step for the full scene: the run reads "
            f"{clips} clips (--max_steps x batch x accumulation x processes); lower it or train longer"
        )
    if model_args.prompt_query and model_args.query_norm == "batch" and training_args.per_device_train_batch_size < 2:
        raise SystemExit(
            "--prompt_query True with --query_norm batch standardises prompt queries over the batch; "
            f"--per_device_train_batch_size {training_args.per_device_train_batch_size} must be >= 2"
        )
    if not 0 <= data_args.caption_mix < 1:
        raise SystemExit(f"--caption_mix {data_args.caption_mix} must be in [0, 1): the share of described clips")
    if model_args.lora_rank and training_args.resume_from_checkpoint:
        raise SystemExit("resuming a LoRA run is not supported yet: its checkpoints hold adapter weights")
    if model_args.lora_rank and model_args.freeze_language_model:
        raise SystemExit("--lora_rank trains adapters on the language model; it conflicts with --freeze_language_model")
    existing = os.path.join(training_args.output_dir, "config.json")
    if os.path.exists(existing):
        with open(existing) as handle:
            model_type = json.load(handle).get("model_type")
        if model_type != "foveated_vlm":
            raise SystemExit(
                f"--output_dir {training_args.output_dir} holds another model (model_type {model_type!r}); "
                "choose another directory"
            )
