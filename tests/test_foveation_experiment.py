"""The foveation experiment's parts: its scenes, the ablation switches, the regularisers, the target-fixation metric,
the presets and the results table. (The experiment itself is minutes of training: experiments/foveation.py.)"""

import inspect
import json
import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_cli import save_checkpoint
from test_processing import make_processor
from tiny import tiny_batch, tiny_config

from foveated_vlm import FoveatedVLMForConditionalGeneration, VideoTextCollator
from foveated_vlm.data.pipeline import build_dataset
from foveated_vlm.data.synthetic import GLOBAL_CHANGES, SyntheticVideoConfig, generate_clip
from foveated_vlm.modeling_foveated import fixation_entropy
from foveated_vlm.training.arguments import parse
from foveated_vlm.training.data_collator import target_patches
from foveated_vlm.training.foveation_losses import FoveationLosses, fixation_loss, random_fine_queries
from foveated_vlm.training.trainer import FoveatedTrainer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
import foveation  # noqa: E402
import token_probe  # noqa: E402


def model_for(**overrides):
    torch.manual_seed(0)
    return FoveatedVLMForConditionalGeneration(tiny_config(**overrides))


# ------------------------------------------------------------------------------------------------- scenes
def test_clutter_dataset_gives_distinct_colours_and_a_named_target():
    for sample in build_dataset("clutter", seed=0, frame_size=32, num_frames=4, question="quadrant").take(20):
        truth = json.loads(sample["ground_truth"])
        colours = [obj["colour"] for obj in truth["objects"]]
        assert len(set(colours)) == len(colours) and 4 <= len(colours) <= 6
        target = truth["objects"][truth["target"]]
        assert f"{target['colour']} {target['shape']}" in sample["prompt"]
        assert truth["question"] == "quadrant" and sample["answer"] == truth["answers"][truth["label"]]


def test_quadrant_scenes_give_every_object_a_quadrant_of_its_own():
    for sample in build_dataset("clutter", seed=0, frame_size=32, num_frames=4, question="quadrant").take(30):
        truth = json.loads(sample["ground_truth"])
        quadrants = []
        for obj in truth["objects"]:
            x, y = obj["positions"][-1]
            assert min(abs(x - 16), abs(y - 16)) >= obj["size"] / 2 - 1e-6  # wholly inside its quadrant
            quadrants.append(int(x >= 16) + 2 * int(y >= 16))
        assert sorted(quadrants) == [0, 1, 2, 3]  # no quadrant holds more objects than another
        assert quadrants[truth["target"]] == truth["label"]
    with pytest.raises(ValueError, match="at most 4"):
        SyntheticVideoConfig(task="clutter", question="quadrant", num_objects=(4, 5))


def test_caption_mix_interleaves_described_clips_of_the_same_scenes():
    mixed = list(build_dataset("clutter", seed=0, frame_size=32, num_frames=4, caption_mix=0.5).take(40))
    described = [s for s in mixed if s["prompt"] == "Describe the video."]
    assert 8 <= len(described) <= 32 and all(s["answer"].startswith(("A ", "An ")) for s in described)
    assert all(len({o["colour"] for o in json.loads(s["ground_truth"])["objects"]}) >= 4 for s in mixed)
    questions = build_dataset("clutter", seed=0, frame_size=32, num_frames=4).take(20)
    assert all(s["prompt"].startswith("Track the") for s in questions)


def test_curriculum_grows_the_scene_from_one_object_with_clips_of_its_own():
    staged = build_dataset("clutter", seed=0, frame_size=32, num_frames=4, question="quadrant", curriculum_clips=6)
    truths = [json.loads(sample["ground_truth"]) for sample in staged.take(10)]
    counts = [len(truth["objects"]) for truth in truths]
    assert counts[:6] == [1, 1, 2, 2, 3, 3] and all(count == 4 for count in counts[6:])  # a quadrant each
    plain = build_dataset("clutter", seed=0, frame_size=32, num_frames=4, question="quadrant")
    held_out = build_dataset("clutter", seed=1, frame_size=32, num_frames=4, question="quadrant")
    stage_ids = {sample["video_id"] for sample in staged.take(6)}
    assert not stage_ids & {sample["video_id"] for sample in held_out.take(50)}
    assert [s["video_id"] for s in staged.skip(6).take(4)] == [s["video_id"] for s in plain.take(4)]


