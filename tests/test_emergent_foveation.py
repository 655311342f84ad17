"""The parts of the label-free foveation experiment (docs/foveation_experiment.md, "Without labels"): planned queries
on the static queries as their base, tokens that say where their glimpse looked, the glimpse search that pulls the
planned queries towards the perturbed ones that answered best; the experiment script's emergent jobs and the key
probe."""

import math
import os
import sys

import pytest
import torch
from tiny import tiny_batch, tiny_config

from foveated_vlm import FoveatedVLMForConditionalGeneration
from foveated_vlm.modeling_foveated import fixation_centroid
from foveated_vlm.training.foveation_losses import FoveationLosses, best_glimpses, glimpse_search_loss
from foveated_vlm.training.trainer import FoveatedTrainer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
import foveation  # noqa: E402


def test_static_query_base_adds_the_static_queries_to_what_is_planned():
    torch.manual_seed(0)
    plain = FoveatedVLMForConditionalGeneration(tiny_config(tokens_per_frame=2, prompt_query=True)).eval()
    based = FoveatedVLMForConditionalGeneration(
        tiny_config(tokens_per_frame=2, prompt_query=True, static_query_base=True)
    ).eval()
    based.load_state_dict(plain.state_dict())
    hidden = torch.randn(2, 3, plain.config.text_config.hidden_size)  # [B, T, D]
    expected = plain.model.plan_queries(hidden, hidden[:, :1]) + plain.model.static_queries  # [B, T, K, qd]
    torch.testing.assert_close(based.model.plan_queries(hidden, hidden[:, :1]), expected)


def test_a_fixations_centroid_is_where_it_looks():
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0] = 1  # top left
    maps[1, 3, 1] = maps[1, 3, 2] = 0.5  # bottom row, between the two middle columns
    maps[2] = 1 / 16  # flat
    torch.testing.assert_close(fixation_centroid(maps), torch.tensor([[-1.0, -1.0], [0.0, 1.0], [0.0, 0.0]]))


def test_located_tokens_carry_where_the_glimpse_looked_and_pass_it_the_gradient():
    torch.manual_seed(0)
    config = tiny_config(glimpse_location=True)
    model = FoveatedVLMForConditionalGeneration(config)
    tokens = torch.randn(2, 1, config.vision_config.hidden_size)
    left, right = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    left[..., 0], right[..., 3] = 0.25, 0.25  # the same token, looked at from the left or the right column
    base = model.model
    shift = base.embed_frame_tokens(tokens, base.FINE, right) - base.embed_frame_tokens(tokens, base.FINE, left)
    torch.testing.assert_close(shift, (2 * base.location_proj.weight[:, 0]).expand_as(shift))  # x: -1 -> 1
    with pytest.raises(ValueError, match="pass its fixations"):
        base.embed_frame_tokens(tokens, base.FINE)
    inputs = tiny_batch(config, batch=2, frames=2)
    model(**inputs).caption_loss_fine.backward()
    assert base.location_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{"static_query_base": True}, {"glimpse_location": True}])
def test_the_stream_equals_the_parallel_forward_with(options):
    config = tiny_config(prompt_query=True, **options)
    model = FoveatedVLMForConditionalGeneration(config).eval()
    inputs = tiny_batch(config, batch=2, frames=3)
    ids = inputs["input_ids"][:, :-4]
    with torch.no_grad():
        parallel = model(input_ids=ids, pixel_values_videos=inputs["pixel_values_videos"])
    stream = model.stream(input_ids=ids[:, :3], batch_size=2)
    for t in range(3):
        step = stream.push(inputs["pixel_values_videos"][:, t])
        torch.testing.assert_close(step.query, parallel.queries[:, t], rtol=0, atol=1e-4)
        if t + 1 < 3:  # planned from what the located tokens told the language model
            torch.testing.assert_close(step.next_query, parallel.queries[:, t + 1], rtol=0, atol=1e-4)


def per_video_caption_loss(model, inputs, queries, mask=None):
    """Each video's mean caption cross-entropy of the fine pass read with `queries` (and `mask`), one at a time."""
    losses = []
    for b in range(queries.shape[0]):
        one = {name: value[b : b + 1] for name, value in inputs.items()}
        fine = {} if mask is None else {"fine_patch_mask": mask[b : b + 1]}
        with torch.no_grad():
            losses.append(model(**one, fine_queries=queries[b : b + 1], **fine).caption_loss_fine)
    return torch.stack(losses)


