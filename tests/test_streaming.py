"""Frame-by-frame inference agrees with the parallel two-pass forward: training and inference compute the same."""

import pytest
import torch
from tiny import tiny_batch, tiny_config, tiny_text_config

from foveated_vlm import FoveatedVLMForConditionalGeneration


def parallel_and_stream(k: int, prompt: int, batch: int = 2, frames: int = 4):
    config = tiny_config(tokens_per_frame=k)
    model = FoveatedVLMForConditionalGeneration(config).eval()
    inputs = tiny_batch(config, batch=batch, frames=frames, prompt=prompt)
    ids = inputs["input_ids"][:, :-4]  # the prompt and the video, no caption
    with torch.no_grad():
        parallel = model(
            input_ids=ids,
            pixel_values_videos=inputs["pixel_values_videos"],
            target_latents=inputs["target_latents"],
            output_attentions=True,
        )
    stream = model.stream(input_ids=ids[:, :prompt] if prompt else None, batch_size=batch)
    steps = [stream.push(inputs["pixel_values_videos"][:, t], inputs["target_latents"][:, t]) for t in range(frames)]
    return model, inputs, ids, parallel, stream, steps


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("prompt", [0, 3])
def test_streaming_equals_the_parallel_forward(k, prompt):
    _, _, _, parallel, _, steps = parallel_and_stream(k, prompt)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # noqa: E731
    for t, step in enumerate(steps):
        close(step.query, parallel.queries[:, t])
        close(step.fixation, parallel.fixations_fine[:, t])
        close(step.fixation_coarse, parallel.fixations_coarse[:, t])
        if t + 1 < len(steps):
            close(step.next_query, parallel.queries[:, t + 1])
            close(step.predicted_latent, parallel.predicted_latents[:, t + 1])
        assert set(step.timings) == {"encode", "queries", "language_model", "predict"}


def test_a_batch_of_streams_equals_single_streams():
    model, inputs, ids, _, _, steps = parallel_and_stream(k=1, prompt=3, batch=2, frames=3)
    single = model.stream(input_ids=ids[1:, :3])
    for t in range(3):
        step = single.push(inputs["pixel_values_videos"][1:, t], inputs["target_latents"][1:, t])
        torch.testing.assert_close(step.query, steps[t].query[1:], rtol=0, atol=1e-5)
        torch.testing.assert_close(step.predicted_latent, steps[t].predicted_latent[1:], rtol=0, atol=1e-5)


def test_a_target_is_optional():
    config = tiny_config()
    model = FoveatedVLMForConditionalGeneration(config).eval()
    step = model.stream().push(torch.randn(1, 3, 32, 32))
    assert step.predicted_latent is None and step.next_query.shape == (1, 1, config.query_dim)


def test_the_context_limit_is_a_clear_error():
    config = tiny_config(text_config=tiny_text_config(max_position_embeddings=8))
    model = FoveatedVLMForConditionalGeneration(config).eval()
    stream = model.stream(input_ids=torch.tensor([[5, 6, 7]]))  # 3 + <video_start> = 4 tokens
    for _ in range(4):
        stream.push(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="would hold 9 tokens, past the language model's context of 8"):
        stream.push(torch.randn(1, 3, 32, 32))


def test_bad_stream_input():
    config = tiny_config()
    model = FoveatedVLMForConditionalGeneration(config).eval()
    stream = model.stream(batch_size=2)
    with pytest.raises(ValueError, match=r"frame must have shape \[B=2, 3, H, W\]"):
        stream.push(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="target_latent must have shape"):
        stream.push(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="text only"):
        model.stream(input_ids=torch.tensor([[config.frame_token_id]]))
    stream.push(torch.randn(2, 3, 32, 32))
    stream.generate(max_new_tokens=1)
    with pytest.raises(RuntimeError, match="closed"):
        stream.push(torch.randn(2, 3, 32, 32))
