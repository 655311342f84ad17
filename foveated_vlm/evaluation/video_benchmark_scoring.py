"""Scoring multiple-choice video questions both ways users report, with one patch pass per video.

- By likelihood (`score_choices`): the summed log-probability of each option's continuation after the prompt,
  in the fine and in the coarse pass; each pass answers with its most likely option. The continuation is the
  option's letter ("A"), the answer both benchmarks' evaluations ask for ("Best option:(" then the letter on
  MVBench, "Respond with only the letter" on Video-MME): every option is then one equally long answer, so no option
  wins by being short, and the number is comparable with the letter that generation gives.
- By generation (`generate_answer`, `extract_answer_letter`): greedy text from the fine stream (what the model says),
  its answer letter found as lmms-eval's Video-MME extraction finds it.

The vision model runs once per video (`encode_video`): every option's language-model passes, both passes and the
generation read its cached patch keys/values (`FoveatedVLMModel.forward(vision_cache=...)`), and consecutive
questions on one video (Video-MME asks three) share it too.
"""

import itertools
import logging
import re
import time
from collections import defaultdict

import torch
import torch.nn.functional as F

from ..data.sample_counts import SampleCounts
from ..encoder_foveated import VisionKVCache
from ..processing_foveated import expand_video_placeholders
from .video_benchmarks import benchmark_prompt

__all__ = [
    "encode_video",
    "evaluate_benchmark",
    "extract_answer_letter",
    "generate_answer",
    "score_choices",
]

logger = logging.getLogger(__name__)

SCORINGS = ("likelihood", "generation", "both")
GROUPS = {"mvbench": ("task",), "videomme": ("duration", "task_type")}  # what each benchmark reports accuracy by
# lmms-eval's extract_characters_regex (lmms_eval/tasks/videomme/utils.py) strips these before taking the first letter.
ANSWER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)


def _frames(pixel_values: torch.Tensor) -> torch.Tensor:
    """`[T, 3, H, W]` or `[1, T, 3, H, W]` -> `[T, 3, H, W]`."""
    if pixel_values.dim() == 5 and pixel_values.shape[0] == 1:
        pixel_values = pixel_values[0]
    if pixel_values.dim() != 4:
        raise ValueError(f"frames must be one video [T, 3, H, W]; got shape {tuple(pixel_values.shape)}")
    return pixel_values


@torch.no_grad()
def encode_video(model, frames: torch.Tensor) -> VisionKVCache:
    """The patch pass of one video's frames `[T, 3, H, W]` (normalised, as the processor gives them)."""
    _, cache = model.foveated_encoder.encode_patches(_frames(frames), return_patch_states=False)
    return cache


def _repeat(cache: VisionKVCache, copies: int) -> VisionKVCache:
    """The cache of one video `[T, ...]` for `copies` rows of that video `[copies*T, ...]` (row-major, as forward
    flattens `[B, T]`)."""
    repeat = lambda tensors: [t.repeat(copies, *([1] * (t.dim() - 1))) for t in tensors]  # noqa: E731
    return VisionKVCache(repeat(cache.keys), repeat(cache.values), cache.num_prefix_tokens, cache.grid)


def _prompt_ids(processor, prompt: str, num_frames: int) -> list[int]:
    """Token ids of a prompt with one `<video>`, expanded for `num_frames` frames as the processor does."""
    if prompt.count(processor.video_token) != 1:
        raise ValueError(f"prompt holds {prompt.count(processor.video_token)} {processor.video_token}; expected 1")
    text = expand_video_placeholders(prompt, num_frames, processor.tokens_per_frame, processor.video_token)
    return processor.tokenizer(text)["input_ids"]