@pytest.mark.parametrize("seed", range(12))
def test_global_change_moves_the_whole_frame_and_nothing_else(seed):
    config = SyntheticVideoConfig(task="global", frame_size=32, num_frames=5)
    clip = generate_clip(seed, config)
    truth = clip.ground_truth
    change, frames = truth["global_change"], clip.frames.astype(int)
    assert change in GLOBAL_CHANGES and all(obj["motion"] == "static" for obj in truth["objects"])
    if change in ("brighter", "darker"):
        means = frames.reshape(len(frames), -1).mean(1)
        steps = np.diff(means)
        assert (steps > 0).all() if change == "brighter" else (steps < 0).all()
    else:  # every frame is the first one rolled by the same whole-pixel step per frame
        direction = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[change]
        matches = [
            speed
            for speed in range(1, 16)
            if all(
                np.array_equal(np.roll(frames[0], (t * speed * direction[0], t * speed * direction[1]), (0, 1)), f)
                for t, f in enumerate(frames)
            )
        ]
        assert matches, change
    assert truth["global_change"] in clip.caption.replace("gets ", "").replace("pans ", "")


def test_distinct_colours_that_cannot_fit_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct_colours needs as many colours"):
        SyntheticVideoConfig(
            task="clutter", num_objects=(3, 4), colours=("red", "green", "blue"), distinct_colours=True
        )


# ------------------------------------------------------------------------------------------ ablation switches
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("query_top_k", -1, "query_top_k"),
        ("query_norm", "layer", "query_norm"),
        ("token_norm", "layer", "token_norm"),
    ],
)
def test_bad_ablation_settings_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fine_queries", "oracle", "fine"),
        ("contrastive_loss_weight", -1.0, "--contrastive_loss_weight -1.0 is invalid"),
        ("fixation_loss_steps", -2, "--fixation_loss_steps -2 must be >= 0"),
    ],
)
def test_bad_training_options_name_the_flag(field, value, message):
    with pytest.raises(ValueError, match=message):
        FoveationLosses(**{field: value})


def test_top_k_keeps_the_k_best_patches_and_every_prefix_token():
    model = model_for(query_top_k=3).eval()
    encoder = model.foveated_encoder
    _, cache = encoder.encode_patches(torch.randn(2, 3, 32, 32))
    prefix = cache.num_prefix_tokens  # CLS + 2 registers in the tiny DINOv3 config
    q = torch.randn(2, 2, 1, 16)  # [N, H, K, d]
    weights = encoder._query_attention(q, torch.zeros_like(q), cache.keys[0], prefix)  # [N, H, K, S+1]
    patches = weights[..., prefix:-1]
    assert ((patches > 0).sum(-1) == 3).all() and (weights[..., :prefix] > 0).all()
    scores = q @ cache.keys[0][..., prefix:, :].transpose(-1, -2)  # [N, H, K, P]
    assert torch.equal(patches > 0, scores >= scores.topk(3, dim=-1).values[..., -1:])
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights[..., 0]))
    # k as large as the patch grid is plain soft attention.
    queries = torch.randn(2, 1, 16)
    everything = model_for(query_top_k=16).eval().foveated_encoder  # 4 x 4 patches
    soft = model_for().eval().foveated_encoder
    assert torch.allclose(everything.query(queries, cache), soft.query(queries, cache), atol=1e-6)
    assert not torch.allclose(encoder.query(queries, cache), soft.query(queries, cache), atol=1e-3)


def test_random_fine_queries_are_fresh_and_leave_the_coarse_pass_alone():
    model = model_for().eval()
    batch = tiny_batch(model.config)
    draw = lambda: random_fine_queries(model.config, batch["pixel_values_videos"])  # noqa: E731
    with torch.no_grad():
        first, second = model(**batch, fine_queries=draw()), model(**batch, fine_queries=draw())
    assert not torch.allclose(first.queries, second.queries)
    assert abs(first.queries.std().item() - 1) < 0.3  # std-1 draws, like the static queries
    assert torch.equal(first.caption_loss_coarse, second.caption_loss_coarse)
    assert not torch.equal(first.caption_loss_fine, second.caption_loss_fine)


