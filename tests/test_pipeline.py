"""Samples from the synthetic source through the collator into the model."""

import torch
from test_processing import make_processor
from tiny import config_for_processor

from foveated_vlm import FoveatedVLMForConditionalGeneration, VideoTextCollator, build_target_encoder
from foveated_vlm.data.pipeline import build_dataset


def samples(n=3, frame_size=32, frames=4, seed=0):
    stream = iter(build_dataset("synthetic", seed=seed, frame_size=frame_size, num_frames=frames))
    return [next(stream) for _ in range(n)]


def test_collator_builds_what_the_model_takes():
    processor = make_processor(num_frames=4)
    collator = VideoTextCollator(processor, build_target_encoder("pixels", target_size=8))
    batch = collator(samples())
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values_videos", "labels", "target_latents"}
    assert batch["pixel_values_videos"].shape == (3, 4, 3, 32, 32)
    assert batch["target_latents"].shape == (3, 4, 3, 8, 8)
    assert batch["target_latents"].min() >= -1 and batch["target_latents"].max() <= 1
    # Labels cover the answer only: nothing before the end of the video is supervised.
    video_end = (batch["input_ids"] == processor.video_end_token_id).int().argmax(1)
    for row, end in enumerate(video_end):
        assert (batch["labels"][row, : end + 1] == -100).all()
        assert (batch["labels"][row, end + 1 :] != -100).any()

    config = config_for_processor(processor)
    out = FoveatedVLMForConditionalGeneration(config)(**batch)
    assert torch.isfinite(out.loss) and out.caption_loss_fine is not None and out.loss_fine is not None


def test_without_captions_or_targets():
    processor = make_processor(num_frames=4)
    batch = VideoTextCollator(processor, target_encoder=None, train_captions=False)(samples(2))
    assert "labels" not in batch and "target_latents" not in batch


def test_held_out_streams_differ():
    train, held_out = samples(4, seed=0), samples(4, seed=1)
    assert {s["seed"] for s in train}.isdisjoint({s["seed"] for s in held_out})
