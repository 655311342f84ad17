"""The vision pretraining stage: masked-patch prediction on frames alone, saved as a DINOv2 checkpoint that the main
stage loads beside a fresh language model."""

import itertools
import json

import numpy as np
import pytest
import torch
from tiny import needs_smollm2, tiny_vision_config
from transformers import AutoConfig, AutoModel

import train
from foveated_vlm.data.synthetic import SyntheticVideoConfig, synthetic_stream
from foveated_vlm.training.arguments import check_arguments, parse
from foveated_vlm.training.model_building import build_model_and_processor
from foveated_vlm.training.vision_pretraining import (
    MaskedFramesCollator,
    MaskedPatchPretraining,
    patchify,
    pretrain_vision_encoder,
)
from foveated_vlm.video_processing_foveated import FoveatedVideoProcessor


def frames_only(count: int, size: int = 32, seed: int = 0):
    """Clips that carry nothing but their frames: no prompt, answer or ground truth the stage could read."""
    config = SyntheticVideoConfig(frame_size=size, num_frames=4, task="clutter")
    return [{"frames": np.asarray(clip["frames"])} for clip in itertools.islice(synthetic_stream(config, seed), count)]


def test_patches_are_in_the_order_the_vit_embeds_them():
    vision = AutoModel.from_config(AutoConfig.for_model(**tiny_vision_config("dinov2")))
    pixels = torch.randn(2, 3, 32, 32)
    patches = patchify(pixels, 8)  # [2, 16, 192]
    assert patches.shape == (2, 16, 192)
    projection = vision.embeddings.patch_embeddings.projection  # a stride-8 conv: one linear map per patch
    expected = vision.embeddings.patch_embeddings(pixels)  # [2, 16, 32]
    flat = projection.weight.flatten(1)  # [32, 192], channel-major like unfold
    assert torch.allclose(patches @ flat.T + projection.bias, expected, atol=1e-5)


def test_the_collator_masks_each_frame_at_the_ratio():
    collator = MaskedFramesCollator(
        FoveatedVideoProcessor(size=32, num_frames=4), patch_size=8, mask_ratio=0.25, seed=0
    )
    batch = collator(frames_only(3))
    assert batch["pixel_values"].shape == (12, 3, 32, 32)  # 3 clips x 4 frames
    assert batch["bool_masked_pos"].shape == (12, 16)
    assert (batch["bool_masked_pos"].sum(-1) == 4).all()
    assert not torch.equal(batch["bool_masked_pos"][0], batch["bool_masked_pos"][1])  # each frame its own mask
    with pytest.raises(ValueError, match="mask_ratio 1.0 must be in"):
        MaskedFramesCollator(FoveatedVideoProcessor(size=32, num_frames=4), patch_size=8, mask_ratio=1.0)


def test_the_loss_counts_masked_patches_only():
    vision = AutoModel.from_config(AutoConfig.for_model(**tiny_vision_config("dinov2")))
    model = MaskedPatchPretraining(vision)
    pixels = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :4] = True
    loss = model(pixels, mask)["loss"]
    hidden = vision(pixel_values=pixels, bool_masked_pos=mask).last_hidden_state[:, 1:]
    error = (model.pixel_head(hidden) - patchify(pixels, 8)).abs().mean(-1)  # [2, 16]
    assert torch.allclose(loss, error[:, :4].mean())


