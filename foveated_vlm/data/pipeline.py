"""The datasets `train.py --dataset` and `foveated-vlm evaluate --dataset` accept, by name.

Every source yields samples: dicts with `frames` (decoded `[T, H, W, 3]` uint8, or anything
`FoveatedVideoProcessor` reads), a `prompt`, an `answer` and an id. `foveated_vlm.VideoTextCollator` turns a list
of samples into model batches.
"""

import logging
from dataclasses import replace
from pathlib import Path

from datasets import concatenate_datasets, interleave_datasets

from .folder import folder_dataset
from .llava_video import llava_video_dataset
from .synthetic import SyntheticVideoConfig, synthetic_dataset
from .webvid import webvid_dataset

__all__ = ["CLUTTER_SCENE", "DATASETS", "GENERATED", "SHARD_SUFFIXES", "build_dataset", "clutter_scene"]

logger = logging.getLogger(__name__)

# A `--video_root` file with one of these endings is a LLaVA-Video shard (the tar reader detects the compression).
SHARD_SUFFIXES = (".tar.gz", ".tgz", ".tar")

# The foveation experiment's scenes: `clutter` (several objects, each its own colour, over a noisy background; the
# prompt names one) and its control `global_change` (the same kind of scene, still, while the whole frame brightens,
# darkens or pans).
CLUTTER_SCENE = {"num_objects": (4, 6), "distinct_colours": True}


def clutter_scene(question: str) -> dict:
    """The clutter scene for a question: a quadrant question gives each of 4 objects a quadrant of its own."""
    return {**CLUTTER_SCENE, "num_objects": (4, 4)} if question == "quadrant" else CLUTTER_SCENE


_DESCRIBED_STREAM = 2**30  # offset of the described clips' stream seed, away from every question stream
_CURRICULUM_STREAM = 2**28  # the n-object curriculum stage reads seed + n * this (n < 4): away from the others


def _synthetic(split_seed, frame_size, num_frames, task, question="direction", **_):
    config = SyntheticVideoConfig(frame_size=frame_size, num_frames=num_frames, task=task, question=question)
    return synthetic_dataset(config, seed=split_seed)


def _clutter(split_seed, frame_size, num_frames, task, question="direction", caption_mix=0.0, curriculum_clips=0, **_):
    config = SyntheticVideoConfig(
        frame_size=frame_size, num_frames=num_frames, task="clutter", question=question, **clutter_scene(question)
    )
    questions = synthetic_dataset(config, seed=split_seed)
    fewer = range(1, config.num_objects[0])
    if curriculum_clips and fewer:
        # A curriculum: scenes of one object first (its answer is learnable in a few hundred steps and teaches the
        # model to read its frames), then two, ..., then the full scene; `curriculum_clips` clips before it (rounded up
        # to equal stages). Described clips (`caption_mix`) show the full scene from the start.
        assert len(fewer) * _CURRICULUM_STREAM < _DESCRIBED_STREAM, "curriculum streams would reach the described one"
        per_stage = -(-curriculum_clips // len(fewer))
        stages = [
            synthetic_dataset(
                replace(config, num_objects=(n, n)), seed=(split_seed + n * _CURRICULUM_STREAM) % 2**31
            ).take(per_stage)
            for n in fewer
        ]
        questions = concatenate_datasets([*stages, questions])
    if not caption_mix:
        return questions
    # Some clips of the same kind of scene described whole ("A red circle moves left. ..."): every word of those
    # captions depends on the frames, a dense signal that teaches the model to read its visual tokens at all.
    described_seed = (split_seed + _DESCRIBED_STREAM) % 2**31  # stream seeds live in [0, 2**31)
    described = synthetic_dataset(replace(config, task="caption"), seed=described_seed)
    return interleave_datasets([questions, described], probabilities=[1 - caption_mix, caption_mix], seed=split_seed)


def _global_change(split_seed, frame_size, num_frames, task, **_):
    config = SyntheticVideoConfig(frame_size=frame_size, num_frames=num_frames, task="global", **CLUTTER_SCENE)
    return synthetic_dataset(config, seed=split_seed)


def _webvid(split_seed, frame_size, num_frames, task, data_files=None, failures=None, **_):
    # None streams the Hub metadata (TempoFunk/webvid-10M); local CSV/parquet files otherwise.
    return webvid_dataset(data_files, num_frames=num_frames, seed=split_seed, failures=failures)


def _folder(split_seed, frame_size, num_frames, task, video_root=None, data_files=None, failures=None, **_):
    if not video_root:
        raise ValueError("--dataset folder needs --video_root (the folder) and optionally --data_files (CSV/JSONL)")
    if Path(video_root).is_file():
        raise ValueError(f"--dataset folder: --video_root {video_root} is a file; it must be the folder that holds "
                         "the videos (a LLaVA-Video .tar.gz shard is read with --dataset llava_video)")  # fmt: skip
    annotations = data_files[0] if data_files else None
    return folder_dataset(video_root, annotations, num_frames=num_frames, seed=split_seed, failures=failures)


def _llava_video(
    split_seed, frame_size, num_frames, task, data_files=None, video_root=None, shards=None, failures=None, **_
):
    if not data_files:
        raise ValueError("--dataset llava_video needs --data_files (annotation JSON) and --video_root or --shards")
    if video_root and Path(video_root).is_file() and str(video_root).endswith(SHARD_SUFFIXES):
        # A shard given as the video folder would otherwise find no video in it: read it as the shard it is.
        if shards:
            raise ValueError(f"--video_root {video_root} is a shard and --shards is given too; put it in --shards")
        logger.info("--video_root %s is a tar shard: reading it as --shards %s", video_root, video_root)
        video_root, shards = None, [video_root]
    return llava_video_dataset(
        data_files, num_frames=num_frames, video_root=video_root, shards=shards, failures=failures
    )


# name -> builder(seed, frame_size, num_frames, task, data_files=..., video_root=..., shards=...) -> IterableDataset
DATASETS = {
    "synthetic": _synthetic,
    "clutter": _clutter,
    "global_change": _global_change,
    "webvid": _webvid,
    "folder": _folder,
    "llava_video": _llava_video,
}


# Sources drawn from a seed: another seed is a held-out split of the same distribution.
GENERATED = ("synthetic", "clutter", "global_change")


def build_dataset(
    name: str,
    *,
    seed: int,
    frame_size: int,
    num_frames: int,
    task: str = "caption",
    question: str = "direction",
    caption_mix: float = 0.0,
    curriculum_clips: int = 0,
    data_files: list[str] | None = None,
    video_root: str | None = None,
    shards: list[str] | None = None,
    failures=None,
):
    """An `IterableDataset` of samples. For `synthetic`, different `seed`s give disjoint (held-out) streams; for
    the real corpora `seed` only shuffles shard order, and held-out data means other files. `failures`: the
    `SampleFailures` that counts a real corpus's skips (in-process iteration; DataLoader workers count copies)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name](
        seed,
        frame_size,
        num_frames,
        task,
        question=question,
        caption_mix=caption_mix,
        curriculum_clips=curriculum_clips,
        data_files=data_files,
        video_root=video_root,
        shards=shards,
        failures=failures,
    )
