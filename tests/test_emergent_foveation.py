"""The parts of the label-free foveation experiment (docs/foveation_experiment.md, "Without labels"): planned queries
on the static queries as their base, tokens that say where their glimpse looked, the glimpse search that pulls the
planned queries towards the perturbed ones that answered best; the experiment script's emergent jobs and the key
probe."""

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


def per_video_caption_loss(model, inputs, queries):
    """Each video's mean caption cross-entropy of the fine pass read with `queries`, one video at a time."""
    losses = []
    for b in range(queries.shape[0]):
        one = {name: value[b : b + 1] for name, value in inputs.items()}
        with torch.no_grad():
            losses.append(model(**one, fine_queries=queries[b : b + 1]).caption_loss_fine)
    return torch.stack(losses)


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


def test_the_trainer_adds_and_logs_the_glimpse_search_loss(tmp_path):
    from transformers import TrainingArguments

    torch.manual_seed(0)
    config = tiny_config()
    model = FoveatedVLMForConditionalGeneration(config)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = FoveatedTrainer(model=model, args=args, foveation=FoveationLosses(glimpse_search=2))
    inputs = tiny_batch(config, batch=2, frames=2)
    model.train()
    loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True)
    term = trainer._sums["train"]["glimpse_search_loss"]  # one step: the term itself
    torch.testing.assert_close(loss.detach(), outputs.loss.detach() + term)  # weight 1
    loss.backward()
    assert model.model.query_head.weight.grad is not None
    model.eval()
    trainer._sums["eval"].clear()
    trainer.compute_loss(model, inputs)
    assert "glimpse_search_loss" not in trainer._sums["eval"]  # evaluation is the task's loss alone


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"glimpse_search": -1}, "--glimpse_search -1 must be"),
        ({"glimpse_noise": 0.0}, "--glimpse_noise 0.0 is invalid"),
        ({"glimpse_temperature": 0.0}, "--glimpse_temperature 0.0 is invalid"),
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
