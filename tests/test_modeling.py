"""The two-pass model: outputs of the contract, causality, gradients, losses, precision, bad input."""

import pytest
import torch
from tiny import FRAME, VIDEO_END, tiny_batch, tiny_config, video_input_ids

from foveated_vlm import FoveatedVLMForConditionalGeneration


def make_model(**overrides):
    config = tiny_config(**overrides)
    return FoveatedVLMForConditionalGeneration(config).eval(), config


@pytest.mark.parametrize("vision_type", ["dinov3_vit", "dinov2"])
@pytest.mark.parametrize("k", [1, 2])
def test_outputs_of_the_contract(vision_type, k):
    model, config = make_model(vision_type=vision_type, tokens_per_frame=k)
    batch = tiny_batch(config, batch=2, frames=4)
    out = model(**batch, output_attentions=True)
    length = batch["input_ids"].shape[1]
    assert out.logits.shape == (2, length, 64)
    assert out.predicted_latents.shape == batch["target_latents"].shape
    assert out.queries.shape == (2, 4, k, config.query_dim)
    assert out.fixations_fine.shape == out.fixations_coarse.shape == (2, 4, k, 4, 4)
    for name in ("loss", "loss_fine", "loss_coarse", "caption_loss_fine", "caption_loss_coarse"):
        assert torch.isfinite(getattr(out, name)), name
    assert list(out.keys())[0] == "loss"
    # Without targets or labels there is no loss, but the rest is there.
    bare = model(input_ids=batch["input_ids"], pixel_values_videos=batch["pixel_values_videos"])
    assert bare.loss is None and bare.loss_fine is None and bare.caption_loss_fine is None
    assert bare.predicted_latents is None and bare.fixations_fine is None
    torch.testing.assert_close(bare.queries, out.queries)


def test_total_loss_is_the_documented_weighting():
    model, config = make_model(reconstruction_loss_weight=0.7, caption_loss_weight=0.3, coarse_loss_weight=0.5)
    out = model(**tiny_batch(config))
    expected = 0.7 * (out.loss_fine + 0.5 * out.loss_coarse) + 0.3 * (
        out.caption_loss_fine + 0.5 * out.caption_loss_coarse
    )
    torch.testing.assert_close(out.loss, expected)


def test_losses_are_what_they_say():
    model, config = make_model()
    batch = tiny_batch(config)
    out = model(**batch)
    torch.testing.assert_close(out.loss_fine, ((out.predicted_latents - batch["target_latents"]) ** 2).mean())
    torch.testing.assert_close(out.loss_coarse, ((out.predicted_latents_coarse - batch["target_latents"]) ** 2).mean())
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.caption_loss_fine, expected)