def test_pretraining_learns_from_frames_alone_and_saves_a_dinov2_checkpoint(tmp_path):
    config = tiny_vision_config("dinov2", initializer_range=0.1)
    stream = frames_only(48)
    directory = pretrain_vision_encoder(
        config,
        stream,
        str(tmp_path / "vit"),
        steps=24,
        batch_size=4,
        learning_rate=3e-3,
        num_frames=4,
        disable_tqdm=True,
    )
    loaded = AutoModel.from_pretrained(directory)
    assert loaded.config.model_type == "dinov2" and loaded.config.hidden_size == 32
    fresh = AutoModel.from_config(AutoConfig.for_model(**config))
    collator = MaskedFramesCollator(FoveatedVideoProcessor(size=32, num_frames=4), 8, 0.5, seed=1)
    batch = collator(frames_only(8, seed=5))  # clips the stage never read
    torch.manual_seed(0)
    before = MaskedPatchPretraining(fresh)(**batch)["loss"]  # a fresh ViT and head
    # The saved encoder alone, with a head fitted to it on the same frames: the masked patches are better predicted
    # than from a fresh ViT with a head fitted the same way, so the encoder itself learned.
    losses = {}
    for name, vision in (("fresh", fresh), ("pretrained", loaded)):
        model = MaskedPatchPretraining(vision.requires_grad_(False))
        optimizer = torch.optim.Adam(model.pixel_head.parameters(), lr=1e-2)
        for _ in range(60):
            loss = model(**batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses[name] = loss.item()
    assert losses["pretrained"] < losses["fresh"] < before.item()


def test_the_stage_is_refused_for_a_vit_without_a_mask_token(tmp_path):
    with pytest.raises(ValueError, match="--vision_type dinov3_vit has none"):
        pretrain_vision_encoder(tiny_vision_config("dinov3_vit"), frames_only(4), str(tmp_path), steps=1)
    model_args, data_args, foveation_args, training_args = parse(
        ["--vision_pretraining_steps", "5", "--vision_type", "dinov3_vit", "--output_dir", str(tmp_path / "x")]
    )
    with pytest.raises(SystemExit, match="needs --vision_type dinov2"):
        check_arguments(model_args, data_args, foveation_args, training_args)


def test_a_pretrained_vit_loads_beside_a_fresh_language_model(tmp_path):
    vision = AutoModel.from_config(AutoConfig.for_model(**tiny_vision_config("dinov2", image_size=64)))
    vision.save_pretrained(tmp_path / "vit")
    model_args, data_args, _, _ = parse(
        ["--vision_model", str(tmp_path / "vit"), "--frame_size", "32", "--output_dir", str(tmp_path / "run")]
    )
    model, processor = build_model_and_processor(model_args, data_args)
    encoder = model.model.foveated_encoder.vision_model
    assert encoder.config.hidden_size == 32 and encoder.config.image_size == 32  # its sizes, the run's frames
    for name, tensor in vision.state_dict().items():
        if name != "embeddings.position_embeddings":
            assert torch.equal(encoder.state_dict()[name], tensor), name
    # The 8 x 8 grid of 64-px frames resized to the 4 x 4 of 32-px frames, as DINOv2 interpolates at run time.
    frames = torch.randn(1, 3, 32, 32)
    expected = vision.embeddings.interpolate_pos_encoding(vision.embeddings.patch_embeddings(frames), 32, 32)
    assert torch.allclose(encoder.embeddings.position_embeddings, expected, atol=1e-5)
    assert processor.video_processor.frame_size == 32


@needs_smollm2
def test_the_emergent_preset_never_builds_a_fixation_target(tmp_path, monkeypatch):
    """`--preset clutter-emergent` end to end at tiny size, with its glimpse draws and the optional label-free
    pretraining stage on: no step of either stage builds or reads where the named object is (the fixation
    targets)."""
    from foveated_vlm.training import data_collator

    def refuse(*args, **kwargs):
        raise AssertionError("a fixation target was built in training")

    monkeypatch.setattr(data_collator, "target_patches", refuse)
    _, _, foveation_args, _ = parse(["--preset", "clutter-emergent"])
    assert foveation_args.fixation_loss_weight == 0 and foveation_args.glimpse_samples >= 2
    output = tmp_path / "run"
    flags = ["--preset", "clutter-emergent", "--output_dir", str(output), "--max_steps", "3", "--curriculum_clips", "2"]
    flags += ["--restart_step", "2", "--restart_window", "2"]  # restarts on, on the run's scale
    flags += ["--vision_pretraining_steps", "2", "--per_device_train_batch_size", "2", "--eval_videos", "0"]
    flags += ["--num_frames", "4", "--frame_size", "32", "--vision_layers", "2", "--text_hidden_size", "64"]
    flags += ["--disable_tqdm", "True", "--report_to", "none"]
    metrics = train.main(flags)
    assert metrics["steps"] == 3
    saved = AutoModel.from_pretrained(output / "vision_pretrained")  # a plain DINOv2 checkpoint
    run_args = json.loads((output / "train_args.json").read_text())
    assert run_args["model"]["vision_model"] == str(output / "vision_pretrained")
    assert run_args["foveation"]["fixation_loss_weight"] == 0
    assert saved.config.model_type == "dinov2" and saved.config.num_hidden_layers == 2
