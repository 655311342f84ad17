"""Held-out evaluation of both passes: what choosing where to look bought, fine against coarse.

Metrics (keys of `foveated-vlm evaluate --json`):
  loss_fine / loss_coarse / ratio                      next-target reconstruction MSE and coarse / fine
  caption_loss_fine / caption_loss_coarse / caption_ratio   caption cross-entropy (per token, mean over videos)
  fixation_entropy_fine / fixation_entropy_coarse      nats over the patch grid (uniform = log(patches))
  psnr_fine / psnr_coarse, ssim_fine / ssim_coarse     predicted frames against the real ones, when predictions
                                                       are pictures (pixel targets) or a VAE decodes them (SSIM:
                                                       torchmetrics', frames of 6 px a side or more)
  caption_bleu / caption_rouge_l                       captions the fine stream generates against the references:
                                                       sacrebleu's corpus BLEU-4 (defaults, 13a, exp smoothing) / 100
                                                       and rouge-score's ROUGE-L F1 unstemmed (`caption_scores.py`)
  accuracy_fine / accuracy_coarse                      fraction right, where samples define an answer among choices:
                                                       each pass picks the choice it gives the lowest loss
  caption_loss_other_video                             fine caption loss with each text paired with another video
                                                       of its batch: equal to caption_loss_fine when the model does
                                                       not read the video at all (the answers' text prior alone)
  target_fixation_fine / target_fixation_coarse        share of the fixation (best of the K glimpses) on the patches
  target_fixation_uniform                              the prompted target covers, where the ground truth places it
                                                       (synthetic clips); `_uniform` is what an even map puts there
"""

import math
import os
from collections import defaultdict
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.targets import PixelTargetEncoder, SDVAETargetEncoder
from ..encoder_foveated import VisionKVCache
from ..modeling_foveated import fixation_entropy, target_share
from ..training import foveation_losses
from ..training.data_collator import VideoTextCollator, ground_truth, target_patches
from ..training.trainer import ratio_metrics

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


def _ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """SSIM per frame, pictures in [-1, 1]: `[..., 3, H, W]` -> `[...]`; None for frames under 6 px a side.

    torchmetrics' SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 2 with both
    pictures clamped to [-1, 1]): the mean over every pixel of the frame, the border windows reflection-padded.
    Its 11-px window pads 5 px a side, which a smaller frame cannot reflect.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    leading, (channels, height, width) = prediction.shape[:-3], prediction.shape[-3:]
    if min(height, width) < 6:
        return None
    scores = structural_similarity_index_measure(
        prediction.float().reshape(-1, channels, height, width),
        target.float().reshape(-1, channels, height, width),
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=(-1.0, 1.0),
        reduction="none",
    )  # [N]
    return scores.reshape(leading)


def _generate(model, processor, samples, max_new_tokens: int, control) -> list[str]:
    """Greedy captions of the fine stream for a batch of samples (prompts only, left-padded); `control` gives the
    fine pass's queries for the prompts' videos (see `evaluate_model`)."""
    tokenizer = processor.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # every row continues at the end
    try:
        prompts = VideoTextCollator(processor, train_captions=False)(samples)
    finally:
        tokenizer.padding_side = side
    queries = control(prompts["pixel_values_videos"])
    ids = model.generate(**prompts, fine_queries=queries, max_new_tokens=max_new_tokens, do_sample=False)
    return [
        text.strip()
        for text in processor.batch_decode(ids[:, prompts["input_ids"].shape[1] :], skip_special_tokens=True)
    ]


def _caption_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU-4 and ROUGE-L through the local `evaluate` module shipped beside this file."""
    import evaluate

    metric = evaluate.load(os.path.join(os.path.dirname(__file__), "caption_scores.py"))
    scores = metric.compute(predictions=predictions, references=references)
    return {"caption_bleu": scores["bleu"], "caption_rouge_l": scores["rouge_l"]}