@pytest.mark.parametrize("prompt_query", [False, True])
def test_batch_norms_standardise_in_training_and_streams_equal_in_eval(prompt_query):
    model = model_for(query_norm="batch", token_norm="batch", prompt_query=prompt_query)
    batch = tiny_batch(model.config, batch=4, frames=4)
    out = model.train()(**batch)
    flat = out.queries.flatten(0, 1).flatten(1)  # [B*T, K*qd]
    assert torch.allclose(flat.mean(0), torch.zeros(flat.shape[1]), atol=1e-5)
    if not prompt_query:  # with it, the sum of two standardised parts has a variance that depends on their overlap
        assert torch.allclose(flat.var(0, unbiased=False), torch.ones(flat.shape[1]), atol=5e-3)  # eps of the norm
    inner = model.model(input_ids=batch["input_ids"], pixel_values_videos=batch["pixel_values_videos"])
    tokens = model.model.embed_frame_tokens(inner.vision_tokens_fine, model.model.FINE).flatten(0, 1)  # [B*T*K, D]
    assert torch.allclose(tokens.mean(0), torch.zeros(tokens.shape[1]), atol=1e-5)
    assert torch.allclose(tokens.var(0, unbiased=False), torch.ones(tokens.shape[1]), atol=5e-3)
    model.eval()  # running statistics: the parallel forward and the stream agree, through both passes' norms
    with torch.no_grad():
        parallel = model(**batch)
        stream = model.stream(input_ids=batch["input_ids"][:, :3], batch_size=4)
        for t in range(4):
            step = stream.push(batch["pixel_values_videos"][:, t], target_latent=batch["target_latents"][:, t])
            assert torch.allclose(step.query, parallel.queries[:, t], atol=1e-4)
            if t < 3:  # the coarse stream's tokens plan the next query; the fine stream's predict the next target
                assert torch.allclose(step.next_query, parallel.queries[:, t + 1], atol=1e-4)
                assert torch.allclose(step.predicted_latent, parallel.predicted_latents[:, t + 1], atol=1e-4)


def test_prompt_query_brings_the_prompt_to_every_frame_and_learns():
    model = model_for(prompt_query=True).eval()
    with torch.no_grad():
        model.model.query_head.weight.zero_()  # leave only the prompt's part of each query
        model.model.query_head.bias.zero_()
    batch = tiny_batch(model.config, batch=2, frames=4)
    with torch.no_grad():
        queries = model(**batch).queries  # [B, T, K, qd]
        other_frames = model(**{**batch, "pixel_values_videos": torch.randn_like(batch["pixel_values_videos"])})
        other_ids = batch["input_ids"].clone()
        other_ids[:, 1] = torch.where(other_ids[:, 1] == 1, 2, 1)  # one prompt token changed
        other_prompt = model(**{**batch, "input_ids": other_ids, "labels": None})
    assert torch.allclose(queries, queries[:, :1].expand_as(queries))  # one query, planned before any frame
    assert torch.equal(queries, other_frames.queries)
    assert not torch.allclose(queries, other_prompt.queries)
    assert queries.abs().sum() > 0
    model.train()(**batch).loss.backward()
    assert model.model.prompt_query_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="video_start"):
        model.model.plan_queries(torch.zeros(2, model.config.text_config.hidden_size))
    normed = model_for(prompt_query=True, query_norm="batch").train()
    with pytest.raises(ValueError, match="got a batch of 1 video: train with at least 2"):
        normed(**tiny_batch(normed.config, batch=1, frames=4))


def foveation_trainer(tmp_path, model, **options) -> FoveatedTrainer:
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    return FoveatedTrainer(model=model, args=args, foveation=FoveationLosses(**options))