def test_both_passes_through_the_heads_at_once_equal_each_pass_alone():
    """The forward runs the prediction head and the language-model head once for both passes (the targets encoded
    once, one weight gradient of the head): each pass's predictions and losses, and the heads' gradients, are those
    of each pass run through the heads alone."""
    model, config = make_model()
    batch = tiny_batch(config, batch=2, frames=4)
    targets, labels = batch["target_latents"], batch["labels"]
    heads = [model.lm_head.weight, model.predictor.encode[0].weight, model.predictor.film[0].weight]

    def heads_gradients(loss):
        return torch.autograd.grad(loss, heads, retain_graph=True)

    states = model.model(input_ids=batch["input_ids"], pixel_values_videos=batch["pixel_values_videos"])
    out = model(**batch)
    alone = {}
    for name, hidden, plan in (
        ("fine", states.last_hidden_state, states.plan_hidden_fine),
        ("coarse", states.coarse_hidden_state, states.plan_hidden_coarse),
    ):
        alone[name] = model.pass_losses(hidden, plan, targets, labels)
        assert alone[name][1].dim() == alone[name][2].dim() == 0  # one pass, unstacked: scalars
    torch.testing.assert_close(out.predicted_latents, alone["fine"][0])
    torch.testing.assert_close(out.predicted_latents_coarse, alone["coarse"][0])
    torch.testing.assert_close(
        torch.stack([out.loss_fine, out.loss_coarse]), torch.stack([alone["fine"][1], alone["coarse"][1]])
    )
    torch.testing.assert_close(
        torch.stack([out.caption_loss_fine, out.caption_loss_coarse]),
        torch.stack([alone["fine"][2], alone["coarse"][2]]),
    )
    coarse_logits = model.lm_head(states.coarse_hidden_state)[:, :-1]  # the coarse caption from scratch
    expected = torch.nn.functional.cross_entropy(coarse_logits.reshape(-1, 64), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(out.caption_loss_coarse, expected)
    separate = sum(alone["fine"][1:]) + sum(alone["coarse"][1:])
    together = out.loss_fine + out.loss_coarse + out.caption_loss_fine + out.caption_loss_coarse
    for got, expected in zip(heads_gradients(together), heads_gradients(separate), strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("k", [1, 2])
def test_causality_over_frames(k):
    """Frames after t change neither the queries used on frames <= t+1 nor the predictions made from frames <= t."""
    model, config = make_model(tokens_per_frame=k)
    batch = tiny_batch(config, batch=2, frames=5)
    out = model(**batch)
    t = 1
    perturbed = dict(batch)
    perturbed["pixel_values_videos"] = batch["pixel_values_videos"].clone()
    perturbed["pixel_values_videos"][:, t + 1 :] += torch.randn_like(perturbed["pixel_values_videos"][:, t + 1 :])
    changed = model(**perturbed)
    torch.testing.assert_close(changed.queries[:, : t + 2], out.queries[:, : t + 2], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        changed.predicted_latents[:, : t + 2], out.predicted_latents[:, : t + 2], rtol=0, atol=1e-6
    )
    assert (changed.queries[:, t + 2 :] - out.queries[:, t + 2 :]).abs().max() > 1e-4
    assert (changed.predicted_latents[:, t + 2 :] - out.predicted_latents[:, t + 2 :]).abs().max() > 1e-4


def test_queries_depend_on_the_text_before_the_video():
    model, config = make_model()
    batch = tiny_batch(config, batch=1, frames=3)
    other = dict(batch)
    other["input_ids"] = batch["input_ids"].clone()
    other["input_ids"][:, :3] = (batch["input_ids"][:, :3] + 7) % 60 + 1
    assert (model(**batch).queries[:, 0] - model(**other).queries[:, 0]).abs().max() > 1e-4


def test_gradients_reach_every_part():
    model, config = make_model()
    model.train()
    model(**tiny_batch(config)).loss.backward()
    parts = {
        "static queries": model.model.static_queries,
        "query head": model.model.query_head.weight,
        "query projection": model.foveated_encoder.query_in_proj.weight,
        "vision to text": model.model.vision_to_text.weight,
        "ViT first layer": model.foveated_encoder.layers[0].attention.k_proj.weight,
        "ViT patch embedding": model.foveated_encoder.vision_model.embeddings.patch_embeddings.weight,
        "LLM layer": model.model.language_model.layers[0].self_attn.q_proj.weight,
        "predictor": model.predictor.decode[-1].weight,
        "initial latent": model.initial_latent,
    }
    for name, parameter in parts.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    mode_grad = model.model.mode_embeddings.grad
    assert mode_grad[0].abs().sum() > 0 and mode_grad[1].abs().sum() > 0, "coarse and fine mode embeddings"


def test_the_fine_pass_reads_frames_through_the_predicted_queries():
    """Gradient of the fine reconstruction loss flows back through the planned queries into the coarse pass."""
    model, config = make_model(coarse_loss_weight=0.0, caption_loss_weight=0.0)
    model.train()
    model(**tiny_batch(config)).loss.backward()
    assert model.model.query_head.weight.grad.abs().sum() > 0
    assert model.model.static_queries.grad.abs().sum() > 0


@pytest.mark.parametrize("vision_type", ["dinov3_vit", "dinov2"])
def test_gradient_checkpointing_gives_the_same_gradients(vision_type):
    model, config = make_model(vision_type=vision_type)
    model.train()
    batch = tiny_batch(config)

    def gradients():
        model.zero_grad()
        torch.manual_seed(1)  # DINOv3 jitters its RoPE coordinates in training mode
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_plain, plain = gradients()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.foveated_encoder.gradient_checkpointing
    loss_ckpt, ckpt = gradients()
    torch.testing.assert_close(loss_ckpt, loss_plain)
    assert plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast():
    model, config = make_model()
    batch = tiny_batch(config)
    reference = model(**batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss.float(), reference.loss, rtol=5e-2, atol=5e-2)
    out.loss.backward()
    assert model.model.static_queries.grad is not None


def test_left_padding_does_not_change_a_row():
    model, config = make_model()
    batch = tiny_batch(config, batch=1, frames=3, prompt=2)
    pad = 3
    padded_ids = torch.cat([torch.zeros(1, pad, dtype=torch.long), batch["input_ids"]], dim=1)
    mask = torch.cat([torch.zeros(1, pad, dtype=torch.long), batch["attention_mask"]], dim=1)
    alone = model(**batch)
    padded = model(
        input_ids=torch.cat([padded_ids, padded_ids]),
        attention_mask=torch.cat([mask, mask]),
        pixel_values_videos=batch["pixel_values_videos"].repeat(2, 1, 1, 1, 1),
        target_latents=batch["target_latents"].repeat(2, 1, 1, 1, 1),
    )
    torch.testing.assert_close(padded.queries[:1], alone.queries, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded.predicted_latents[:1], alone.predicted_latents, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded.logits[:1, pad:], alone.logits, rtol=1e-4, atol=1e-4)


def test_text_only_forward():
    model, _ = make_model()
    ids = torch.randint(1, 60, (2, 6))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 6, 64) and torch.isfinite(out.caption_loss_fine)
    assert out.caption_loss_coarse is None and out.queries is None


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_pixel_values_rank():
    model, config = make_model()
    batch = tiny_batch(config)
    batch["pixel_values_videos"] = batch["pixel_values_videos"][:, 0]
    with pytest.raises(
        ValueError, match=r"pixel_values_videos must have shape \[B, T, 3, H, W\]; got \(2, 3, 32, 32\)"
    ):
        model(**batch)


def test_frame_size_not_divisible_by_the_patch():
    model, config = make_model()
    batch = tiny_batch(config)
    batch["pixel_values_videos"] = batch["pixel_values_videos"][..., :30, :30]
    with pytest.raises(ValueError, match="frames of 30x30 pixels, but the model reads 32x32 frames"):
        model(**batch)


def test_frame_token_count_must_be_t_times_k():
    model, config = make_model(tokens_per_frame=2)
    batch = tiny_batch(config, frames=4)
    batch["input_ids"] = video_input_ids(2, 4, k=1)  # 4 frame tokens where 8 are needed
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    batch["labels"] = None
    with pytest.raises(ValueError, match=r"holds 4 frame tokens but expected 8 \(T=4 frames x K=2"):
        model(**batch)


def test_frame_tokens_must_be_contiguous_and_closed():
    model, config = make_model()
    batch = tiny_batch(config, frames=3)
    ids = batch["input_ids"].clone()
    start = (ids[0] == FRAME).nonzero()[0].item()
    ids[:, start + 1], ids[:, start + 3] = ids[:, start + 3].clone(), ids[:, start + 1].clone()  # swap frame/end
    assert (ids[0, start + 1] == VIDEO_END) or (ids[0, start + 3] == FRAME)
    batch["input_ids"] = ids
    with pytest.raises(ValueError, match="contiguously"):
        model(**batch)


def test_target_latents_shape_is_checked():
    model, config = make_model()
    batch = tiny_batch(config)
    batch["target_latents"] = batch["target_latents"][..., :4, :4]
    with pytest.raises(
        ValueError, match=r"target_latents must have shape \[B, T, C, h, w\] = \[2, 4, 3, 8, 8\].*got \[2, 4, 3, 4, 4\]"
    ):
        model(**batch)


def test_labels_length_is_checked():
    model, config = make_model()
    batch = tiny_batch(config)
    batch["labels"] = batch["labels"][:, :-1]
    with pytest.raises(ValueError, match="labels must have the shape of input_ids"):
        model(**batch)


def test_batch_size_mismatch():
    model, config = make_model()
    batch = tiny_batch(config)
    batch["pixel_values_videos"] = batch["pixel_values_videos"][:1]
    batch["target_latents"] = None
    with pytest.raises(ValueError, match="input_ids has 2 rows but pixel_values_videos has 1 videos"):
        model(**batch)


def test_fine_queries_replace_the_planned_ones_in_the_fine_pass_alone():
    model, config = make_model(tokens_per_frame=2)
    batch = tiny_batch(config)
    planned = model(**batch)
    given = torch.randn_like(planned.queries)
    out = model(**batch, fine_queries=given)
    assert torch.equal(out.queries, given)  # what the fine pass read with
    torch.testing.assert_close(out.caption_loss_coarse, planned.caption_loss_coarse, rtol=0, atol=0)
    assert not torch.allclose(out.caption_loss_fine, planned.caption_loss_fine)
    # The planned queries given back reproduce the planned forward.
    again = model(**batch, fine_queries=planned.queries)
    torch.testing.assert_close(again.logits, planned.logits, rtol=0, atol=0)


def test_fine_queries_of_a_wrong_shape_name_the_shape():
    model, config = make_model(tokens_per_frame=2)
    batch = tiny_batch(config)
    with pytest.raises(ValueError, match=r"fine_queries must have shape \[B, T, K, query_dim\] = \[2, 4, 2, 16\].*"
                       r"got \[2, 4, 1, 16\]"):  # fmt: skip
        model(**batch, fine_queries=torch.randn(2, 4, 1, 16))
    with pytest.raises(ValueError, match="fine_patch_mask were given without pixel_values_videos"):
        model(input_ids=batch["input_ids"][:, :3], fine_queries=torch.randn(2, 4, 2, 16))


def test_return_dict_false_gives_a_tuple_loss_first():
    model, config = make_model()
    batch = tiny_batch(config)
    out = model(**batch, output_attentions=True)
    as_tuple = model(**batch, output_attentions=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    expected = out.to_tuple()
    assert len(as_tuple) == len(expected)
    torch.testing.assert_close(as_tuple[0], out.loss, rtol=0, atol=0)
    for got, want in zip(as_tuple[:-1], expected[:-1], strict=True):  # the last is the cache
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    inputs = {"input_ids": batch["input_ids"], "pixel_values_videos": batch["pixel_values_videos"]}
    base, base_tuple = model.model(**inputs), model.model(**inputs, return_dict=False)
    assert isinstance(base_tuple, tuple)
    torch.testing.assert_close(base_tuple[0], base.last_hidden_state, rtol=0, atol=0)


def test_output_hidden_states_are_the_fine_pass_language_model_states():
    model, config = make_model()
    batch = tiny_batch(config)
    out = model(**batch, output_hidden_states=True)
    layers, (rows, length) = config.text_config.num_hidden_layers, batch["input_ids"].shape
    assert len(out.hidden_states) == layers + 1
    assert all(state.shape == (rows, length, config.text_config.hidden_size) for state in out.hidden_states)
    # The last is the (normed) fine-pass state the head reads, not the coarse pass's; without the flag there are none.
    inner = model.model(input_ids=batch["input_ids"], pixel_values_videos=batch["pixel_values_videos"])
    torch.testing.assert_close(out.hidden_states[-1], inner.last_hidden_state, rtol=0, atol=0)
    assert not torch.allclose(out.hidden_states[-1], inner.coarse_hidden_state)
    assert model(**batch).hidden_states is None
    text = model(input_ids=batch["input_ids"][:, :3], output_hidden_states=True)
    assert len(text.hidden_states) == layers + 1