def one_trainer_step(tmp_path, **foveation):
    """A `FoveatedTrainer` with these foveation flags, after one training `compute_loss` on a tiny batch."""
    from transformers import TrainingArguments

    torch.manual_seed(0)
    config = tiny_config()
    model = FoveatedVLMForConditionalGeneration(config)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = FoveatedTrainer(model=model, args=args, foveation=FoveationLosses(**foveation))
    inputs = tiny_batch(config, batch=2, frames=2)
    model.train()
    loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True)
    return trainer, model, inputs, loss, outputs


def test_the_glimpse_search_returns_each_videos_best_answering_queries():
    torch.manual_seed(0)
    config = tiny_config()
    model = FoveatedVLMForConditionalGeneration(config).eval()
    inputs = tiny_batch(config, batch=3, frames=3)
    inputs.pop("target_latents")
    with torch.no_grad():
        planned = model(**inputs).queries  # [B, T, K, qd]
    torch.manual_seed(1)
    best = best_glimpses(model, inputs, planned, candidates=4, noise=1.0)
    torch.manual_seed(1)  # the same draws: the candidates themselves
    noise = torch.randn(4 * 3, *planned.shape[1:])
    candidates = torch.cat([planned, planned.repeat(4, 1, 1, 1) + noise]).view(5, *planned.shape)
    losses = torch.stack([per_video_caption_loss(model, inputs, candidates[c]) for c in range(5)])  # [5, B]
    for b in range(3):
        chosen = int(losses[:, b].argmin())
        torch.testing.assert_close(best[b], candidates[chosen, b])
    assert (losses.argmin(0) > 0).any(), "with 4 draws some video should be answered better than by its plan"
    assert glimpse_search_loss(planned, planned) == 0
    assert glimpse_search_loss(planned, best) > 0


def test_candidates_read_at_the_search_temperature_and_the_model_keeps_its_own():
    torch.manual_seed(0)
    config = tiny_config(query_temperature=0.5)
    model = FoveatedVLMForConditionalGeneration(config).eval()
    inputs = tiny_batch(config, batch=2, frames=2)
    inputs.pop("target_latents")
    planned = model(**inputs).queries.detach()
    torch.manual_seed(1)
    sharp = best_glimpses(model, inputs, planned, candidates=3, noise=3.0, temperature=0.01)
    torch.manual_seed(1)
    soft = best_glimpses(model, inputs, planned, candidates=3, noise=3.0)
    assert model.model.foveated_encoder.query_temperature == 0.5
    assert sharp.shape == soft.shape == planned.shape


def evaluated(trainer, model, inputs) -> dict:
    """What one evaluation `compute_loss` of `inputs` logs."""
    model.eval()
    trainer._sums["eval"].clear()
    trainer.compute_loss(model, inputs)
    return trainer._sums["eval"]


def test_the_trainer_adds_and_logs_the_glimpse_search_loss(tmp_path):
    trainer, model, inputs, loss, outputs = one_trainer_step(tmp_path, glimpse_search=2)
    term = trainer._sums["train"]["glimpse_search_loss"]  # one step: the term itself
    torch.testing.assert_close(loss.detach(), outputs.loss.detach() + term)  # weight 1
    loss.backward()
    assert model.model.query_head.weight.grad is not None
    assert "glimpse_search_loss" not in evaluated(trainer, model, inputs)  # evaluation is the task's loss alone


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"glimpse_search": -1}, "--glimpse_search -1 must be"),
        ({"glimpse_noise": 0.0}, "--glimpse_noise 0.0 is invalid"),
        ({"glimpse_temperature": 0.0}, "--glimpse_temperature 0.0 is invalid"),
        ({"glimpse_samples": 1}, "--glimpse_samples 1 must be 0"),
        ({"glimpse_samples": -2}, "--glimpse_samples -2 must be 0"),
        ({"glimpse_radius": -1}, "--glimpse_radius -1 must be"),
        ({"glimpse_frames": "last"}, "--glimpse_frames 'last' is invalid"),
        ({"glimpse_policy_weight": 0.0}, "--glimpse_policy_weight 0.0 is invalid"),
        ({"glimpse_draw_loss_weight": -1.0}, "--glimpse_draw_loss_weight -1.0 is invalid"),
        ({"glimpse_sample_temperature": 0.0}, "--glimpse_sample_temperature 0.0 is invalid"),
    ],
)
def test_bad_glimpse_settings_name_the_flag(flags, message):
    with pytest.raises(ValueError, match=message):
        FoveationLosses(**flags)