def test_regularisers_are_what_they_say_and_enter_the_loss(tmp_path):
    model = model_for().train()
    batch = tiny_batch(model.config)
    plain = model(**batch)
    weights = {"contrastive_loss_weight": 0.3, "entropy_margin_loss_weight": 0.7, "entropy_margin": 2.0}
    trainer = foveation_trainer(tmp_path, model, **weights)
    loss, out = trainer.compute_loss(model, batch, return_outputs=True)
    terms = FoveationLosses(**weights).terms(out)
    inner = model.model(
        input_ids=batch["input_ids"], pixel_values_videos=batch["pixel_values_videos"], output_attentions=True
    )
    fine, coarse = inner.vision_tokens_fine.flatten(1), inner.vision_tokens_coarse.flatten(1)
    assert torch.allclose(terms["contrastive_loss"], F.cosine_similarity(fine, coarse, dim=-1).mean(), atol=1e-4)
    gap = fixation_entropy(inner.fixations_fine).mean() - fixation_entropy(inner.fixations_coarse).mean()
    assert torch.allclose(terms["entropy_margin_loss"], F.relu(gap + 2.0), atol=1e-4)
    expected = plain.loss + 0.3 * terms["contrastive_loss"] + 0.7 * terms["entropy_margin_loss"]
    assert torch.allclose(loss, expected, atol=1e-5)
    assert torch.allclose(out.loss, plain.loss)  # the model's own loss is the contract's alone
    # Each regulariser alone reaches the planned queries.
    for term in (terms["entropy_margin_loss"], terms["contrastive_loss"]):
        model.zero_grad()
        term.backward(retain_graph=True)
        assert model.model.query_head.weight.grad.abs().sum() > 0
    assert FoveationLosses().terms(plain) == {}  # weights 0: no term
    logs = trainer._drain("train")
    assert logs["contrastive_loss"] == pytest.approx(terms["contrastive_loss"].item(), rel=1e-5)
    assert logs["entropy_margin_loss"] == pytest.approx(terms["entropy_margin_loss"].item(), rel=1e-5)


def test_fixation_loss_is_minus_log_the_share_on_target():
    targets = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    targets[..., :2, :2] = True  # 4 of 16 patches
    uniform = torch.full((1, 2, 1, 4, 4), 1 / 16)
    loss = fixation_loss(uniform, targets)
    assert loss.item() == pytest.approx(math.log(4))
    on_target = torch.zeros(1, 2, 1, 4, 4)
    on_target[..., 1, 0] = 1
    assert fixation_loss(on_target, targets).item() == pytest.approx(0, abs=1e-6)


def test_fixation_targets_supervise_the_planned_queries(tmp_path):
    config = tiny_config()
    batch = tiny_batch(config)
    grid = config.frame_size // config.patch_size
    targets = torch.zeros(2, 4, grid, grid, dtype=torch.bool)
    targets[..., 0, 0] = True
    plain = model_for().train()(**batch)
    model = model_for().train()
    trainer = foveation_trainer(tmp_path, model, fixation_loss_weight=0.5)
    loss, out = trainer.compute_loss(model, {**batch, "fixation_targets": targets}, return_outputs=True)
    expected = fixation_loss(out.fixations_fine, targets)
    assert expected > 0
    assert torch.allclose(loss, plain.loss + 0.5 * expected, atol=1e-5)
    assert trainer._sums["train"]["fixation_loss"] == pytest.approx(expected.item())
    model.zero_grad()
    expected.backward()
    assert model.model.query_head.weight.grad.abs().sum() > 0  # the planned queries learn where to look
    # Without targets, with weight 0, in evaluation or once released there is no such loss; a wrong grid names
    # the input. The model never sees the targets.
    assert "fixation_loss" not in FoveationLosses(fixation_loss_weight=0.5).terms(out)
    assert FoveationLosses().terms(out, targets) == {}
    trainer._sums["train"].clear()
    trainer.compute_loss(model.eval(), {**batch, "fixation_targets": targets})
    assert "fixation_loss" not in trainer._sums["eval"]
    released = foveation_trainer(tmp_path, model.train(), fixation_loss_weight=0.5, fixation_loss_steps=3)
    released.state.global_step = 3
    released.compute_loss(model, {**batch, "fixation_targets": targets})
    assert "fixation_loss" not in released._sums["train"]
    with pytest.raises(ValueError, match=r"fixation_targets must have shape \[B, T, gh, gw\]"):
        trainer.compute_loss(model, {**batch, "fixation_targets": targets[:, :, :2]})
    assert "fixation_targets" not in inspect.signature(type(model).forward).parameters


def test_the_random_control_trains_with_fresh_queries(tmp_path):
    model = model_for().train()
    batch = tiny_batch(model.config)
    trainer = foveation_trainer(tmp_path, model, fine_queries="random")
    _, first = trainer.compute_loss(model, batch, return_outputs=True)
    _, second = trainer.compute_loss(model, batch, return_outputs=True)
    assert not torch.allclose(first.queries, second.queries)
    assert not torch.allclose(first.queries, model(**batch).queries)  # not the planned ones
    assert torch.equal(first.caption_loss_coarse, second.caption_loss_coarse)


