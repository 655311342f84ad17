"""Caption generation from a whole clip and from a stream."""

import torch
from tiny import FRAME, VIDEO_END, VIDEO_START, tiny_batch, tiny_config, tiny_text_config

from foveated_vlm import FoveatedVLMForConditionalGeneration

NEVER = [VIDEO_START, FRAME, VIDEO_END]  # keep the random model's text free of video tokens


def make():
    # Wider embeddings than the default init make the random model's greedy text vary from step to step.
    config = tiny_config(text_config=tiny_text_config(initializer_range=0.5))
    model = FoveatedVLMForConditionalGeneration(config).eval()
    inputs = tiny_batch(config, batch=2, frames=3)
    ids = inputs["input_ids"][:, :-4]
    return model, ids, inputs["pixel_values_videos"]


def manual_greedy(model, ids, pixels, steps):
    """The definition: rerun the full two-pass forward on the growing sequence and take the best token."""
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=ids, pixel_values_videos=pixels).logits[:, -1]
            logits[:, NEVER] = float("-inf")
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


def test_greedy_generate_matches_a_manual_loop_and_is_deterministic():
    model, ids, pixels = make()
    kwargs = dict(max_new_tokens=6, do_sample=False, suppress_tokens=NEVER)
    first = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=pixels, **kwargs)
    second = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=pixels, **kwargs)
    assert torch.equal(first, second)
    assert torch.equal(first, manual_greedy(model, ids, pixels, 6))
    assert len(set(first[:, ids.shape[1] :].flatten().tolist())) > 1, "degenerate text would prove nothing"


def test_sampling_and_beams_run():
    model, ids, pixels = make()
    common = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=pixels, max_new_tokens=4)
    torch.manual_seed(3)
    sampled = model.generate(**common, do_sample=True, top_k=10)
    torch.manual_seed(3)
    assert torch.equal(sampled, model.generate(**common, do_sample=True, top_k=10))
    beams = model.generate(**common, num_beams=2, do_sample=False)
    assert beams.shape[0] == 2 and beams.shape[1] <= ids.shape[1] + 4


def test_stream_generate_continues_the_fine_stream():
    model, ids, pixels = make()
    video_start = (ids[0] == VIDEO_START).nonzero()[0].item()
    stream = model.stream(input_ids=ids[:, :video_start])
    for t in range(pixels.shape[1]):
        stream.push(pixels[:, t])
    caption = stream.generate(max_new_tokens=6, do_sample=False, suppress_tokens=NEVER)
    whole = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values_videos=pixels,
        max_new_tokens=6,
        do_sample=False,
        suppress_tokens=NEVER,
    )
    assert torch.equal(caption, whole[:, ids.shape[1] :])
