"""Held-out evaluation: per-sample losses, metric keys, answer accuracy by choice scoring, the CLI."""

import json
from collections import defaultdict

import pytest
import torch
from test_cli import checkpoint, save_checkpoint, video  # noqa: F401 - fixtures
from test_processing import make_processor
from tiny import check_pass_metrics

from foveated_vlm import FoveatedVLMForConditionalGeneration, VideoTextCollator, build_target_encoder
from foveated_vlm.cli import main
from foveated_vlm.data.pipeline import build_dataset
from foveated_vlm.evaluation.metrics import evaluate_model, per_sample_caption_losses


def tiny_model_and_processor(tmp_path):
    directory = save_checkpoint(tmp_path / "model")
    return FoveatedVLMForConditionalGeneration.from_pretrained(directory).eval(), make_processor(num_frames=4)


def samples(task="caption", n=5, seed=3):
    stream = iter(build_dataset("synthetic", seed=seed, frame_size=32, num_frames=4, task=task))
    return [next(stream) for _ in range(n)]


def test_per_sample_caption_losses_are_row_means(tmp_path):
    model, processor = tiny_model_and_processor(tmp_path)
    batch = VideoTextCollator(processor)(samples(n=3))
    with torch.no_grad():
        out = model.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values_videos=batch["pixel_values_videos"],
        )
        rows = per_sample_caption_losses(model, out.last_hidden_state, batch["labels"])
        for row in range(3):
            logits = model.lm_head(out.last_hidden_state[row, :-1])
            expected = torch.nn.functional.cross_entropy(logits, batch["labels"][row, 1:], ignore_index=-100)
            torch.testing.assert_close(rows[row], expected)


def test_evaluate_model_reports_both_passes(tmp_path):
    model, processor = tiny_model_and_processor(tmp_path)
    metrics = evaluate_model(
        model,
        processor,
        iter(samples(n=5)),
        num_videos=5,
        batch_size=2,
        target_encoder=build_target_encoder("pixels", target_size=8),
        progress=False,
    )
    assert metrics["num_videos"] == 5
    check_pass_metrics(metrics, extra=("psnr_fine", "psnr_coarse", "ssim_fine", "ssim_coarse"))
    assert 0 <= metrics["caption_bleu"] <= 1 and 0 <= metrics["caption_rouge_l"] <= 1
    assert "accuracy_fine" not in metrics  # captions define no answer among choices


def test_accuracy_is_the_choice_each_pass_finds_most_likely(tmp_path):
    model, processor = tiny_model_and_processor(tmp_path)
    clips = samples("clutter", n=6)
    metrics = evaluate_model(model, processor, iter(clips), num_videos=6, batch_size=4, progress=False)
    collator = VideoTextCollator(processor)
    right = {"fine": 0, "coarse": 0}
    for clip in clips:  # brute force: one forward per clip and choice
        truth = json.loads(clip["ground_truth"])
        scores = {"fine": [], "coarse": []}
        for answer in truth["answers"]:
            out = model(**collator([dict(clip, answer=answer)]))
            scores["fine"].append(out.caption_loss_fine.item())
            scores["coarse"].append(out.caption_loss_coarse.item())
        for name in right:
            right[name] += int(min(range(len(scores[name])), key=scores[name].__getitem__) == truth["label"])
    assert metrics["accuracy_fine"] == pytest.approx(right["fine"] / 6)
    assert metrics["accuracy_coarse"] == pytest.approx(right["coarse"] / 6)


def test_evaluate_command_writes_json(checkpoint, tmp_path):  # noqa: F811
    out = tmp_path / "metrics.json"
    main(
        [
            "evaluate",
            "--model",
            str(checkpoint),
            "--dataset",
            "synthetic",
            "--task",
            "clutter",
            "--num_videos",
            "3",
            "--batch_size",
            "2",
            "--json",
            str(out),
        ]
    )
    metrics = json.loads(out.read_text())
    assert metrics["num_videos"] == 3 and 0 <= metrics["accuracy_fine"] <= 1 and "ratio" in metrics


def test_an_empty_stream_is_an_error(tmp_path):
    model, processor = tiny_model_and_processor(tmp_path)
    with pytest.raises(ValueError, match="gave no samples"):
        evaluate_model(model, processor, iter([]), num_videos=4, progress=False)


