"""Train a foveated video VLM with the HF Trainer (one GPU, many through `accelerate launch`, or the CPU).

    python train.py                                   # the embedded default: offline synthetic video, tiny model
    python train.py --preset smollm2-offline          # real SmolLM2-135M-Instruct weights (offline GGUF), fresh ViT
    python train.py --preset synthetic --max_steps 50 --output_dir outputs/try   # any TrainingArguments flag

A preset is a set of default flags; flags given on the command line win. The run writes to `--output_dir` a
checkpoint that `from_pretrained` loads (model with its code, and the processor), `metrics.json` with the
held-out fine/coarse losses, their ratios and the fixation entropies, `log_history.json` (every logged step),
`figures/` (where the static and the planned queries looked, frame by frame, PNG and GIF; the loss curves) and a
filled model card `README.md`. `--push_to_hub` uploads the whole folder once, at the end, when the card, the
metrics and the figures are written (to `--hub_model_id`, which the card's usage code then loads; without it, a
repository named after `--output_dir`); checkpoint pushes during training (`--hub_strategy`, with a
`--save_strategy`) carry weights, processor and checkpoints but no card: the repository gets its card at the end.

Bad data never ends a run: samples a source cannot read and samples that fail while batching are skipped and
counted by reason; the counts (summed over DataLoader workers and ranks) are in the training logs (`data/...`,
TensorBoard) and in `metrics.json` (`data`). Only a training stream that gives no sample at all fails, with
`NoSamplesError` and the counts, before anything is saved. Without held-out data (a real corpus without
`--eval_data_files`/`--eval_shards`) the run says so, `metrics.json` holds the training-time figures only
(`training`: the last logging window) and the figures show training clips.
"""

import itertools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from accelerate.utils import gather_object
from datasets.distributed import split_dataset_by_node
from transformers import HfArgumentParser, TrainingArguments, set_seed

from foveated_vlm import FoveatedVLMForConditionalGeneration, VideoTextCollator, build_target_encoder
from foveated_vlm.data.faults import NoSamplesError, SampleFailures
from foveated_vlm.data.pipeline import DATASETS, GENERATED, build_dataset
from foveated_vlm.data.precompute import PrecomputedTargets, PrecomputedTargetsCollator, video_id_of
from foveated_vlm.data.sample_counts import SampleCounts
from foveated_vlm.evaluation.metrics import evaluate_model
from foveated_vlm.evaluation.reporting import (
    fixation_figures,
    log_figures_to_tensorboard,
    loss_curves,
    tensorboard_logging_dir,
    write_model_card,
)
from foveated_vlm.training.data_collator import SkippingCollator
from foveated_vlm.training.finetuning import add_lora, freeze, merge_lora
from foveated_vlm.training.foveation_losses import FoveationLosses
from foveated_vlm.training.presets import PRESETS, build_model_and_processor, preset_flags
from foveated_vlm.training.trainer import FoveatedTrainer


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
    vision_initializer_range: float = field(
        default=0.02, metadata={"help": "std of a fresh ViT's weights; larger gives its attention logits room"}
    )
    vision_position_init_std: float | None = field(
        default=None,
        metadata={"help": "dinov2: std of a fresh ViT's position embeddings (default: --vision_initializer_range)"},
    )
    vision_type: str = field(
        default="dinov3_vit", metadata={"help": "fresh ViT layout: dinov3_vit (RoPE) or dinov2 (learned positions)"}
    )
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


def parse(argv: list[str]):
    """`(model_args, data_args, foveation_args, training_args)`. Preset flags first, the user's after them: argparse
    keeps the last value of a repeated flag.

    The preset is read with the same parser as every other flag (`--preset clutter`, `--preset=clutter`), in a
    first pass that ignores the rest; the second pass parses the preset's flags and then the user's."""
    parser = HfArgumentParser((ModelArguments, DataArguments, FoveationArguments, TrainingArguments))
    preset = parser.parse_known_args(argv)[0].preset
    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return parser.parse_args_into_dataclasses(args=preset_flags(preset) + argv)