@torch.no_grad()
def score_choices(
    model, processor, frames: torch.Tensor, prompt: str, continuations: list[str], vision_cache=None
) -> dict[str, torch.Tensor]:
    """Log-likelihood of each continuation after `prompt` (which holds one `<video>`), per pass.

    Args:
        frames: the video, `[T, 3, H, W]` normalised (the processor's `pixel_values_videos[0]`).
        continuations: the answers to score, e.g. the option letters; tokenised on their own, as the processor
            tokenises answers, and without an end-of-sequence token.
        vision_cache: `encode_video(model, frames)` when the caller scores more prompts on this video.
    Returns:
        `{"fine": [O], "coarse": [O]}`: the summed log-probabilities (nats) of each continuation's tokens.
    """
    frames = _frames(frames)
    if not continuations or not all(isinstance(c, str) and c for c in continuations):
        raise ValueError(f"continuations={continuations!r}; expected a non-empty list of non-empty strings")
    cache = vision_cache if vision_cache is not None else encode_video(model, frames)
    prompt_ids = _prompt_ids(processor, prompt, frames.shape[0])
    answers = processor.tokenizer(continuations, add_special_tokens=False)["input_ids"]
    longest = len(prompt_ids) + max(len(answer) for answer in answers)
    rows = len(answers)
    input_ids = torch.zeros(rows, longest, dtype=torch.long)  # right padding: the shared prefix keeps its positions
    attention_mask = torch.zeros(rows, longest, dtype=torch.long)
    labels = torch.full((rows, longest), -100)
    for row, answer in enumerate(answers):
        ids = torch.tensor(prompt_ids + answer)
        input_ids[row, : len(ids)], attention_mask[row, : len(ids)] = ids, 1
        labels[row, len(prompt_ids) : len(ids)] = ids[len(prompt_ids) :]
    device = frames.device
    input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
    with torch.random.fork_rng():  # the random-query control draws the same queries on every call
        torch.manual_seed(0)
        out = model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values_videos=frames[None].expand(rows, *frames.shape),
            vision_cache=_repeat(cache, rows),
        )
    targets = labels[:, 1:]
    supervised = targets != -100  # [O, L-1]
    result = {}
    for name, hidden in (("fine", out.last_hidden_state), ("coarse", out.coarse_hidden_state)):
        logprobs = F.log_softmax(model.lm_head(hidden[:, :-1][supervised]).float(), dim=-1)  # [M, vocab]
        picked = logprobs.gather(1, targets[supervised][:, None])[:, 0]  # [M]
        sums = torch.zeros(rows, device=picked.device).index_add_(0, supervised.nonzero()[:, 0], picked)
        result[name] = sums.cpu()
    return result


@torch.no_grad()
def generate_answer(
    model, processor, frames: torch.Tensor, prompt: str, max_new_tokens: int = 8, vision_cache=None
) -> str:
    """Greedy text of the fine stream after `prompt` (one `<video>`), reading `vision_cache` when given; the same
    tokens as `model.generate(..., do_sample=False)`, which would run the patch pass again."""
    frames = _frames(frames)
    cache = vision_cache if vision_cache is not None else encode_video(model, frames)
    input_ids = torch.tensor([_prompt_ids(processor, prompt, frames.shape[0])], device=frames.device)
    model._check_generation_length(input_ids.shape[1], None, {"max_new_tokens": max_new_tokens})
    out = model.model(input_ids=input_ids, pixel_values_videos=frames[None], vision_cache=cache, use_cache=True)
    eos = processor.tokenizer.eos_token_id
    tokens = []
    for _ in range(max_new_tokens):
        token = model.lm_head(out.last_hidden_state[:, -1]).argmax(-1)  # [1]
        if token.item() == eos:
            break
        tokens.append(token.item())
        out = model.model(input_ids=token[:, None], past_key_values=out.past_key_values, use_cache=True)
    return processor.tokenizer.decode(tokens, skip_special_tokens=True)


def extract_answer_letter(text: str, letters: list[str]) -> str:
    """The answer letter in generated text, "" when there is none (lmms-eval's Video-MME rule, over `letters`):
    answer phrases removed, then the first capital option letter; a long answer with no letter is no answer."""
    text = text.strip()
    for prefix in ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    match = re.search(f"[{''.join(letters)}]", text)
    return "" if match is None else match[0]


def _load_video(processor, path: str, num_frames: int | None):
    """`[T, 3, H, W]` frames of a video, or None when the file cannot be decoded."""
    try:
        return processor.video_processor(videos=[path], num_frames=num_frames)["pixel_values_videos"][0]
    except (OSError, ValueError, RuntimeError) as error:  # VideoDecodeError is a ValueError
        logger.warning("skipped %s: %s", path, error)
        return None