def test_the_random_control_is_evaluated_and_drawn_as_it_trained(tmp_path, monkeypatch):
    from foveated_vlm.evaluation.metrics import evaluate_model
    from foveated_vlm.evaluation.reporting import fixation_figures

    model = FoveatedVLMForConditionalGeneration.from_pretrained(save_checkpoint(tmp_path / "model")).eval()
    processor = make_processor(num_frames=4)
    clips = list(build_dataset("clutter", seed=3, frame_size=32, num_frames=4, question="quadrant").take(3))
    read_with = []  # the queries every fine pass read with
    fine_pass = model.model.fine_pass
    monkeypatch.setattr(model.model, "fine_pass", lambda queries, *a, **k: read_with.append(queries) or fine_pass(
        queries, *a, **k))  # fmt: skip

    def evaluate(**options):
        read_with.clear()
        metrics = evaluate_model(model, processor, iter(clips), num_videos=3, batch_size=3, progress=False, **options)
        return metrics, list(read_with)

    (planned, planned_queries), (control, control_queries) = evaluate(), evaluate(random_fine_queries=True)
    again, _ = evaluate(random_fine_queries=True)
    for key in ("caption_loss_coarse", "accuracy_coarse", "fixation_entropy_coarse"):
        assert control[key] == pytest.approx(planned[key], rel=1e-6), key
    assert control["caption_loss_fine"] != planned["caption_loss_fine"]
    assert control["caption_loss_fine"] != again["caption_loss_fine"]  # fresh draws, as in training
    # forward, other video, generation's prefill, then the answer choices: the same number of fine passes
    assert len(control_queries) == len(planned_queries)
    for drawn, chosen in zip(control_queries, planned_queries, strict=True):
        assert drawn.shape == chosen.shape and not torch.allclose(drawn, chosen)
    choices = control_queries[-4:]  # the four quadrant answers of every clip read with the same draws
    assert all(torch.equal(choice, choices[0]) for choice in choices)
    read_with.clear()
    fixation_figures(model, processor, clips, tmp_path / "planned", num_videos=1)
    fixation_figures(model, processor, clips, tmp_path / "control", num_videos=1, random_fine_queries=True)
    assert not torch.allclose(read_with[0], read_with[1])
    assert abs(read_with[1].std().item() - 1) < 0.5


def test_collator_places_the_prompted_target_for_the_fixation_loss():
    processor = make_processor(num_frames=4)
    samples = list(build_dataset("clutter", seed=0, frame_size=32, num_frames=4, question="quadrant").take(3))
    batch = VideoTextCollator(processor, fixation_grid=4)(samples)
    assert batch["fixation_targets"].shape == (3, 4, 4, 4)
    assert torch.equal(batch["fixation_targets"][1], target_patches(samples[1], 4))
    assert "fixation_targets" not in VideoTextCollator(processor)(samples)
    described = list(build_dataset("synthetic", seed=0, frame_size=32, num_frames=4).take(1))
    with pytest.raises(ValueError, match="fixation targets need clutter clips.*synthetic-caption"):
        VideoTextCollator(processor, fixation_grid=4)(samples[:1] + described)
    longer = list(build_dataset("clutter", seed=0, frame_size=32, num_frames=6, question="quadrant").take(1))
    with pytest.raises(
        ValueError, match=r"the 6 frames of clips \['synthetic-clutter-quadrant-0'\], but the processor samples 4"
    ):
        VideoTextCollator(processor, fixation_grid=4)(longer)


def test_fixation_entropy_is_zero_for_a_point_and_log_n_for_uniform():
    point = torch.zeros(1, 4, 4)
    point[0, 1, 2] = 1
    assert fixation_entropy(point).item() == pytest.approx(0.0, abs=1e-6)
    assert fixation_entropy(torch.full((2, 4, 4), 1 / 16)) == pytest.approx(math.log(16))