def check_arguments(model_args, data_args, foveation_args, training_args) -> None:
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


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, foveation_args, training_args = parse(sys.argv[1:] if argv is None else argv)
    check_arguments(model_args, data_args, foveation_args, training_args)
    set_seed(training_args.seed)
    model, processor = build_model_and_processor(model_args, data_args)
    freeze(model, vision=model_args.freeze_vision, language_model=model_args.freeze_language_model)
    if model_args.lora_rank:
        add_lora(model, model_args.lora_rank, model_args.lora_alpha, model_args.lora_dropout)
    target_encoder = None
    if model_args.reconstruction_loss_weight > 0:
        target_encoder = build_target_encoder(data_args.target, target_size=model.config.target_size)

    def stream(seed, shard: bool = False, held_out: bool = False, failures: SampleFailures | None = None):
        files = (data_args.eval_data_files, data_args.eval_video_root, data_args.eval_shards)
        dataset = build_dataset(
            data_args.dataset,
            seed=seed,
            frame_size=data_args.frame_size,
            num_frames=data_args.num_frames,
            task=data_args.task,
            question=data_args.question,
            caption_mix=0.0 if held_out else data_args.caption_mix,  # held-out clips are all questions
            curriculum_clips=0 if held_out else data_args.curriculum_clips,  # ... of the full scene
            data_files=files[0] if held_out else data_args.data_files,
            video_root=(files[1] or data_args.video_root) if held_out else data_args.video_root,
            shards=files[2] if held_out else data_args.shards,
            failures=failures,
        )
        if shard and training_args.world_size > 1:  # each rank reads its own part of the stream
            dataset = split_dataset_by_node(
                dataset, rank=training_args.process_index, world_size=training_args.world_size
            )
        return dataset

    # Held out: another seed of a generated source (disjoint clips); for real corpora, the --eval_* files.
    has_held_out = data_args.dataset in GENERATED or bool(data_args.eval_data_files or data_args.eval_shards)
    evaluate_videos = data_args.eval_videos if has_held_out else 0
    held_out_seed = training_args.seed + data_args.data_seed_offset
    # Counts the training stream's skips in this process (DataLoader workers count their own copies): those after
    # its last sample reach no batch, and `training_data_counts` adds them.
    train_failures = SampleFailures(f"training stream ({data_args.dataset})")
    train_stream = stream(training_args.seed, shard=True, failures=train_failures)
    fixation_grid = model.config.frame_size // model.config.patch_size if foveation_args.fixation_loss_weight else None
    train_collator = VideoTextCollator(
        processor, target_encoder, train_captions=data_args.train_captions, fixation_grid=fixation_grid
    )
    if data_args.precomputed_targets:  # training reads its targets from disk; held-out evaluation computes them
        stored = PrecomputedTargets(data_args.precomputed_targets)
        train_stream = train_stream.filter(lambda sample: video_id_of(sample) in stored)
        train_collator = PrecomputedTargetsCollator(
            VideoTextCollator(processor, None, train_captions=data_args.train_captions, fixation_grid=fixation_grid),
            stored,
        )
    training_args.accelerator_config.dispatch_batches = False  # ranks read their own shards, nothing to dispatch

    trainer = FoveatedTrainer(
        model=model,
        args=training_args,
        train_dataset=train_stream,
        eval_dataset=stream(held_out_seed, held_out=True).take(evaluate_videos) if evaluate_videos else None,
        data_collator=SkippingCollator(  # bad samples skipped and counted
            train_collator, report_counts=True, max_length=model.config.text_config.max_position_embeddings
        ),
        processing_class=processor,
        backbone_learning_rate=model_args.backbone_learning_rate,
        foveation=foveation_args,
    )
    print(startup_summary(model, model_args, data_args, training_args), flush=True)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_seconds = time.perf_counter() - start
    data_counts = training_data_counts(trainer, train_failures)
    if data_counts.succeeded == 0 and trainer.state.global_step < trainer.state.max_steps:  # it stopped for want
        message = f"{train_failures.source} gave no sample to train on, so nothing was saved: {data_counts.summary()}"
        if training_args.dataloader_num_workers:
            message += " (each DataLoader worker logged the skips it met after its last sample)"
        raise NoSamplesError(message)

    merge_lora(model)  # export plain weights
    # Model, its code and the processor (every rank takes part); with --push_to_hub nothing is pushed yet.
    trainer.save_model(training_args.output_dir)
    if not trainer.is_world_process_zero():
        return {}
    if trainer.is_fsdp_enabled:  # rank 0 alone cannot run a sharded model (each forward gathers from every rank)
        model = FoveatedVLMForConditionalGeneration.from_pretrained(training_args.output_dir)  # the saved whole one
    print(f"training data: {data_counts.summary()}", file=sys.stderr, flush=True)
    # The same metrics as `foveated-vlm evaluate`, on the held-out stream.
    metrics = {"held_out_videos": 0}
    if evaluate_videos:
        metrics = evaluate_model(
            model,
            processor,
            stream(held_out_seed, held_out=True),
            num_videos=evaluate_videos,
            batch_size=training_args.per_device_eval_batch_size,
            target_encoder=target_encoder,
            progress=not training_args.disable_tqdm,
            random_fine_queries=foveation_args.random_queries,  # the control is evaluated as it trained
        )
    metrics.update(train_seconds=train_seconds, steps=trainer.state.global_step, preset=model_args.preset)
    metrics.update(training=last_training_window(trainer.state.log_history), data=data_counts.report())
    with open(os.path.join(training_args.output_dir, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    with open(os.path.join(training_args.output_dir, "log_history.json"), "w") as handle:
        json.dump(trainer.state.log_history, handle, indent=2)
    run_args = {"model": asdict(model_args), "data": asdict(data_args), "foveation": asdict(foveation_args)}
    with open(os.path.join(training_args.output_dir, "train_args.json"), "w") as handle:
        json.dump(run_args, handle, indent=2)
    output = training_args.output_dir
    if not has_held_out:
        print(
            "no held-out data was given (--eval_data_files / --eval_shards): metrics.json holds the training-time "
            "figures only ('training', the last logging window) and the figures show training clips",
            flush=True,
        )
    shown = stream(held_out_seed, held_out=True) if has_held_out else stream(training_args.seed)
    shown = list(itertools.islice(shown, 4))
    figures = []
    if shown:
        figures = fixation_figures(
            model,
            processor,
            shown,
            output,
            target_encoder=target_encoder,
            random_fine_queries=foveation_args.random_queries,
        )
    else:
        print("no clip to draw the fixation figures from: the stream gave none; figures skipped", flush=True)
    num_patches = (model.config.frame_size // model.config.patch_size) ** 2  # the entropy plot's uniform line
    curves = loss_curves(trainer.state.log_history, os.path.join(output, "figures", "loss_curves.png"), num_patches)
    run_args["training"] = training_args.to_dict()
    # The card's usage code loads the Hub repository (the id the Hub gave `--hub_model_id`) when there is one.
    model_id = trainer.hub_model_id or training_args.hub_model_id
    figures = [path for path in [curves] if path] + figures
    write_model_card(output, metrics, run_args, figures=figures, model_id=model_id)
    log_figures_to_tensorboard(tensorboard_logging_dir(trainer), metrics, figures, trainer.state.global_step)
    if training_args.push_to_hub:  # once, now that the folder holds the card, metrics.json and the figures
        trainer.push_to_hub(commit_message="End of training")
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def training_data_counts(trainer: FoveatedTrainer, failures: SampleFailures) -> SampleCounts:
    """The samples trained on and the skips, summed over DataLoader workers and ranks (every rank must call it).

    Batches carry the skips met before each of their samples; the skips a stream met after its last sample
    reach no batch. Those of this process are still in its `failures` and are added here; a DataLoader
    worker's are in the summary it logs when its stream ends."""
    counts = trainer.sample_counts()
    for tail in gather_object([failures.take_unstamped()]):  # one per rank
        counts.add({"skipped": tail})
    return counts


def last_training_window(log_history: list[dict]) -> dict:
    """The last training log's losses, ratios and entropies (averages over its logging window)."""
    logged = [entry for entry in log_history if "loss" in entry]
    bookkeeping = ("epoch", "step", "grad_norm", "learning_rate")
    if not logged:
        return {}
    return {key: value for key, value in logged[-1].items() if key not in bookkeeping and not key.startswith("data/")}


def startup_summary(model, model_args, data_args, training_args) -> str:
    """Parameters per part (total and trainable), frames, tokens per frame, effective batch, target, dataset."""

    def count(parameters):
        parameters = list(parameters)
        return sum(p.numel() for p in parameters), sum(p.numel() for p in parameters if p.requires_grad)

    vision = count(model.foveated_encoder.vision_model.parameters())
    language = count(model.model.language_model.parameters())
    everything = count(model.parameters())  # tied weights are counted once
    rest = (everything[0] - vision[0] - language[0], everything[1] - vision[1] - language[1])
    lines = [f"preset {model_args.preset}: dataset {data_args.dataset} ({data_args.task}), target {data_args.target}"]
    for name, (total, trainable) in (("vision encoder", vision), ("language model", language), ("new parts", rest)):
        lines.append(f"  {name:<15} {total / 1e6:8.2f} M parameters, {trainable / 1e6:8.2f} M trainable")
    config = model.config
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    lines.append(
        f"  {data_args.num_frames} frames of {config.frame_size} px, {config.tokens_per_frame} token(s) per frame, "
        f"effective batch {batch} x {training_args.world_size} process(es), {training_args.max_steps} steps"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
