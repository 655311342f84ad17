"""The foveated encoder against the vision model it wraps."""

import pytest
import torch
from tiny import tiny_config

from foveated_vlm import FoveatedEncoder

VISION_TYPES = ["dinov3_vit", "dinov2", "dinov2_with_registers"]


def make_encoder(vision_type):
    vision_overrides = {"num_register_tokens": 2} if vision_type == "dinov2_with_registers" else {}
    from tiny import tiny_vision_config

    config = tiny_config(vision_type, vision_config=tiny_vision_config(vision_type, **vision_overrides))
    return FoveatedEncoder(config).eval()


def reference_query(encoder: FoveatedEncoder, pixel_values, queries):
    """The definition: queries appended to the frame tokens, every vision layer run with the library's own
    forward under the asymmetric mask (queries see all tokens and themselves; nothing sees the queries)."""
    vision = encoder.vision_model
    tokens = vision.embeddings(pixel_values)  # [N, S, D]
    frames, length = tokens.shape[:2]
    k = queries.shape[1]
    # Queries go first so the rotary embedding still finds the patches at the end of the sequence.
    hidden = torch.cat([encoder.query_in_proj(queries), tokens], dim=1)  # [N, K+S, D]
    allowed = torch.ones(k + length, k + length, dtype=torch.bool)
    allowed[:, :k] = False
    allowed[:k, :k] = torch.eye(k, dtype=torch.bool)
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))[None, None].expand(frames, 1, -1, -1)
    kwargs = {"position_embeddings": vision.rope_embeddings(pixel_values)} if encoder.model_type == "dinov3_vit" else {}
    for layer in encoder.layers:
        hidden = layer(hidden, attention_mask=mask, **kwargs)
    return encoder.final_norm(hidden[:, :k])


@pytest.mark.parametrize("vision_type", VISION_TYPES)
def test_patch_states_equal_the_plain_vision_model(vision_type):
    encoder = make_encoder(vision_type)
    pixels = torch.randn(5, 3, 32, 32)
    states, cache = encoder.encode_patches(pixels)
    expected = encoder.vision_model(pixels).last_hidden_state
    torch.testing.assert_close(states, expected, rtol=0, atol=1e-6)
    assert len(cache.keys) == len(cache.values) == 2
    assert cache.keys[0].shape == (5, 2, expected.shape[1], 16)  # [N, heads, S, head_dim]
    assert cache.grid == (4, 4)


@pytest.mark.parametrize("vision_type", VISION_TYPES)
@pytest.mark.parametrize("return_patch_states", [True, False])
def test_cached_keys_and_values_are_stored_contiguous(vision_type, return_patch_states):
    """Every query's matmuls read the cache: a head-split view of the projections would be copied in each of them."""
    encoder = make_encoder(vision_type)
    _, cache = encoder.encode_patches(torch.randn(3, 3, 32, 32), return_patch_states=return_patch_states)
    for tensor in cache.keys + cache.values:  # the last layer comes from its own path without the patch states
        assert tensor.shape == (3, 2, cache.num_prefix_tokens + 16, 16)  # [N, heads, S, head_dim]
        assert tensor.is_contiguous()


@pytest.mark.parametrize("vision_type", VISION_TYPES)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_cached_query_equals_the_vit_with_the_query_appended(vision_type, k):
    encoder = make_encoder(vision_type)
    pixels, queries = torch.randn(4, 3, 32, 32), torch.randn(4, k, 16)
    _, cache = encoder.encode_patches(pixels, return_patch_states=False)
    z = encoder.query(queries, cache)
    assert z.shape == (4, k, 32)
    torch.testing.assert_close(z, reference_query(encoder, pixels, queries), rtol=1e-5, atol=1e-5)


def test_k_glimpses_are_independent_of_each_other():
    encoder = make_encoder("dinov3_vit")
    _, cache = encoder.encode_patches(torch.randn(3, 3, 32, 32))
    queries = torch.randn(3, 2, 16)
    together = encoder.query(queries, cache)
    alone = encoder.query(queries[:, :1], cache)
    torch.testing.assert_close(together[:, :1], alone, rtol=1e-5, atol=1e-6)


def test_different_queries_give_different_tokens_and_fixations():
    encoder = make_encoder("dinov3_vit")
    _, cache = encoder.encode_patches(torch.randn(2, 3, 32, 32))
    query_a, query_b = torch.randn(2, 1, 16), torch.randn(2, 1, 16)
    z_a, fix_a = encoder.query(query_a, cache, return_fixations=True)
    z_b, fix_b = encoder.query(query_b, cache, return_fixations=True)
    assert (z_a - z_b).abs().mean() > 1e-2
    assert (fix_a - fix_b).abs().max() > 1e-4
    assert fix_a.shape == (2, 1, 4, 4)
    torch.testing.assert_close(fix_a.sum(dim=(-1, -2)), torch.ones(2, 1))
    # Asking for fixations does not change the tokens.
    torch.testing.assert_close(encoder.query(query_a, cache), z_a, rtol=0, atol=0)


def test_bad_inputs_are_clear_errors():
    encoder = make_encoder("dinov3_vit")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        encoder.encode_patches(torch.randn(2, 32, 32))
    with pytest.raises(ValueError, match="30x32 is not a multiple of the vision patch size 8"):
        encoder.encode_patches(torch.randn(2, 3, 30, 32))
    _, cache = encoder.encode_patches(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="queries cover 3 frames but the cache holds 2"):
        encoder.query(torch.randn(3, 1, 16), cache)
    with pytest.raises(ValueError, match=r"\[N, K, query_dim\]"):
        encoder.query(torch.randn(2, 16), cache)


def test_query_temperature_sharpens_fixations_and_leaves_patches_alone():
    from tiny import tiny_config

    pixels, queries = torch.randn(3, 3, 32, 32), torch.randn(3, 1, 16)
    torch.manual_seed(0)
    plain = FoveatedEncoder(tiny_config()).eval()
    torch.manual_seed(0)
    sharp = FoveatedEncoder(tiny_config(query_temperature=0.1)).eval()
    (states_plain, cache_plain), (states_sharp, cache_sharp) = (
        plain.encode_patches(pixels),
        sharp.encode_patches(pixels),
    )
    torch.testing.assert_close(states_sharp, states_plain, rtol=0, atol=0)
    spread = lambda f: (f.flatten(-2).max(-1).values - f.flatten(-2).min(-1).values).mean()  # noqa: E731
    fix_plain = plain.query(queries, cache_plain, return_fixations=True)[1]
    fix_sharp = sharp.query(queries, cache_sharp, return_fixations=True)[1]
    # Near uniform, attention deviates from uniform in proportion to the logits: 10x logits, ~10x the spread.
    assert spread(fix_sharp) > 5 * spread(fix_plain)