def _accuracies(results: list[dict], keys: tuple[str, ...], groups: tuple[str, ...]) -> dict:
    """Mean of each key over `results`, overall and by each metadata field in `groups`."""
    summary = {key: sum(r[key] for r in results) / len(results) for key in keys}
    summary["count"] = len(results)
    for group in groups:
        by = defaultdict(list)
        for result in results:
            by[result["metadata"][group]].append(result)
        summary[f"by_{group}"] = {
            value: {**{key: sum(r[key] for r in rows) / len(rows) for key in keys}, "count": len(rows)}
            for value, rows in sorted(by.items())
        }
    return summary


@torch.no_grad()
def evaluate_benchmark(
    model,
    processor,
    items,
    *,
    scoring: str = "both",
    num_frames: int | None = None,
    max_new_tokens: int = 8,
    limit: int | None = None,
    counts: SampleCounts | None = None,
) -> dict:
    """Accuracy of both passes (likelihood) and of the fine stream's text (generation) on benchmark `items`.

    `counts` holds the loader's skips; videos that cannot be decoded are added to it. Returns the JSON the
    `evaluate --benchmark` command writes: under `scoring`, one entry per way of scoring, each overall and by the
    benchmark's groups (MVBench: task; Video-MME: duration and task type); `accuracy_fine` / `accuracy_coarse`
    are the likelihood numbers; `data` counts the questions scored and skipped.
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring={scoring!r}; expected one of {SCORINGS}")
    model.eval()
    counts = counts if counts is not None else SampleCounts()
    device = next(model.parameters()).device
    results, seconds, videos, benchmark = [], 0.0, 0, None
    items = itertools.islice(items, limit) if limit else items
    for path, questions in itertools.groupby(items, key=lambda item: item.video):
        questions = list(questions)
        frames = _load_video(processor, path, num_frames)
        if frames is None:
            counts.skipped["unreadable_video"] += len(questions)  # every question on it
            continue
        start = time.perf_counter()
        frames = frames.to(device=device, dtype=model.dtype)
        cache = encode_video(model, frames)  # the one patch pass of this video
        for item in questions:
            benchmark = item.benchmark
            prompt = benchmark_prompt(processor, item)
            result = {"metadata": item.metadata, "answer": item.answer, "chance": 1 / len(item.options)}
            if scoring in ("likelihood", "both"):
                scores = score_choices(model, processor, frames, prompt, item.letters, vision_cache=cache)
                for name, values in scores.items():
                    result[f"accuracy_{name}"] = float(item.letters[int(values.argmax())] == item.answer)
            if scoring in ("generation", "both"):
                text = generate_answer(model, processor, frames, prompt, max_new_tokens, vision_cache=cache)
                letter = extract_answer_letter(text, item.letters)
                result.update(accuracy=float(letter == item.answer), answered=float(letter != ""))
            results.append(result)
            counts.succeeded += 1
        seconds += time.perf_counter() - start
        videos += 1
    if not results:
        raise ValueError(f"no question could be scored ({counts.summary()}); check --data_dir and --subset")
    groups = GROUPS[benchmark]
    report = {"benchmark": benchmark, "num_questions": len(results), "num_videos": videos}
    report["chance"] = sum(r["chance"] for r in results) / len(results)
    report["scoring"] = {}
    if scoring in ("likelihood", "both"):
        report["scoring"]["likelihood"] = {
            "continuation": "the option letter after the prompt; summed log-probability, both passes",
            **_accuracies(results, ("accuracy_fine", "accuracy_coarse"), groups),
        }
        report["accuracy_fine"] = report["scoring"]["likelihood"]["accuracy_fine"]
        report["accuracy_coarse"] = report["scoring"]["likelihood"]["accuracy_coarse"]
    if scoring in ("generation", "both"):
        report["scoring"]["generation"] = {
            "pass": "fine",
            "decoding": f"greedy, at most {max_new_tokens} new tokens; letter extracted as lmms-eval's Video-MME",
            **_accuracies(results, ("accuracy", "answered"), groups),
        }
    report["seconds_per_video"] = seconds / videos
    report["data"] = counts.report()
    return report
