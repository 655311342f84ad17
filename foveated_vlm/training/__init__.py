"""Training above the core: arguments and presets, model building, the Trainer, the collator, fine-tuning helpers."""

from .data_collator import VideoTextCollator
from .trainer import FoveatedTrainer

__all__ = ["FoveatedTrainer", "VideoTextCollator"]
