"""One training run as `train.py` runs it: the data streams, the Trainer, the saved checkpoint, then, on the main
process, the held-out metrics, `metrics.json`, `log_history.json`, `train_args.json`, the figures, the filled model
card and the push to the Hub (train.py's docstring says what each holds)."""

import itertools
import json
import os
import sys
import time
from dataclasses import asdict, replace

from accelerate.utils import gather_object
from datasets import IterableDataset
from datasets.distributed import split_dataset_by_node
from transformers import TrainingArguments

from ..data.faults import NoSamplesError, SampleFailures
from ..data.pipeline import GENERATED, build_dataset
from ..data.precompute import PrecomputedTargets, PrecomputedTargetsCollator, video_id_of
from ..data.sample_counts import SampleCounts
from ..data.targets import build_target_encoder
from ..evaluation.metrics import evaluate_model
from ..evaluation.reporting import (
    fixation_figures,
    log_figures_to_tensorboard,
    loss_curves,
    tensorboard_logging_dir,
    write_model_card,
)
from ..modeling_foveated import FoveatedVLMForConditionalGeneration
from ..processing_foveated import FoveatedVLMProcessor
from .arguments import DataArguments, FoveationArguments, ModelArguments
from .data_collator import SkippingCollator, VideoTextCollator
from .finetuning import add_lora, freeze, merge_lora
from .model_building import fresh_vision_config
from .restart_check import RestartCheck
from .trainer import FoveatedTrainer
from .vision_pretraining import pretrain_vision_encoder

__all__ = [
    "clip_stream",
    "last_training_window",
    "pretrain_vision_stage",
    "run_training",
    "startup_summary",
    "training_data_counts",
]