def test_the_experiment_runs_each_emergent_ablation_on_two_seeds(tmp_path, monkeypatch):
    submitted = {}

    def fake_run(name, preset, extra, ablation, args):  # the jobs the script would train, not trained
        submitted[name] = (preset, extra, ablation)
        return {"steps": 1, "caption_ratio": 1.0, "accuracy_fine": 0.3, "accuracy_coarse": 0.3}

    monkeypatch.setattr(foveation, "run", fake_run)
    results = foveation.main(["--preset", "clutter-emergent", "--ablations", "random-queries", "--out", str(tmp_path)])
    assert set(results) == {
        "clutter-seed0",
        "clutter-seed1",
        "clutter-seed2",
        "global-control",
        "random-queries-seed0",
        "random-queries-seed1",
    }
    assert submitted["clutter-seed1"] == ("clutter-emergent", ["--seed", "1"], False)
    assert submitted["random-queries-seed1"] == ("clutter-emergent", ["--fine_queries", "random", "--seed", "1"], True)
    assert submitted["global-control"][0] == "global-control"
    with pytest.raises(SystemExit):
        foveation.main(["--preset", "clutter-emergent", "--ablations", "no-fixation-loss", "--out", str(tmp_path)])


def test_the_key_probe_reads_colour_from_keys_that_carry_it_and_not_from_keys_that_do_not():
    import itertools

    import key_probe
    from tiny import tiny_vision_config
    from transformers import AutoConfig, AutoModel

    from foveated_vlm.data.pipeline import build_dataset

    stream = build_dataset("clutter", seed=7, frame_size=32, num_frames=4, question="quadrant")
    samples = list(itertools.islice(stream, 30))
    torch.manual_seed(0)
    vision = AutoModel.from_config(AutoConfig.for_model(**tiny_vision_config("dinov2", initializer_range=0.1))).eval()
    result = key_probe.key_probe(vision, samples, 32, 4)
    assert len(result["accuracy_per_layer"]) == 2 and result["chance"] == 0.125
    assert result["accuracy_per_layer"][0] > 3 * result["chance"]  # a patch's own colour is in its first keys
    for layer in vision.encoder.layer:  # keys that ignore their input carry nothing
        torch.nn.init.zeros_(layer.attention.k_proj.weight)
    blind = key_probe.key_probe(vision, samples, 32, 4)
    assert max(blind["accuracy_per_layer"]) < 2 * blind["chance"]


# ------------------------------------------------------------------ hard glimpses and their policy (REINFORCE)
@pytest.mark.parametrize("top_k", [0, 2, 5])
def test_each_querys_mask_is_its_own_and_holds_under_top_k(top_k):
    torch.manual_seed(0)
    config = tiny_config(tokens_per_frame=2, query_top_k=top_k)
    encoder = FoveatedVLMForConditionalGeneration(config).eval().model.foveated_encoder
    _, cache = encoder.encode_patches(
        torch.randn(2, 3, config.frame_size, config.frame_size), return_patch_states=False
    )
    queries = torch.randn(2, 2, config.query_dim)
    mask = torch.zeros(2, 2, *cache.grid, dtype=torch.bool)
    mask[:, 0, :2, :2] = True  # query 0: the top-left 2 x 2 patches
    mask[:, 1, -1, :] = True  # query 1: the bottom row
    tokens, maps = encoder.query(queries, cache, return_fixations=True, patch_mask=mask)
    assert maps[~mask].abs().max() == 0  # no attention outside a query's own mask
    other = mask.clone()
    other[:, 1] = False
    other[:, 1, 0, -1] = True  # query 1 moved elsewhere: query 0's glimpse does not change
    torch.testing.assert_close(encoder.query(queries, cache, patch_mask=other)[:, 0], tokens[:, 0])


