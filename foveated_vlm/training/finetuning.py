"""Fine-tuning options: freeze towers, LoRA on the language model (peft), separate backbone learning rates.

LoRA wraps the language model in a `peft` model for training only; `merge_lora` folds the adapters back into
plain weights before export, so a saved checkpoint has the ordinary layout and loads anywhere (no peft needed).
"""

import torch
from torch import nn

__all__ = ["add_lora", "freeze", "merge_lora", "optimizer_groups"]


def freeze(model, vision: bool = False, language_model: bool = False) -> None:
    """Stop training the vision encoder and/or the language model (the new parts always train)."""
    if vision:
        model.foveated_encoder.vision_model.requires_grad_(False)
    if language_model:
        model.model.language_model.requires_grad_(False)


def add_lora(model, rank: int, alpha: float, dropout: float = 0.0, target_modules: list[str] | None = None) -> None:
    """Train low-rank adapters instead of the language model's weights (its other parameters freeze)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    model.model.language_model = get_peft_model(model.model.language_model, config)


def merge_lora(model) -> bool:
    """Fold LoRA adapters into the language model's weights; returns whether there were any."""
    language_model = model.model.language_model
    if not hasattr(language_model, "merge_and_unload"):
        return False
    model.model.language_model = language_model.merge_and_unload()
    return True


def optimizer_groups(
    model, learning_rate: float, backbone_learning_rate: float | None, weight_decay: float, decay_names: set[str]
) -> list[dict]:
    """AdamW parameter groups: pretrained backbones (vision encoder, language model) may learn at their own rate
    while the new parts (queries, heads, projections, mode embeddings) use `learning_rate`."""
    backbones: set[nn.Parameter] = set(model.foveated_encoder.vision_model.parameters())
    backbones |= set(model.model.language_model.parameters())
    groups: dict[tuple[bool, bool], list[torch.Tensor]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((parameter in backbones, name in decay_names), []).append(parameter)
    return [
        {
            "params": parameters,
            "lr": backbone_learning_rate if is_backbone and backbone_learning_rate is not None else learning_rate,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (is_backbone, decays), parameters in groups.items()
    ]