def pretrain_vision_stage(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> ModelArguments:
    """With `--vision_pretraining_steps N`: pretrain the fresh ViT the flags describe on the frames of the training
    stream (vision_pretraining.py; no prompt, answer or ground truth is read), save it to
    `<output_dir>/vision_pretrained`, and return the model arguments that load it (`--vision_model` that folder).
    Without it, `model_args` unchanged."""
    if not model_args.vision_pretraining_steps:
        return model_args
    directory = pretrain_vision_encoder(
        fresh_vision_config(model_args, data_args),
        clip_stream(data_args, training_args, training_args.seed, shard=True),
        os.path.join(training_args.output_dir, "vision_pretrained"),
        model_args.vision_pretraining_steps,
        mask_ratio=model_args.vision_pretraining_mask_ratio,
        learning_rate=model_args.vision_pretraining_learning_rate,
        batch_size=training_args.per_device_train_batch_size,
        seed=training_args.seed,
        position_init_std=model_args.vision_position_init_std,
        num_frames=data_args.num_frames,
        disable_tqdm=training_args.disable_tqdm,
    )
    return replace(model_args, vision_model=directory, vision_position_init_std=None)


def run_training(
    model: FoveatedVLMForConditionalGeneration,
    processor: FoveatedVLMProcessor,
    model_args: ModelArguments,
    data_args: DataArguments,
    foveation_args: FoveationArguments,
    training_args: TrainingArguments,
    restart_check: RestartCheck | None = None,
    restarts: list[dict] | None = None,
) -> dict | None:
    """Train `model` (as built from `model_args`), save it with `processor` to `--output_dir` and report on it.

    Returns the metrics written to `metrics.json`; an empty dict on every process but the main one. With a
    `restart_check` that stops the run, nothing is saved and None is returned: train.py starts again. `restarts`:
    the starts stopped before this one (`RestartCheck.report`), for metrics.json."""
    freeze(model, vision=model_args.freeze_vision, language_model=model_args.freeze_language_model)
    if model_args.lora_rank:
        add_lora(model, model_args.lora_rank, model_args.lora_alpha, model_args.lora_dropout)
    target_encoder = None
    if model_args.reconstruction_loss_weight > 0:
        target_encoder = build_target_encoder(data_args.target, target_size=model.config.target_size)

    # Held out: another seed of a generated source (disjoint clips); for real corpora, the --eval_* files.
    has_held_out = data_args.dataset in GENERATED or bool(data_args.eval_data_files or data_args.eval_shards)
    evaluate_videos = data_args.eval_videos if has_held_out else 0
    held_out_seed = training_args.seed + data_args.data_seed_offset
    # Counts the training stream's skips in this process (DataLoader workers count their own copies): those after
    # its last sample reach no batch, and `training_data_counts` adds them.
    train_failures = SampleFailures(f"training stream ({data_args.dataset})")
    train_stream = clip_stream(data_args, training_args, training_args.seed, shard=True, failures=train_failures)
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

    evaluation = None
    if evaluate_videos:
        evaluation = clip_stream(data_args, training_args, held_out_seed, held_out=True).take(evaluate_videos)
    trainer = FoveatedTrainer(
        model=model,
        args=training_args,
        train_dataset=train_stream,
        eval_dataset=evaluation,
        data_collator=SkippingCollator(  # bad samples skipped and counted
            train_collator, report_counts=True, max_length=model.config.text_config.max_position_embeddings
        ),
        processing_class=processor,
        backbone_learning_rate=model_args.backbone_learning_rate,
        foveation=foveation_args,
        callbacks=[restart_check] if restart_check else None,
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
    if restart_check and restart_check.rejected:
        print(
            f"restart: at step {restart_check.step} the coarse - fine caption loss is {restart_check.gap:.4f}, under "
            f"--restart_margin {restart_check.margin}; starting again from other initial weights",
            flush=True,
        )
        return None

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
            clip_stream(data_args, training_args, held_out_seed, held_out=True),
            num_videos=evaluate_videos,
            batch_size=training_args.per_device_eval_batch_size,
            target_encoder=target_encoder,
            progress=not training_args.disable_tqdm,
            random_fine_queries=foveation_args.random_queries,  # the control is evaluated as it trained
        )
    metrics.update(train_seconds=train_seconds, steps=trainer.state.global_step, preset=model_args.preset)
    if restart_check:
        metrics.update(restarts=(restarts or []) + [restart_check.report()])
    metrics.update(training=last_training_window(trainer.state.log_history), data=data_counts.report())
    run_args = {"model": asdict(model_args), "data": asdict(data_args), "foveation": asdict(foveation_args)}
    if not has_held_out:
        print(
            "no held-out data was given (--eval_data_files / --eval_shards): metrics.json holds the training-time "
            "figures only ('training', the last logging window) and the figures show training clips",
            flush=True,
        )
    shown_seed, shown_held_out = (held_out_seed, True) if has_held_out else (training_args.seed, False)
    shown = list(itertools.islice(clip_stream(data_args, training_args, shown_seed, held_out=shown_held_out), 4))
    write_outputs(trainer, model, processor, metrics, run_args, shown, target_encoder, foveation_args.random_queries)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def clip_stream(
    data_args: DataArguments,
    training_args: TrainingArguments,
    seed: int,
    shard: bool = False,
    held_out: bool = False,
    failures: SampleFailures | None = None,
) -> IterableDataset:
    """The clips of `--dataset` drawn with `seed`: the training stream, or (`held_out`) the `--eval_*` files' stream,
    whose clips are all questions of the full scene. `shard` gives each rank its own part."""
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
        dataset = split_dataset_by_node(dataset, rank=training_args.process_index, world_size=training_args.world_size)
    return dataset


def write_outputs(
    trainer: FoveatedTrainer,
    model: FoveatedVLMForConditionalGeneration,
    processor: FoveatedVLMProcessor,
    metrics: dict,
    run_args: dict,
    shown: list[dict],
    target_encoder,
    random_queries: bool,
) -> None:
    """`metrics.json`, `log_history.json`, `train_args.json`, the figures (fixations on the `shown` clips, loss
    curves), the model card and TensorBoard's copy of the figures in `--output_dir`; then the push, once."""
    training_args = trainer.args
    output = training_args.output_dir
    with open(os.path.join(output, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    with open(os.path.join(output, "log_history.json"), "w") as handle:
        json.dump(trainer.state.log_history, handle, indent=2)
    with open(os.path.join(output, "train_args.json"), "w") as handle:
        json.dump(run_args, handle, indent=2)
    figures = []
    if shown:
        figures = fixation_figures(
            model, processor, shown, output, target_encoder=target_encoder, random_fine_queries=random_queries
        )
    else:
        print("no clip to draw the fixation figures from: the stream gave none; figures skipped", flush=True)
    num_patches = (model.config.frame_size // model.config.patch_size) ** 2  # the entropy plot's uniform line
    curves = loss_curves(trainer.state.log_history, os.path.join(output, "figures", "loss_curves.png"), num_patches)
    # The card's usage code loads the Hub repository (the id the Hub gave `--hub_model_id`) when there is one.
    model_id = trainer.hub_model_id or training_args.hub_model_id
    figures = [path for path in [curves] if path] + figures
    card_args = {**run_args, "training": training_args.to_dict()}
    write_model_card(output, metrics, card_args, figures=figures, model_id=model_id)
    log_figures_to_tensorboard(tensorboard_logging_dir(trainer), metrics, figures, trainer.state.global_step)
    if training_args.push_to_hub:  # once, now that the folder holds the card, metrics.json and the figures
        trainer.push_to_hub(commit_message="End of training")


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