def test_a_patch_mask_forces_where_a_query_looks():
    torch.manual_seed(0)
    config = tiny_config()
    encoder = FoveatedVLMForConditionalGeneration(config).eval().model.foveated_encoder
    frames = torch.randn(2, 3, config.frame_size, config.frame_size)
    _, cache = encoder.encode_patches(frames, return_patch_states=False)
    queries = torch.randn(2, 1, config.query_dim)
    free, free_maps = encoder.query(queries, cache, return_fixations=True)
    everywhere = torch.ones(2, 1, *cache.grid, dtype=torch.bool)
    torch.testing.assert_close(encoder.query(queries, cache, patch_mask=everywhere), free)
    one = torch.zeros_like(everywhere)
    one[0, 0, 1, 2] = one[1, 0, 0, 0] = True
    forced, maps = encoder.query(queries, cache, return_fixations=True, patch_mask=one)
    torch.testing.assert_close(maps, one.float())  # all of each map on its one patch
    assert not torch.allclose(forced, free)
    for bad, message in (
        (one.float(), "bool tensor of shape"),
        (one[:, :, :1], "bool tensor of shape"),
        (torch.zeros_like(one), "no patch to look at"),
    ):
        with pytest.raises(ValueError, match=message):
            encoder.query(queries, cache, patch_mask=bad)


def test_glimpse_windows_are_the_patches_near_each_centre_clipped_at_the_edges():
    from foveated_vlm.training.foveation_losses import glimpse_windows

    windows = glimpse_windows(torch.tensor([0, 9, 15]), (4, 4), radius=1)  # [3, 4, 4]
    assert windows[0].nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]  # a corner: 2 x 2
    assert windows[1].sum() == 9 and windows[1, 1:4, 0:3].all()  # row 2, column 1: 3 x 3 around it
    assert windows[2].sum() == 4 and windows[2, 2:, 2:].all()
    assert glimpse_windows(torch.tensor([6]), (4, 4), radius=0)[0].nonzero().tolist() == [[1, 2]]


def test_the_glimpse_policy_raises_the_places_that_answered_better():
    from foveated_vlm.training.foveation_losses import glimpse_policy_loss

    logits = torch.zeros(1, 1, 1, 2, 2, requires_grad=True)  # one video, frame and glimpse on a 2 x 2 grid
    maps = logits.flatten(-2).softmax(-1).view_as(logits)
    centres = torch.tensor([0, 3, 3]).view(3, 1, 1, 1)  # three draws: patch 0 once, patch 3 twice
    losses = torch.tensor([[0.2], [1.0], [1.0]])  # the draw at patch 0 answered best
    glimpse_policy_loss(maps, centres, losses).backward()
    step = -logits.grad.flatten()  # gradient descent's direction on each patch's logit
    assert step[0] > 0 > step[3] and step[1].abs() < 1e-6 and step[2].abs() < 1e-6  # advantages sum to 0
    equal = glimpse_policy_loss(maps.detach().requires_grad_(), centres, torch.ones(3, 1))
    assert equal == 0  # no draw better than another: nothing to learn


def test_glimpses_drawn_at_a_temperature_spread_wider_in_the_maps_order():
    from foveated_vlm.training.foveation_losses import drawing_log_probabilities, glimpse_policy_loss, sampled_glimpses

    maps = torch.tensor([0.7, 0.2, 0.1, 0.0]).view(1, 2, 2)
    torch.testing.assert_close(drawing_log_probabilities(maps).exp(), maps.flatten(-2))
    warm = drawing_log_probabilities(maps, 2.0).exp()  # [1, 4]
    torch.testing.assert_close(warm, maps.flatten(-2).sqrt() / maps.sqrt().sum())
    assert torch.equal(warm.argsort(), maps.flatten(-2).argsort())  # the map's order of places ...
    assert warm[0, 0] < maps[0, 0, 0] and warm[0, 2] > maps[0, 1, 0]  # ... with less on its peak

    model, inputs, outputs = located_training_forward(batch=2, frames=3)
    peaked = torch.full_like(outputs.fixations_fine, 1e-4)  # [B, T, K, gh, gw]
    peaked[..., 0, 0] = 1 - 1e-4 * (peaked[0, 0, 0].numel() - 1)  # nearly all of each map on patch 0
    elsewhere = {}
    for temperature in (1.0, 4.0):
        torch.manual_seed(0)
        centres, _ = sampled_glimpses(model, inputs, outputs.queries, peaked, 8, 0, temperature=temperature)
        elsewhere[temperature] = (centres != 0).float().mean()
    assert elsewhere[1.0] < 0.05 and elsewhere[4.0] > 0.5  # a warm draw keeps trying other places

    logits = torch.zeros(1, 1, 1, 2, 2, requires_grad=True)
    centres = torch.tensor([0, 3]).view(2, 1, 1, 1)
    policy = glimpse_policy_loss(logits.softmax(-1), centres, torch.tensor([[0.2], [1.0]]), temperature=2.0)
    log_q = drawing_log_probabilities(logits.softmax(-1), 2.0).flatten()  # [4]: what the centres were drawn from
    advantage = torch.tensor([-0.8, 0.8]) / torch.tensor([-0.8, 0.8]).std()
    torch.testing.assert_close(policy, (advantage * log_q[[0, 3]]).mean())  # REINFORCE on the warm draws