def _choices(sample) -> tuple[list[str], int] | None:
    """(answers, label) when the sample's ground truth defines an answer among choices."""
    truth = ground_truth(sample)
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
    generate_captions: bool = True,
    max_new_tokens: int = 32,
    progress: bool = True,
    random_fine_queries: bool = False,
) -> dict[str, float]:
    """Run `num_videos` samples through both passes and return the metrics above (averaged per video);
    `generate_captions` also writes a caption per video with the fine stream (greedy) and scores it.
    `random_fine_queries`: the foveation experiment's random-query control, evaluated as it trained: every fine pass
    reads with fresh std-1 queries (the same ones for every answer choice of a clip); a checkpoint alone plans them."""
    model.eval()

    def control(pixel_values_videos):
        """The fine pass's queries for these videos: the control's draws, or None (the planned ones)."""
        if not random_fine_queries:
            return None
        return foveation_losses.random_fine_queries(model.config, pixel_values_videos, model.dtype)

    collator = VideoTextCollator(processor, target_encoder, train_captions=True)
    # Predictions are pictures to score in dB when they are pixels, or when the VAE that made the targets decodes them.
    picture_targets = isinstance(target_encoder, (PixelTargetEncoder, SDVAETargetEncoder))
    sums, counts = defaultdict(float), defaultdict(int)
    bar = tqdm(total=num_videos, desc="evaluate", disable=not progress)
    batch_samples, generated, references = [], [], []

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
            fine_queries=control(batch["pixel_values_videos"]),
        )
        hidden = {
            "fine": (out.last_hidden_state, out.plan_hidden_fine, out.fixations_fine),
            "coarse": (out.coarse_hidden_state, out.plan_hidden_coarse, out.fixations_coarse),
        }
        for name, (states, plan, fixations) in hidden.items():
            add(f"caption_loss_{name}", per_sample_caption_losses(model, states, batch["labels"]))
            add(f"fixation_entropy_{name}", fixation_entropy(fixations).flatten(1).mean(1))
            if "target_latents" in batch:
                predicted = model.predict_next_latents(plan, batch["target_latents"])  # [B, T, C, h, w]
                add(f"loss_{name}", (predicted - batch["target_latents"]).pow(2).flatten(1).mean(1))
                if picture_targets:
                    pictures = target_encoder.decode(predicted), target_encoder.decode(batch["target_latents"])
                    add(f"psnr_{name}", _psnr(*pictures).mean(1))
                    if (ssim := _ssim(*pictures)) is not None:
                        add(f"ssim_{name}", ssim.mean(1))
        if len(chunk) > 1:  # does the model read the video? the same texts with the batch's videos rotated by one
            rotated = model.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values_videos=batch["pixel_values_videos"].roll(1, dims=0),
                fine_queries=control(batch["pixel_values_videos"]),
            )
            add(
                "caption_loss_other_video", per_sample_caption_losses(model, rotated.last_hidden_state, batch["labels"])
            )
        grid = out.fixations_fine.shape[-1]
        masks = [target_patches(sample, grid) for sample in chunk]
        if all(mask is not None for mask in masks):
            masks = torch.stack(masks)  # [B, T, gh, gw]
            for name in ("fine", "coarse"):
                on_target = target_share(getattr(out, f"fixations_{name}"), masks)  # [B, T, K]
                add(f"target_fixation_{name}", on_target.amax(-1).mean(1))
            add("target_fixation_uniform", masks.float().flatten(2).mean(-1).mean(1))
        if generate_captions:
            generated.extend(_generate(model, processor, chunk, max_new_tokens, control))
            references.extend(sample["answer"] for sample in chunk)
        scored = [(index, choice) for index, sample in enumerate(chunk) if (choice := _choices(sample))]
        if scored:
            _score_choices(model, collator, [chunk[i] for i, _ in scored], [c for _, c in scored], add, control)

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
    if generated:
        metrics.update(_caption_scores(generated, references))
    metrics["num_videos"] = seen
    return {key: value for key, value in metrics.items() if not (isinstance(value, float) and math.isnan(value))}


def _cache_rows(cache: VisionKVCache, rows: list[int], frames: int) -> VisionKVCache:
    """The cache of clips `rows` out of a patch pass over `[B*T]` frames (clip-major, as forward flattens)."""
    index = (torch.tensor(rows)[:, None] * frames + torch.arange(frames)).flatten()  # [len(rows) * T]
    index = index.to(cache.keys[0].device)
    pick = lambda tensors: [tensor.index_select(0, index) for tensor in tensors]  # noqa: E731
    return VisionKVCache(pick(cache.keys), pick(cache.values), cache.num_prefix_tokens, cache.grid)


def _score_choices(model, collator, samples, choices, add, control=None):
    """Each pass answers with the choice it finds most likely (lowest caption loss); record its accuracy.

    Every choice of a clip shows the same frames, so the patch pass runs once for the batch (on the first choice,
    which every scored clip has) and each choice reads its rows of that cache, and of the fine queries `control`
    gives (see `evaluate_model`; None: planned), so every choice of a clip is read with the same queries."""
    num_choices = max(len(answers) for answers, _ in choices)
    losses = {"fine": torch.full((len(samples), num_choices), float("inf")), "coarse": None}
    losses["coarse"] = losses["fine"].clone()
    cache = queries = None
    for option in range(num_choices):
        rows = [i for i, (answers, _) in enumerate(choices) if option < len(answers)]
        chunk = [dict(samples[i], answer=choices[i][0][option]) for i in rows]
        batch = collator(chunk)
        pixels = batch["pixel_values_videos"]  # [b, T, 3, H, W]
        if cache is None:  # option 0: every clip's row
            _, cache = model.foveated_encoder.encode_patches(pixels.flatten(0, 1), return_patch_states=False)
            queries = control(pixels) if control else None  # [B, T, K, qd] or None: planned
        out = model.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values_videos=pixels,
            vision_cache=_cache_rows(cache, rows, pixels.shape[1]),
            fine_queries=None if queries is None else queries[rows],
        )
        for name, states in (("fine", out.last_hidden_state), ("coarse", out.coarse_hidden_state)):
            losses[name][rows, option] = per_sample_caption_losses(model, states, batch["labels"]).cpu()
    labels = torch.tensor([label for _, label in choices])
    for name in ("fine", "coarse"):
        add(f"accuracy_{name}", (losses[name].argmin(1) == labels).float())
