"""Foveated video vision-language models: the language model decides where to look, one token per frame.

Importing the package registers the configuration and model with transformers' Auto classes, and marks them so
`save_pretrained` writes their code beside the weights (loadable with `trust_remote_code=True` anywhere). The
generation model loads through `AutoModelForImageTextToText` (as llava does), `AutoModelForMultimodalLM`
(`pipeline("any-to-any")`) and, as before, `AutoModel`.
"""

import transformers
from transformers import AutoConfig
from transformers.models.auto.processing_auto import AutoProcessor

# Without torchvision, transformers' top-level `AutoVideoProcessor` is a dummy; the class itself needs no torchvision.
from transformers.models.auto.video_processing_auto import AutoVideoProcessor

from .configuration_foveated import FoveatedVLMConfig
from .data.targets import PixelTargetEncoder, SDVAETargetEncoder, build_target_encoder
from .encoder_foveated import FoveatedEncoder, VisionKVCache
from .modeling_foveated import (
    AUTO_MODEL_CLASSES,
    VIDEO_TOKENS,
    FoveatedVLMForConditionalGeneration,
    FoveatedVLMModel,
    FoveatedVLMOutput,
    FoveatedVLMPreTrainedModel,
)
from .processing_foveated import FoveatedVLMProcessor, expand_video_placeholders
from .training.data_collator import VideoTextCollator
from .video_processing_foveated import FoveatedVideoProcessor, VideoDecodeError

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
    "FoveatedVLMProcessor",
    "FoveatedVideoProcessor",
    "VideoDecodeError",
    "expand_video_placeholders",
    "PixelTargetEncoder",
    "SDVAETargetEncoder",
    "build_target_encoder",
    "VideoTextCollator",
]

AutoConfig.register(FoveatedVLMConfig.model_type, FoveatedVLMConfig, exist_ok=True)
for auto_class in AUTO_MODEL_CLASSES:
    getattr(transformers, auto_class).register(FoveatedVLMConfig, FoveatedVLMForConditionalGeneration, exist_ok=True)
FoveatedVLMConfig.register_for_auto_class()
# Marks the class as remote code; its `save_pretrained` names it in `auto_map` for every one of AUTO_MODEL_CLASSES.
FoveatedVLMForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
AutoVideoProcessor.register(FoveatedVLMConfig, FoveatedVideoProcessor, exist_ok=True)
AutoProcessor.register(FoveatedVLMConfig, FoveatedVLMProcessor, exist_ok=True)
FoveatedVideoProcessor.register_for_auto_class()  # AutoVideoProcessor
FoveatedVLMProcessor.register_for_auto_class()  # AutoProcessor
