import pytest
from tiny import VIDEO_START, tiny_config, tiny_text_config, tiny_vision_config
from transformers import AutoConfig

from foveated_vlm import FoveatedVLMConfig


def test_defaults_are_the_seeds_reference_shapes():
    config = FoveatedVLMConfig()
    assert config.vision_config.model_type == "dinov3_vit"
    assert (config.vision_config.hidden_size, config.vision_config.num_hidden_layers) == (384, 12)
    assert (config.frame_size, config.patch_size) == (256, 16)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (576, 30)
    assert config.query_dim == 384 and config.tokens_per_frame == 1
    assert (config.target_channels, config.target_size) == (4, 32)
    assert config.tie_word_embeddings


@pytest.mark.parametrize("vision_type", ["dinov3_vit", "dinov2", "dinov2_with_registers"])
def test_round_trip_keeps_every_non_default_field(tmp_path, vision_type):
    config = tiny_config(
        vision_type,
        tokens_per_frame=2,
        coarse_loss_weight=0.25,
        caption_loss_weight=0.5,
        reconstruction_loss_weight=0.0,
        vision_config=tiny_vision_config(vision_type, layer_norm_eps=1e-3, drop_path_rate=0.1),
        text_config=tiny_text_config(rms_norm_eps=1e-4, max_position_embeddings=77),
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, FoveatedVLMConfig)
    without_path = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert without_path(loaded) == without_path(config)
    assert loaded.vision_config.model_type == vision_type
    assert loaded.vision_config.layer_norm_eps == 1e-3 and loaded.vision_config.drop_path_rate == 0.1
    assert loaded.text_config.rms_norm_eps == 1e-4 and loaded.text_config.max_position_embeddings == 77
    assert (loaded.tokens_per_frame, loaded.coarse_loss_weight, loaded.caption_loss_weight) == (2, 0.25, 0.5)


def test_sub_configs_accept_config_objects():
    vision = AutoConfig.for_model(**tiny_vision_config())
    text = AutoConfig.for_model(**tiny_text_config())
    config = tiny_config(vision_config=vision, text_config=text)
    assert config.vision_config.hidden_size == 32 and config.text_config.vocab_size == 64


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tokens_per_frame": 0}, "tokens_per_frame=0"),
        ({"query_dim": -3}, "query_dim=-3"),
        ({"target_size": 5}, "target_size=5 does not divide the frame size"),
        ({"predictor_channels": 18}, "predictor_channels=18"),
        ({"coarse_loss_weight": -1.0}, "coarse_loss_weight=-1.0"),
        ({"frame_token_id": 64}, "frame_token_id=64 is not a token id"),
        ({"video_end_token_id": VIDEO_START}, "must be distinct"),
        ({"vision_config": tiny_vision_config(image_size=36)}, "image_size=36 is not a multiple"),
        (
            {"vision_config": {"model_type": "clip_vision_model", "hidden_size": 32, "num_attention_heads": 2}},
            "clip_vision_model",
        ),
    ],
)
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_dinov2_patch14_at_256_is_a_configuration_error():
    with pytest.raises(ValueError, match=r"image_size=256 is not a multiple of vision_config.patch_size=14.*252"):
        FoveatedVLMConfig(vision_config={"model_type": "dinov2", "image_size": 256, "patch_size": 14}, target_size=32)


TRAINING_OPTIONS = ("fine_queries", "contrastive_loss_weight", "entropy_margin_loss_weight", "entropy_margin")
TRAINING_OPTIONS += ("fixation_loss_weight",)


def test_an_old_config_with_the_random_control_loads_warns_and_the_model_plans(tmp_path, caplog):
    import json

    import torch
    from tiny import tiny_batch

    from foveated_vlm import FoveatedVLMForConditionalGeneration

    tiny_config().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    old = {"fine_queries": "random", "contrastive_loss_weight": 0.0, "entropy_margin_loss_weight": 0.0}
    old |= {"entropy_margin": 0.5, "fixation_loss_weight": 0.25}  # as configs before the redesign held them
    (tmp_path / "config.json").write_text(json.dumps(saved | old))
    with caplog.at_level("WARNING", logger="foveated_vlm.configuration_foveated"):
        loaded = AutoConfig.from_pretrained(tmp_path)
    warning = caplog.text
    assert "fine_queries='random'" in warning and "fixation_loss_weight=0.25" in warning
    assert "training options" in warning
    assert "contrastive_loss_weight" not in warning and "entropy_margin=" not in warning  # at the old defaults
    assert not any(hasattr(loaded, name) for name in TRAINING_OPTIONS)
    loaded.save_pretrained(tmp_path / "again")
    assert not set(TRAINING_OPTIONS) & set(json.loads((tmp_path / "again" / "config.json").read_text()))
    torch.manual_seed(0)
    model = FoveatedVLMForConditionalGeneration(loaded).eval()
    batch = tiny_batch(loaded)
    with torch.no_grad():
        first, second = model(**batch), model(**batch)
    torch.testing.assert_close(first.queries, second.queries, rtol=0, atol=0)  # planned, not drawn
    hidden = model.model(input_ids=batch["input_ids"], pixel_values_videos=batch["pixel_values_videos"])
    planned = model.model.plan_queries(hidden.plan_hidden_coarse, hidden.plan_hidden_coarse[:, :1])
    torch.testing.assert_close(first.queries, planned, rtol=0, atol=0)


def test_a_config_at_the_old_defaults_loads_silently(tmp_path, caplog):
    import json

    tiny_config().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    old = dict(zip(TRAINING_OPTIONS, ("predicted", 0.0, 0.0, 0.5, 0.0), strict=True))
    (tmp_path / "config.json").write_text(json.dumps(saved | old))
    with caplog.at_level("WARNING", logger="foveated_vlm.configuration_foveated"):
        loaded = AutoConfig.from_pretrained(tmp_path)
    assert "training options" not in caplog.text
    assert not any(hasattr(loaded, name) for name in TRAINING_OPTIONS)