def located_training_forward(batch: int, frames: int):
    """A tiny located-token model in training mode, a caption batch and its forward with the fixation maps."""
    torch.manual_seed(0)
    config = tiny_config(token_norm="batch", glimpse_location=True)
    model = FoveatedVLMForConditionalGeneration(config).train()
    inputs = tiny_batch(config, batch=batch, frames=frames)
    inputs.pop("target_latents")
    return model, inputs, model(**inputs, output_attentions=True)


def assert_each_draw_reads_its_windows(model, inputs, outputs, centres, losses):
    """Each draw's loss is the fine pass's, in eval mode, read through that draw's windows (radius 0) alone."""
    from foveated_vlm.training.foveation_losses import glimpse_windows

    model.eval()
    for s in range(centres.shape[0]):
        mask = glimpse_windows(centres[s], tuple(outputs.fixations_fine.shape[-2:]), radius=0)
        expected = per_video_caption_loss(model, inputs, outputs.queries.detach(), mask)
        torch.testing.assert_close(losses[s], expected, rtol=1e-4, atol=1e-5)


def test_sampled_glimpses_answer_from_the_patches_drawn_and_leave_the_batch_norms_alone():
    from foveated_vlm.training.foveation_losses import sampled_glimpses

    model, inputs, outputs = located_training_forward(batch=2, frames=3)
    norms = {name: buffer.clone() for name, buffer in model.named_buffers() if "running" in name}
    centres, losses = sampled_glimpses(model, inputs, outputs.queries, outputs.fixations_fine, samples=3, radius=0)
    assert centres.shape == (3, 2, 3, 1) and losses.shape == (3, 2)
    assert model.training  # given back in training mode, its running statistics untouched
    for name, buffer in model.named_buffers():
        if name in norms:
            torch.testing.assert_close(buffer, norms[name])
    maps = outputs.fixations_fine.detach().flatten(-2)  # [B, T, K, P]
    drawn = maps.expand(3, *maps.shape).gather(-1, centres.unsqueeze(-1))  # [S, B, T, K, 1]
    assert (drawn > 0).all()  # each centre is a place its map could look
    assert_each_draw_reads_its_windows(model, inputs, outputs, centres, losses)


def test_trained_draw_answers_carry_a_gradient_to_the_reader_and_not_to_where_it_looked():
    from foveated_vlm.training.foveation_losses import sampled_glimpses

    model, inputs, outputs = located_training_forward(batch=2, frames=3)
    args = (model, inputs, outputs.queries, outputs.fixations_fine)
    torch.manual_seed(1)
    centres, plain = sampled_glimpses(*args, samples=3, radius=0)
    torch.manual_seed(1)
    same_centres, trained = sampled_glimpses(*args, samples=3, radius=0, answers_train=True)
    assert not plain.requires_grad and trained.requires_grad
    assert torch.equal(centres, same_centres)
    torch.testing.assert_close(trained.detach(), plain)  # the same draws and answers, with a gradient
    model.zero_grad()
    trained.mean().backward()
    base = model.model
    for reader in (base.language_model.layers[0].mlp.up_proj, base.location_proj, base.foveated_encoder.query_in_proj):
        assert reader.weight.grad.abs().sum() > 0  # the language model, where the glimpse looked, the query pass
    assert base.query_head.weight.grad is None  # the planned queries are the policy's: REINFORCE moves them
    assert base.foveated_encoder.vision_model.embeddings.patch_embeddings.weight.grad is None  # no patch pass


