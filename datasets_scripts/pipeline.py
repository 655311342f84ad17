"""The datasets `train.py --dataset` and `foveated-vlm evaluate --dataset` accept, by name.

Every source yields samples: dicts with `frames` (decoded `[T, H, W, 3]` uint8, or anything
`FoveatedVideoProcessor` reads), a `prompt`, an `answer` and an id. `foveated_vlm.VideoTextCollator` turns a list
of samples into model batches.
"""

from datasets_scripts.synthetic import SyntheticVideoConfig, synthetic_dataset

__all__ = ["DATASETS", "build_dataset"]


def _synthetic(split_seed: int, frame_size: int, num_frames: int, task: str):
    config = SyntheticVideoConfig(frame_size=frame_size, num_frames=num_frames, task=task)
    return synthetic_dataset(config, seed=split_seed)


# Datasets `train.py --dataset` accepts: name -> builder(seed, frame_size, num_frames, task) -> IterableDataset.
DATASETS = {"synthetic": _synthetic}


def build_dataset(name: str, *, seed: int, frame_size: int, num_frames: int, task: str = "caption"):
    """An unbounded `IterableDataset` of samples; different `seed`s give disjoint streams (held-out data)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name](seed, frame_size, num_frames, task)