# ---------------------------------------------------------------------------------------- target fixation
def test_target_patches_cover_the_target_in_every_frame():
    config = SyntheticVideoConfig(task="clutter", question="quadrant", frame_size=64, num_frames=6)
    for seed in range(10):
        clip = generate_clip(seed, config)
        sample = {"ground_truth": json.dumps(clip.ground_truth)}
        masks = target_patches(sample, grid=8)  # [T, 8, 8]: 8 px patches
        target = clip.ground_truth["objects"][-1]
        for t, (x, y) in enumerate(target["positions"]):
            assert masks[t, int(y // 8), int(x // 8)]  # the centre's patch
            rows, cols = masks[t].nonzero().unbind(1)
            r = target["size"] / 2
            assert (cols * 8 < x + r).all() and ((cols + 1) * 8 > x - r).all()  # only overlapping patches
            assert (rows * 8 < y + r).all() and ((rows + 1) * 8 > y - r).all()
            spans = [int(np.ceil((c + r) / 8)) - int(np.floor((c - r) / 8)) for c in (x, y)]  # patches overlapped
            assert masks[t].sum() == spans[0] * spans[1]  # and every one of them
    assert target_patches({"prompt": "a real video"}, grid=8) is None
    caption = generate_clip(0, SyntheticVideoConfig(frame_size=64))  # no prompted target
    assert target_patches({"ground_truth": json.dumps(caption.ground_truth)}, grid=8) is None


# ----------------------------------------------------------------------------------------- presets, table
@pytest.mark.parametrize("preset", ["clutter", "global-control"])
def test_experiment_presets_parse(preset):
    model_args, data_args, foveation_args, training_args = parse(["--preset", preset])
    assert training_args.output_dir == f"outputs/{preset}"
    if preset == "clutter":
        assert (data_args.dataset, data_args.question, model_args.reconstruction_loss_weight) == (
            "clutter",
            "quadrant",
            0,
        )
        assert model_args.prompt_query and data_args.curriculum_clips > 0 and foveation_args.fixation_loss_weight > 0
    else:
        assert data_args.dataset == "global_change" and not data_args.train_captions
    assert model_args.vision_type == "dinov2" and model_args.query_norm == "batch"
    assert model_args.vision_position_init_std == 3.0


def test_shortened_runs_keep_the_presets_schedule():
    assert foveation.shortened("clutter", 400, []) == ["--curriculum_clips", "1800", "--max_steps", "400"]
    released = foveation.shortened("clutter", 400, ["--fixation_loss_steps", "1125"])
    assert released == ["--fixation_loss_steps", "225", "--curriculum_clips", "1800", "--max_steps", "400"]
    assert foveation.shortened("clutter", 400, ["--curriculum_clips", "0"]) == [
        "--curriculum_clips",
        "0",
        "--max_steps",
        "400",
    ]
    assert foveation.shortened("global-control", 100, []) == ["--max_steps", "100"]
    restarted = foveation.shortened("clutter-emergent", 300, foveation.EMERGENT_ABLATIONS["restarts"])
    assert restarted == [
        *["--restart_step", "225", "--restart_window", "75", "--curriculum_clips", "1800", "--max_steps", "300"]
    ]


def test_results_table_has_the_seed_mean_and_every_run():
    results = {
        "clutter-seed0": {"steps": 10, "caption_ratio": 1.2, "accuracy_fine": 0.6, "accuracy_coarse": 0.3},
        "clutter-seed1": {"steps": 10, "caption_ratio": 1.4, "accuracy_fine": 0.8, "accuracy_coarse": 0.3},
        "global-control": {"ratio": 1.001},
    }
    text = foveation.table(results)
    assert "| clutter, mean ± sd of 2 seeds | 10 | 1.300 ± 0.141 | - | 70.0% ± 14.1% | 30.0% ± 0.0% |" in text
    assert "| global-control | - | - | 1.001 |" in text
    with pytest.raises(SystemExit):
        foveation.main(["--ablations", "no-such-ablation", "--out", "unused"])


# ------------------------------------------------------------------------------------------- token probe
def test_token_probe_finds_what_is_there_and_not_what_is_not():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 4
    separable = F.one_hot(labels, 4).float() + 0.3 * torch.randn(300, 4, generator=generator)
    assert token_probe.probe_accuracy(separable, labels) > 0.95
    assert token_probe.probe_accuracy(torch.randn(300, 16, generator=generator), labels) < 0.45


def test_token_probe_runs_on_a_checkpoint(tmp_path):
    directory = save_checkpoint(tmp_path / "model")
    result = token_probe.main(["--model", str(directory), "--num_objects", "1", "--clips", "90"])
    assert result["num_objects"] == [1, 1] and result["clips"] == 90
    for name in ("coarse", "fine"):
        assert 0 <= result[f"probe_accuracy_{name}"] <= 1
    assert result["probe_accuracy_pixels"] > 0.6  # a lone object's quadrant is plain in its pixels (chance 0.25)
