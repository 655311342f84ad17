"""Evaluation above the core and training: held-out metrics of both passes, video benchmarks (MVBench, Video-MME),
the lmms-eval adapter, and the figures and model card a training run writes."""

from .metrics import evaluate_model

__all__ = ["evaluate_model"]