def test_one_frame_draws_vary_one_frame_per_video_and_credit_it_alone():
    from foveated_vlm.training.foveation_losses import (
        UNDRAWN,
        glimpse_policy_loss,
        glimpse_windows,
        sampled_glimpses,
        video_losses,
    )

    model, inputs, outputs = located_training_forward(batch=3, frames=4)
    grid = tuple(outputs.fixations_fine.shape[-2:])
    centres, losses = sampled_glimpses(
        model, inputs, outputs.queries, outputs.fixations_fine, samples=3, radius=0, frames="one"
    )
    drawn = centres != UNDRAWN  # [S, B, T, K]
    assert (drawn.sum(2) == 1).all()  # each draw of a video varies exactly one frame ...
    assert (drawn == drawn[:1]).all()  # ... the same frame in all of the video's draws
    assert glimpse_windows(centres, grid, radius=0)[~drawn].all()  # the others read every patch, softly ...
    soft = glimpse_windows(torch.full_like(centres[0], UNDRAWN), grid, radius=0)
    torch.testing.assert_close(  # ... exactly as the forward reads them, with no mask
        video_losses(model, inputs, 1, outputs.queries.detach(), soft), video_losses(model, inputs, 1, outputs.queries)
    )
    assert_each_draw_reads_its_windows(model, inputs, outputs, centres, losses)  # one window, the rest unmasked

    logits = torch.zeros(1, 2, 1, 2, 2, requires_grad=True)  # one video, two frames, a 2 x 2 grid each
    maps = logits.flatten(-2).softmax(-1).view_as(logits)
    centres = torch.tensor([[0, UNDRAWN], [3, UNDRAWN]]).view(2, 1, 2, 1)  # frame 0 drawn, frame 1 read softly
    glimpse_policy_loss(maps, centres, torch.tensor([[0.2], [1.0]])).backward()
    assert logits.grad[0, 0].abs().sum() > 0 and (logits.grad[0, 1] == 0).all()  # the soft frame gets no credit
    with pytest.raises(ValueError, match="frames='last' is invalid"):
        sampled_glimpses(model, inputs, outputs.queries, outputs.fixations_fine, samples=2, radius=0, frames="last")


@pytest.mark.parametrize("frames", ["all", "one"])
def test_the_trainer_adds_and_logs_the_glimpse_policy_loss(tmp_path, monkeypatch, frames):
    import foveated_vlm.training.trainer as trainer_module

    drawn_with = []
    draw = trainer_module.sampled_glimpses
    monkeypatch.setattr(trainer_module, "sampled_glimpses", lambda *a: drawn_with.append(a[6::3]) or draw(*a))
    trainer, model, inputs, loss, outputs = one_trainer_step(
        tmp_path, glimpse_samples=4, glimpse_frames=frames, glimpse_sample_temperature=1.5
    )
    assert drawn_with == [(frames, 1.5)]  # the flags reach the draws
    term = trainer._sums["train"]["glimpse_policy_loss"]
    torch.testing.assert_close(loss.detach(), outputs.loss.detach() + term)  # weight 1
    assert trainer._sums["train"]["glimpse_draw_loss"] > 0
    from foveated_vlm.training.foveation_losses import sampled_glimpses

    draws = sampled_glimpses(model, inputs, outputs.queries, outputs.fixations_fine, samples=4, radius=1)
    policy = trainer.foveation.terms(outputs, glimpse_draws=draws)["glimpse_policy_loss"]
    policy.backward()  # the policy's own gradient, alone, reaches the heads that plan the queries
    assert model.model.query_head.weight.grad.abs().sum() > 0
    assert "glimpse_policy_loss" not in evaluated(trainer, model, inputs)  # evaluation is the task's loss alone


