"""Restarts chosen by the task's own training loss: a label-free way past runs whose planned queries never choose.

In the foveation experiment without labels (docs/foveation_experiment.md, "Without labels") whether a run's planned
queries learn to choose depends on its initial weights, and it shows in the training loss by the end of the
three-object stage: the runs that chose had their fine pass's caption loss below the coarse pass's by 0.04-0.10
over that stage, the others by under 0.01. `RestartCheck` reads that gap from the training logs at one step; below
the margin it stops the run there, and train.py starts again from other initial weights (the same data, the same
schedule), up to `--restarts` times; the last start always runs to the end. Nothing but the caption losses the run
trains on is read: no fixation label, no held-out clip. Measured on `clutter-emergent` (seeds 0-2, alone) it gave
no gain: one start in seven chose, so three starts were too few, and that preset does not restart.
"""

from dataclasses import dataclass, field

from accelerate.utils import gather_object
from transformers import TrainerCallback

__all__ = ["RESTART_SEED_STRIDE", "RestartCheck"]

RESTART_SEED_STRIDE = 10_000  # start k's initial weights are drawn with seed + k * this: away from other runs' seeds


@dataclass
class RestartCheck(TrainerCallback):
    """At the first training log at or past optimizer step `step`, the mean of `caption_loss_coarse -
    caption_loss_fine` over the training logs of the last `window` steps (averaged over processes) is the run's
    `gap`; under `margin` the run is stopped there (`rejected`) unless `final`.
    `init_seed`: the seed this start's initial weights were drawn with (reported)."""

    step: int
    window: int
    margin: float
    init_seed: int
    final: bool = False
    gap: float | None = None
    rejected: bool = False
    _gaps: list = field(default_factory=list, repr=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Logs come after the step's own callbacks, so the decision is taken at the first log at or past `step`.
        if self.gap is not None:  # decided
            return
        logs = logs or {}
        if (
            state.global_step > self.step - self.window
            and "caption_loss_fine" in logs
            and "caption_loss_coarse" in logs
        ):
            self._gaps.append(logs["caption_loss_coarse"] - logs["caption_loss_fine"])
        if state.global_step < self.step:
            return
        local = sum(self._gaps) / len(self._gaps) if self._gaps else float("nan")
        gaps = gather_object([local])  # every process logs at the same steps and decides alike
        self.gap = sum(gaps) / len(gaps)
        if not self.final and not self.gap >= self.margin:  # a window without caption logs (nan) is rejected too
            self.rejected = True
            control.should_training_stop = True

    def report(self) -> dict:
        """What this start did, for metrics.json."""
        return {"init_seed": self.init_seed, "step": self.step, "gap": self.gap, "rejected": self.rejected}
