"""Held-out evaluation of both passes: what choosing where to look bought, fine against coarse.

Metrics (keys of `foveated-vlm evaluate --json`):
  loss_fine / loss_coarse / ratio                      next-target reconstruction MSE and coarse / fine
  caption_loss_fine / caption_loss_coarse / caption_ratio   caption cross-entropy (per token, mean over videos)
  fixation_entropy_fine / fixation_entropy_coarse      nats over the patch grid (uniform = log(patches))
  psnr_fine / psnr_coarse                              dB of the predicted frames against the real ones, when
                                                       predictions are pictures (pixel targets) or a VAE decodes them
  accuracy_fine / accuracy_coarse                      fraction right, where samples define an answer among choices:
                                                       each pass picks the choice it gives the lowest loss
"""

import json
import math
from collections import defaultdict
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data_collator import VideoTextCollator
from .targets import PixelTargetEncoder, SDVAETargetEncoder
from .trainer_foveated import fixation_entropy, ratio_metrics

__all__ = ["evaluate_model", "per_sample_caption_losses"]


def per_sample_caption_losses(model, hidden: torch.Tensor, labels: torch.LongTensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row `[B]` over its supervised tokens (LM head on those only)."""
    targets = labels[:, 1:]
    supervised = targets != -100  # [B, L-1]
    token_losses = F.cross_entropy(
        model.lm_head(hidden[:, :-1][supervised]).float(), targets[supervised], reduction="none"
    )
    rows = supervised.nonzero()[:, 0]
    sums = torch.zeros(labels.shape[0], device=hidden.device).index_add_(0, rows, token_losses)
    return sums / supervised.sum(1).clamp_min(1)


def _psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per frame of pictures in [-1, 1] (peak-to-peak 2): `[..., 3, H, W]` -> `[...]`."""
    mse = (prediction.float().clamp(-1, 1) - target.float()).pow(2).flatten(-3).mean(-1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


def _choices(sample) -> tuple[list[str], int] | None:
    """(answers, label) when the sample's ground truth defines an answer among choices."""
    truth = sample.get("ground_truth")
    if isinstance(truth, str):
        truth = json.loads(truth)
    if not truth or not truth.get("answers") or truth.get("label") is None:
        return None
    return list(truth["answers"]), int(truth["label"])


@torch.no_grad()
def evaluate_model(
    model,
    processor,
    samples: Iterable[dict],
    *,
    num_videos: int,
    batch_size: int = 8,
    target_encoder=None,
    progress: bool = True,
) -> dict[str, float]:
    """Run `num_videos` samples through both passes and return the metrics above (averaged per video)."""
    model.eval()
    collator = VideoTextCollator(processor, target_encoder, train_captions=True)
    # Predictions are pictures to score in dB when they are pixels, or when the VAE that made the targets decodes them.
    picture_targets = isinstance(target_encoder, (PixelTargetEncoder, SDVAETargetEncoder))
    sums, counts = defaultdict(float), defaultdict(int)
    bar = tqdm(total=num_videos, desc="evaluate", disable=not progress)
    batch_samples = []

    def add(name, values: torch.Tensor):
        sums[name] += float(values.sum())
        counts[name] += values.numel()

    def run(chunk):
        batch = collator(chunk)
        out = model.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values_videos=batch["pixel_values_videos"],
            output_attentions=True,
        )
        hidden = {
            "fine": (out.last_hidden_state, out.plan_hidden_fine, out.fixations_fine),
            "coarse": (out.coarse_hidden_state, out.plan_hidden_coarse, out.fixations_coarse),
        }
        for name, (states, plan, fixations) in hidden.items():
            add(f"caption_loss_{name}", per_sample_caption_losses(model, states, batch["labels"]))
            add(f"fixation_entropy_{name}", torch.stack([fixation_entropy(f) for f in fixations]))
            if "target_latents" in batch:
                predicted = model.predict_next_latents(plan, batch["target_latents"])  # [B, T, C, h, w]
                add(f"loss_{name}", (predicted - batch["target_latents"]).pow(2).flatten(1).mean(1))
                if picture_targets:
                    add(
                        f"psnr_{name}",
                        _psnr(target_encoder.decode(predicted), target_encoder.decode(batch["target_latents"])).mean(1),
                    )
        scored = [(index, choice) for index, sample in enumerate(chunk) if (choice := _choices(sample))]
        if scored:
            _score_choices(model, collator, [chunk[i] for i, _ in scored], [c for _, c in scored], add)

    seen = 0
    for sample in samples:
        batch_samples.append(sample)
        if len(batch_samples) == batch_size or seen + len(batch_samples) >= num_videos:
            run(batch_samples)
            seen += len(batch_samples)
            bar.update(len(batch_samples))
            batch_samples = []
        if seen >= num_videos:
            break
    if batch_samples:
        run(batch_samples)
        seen += len(batch_samples)
    bar.close()
    if seen == 0:
        raise ValueError("the evaluation stream gave no samples")
    metrics = ratio_metrics({name: sums[name] / counts[name] for name in sums})
    metrics["num_videos"] = seen
    return {key: value for key, value in metrics.items() if not (isinstance(value, float) and math.isnan(value))}


def _score_choices(model, collator, samples, choices, add):
    """Each pass answers with the choice it finds most likely (lowest caption loss); record its accuracy."""
    num_choices = max(len(answers) for answers, _ in choices)
    losses = {"fine": torch.full((len(samples), num_choices), float("inf")), "coarse": None}
    losses["coarse"] = losses["fine"].clone()
    for option in range(num_choices):
        rows = [i for i, (answers, _) in enumerate(choices) if option < len(answers)]
        chunk = [dict(samples[i], answer=choices[i][0][option]) for i in rows]
        batch = collator(chunk)
        out = model.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values_videos=batch["pixel_values_videos"],
        )
        for name, states in (("fine", out.last_hidden_state), ("coarse", out.coarse_hidden_state)):
            losses[name][rows, option] = per_sample_caption_losses(model, states, batch["labels"]).cpu()
    labels = torch.tensor([label for _, label in choices])
    for name in ("fine", "coarse"):
        add(f"accuracy_{name}", (losses[name].argmin(1) == labels).float())
