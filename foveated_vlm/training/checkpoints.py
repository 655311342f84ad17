"""Reading and writing checkpoints so that what goes wrong is named, not guessed at.

- `load_strictly(model_class, directory)`: `from_pretrained` that refuses a checkpoint whose weights do not match
  the model. transformers only warns about missing or unexpected weights and leaves the missing ones at their
  random initial values, which then caption, stream and train on as if nothing happened.
- `naming_the_disk(directory)`: around a write of a checkpoint; a failed write (`OSError`, torch's `RuntimeError`
  such as "[enforce fail at inline_container.cc] unexpected pos", safetensors' "No space left on device") becomes a
  `CheckpointWriteError` that names the directory, the free space on its disk and the original error.
- `resume_problems(checkpoint)`: what a Trainer checkpoint lacks for an exact resume.
"""

import contextlib
import json
import os
import re
import shutil

from safetensors import SafetensorError
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

__all__ = [
    "CheckpointError",
    "CheckpointWriteError",
    "load_strictly",
    "naming_the_disk",
    "resume_problems",
    "saved_step",
]

# What `Trainer._save_checkpoint` writes beside the model for an exact resume (transformers' file names).
TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = ("optimizer.pt", "scheduler.pt")
_SHOWN_KEYS = 8  # weight names listed per kind in an error; the count says how many more there are


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is: unreadable, incomplete, or not the model's weights."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed; the message names the directory, the free space on its disk and the cause."""


def _listing(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > _SHOWN_KEYS else ''})"


def load_strictly(model_class, directory: str, **kwargs):
    """`model_class.from_pretrained(directory, **kwargs)`, an error unless every weight of the model is in the
    checkpoint and nothing else is. Works with `AutoModel*` classes too."""
    try:
        model, info = model_class.from_pretrained(directory, output_loading_info=True, **kwargs)
    except SafetensorError as error:  # not an OSError: a truncated or corrupt weights file
        raise CheckpointError(f"checkpoint {directory}: its weights file cannot be read ({error})") from error
    # Weights of another shape are already transformers' error (unless `ignore_mismatched_sizes` is passed).
    problems = [
        f"{kind} weights: {_listing(info[kind + '_keys'])}"
        for kind in ("missing", "unexpected")
        if info[kind + "_keys"]
    ]
    if problems or info["error_msgs"]:
        raise CheckpointError(
            f"checkpoint {directory} does not hold the weights of {type(model).__name__}: "
            + "; ".join(problems + list(info["error_msgs"]))
            + ". Loading it would leave those weights at random values; it is incomplete or from another model "
            "(re-save it from the run that trained it, or use another checkpoint)"
        )
    return model


def _free_space(directory: str) -> str:
    """'1.2 MiB free of 64.0 MiB' on the disk of `directory` (or of its nearest existing parent)."""
    path = os.path.abspath(directory)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    usage = shutil.disk_usage(path)
    return f"{_size(usage.free)} free of {_size(usage.total)}"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"


@contextlib.contextmanager
def naming_the_disk(directory: str, what: str = "the checkpoint"):
    """Re-raise a failed write inside the block as a `CheckpointWriteError` naming `directory` and its free space."""
    try:
        yield
    except CheckpointWriteError:  # an inner save already named its directory
        raise
    except (OSError, RuntimeError, SafetensorError) as error:
        raise CheckpointWriteError(
            f"writing {what} to {directory} failed, {_free_space(directory)} on its disk "
            f"(a full disk fails this way): {type(error).__name__}: {error}"
        ) from error


_STEP = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")  # the Trainer's checkpoint-N folders


def resume_problems(checkpoint: str) -> tuple[list[str], str | None]:
    """`(missing, complete)`: the optimizer/scheduler files `checkpoint` lacks and, when it lacks some, the newest
    checkpoint beside it that holds them all (None without one). A checkpoint that cannot be resumed at all (no
    directory, no saved model, no `trainer_state.json`) is a `CheckpointError`."""
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        what = "no such directory" if not os.path.exists(checkpoint) else "it holds no saved model (config.json)"
        raise CheckpointError(f"cannot resume from {checkpoint}: {what}")
    if not os.path.isfile(os.path.join(checkpoint, TRAINER_STATE)):
        raise CheckpointError(
            f"cannot resume from {checkpoint}: it has no {TRAINER_STATE}, so it is no Trainer checkpoint or its save "
            "stopped part way (a full disk?); resume from an earlier checkpoint-N of the run"
        )
    missing = [name for name in OPTIMIZER_STATE if not os.path.isfile(os.path.join(checkpoint, name))]
    if not missing:
        return [], None
    run = os.path.dirname(os.path.abspath(checkpoint))
    steps = {int(m.group(1)): name for name in os.listdir(run) if (m := _STEP.match(name))}
    for step in sorted(steps, reverse=True):
        candidate = os.path.join(run, steps[step])
        if all(os.path.isfile(os.path.join(candidate, name)) for name in (TRAINER_STATE, *OPTIMIZER_STATE)):
            return missing, candidate
    return missing, None


def saved_step(checkpoint: str) -> int:
    """The optimizer step a Trainer checkpoint was saved at."""
    with open(os.path.join(checkpoint, TRAINER_STATE)) as handle:
        return int(json.load(handle).get("global_step", 0))
