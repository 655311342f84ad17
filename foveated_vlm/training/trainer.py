"""A `transformers.Trainer` that trains both passes and logs what the foveated model is for.

The Trainer logs only `loss` by itself. Every logging step here also carries, averaged over the steps since the
last log: `loss_fine`, `loss_coarse`, `ratio` (coarse / fine, > 1 means looking where the model chose helped),
`caption_loss_fine`, `caption_loss_coarse`, `caption_ratio` where captions are trained, and the fixation entropies
of both passes (nats over the patch grid; lower is more selective), and the foveation experiment's terms
(`contrastive_loss`, `entropy_margin_loss`, `fixation_loss`, `glimpse_search_loss`, `glimpse_policy_loss`, with
`glimpse_draw_loss`, the drawn glimpses' mean answer loss) when they are on. Evaluation reports the same keys with
the `eval_` prefix.

The experiment (`foveation=FoveationLosses(...)`, see `foveation_losses`): its terms are added to the model's loss
here, the model never sees them; batches carrying `fixation_targets` (the collator's, on clutter clips) have them
popped here and read by the fixation loss while it supervises; the random-query control draws the fine pass's queries
for every training and evaluation step; the glimpse search and the glimpse policy run on training steps only (one
more forward each, no gradient, over perturbed or hard-glimpsed copies of the batch). Evaluation never reads
fixation targets: held-out losses are the task's alone.

Data: batches from `SkippingCollator(report_counts=True)` carry `sample_counts`, which training steps pop (the
model never sees them) and every training log sums over ranks into running totals: `data/succeeded`,
`data/success_rate` and `data/skipped_<reason>` (see `foveated_vlm.data.sample_counts`); `sample_counts()` returns them.

Checkpoints: resuming loads the weights strictly (a missing or unexpected weight is a `CheckpointError` naming
them); a checkpoint without `optimizer.pt`/`scheduler.pt` (saved with `save_only_model`, or a save cut short)
resumes with a warning that names it, the missing files and that the optimizer and the learning-rate schedule
start again. A failed save names the directory and the free space on its disk (`CheckpointWriteError`).

The Hub (`push_to_hub=True`): `save_model` never pushes by itself (the Trainer's would upload at once, before a run's
card, metrics and figures exist, with its generic card); call `push_to_hub()` once the output folder is complete,
as train.py does: it uploads the whole folder once, keeps the card already there (`create_model_card`), and does not
save the model again when `save_model` already wrote it to that folder at this step, so rank 0 can push alone after
the other ranks are done. Checkpoint pushes during training (`hub_strategy`, with `save_strategy` steps or epoch)
are the Trainer's: weights, processor and training arguments (and, with `hub_strategy` `checkpoint` or
`all_checkpoints`, the checkpoint folder); the Trainer writes no card for them, so the repository has no card
until the final push brings the filled one.
"""

import logging
import os
from collections import defaultdict

import torch
from accelerate.utils import gather_object
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..data.sample_counts import SAMPLE_COUNTS_KEY, SampleCounts
from ..modeling_foveated import fixation_entropy
from .checkpoints import load_strictly, naming_the_disk, resume_problems, saved_step
from .finetuning import optimizer_groups
from .foveation_losses import (
    FoveationLosses,
    best_glimpses,
    frames_without_gradient,
    maps_over_a_fixed_vit,
    sampled_glimpses,
)

__all__ = ["FoveatedTrainer", "ratio_metrics"]

logger = logging.getLogger(__name__)


def ratio_metrics(sums: dict[str, float]) -> dict[str, float]:
    """Add `ratio` and `caption_ratio` to averaged metrics that hold both passes."""
    metrics = dict(sums)
    for ratio, coarse, fine in (
        ("ratio", "loss_coarse", "loss_fine"),
        ("caption_ratio", "caption_loss_coarse", "caption_loss_fine"),
    ):
        if metrics.get(fine):
            metrics[ratio] = metrics[coarse] / metrics[fine]
    return metrics