def test_the_trainer_trains_on_the_drawn_glimpses_answers_at_their_weight(tmp_path):
    gradients = []
    for weight in (0.0, 0.5):  # the same seed: the same model, batch and draws
        trainer, model, inputs, loss, outputs = one_trainer_step(
            tmp_path, glimpse_samples=4, glimpse_draw_loss_weight=weight
        )
        sums = trainer._sums["train"]
        expected = outputs.loss.detach() + sums["glimpse_policy_loss"] + weight * sums["glimpse_draw_loss"]
        torch.testing.assert_close(loss.detach(), expected)
        loss.backward()
        gradients.append(model.model.vision_to_text.weight.grad)
    assert not torch.allclose(gradients[0], gradients[1])  # the draws' answers train the frame tokens' reader
    assert "glimpse_draw_loss" not in evaluated(trainer, model, inputs)


def test_a_policy_over_a_fixed_vit_moves_the_queries_and_not_the_vit_directly():
    from foveated_vlm.training.foveation_losses import glimpse_policy_loss, maps_over_a_fixed_vit, sampled_glimpses

    model, inputs, outputs = located_training_forward(batch=2, frames=3)
    centres, losses = sampled_glimpses(model, inputs, outputs.queries, outputs.fixations_fine, samples=4, radius=0)
    queries = outputs.queries.detach().requires_grad_()  # a leaf: what the maps' own gradient reaches
    model.zero_grad()
    glimpse_policy_loss(maps_over_a_fixed_vit(model, inputs, queries), centres, losses).backward()
    assert queries.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.foveated_encoder.parameters())  # no path to the ViT but the queries'
    assert all(p.requires_grad for p in model.parameters())  # the ViT stays trained by the other losses
    model.eval()  # the forward's own maps (in training, the ViT's RoPE jitters its positions on each pass)
    evaluated = model(**inputs, output_attentions=True)
    torch.testing.assert_close(maps_over_a_fixed_vit(model, inputs, evaluated.queries), evaluated.fixations_fine)
    with pytest.raises(ValueError, match="--glimpse_policy_vit 'frozen' is invalid"):
        FoveationLosses(glimpse_policy_vit="frozen")


def test_the_glimpse_probe_scores_soft_named_and_drawn_glimpses_of_a_saved_model(tmp_path):
    import glimpse_probe
    from test_cli import save_checkpoint

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "model", glimpse_location=True)
    result = glimpse_probe.main(["--model", str(checkpoint), "--objects", "2", "--clips", "6", "--draws", "3"])
    assert result["objects"] == 2 and result["clips"] == 6
    for name in ("soft", "named", "draws", "best_draw"):
        assert result[name] > 0 and torch.isfinite(torch.tensor(result[name])), name
    assert result["named"] != result["soft"]  # the forced glimpses read something other than the soft ones
    for name in ("fine", "coarse"):
        assert 0 <= result[f"on_named_{name}"] <= 1
        assert 0 <= result[f"entropy_{name}"] <= result[f"place_entropy_{name}"] <= math.log(16) + 1e-5  # 4 x 4
    assert 0 < result["overlap"] <= 1 + 1e-6
    assert 0 <= result["named_colour_from_queries"] <= 1 and 0 < result["colour_chance"] <= 1
    two = glimpse_probe.clutter_clips(objects=2, clips=3, seed=1, frame_size=32, num_frames=4)
    assert [len(sample_objects(clip)) for clip in two] == [2, 2, 2]  # the curriculum's two-object stage


def test_where_maps_look_tells_a_place_from_a_thing_and_the_passes_apart():
    from glimpse_probe import where_maps_look

    named = torch.zeros(2, 1, 2, 2)
    named[0, 0, 0, 0] = named[1, 0, 1, 1] = 1  # the named object: top left in clip 0, bottom right in clip 1
    on_it = named.unsqueeze(2)  # [N, T, K, gh, gw]: maps wholly on it
    corner = torch.zeros_like(on_it)
    corner[..., 0, 1] = 1  # maps on the top right in both clips, whatever is there
    stats = where_maps_look(on_it, corner, named)
    assert stats["on_named_fine"] == 1 and stats["on_named_coarse"] == 0
    assert stats["entropy_fine"] == stats["entropy_coarse"] == 0
    torch.testing.assert_close(stats["place_entropy_fine"], math.log(2))  # two places: it goes where things are
    assert stats["place_entropy_coarse"] == 0  # one place in every clip
    assert stats["overlap"] == 0
    assert where_maps_look(on_it, on_it, named)["overlap"] == 1


def sample_objects(clip):
    import json

    truth = clip["ground_truth"]
    return (json.loads(truth) if isinstance(truth, str) else truth)["objects"]
