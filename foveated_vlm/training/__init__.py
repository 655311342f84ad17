"""Training above the core: arguments and presets, model building, the run, the Trainer, the collator, fine-tuning."""

from .data_collator import VideoTextCollator
from .trainer import FoveatedTrainer

__all__ = ["FoveatedTrainer", "VideoTextCollator"]