class FoveatedTrainer(Trainer):
    """`Trainer` for `FoveatedVLMForConditionalGeneration`: asks for fixations and logs both passes."""

    _PASS_METRICS = ("loss_fine", "loss_coarse", "caption_loss_fine", "caption_loss_coarse")

    def __init__(
        self,
        *args,
        backbone_learning_rate: float | None = None,
        foveation: FoveationLosses | None = None,
        **kwargs,
    ):
        """`backbone_learning_rate`: see `create_optimizer`. `foveation`: the experiment's terms and schedule (see
        the module docstring); None: none of them, the model's loss alone."""
        super().__init__(*args, **kwargs)
        self.backbone_learning_rate = backbone_learning_rate
        self.foveation = foveation or FoveationLosses()
        self._sums = {"train": defaultdict(int), "eval": defaultdict(int)}  # 0 + a tensor is the tensor
        # Per metric: a term can be present in only some steps of a logging window (the fixation loss stops).
        self._counts = {"train": defaultdict(int), "eval": defaultdict(int)}
        self._new_sample_counts = SampleCounts()  # this rank's, since the last log
        self._total_sample_counts = SampleCounts()  # every rank's, since training began
        self._saved_model = None  # (directory, step) of the last `save_model` a caller asked for

    def create_optimizer(self, model=None):
        """With `backbone_learning_rate`, the pretrained towers learn at that rate, the new parts at the usual one."""
        if self.backbone_learning_rate is None or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        groups = optimizer_groups(
            model,
            self.args.learning_rate,
            self.backbone_learning_rate,
            self.args.weight_decay,
            set(self.get_decay_parameter_names(model)),
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model` without its push to the Hub (see the module docstring); the push's own save
        (`_internal_call`) is skipped when a caller already saved to that directory at this step."""
        output_dir = output_dir or self.args.output_dir
        saved = (os.path.abspath(output_dir), self.state.global_step)
        if _internal_call and saved == self._saved_model:
            return
        super().save_model(output_dir, _internal_call=True)
        if not _internal_call:  # checkpoints and the push's save are the Trainer's own calls
            self._saved_model = saved

    def create_model_card(self, *args, **kwargs):
        """Keep the card train.py wrote (`foveated_vlm.evaluation.reporting.write_model_card`): `push_to_hub` calls this
        right before uploading, and the Trainer's generic card would replace it."""
        if not os.path.exists(os.path.join(self.args.output_dir, "README.md")):
            super().create_model_card(*args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Restore weights with `from_pretrained`, strictly, after checking the checkpoint can be resumed.

        transformers saves DINOv3's `model.layer.N` weights as `layer.N`, and the Trainer's own loader reads the
        file without mapping them back, which would leave the ViT at its initial weights with only a warning;
        `from_pretrained` maps them, and `load_strictly` refuses weights missing from the file.
        """
        missing, complete = resume_problems(resume_from_checkpoint)
        if missing and not self.is_fsdp_enabled:  # FSDP keeps its optimizer in its own folder
            logger.warning(
                "resuming from %s, which lacks %s: the optimizer (its moment estimates) and the learning-rate "
                "schedule start again from step 0, warm-up included, while training continues at step %d. For an "
                "exact resume use a checkpoint that holds them%s.",
                resume_from_checkpoint,
                " and ".join(missing),
                saved_step(resume_from_checkpoint),
                f" ({complete} does)" if complete else " (none beside it does)",
            )
        model = self.model if model is None else model
        restored = load_strictly(type(model), resume_from_checkpoint, dtype=model.dtype)
        model.load_state_dict(restored.state_dict(), strict=True)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """`Trainer._save` (model, processor: what `save_model` writes before any push to the Hub); a failed write
        names the directory and the free space on its disk."""
        with naming_the_disk(output_dir or self.args.output_dir, "the model"):
            super()._save(output_dir, state_dict)

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint` (model, optimizer, scheduler, state); a failed write names the directory."""
        run = self._get_output_dir(trial=trial)
        with naming_the_disk(os.path.join(run, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")):
            super()._save_checkpoint(model, trial)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._new_sample_counts.add(inputs.pop(SAMPLE_COUNTS_KEY, None))
        return super().training_step(model, inputs, num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Held-out batches are not training data: their counts are left out of the totals.
        inputs = {name: value for name, value in inputs.items() if name != SAMPLE_COUNTS_KEY}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    def sample_counts(self) -> SampleCounts:
        """The samples trained on and skipped so far, summed over ranks. Every rank must call it (it gathers)."""
        for counts in gather_object([self._new_sample_counts.as_dict()]):  # one dict per rank
            self._total_sample_counts.add(counts)
        self._new_sample_counts = SampleCounts()
        return SampleCounts().add(self._total_sample_counts.as_dict())  # a copy: the caller may add to it

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        foveation = self.foveation
        inputs = dict(inputs)
        fixation_targets = inputs.pop("fixation_targets", None)
        if not (model.training and foveation.supervises_fixations(self.state.global_step)):
            fixation_targets = None
        queries = foveation.fine_queries_for(self.model.config, inputs.get("pixel_values_videos"), self.model.dtype)
        if queries is not None:
            inputs["fine_queries"] = queries
        # Fixations on every step: their entropies are logged (and the entropy margin and fixation loss read them).
        # Losses come from the supervised positions; full-vocabulary logits of every position are never read here.
        outputs = model(**inputs, output_attentions=True, logits_to_keep=1)
        glimpse_targets = None
        if model.training and foveation.glimpse_search and "labels" in inputs:
            glimpse_targets = best_glimpses(  # no gradient: the plain model, not a DDP/FSDP wrapper's forward
                self.accelerator.unwrap_model(model),
                inputs,
                outputs.queries,
                foveation.glimpse_search,
                foveation.glimpse_noise,
                foveation.glimpse_temperature,
            )
        glimpse_draws = policy_maps = None
        if model.training and foveation.glimpse_samples and "labels" in inputs:
            unwrapped = self.accelerator.unwrap_model(model)
            encoded = frames_without_gradient(unwrapped, inputs)  # one patch pass for the draws and the maps
            glimpse_draws = sampled_glimpses(  # no gradient, like the search
                unwrapped,
                inputs,
                outputs.queries,
                outputs.fixations_fine,
                foveation.glimpse_samples,
                foveation.glimpse_radius,
                foveation.glimpse_frames,
                encoded,
                foveation.trains_draw_answers,
                foveation.glimpse_sample_temperature,
            )
            if foveation.glimpse_policy_vit == "fixed":
                policy_maps = maps_over_a_fixed_vit(unwrapped, inputs, outputs.queries, encoded)
        terms = foveation.terms(outputs, fixation_targets, glimpse_targets, glimpse_draws, policy_maps)
        loss = outputs.loss + foveation.weighted(terms)
        if not torch.isfinite(loss):  # one sync per step: the price of naming the step that went wrong
            losses = {name: _item(getattr(outputs, name)) for name in self._PASS_METRICS}
            losses.update({name: _item(term) for name, term in terms.items()})
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.state.global_step} "
                f"(losses: {losses}); lower the learning rate or check the batch"
            )
        split = "train" if model.training else "eval"
        sums, counts = self._sums[split], self._counts[split]
        # Detached tensors, summed on the device: converting to numbers only when logging avoids a sync per step.
        values = {name: getattr(outputs, name) for name in self._PASS_METRICS}
        values.update(terms)
        if glimpse_draws is not None and "glimpse_draw_loss" not in values:
            values["glimpse_draw_loss"] = glimpse_draws[1].mean()
        for name in ("fine", "coarse"):
            fixations = getattr(outputs, f"fixations_{name}")
            values[f"fixation_entropy_{name}"] = (
                None if fixations is None else fixation_entropy(fixations.detach()).mean()
            )
        for name, value in values.items():
            if value is not None:
                sums[name] = sums[name] + value.detach().float()
                counts[name] += 1
        return (loss, outputs) if return_outputs else loss

    def _drain(self, split: str) -> dict[str, float]:
        sums, counts = self._sums[split], self._counts[split]
        metrics = ratio_metrics({name: float(total) / counts[name] for name, total in sums.items()})
        sums.clear()
        counts.clear()
        return metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if any(key.startswith("eval_") for key in logs):
            logs.update({f"eval_{key}": value for key, value in self._drain("eval").items()})
        elif "loss" in logs:
            logs.update(self._drain("train"))
            counts = self.sample_counts()  # every rank logs at the same steps, so every rank gathers
            if counts:
                logs.update(counts.log_metrics())
        super().log(logs, start_time)


def _item(value):
    return None if value is None else value.detach().float().item()
