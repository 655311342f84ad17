"""Foveated video vision-language models: the language model decides where to look, one token per frame.

Importing the package registers the configuration and model with transformers' Auto classes, and marks them so
`save_pretrained` writes their code beside the weights (loadable with `trust_remote_code=True` anywhere).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
from transformers.models.auto.processing_auto import AutoProcessor

# Without torchvision, transformers' top-level `AutoVideoProcessor` is a dummy; the class itself needs no torchvision.
from transformers.models.auto.video_processing_auto import AutoVideoProcessor

from .configuration_foveated import FoveatedVLMConfig
from .data_collator import VideoTextCollator
from .encoder_foveated import FoveatedEncoder, VisionKVCache
from .modeling_foveated import (
    VIDEO_TOKENS,
    FoveatedVLMForConditionalGeneration,
    FoveatedVLMModel,
    FoveatedVLMOutput,
    FoveatedVLMPreTrainedModel,
)
from .processing_foveated import FoveatedVLMProcessor, expand_video_placeholders
from .targets import PixelTargetEncoder, SDVAETargetEncoder, build_target_encoder
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
AutoModel.register(FoveatedVLMConfig, FoveatedVLMForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(FoveatedVLMConfig, FoveatedVLMForConditionalGeneration, exist_ok=True)
FoveatedVLMConfig.register_for_auto_class()
FoveatedVLMForConditionalGeneration.register_for_auto_class("AutoModel")
AutoVideoProcessor.register(FoveatedVLMConfig, FoveatedVideoProcessor, exist_ok=True)
AutoProcessor.register(FoveatedVLMConfig, FoveatedVLMProcessor, exist_ok=True)
FoveatedVideoProcessor.register_for_auto_class()  # AutoVideoProcessor
FoveatedVLMProcessor.register_for_auto_class()  # AutoProcessor
