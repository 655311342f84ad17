"""The data sources above the core: synthetic video, WebVid-10M, LLaVA-Video-178K, local folders, and what they share.

Every source is a `datasets.IterableDataset` of samples (`frames`, `prompt`, `answer`, `video_id`); samples a source
cannot read are skipped and counted (`faults`, `sample_counts`). `pipeline.build_dataset` picks one by name;
`targets` turns frames into reconstruction targets and `precompute` writes them to disk once.
"""

from .pipeline import DATASETS, GENERATED, build_dataset
from .targets import PixelTargetEncoder, SDVAETargetEncoder, build_target_encoder

__all__ = ["DATASETS", "GENERATED", "build_dataset", "PixelTargetEncoder", "SDVAETargetEncoder", "build_target_encoder"]