def test_ssim_and_psnr():
    from foveated_vlm.evaluation.metrics import _psnr, _ssim

    frames = torch.rand(2, 3, 3, 16, 16) * 2 - 1  # [B, T, 3, H, W]
    torch.testing.assert_close(_ssim(frames, frames), torch.ones(2, 3))
    noisy = (frames + 0.3 * torch.randn_like(frames)).clamp(-1, 1)
    assert (_ssim(noisy, frames) < 0.9).all() and (_ssim(noisy, frames) > 0).all()
    torch.testing.assert_close(_ssim(noisy, frames), _ssim(frames, noisy))
    mse = (noisy - frames).pow(2).flatten(-3).mean(-1)
    torch.testing.assert_close(_psnr(noisy, frames), 10 * torch.log10(4 / mse))


def test_caption_scores_by_hand():
    from foveated_vlm.evaluation.metrics import _caption_scores

    scores = _caption_scores(["a b c d"], ["a b c d e"])
    # Precisions 4/4, 3/3, 2/2, 1/1 (nothing to smooth); brevity penalty exp(1 - 5/4).
    assert scores["caption_bleu"] == pytest.approx(2.718281828 ** (1 - 5 / 4))
    assert scores["caption_rouge_l"] == pytest.approx(2 * 1.0 * 0.8 / 1.8)  # LCS 4: precision 1, recall 0.8
    # sacrebleu's 13a tokenizer splits the final period off; its default keeps case (rouge-score lower-cases).
    assert _caption_scores(["a red ball."], ["a red ball ."]) == pytest.approx(
        {"caption_bleu": 1.0, "caption_rouge_l": 1.0}
    )
    assert _caption_scores(["x y"], ["a b"])["caption_bleu"] == 0.0


def test_a_non_finite_loss_stops_with_the_step(tmp_path):
    from transformers import TrainingArguments

    from foveated_vlm.training.trainer import FoveatedTrainer

    model, processor = tiny_model_and_processor(tmp_path)
    with torch.no_grad():
        model.predictor.decode[-1].bias.fill_(float("nan"))
    trainer = FoveatedTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none"))
    batch = VideoTextCollator(processor, build_target_encoder("pixels", target_size=8))(samples(n=2))
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 0"):
        trainer.compute_loss(model, batch)


def test_other_video_loss_equals_the_caption_loss_exactly_when_the_video_is_not_read(tmp_path):
    model, processor = tiny_model_and_processor(tmp_path)

    def other_video_gap():
        metrics = evaluate_model(
            model, processor, iter(samples(n=4)), num_videos=4, batch_size=4, generate_captions=False, progress=False
        )
        return metrics["caption_loss_other_video"] - metrics["caption_loss_fine"]

    torch.manual_seed(0)
    with torch.no_grad():  # at 0.02 init the attention barely moves the residual stream: make what it reads count
        model.foveated_encoder.final_norm.weight.mul_(100)
        for layer in model.model.language_model.layers:
            layer.self_attn.o_proj.weight.mul_(100)
    assert abs(other_video_gap()) > 1e-6  # small but real: a random model's answers depend a little on the frames
    with torch.no_grad():  # cut the frames out of the language model's input: only the text prior is left
        model.model.vision_to_text.weight.zero_()
        model.model.vision_to_text.bias.zero_()
    assert other_video_gap() == 0.0


def test_choice_scoring_runs_one_patch_pass_for_all_choices(tmp_path, monkeypatch):
    from foveated_vlm.evaluation import metrics as evaluation

    model, processor = tiny_model_and_processor(tmp_path)
    clips = samples("clutter", n=3)
    choices = [evaluation._choices(clip) for clip in clips]
    choices[1] = (choices[1][0][:2], min(choices[1][1], 1))  # fewer choices on one clip: later options skip its row
    encoder, calls = model.foveated_encoder, []
    original = type(encoder).encode_patches
    monkeypatch.setattr(
        type(encoder), "encode_patches", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    shared = defaultdict(list)
    evaluation._score_choices(model, VideoTextCollator(processor), clips, choices, lambda k, v: shared[k].append(v))
    assert len(calls) == 1 and max(len(answers) for answers, _ in choices) > 2
    # The same answers as a patch pass per choice (the cache's rows are the clips' own frames).
    monkeypatch.setattr(evaluation, "_cache_rows", lambda cache, rows, frames: None)
    alone = defaultdict(list)
    evaluation._score_choices(model, VideoTextCollator(processor), clips, choices, lambda k, v: alone[k].append(v))
    assert len(calls) == 1 + 1 + max(len(answers) for answers, _ in choices)  # the unused shared pass + one per choice
    for name in ("accuracy_fine", "accuracy_coarse"):
        torch.testing.assert_close(torch.cat(shared[name]), torch.cat(alone[name]))
