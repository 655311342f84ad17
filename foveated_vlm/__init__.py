"""Foveated video vision-language models: the language model decides where to look, one token per frame.

Importing the package registers the configuration and model with transformers' Auto classes, and marks them so
`save_pretrained` writes their code beside the weights (loadable with `trust_remote_code=True` anywhere).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .configuration_foveated import FoveatedVLMConfig
from .encoder_foveated import FoveatedEncoder, VisionKVCache
from .modeling_foveated import (
    VIDEO_TOKENS,
    FoveatedVLMForConditionalGeneration,
    FoveatedVLMModel,
    FoveatedVLMOutput,
    FoveatedVLMPreTrainedModel,
)

__version__ = "0.1.0"

__all__ = [
    "FoveatedEncoder",
    "FoveatedVLMConfig",
    "FoveatedVLMForConditionalGeneration",
    "FoveatedVLMModel",
    "FoveatedVLMOutput",
    "FoveatedVLMPreTrainedModel",
    "VIDEO_TOKENS",
    "VisionKVCache",
]

AutoConfig.register(FoveatedVLMConfig.model_type, FoveatedVLMConfig, exist_ok=True)
AutoModel.register(FoveatedVLMConfig, FoveatedVLMForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(FoveatedVLMConfig, FoveatedVLMForConditionalGeneration, exist_ok=True)
FoveatedVLMConfig.register_for_auto_class()
FoveatedVLMForConditionalGeneration.register_for_auto_class("AutoModel")
