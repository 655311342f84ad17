"""Streaming at another inference precision: the stream still equals the parallel forward of the same model.

`model.stream(precision="fp32-onednn" | "fp16" | "int8")` streams a copy whose linears run on oneDNN's packed
kernels or whose language-model linears are dynamically quantised (`inference_copy`). The proof that inference
computes what training computes is re-made at that precision: the stream against the parallel forward of the same
copy.

Tolerances. fp32-onednn is fp32 arithmetic in another summation order: 1e-4, and 1e-4 from the fp32 model too.
fp16 weights compute in fp32 and each row's result does not depend on the other rows of a call, so the
stream and the copy's forward differ only by fp32 summation order: the fp32 tolerance, 1e-4. int8 rounds each
call's activations to 8 bits on the range of that call; the stream's calls hold other rows (one frame, both streams)
than the parallel forward's (the whole clip, one pass), so the two round differently. The tolerance is 0.05 on
queries and predictions (both at unit scale: standardised queries, random unit targets), a twentieth of their
scale: the largest gap seen at this tiny size (2 layers) is ~0.016, while a wiring error (the fine rows planning the
queries, the wrong mode on the prompt) moves them by ~2. At full size (30 layers, random weights, 4 frames) the
int8 stream and its parallel forward differ by up to 0.28 on a query, as much as int8 differs from fp32 (0.23):
there, int8's equality means "to within its own rounding", which is why fp32 stays the exact default.
"""

import copy
import pickle

import pytest
import torch
from test_cli import save_checkpoint
from test_video_processing import write_video
from tiny import tiny_batch, tiny_config

from foveated_vlm import FoveatedVLMForConditionalGeneration
from foveated_vlm.cli import main
from foveated_vlm.inference_precision import OneDNNLinear
from foveated_vlm.streaming_foveated import inference_copy

TOLERANCE = {"fp32-onednn": 1e-4, "fp16": 1e-4, "int8": 0.05}
FRAMES = 4


def quantised_linears(model) -> int:
    modules = model.model.language_model.modules()
    return sum(isinstance(module, torch.ao.nn.quantized.dynamic.Linear) for module in modules)


def replaced_linears(model, precision: str) -> int:
    """Linears the copy runs at `precision`: the language model's 2 x 7 when quantised, every one for oneDNN."""
    if precision == "fp32-onednn":
        return sum(isinstance(module, OneDNNLinear) for module in model.modules())
    return quantised_linears(model)


def plain_linears(model) -> int:
    return sum(type(module) is torch.nn.Linear for module in model.modules())


def stream_steps(model, inputs, ids, precision: str):
    stream = model.stream(input_ids=ids[:, :3], batch_size=2, precision=precision)
    video, targets = inputs["pixel_values_videos"], inputs["target_latents"]
    return stream, [stream.push(video[:, t], targets[:, t]) for t in range(FRAMES)]


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    config = tiny_config()
    model = FoveatedVLMForConditionalGeneration(config).eval()
    inputs = tiny_batch(config, batch=2, frames=FRAMES, prompt=3)
    return model, inputs, inputs["input_ids"][:, :-4]  # the prompt and the video, no caption


@pytest.mark.parametrize("precision", ["fp32-onednn", "fp16", "int8"])
def test_the_stream_equals_the_parallel_forward_of_the_same_copy(clip, precision):
    model, inputs, ids = clip
    copy = inference_copy(model, precision)
    # quantised: q, k, v, o, gate, up, down in each of the 2 layers; oneDNN: every linear of the model
    expected = plain_linears(model) if precision == "fp32-onednn" else 2 * 7
    assert replaced_linears(copy, precision) == expected >= 2 * 7
    with torch.no_grad():
        parallel = copy(
            input_ids=ids,
            pixel_values_videos=inputs["pixel_values_videos"],
            target_latents=inputs["target_latents"],
            output_attentions=True,
        )
    stream, steps = stream_steps(model, inputs, ids, precision)
    assert replaced_linears(stream.model, precision) == expected  # the stream runs its own copy
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=TOLERANCE[precision])  # noqa: E731
    for t, step in enumerate(steps):
        close(step.query, parallel.queries[:, t])
        close(step.fixation, parallel.fixations_fine[:, t])
        if t + 1 < FRAMES:
            close(step.next_query, parallel.queries[:, t + 1])
            close(step.predicted_latent, parallel.predicted_latents[:, t + 1])
    assert stream.generate(max_new_tokens=2).shape == (2, 2)  # the caption continues the copy's fine stream


def test_fp32_onednn_computes_what_fp32_computes(clip):
    model, inputs, ids = clip
    copy = inference_copy(model, "fp32-onednn")
    assert plain_linears(copy) == 0
    with torch.no_grad():
        exact, packed = (
            m(input_ids=ids, **{k: inputs[k] for k in ("pixel_values_videos", "target_latents")}) for m in (model, copy)
        )
    for name in ("logits", "queries", "predicted_latents"):
        torch.testing.assert_close(getattr(packed, name), getattr(exact, name), rtol=0, atol=1e-4)
    video = {"pixel_values_videos": inputs["pixel_values_videos"]}
    greedy = {"max_new_tokens": 3, "do_sample": False}
    assert torch.equal(
        copy.generate(input_ids=ids, **video, **greedy), model.generate(input_ids=ids, **video, **greedy)
    )


def test_a_onednn_linear_packs_for_large_calls_follows_its_weight_and_keeps_gradients_exact():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 40)
    fast = OneDNNLinear(linear)
    x = torch.randn(3, 25, 24)  # 75 rows: at least MIN_ONEDNN_ROWS
    with torch.no_grad():
        torch.testing.assert_close(fast(x[:, :2]), linear(x[:, :2]), rtol=0, atol=0)  # 6 rows: torch's kernel
        assert fast._packed is None
        torch.testing.assert_close(fast(x), linear(x), rtol=0, atol=1e-5)
        packed = fast._packed
        assert packed is not None and packed.is_mkldnn  # the large call ran oneDNN on a packed weight
        linear.weight.add_(1.0)  # trained or reloaded in place: the next large call repacks
        torch.testing.assert_close(fast(x), linear(x), rtol=0, atol=1e-5)
        assert fast._packed is not packed
    # Copies and pickles leave the packed weight behind (it has no storage) and pack their own.
    for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert clone._packed is None
        with torch.no_grad():
            torch.testing.assert_close(clone(x), linear(x), rtol=0, atol=1e-5)
    # A call that needs gradients computes on the live weight, through autograd, as nn.Linear does.
    x.requires_grad_(True)
    fast(x).sum().backward()
    expected = torch.ones(3, 25, 40).flatten(0, 1).t() @ x.detach().flatten(0, 1)
    torch.testing.assert_close(linear.weight.grad, expected)
    torch.testing.assert_close(x.grad, linear.weight.detach().sum(0).expand(3, 25, 24))


def test_a_onednn_copy_can_be_copied_again(clip):
    model, inputs, ids = clip
    once = inference_copy(model, "fp32-onednn")
    with torch.no_grad():
        once(input_ids=ids, pixel_values_videos=inputs["pixel_values_videos"])  # packs its large layers
    twice = inference_copy(once, "fp32-onednn")  # a deepcopy of modules holding packed weights
    assert replaced_linears(twice, "fp32-onednn") == replaced_linears(once, "fp32-onednn")
    assert once.stream(batch_size=2, precision="int8").push(inputs["pixel_values_videos"][:, 0]).query.shape[0] == 2


@pytest.mark.parametrize("precision", ["fp32-onednn", "fp16", "int8"])
def test_another_precision_really_changes_the_computation_and_leaves_the_model_alone(clip, precision):
    model, inputs, ids = clip
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    _, exact = stream_steps(model, inputs, ids, "fp32")
    stream, lowered = stream_steps(model, inputs, ids, precision)
    gap = max((a.next_query - b.next_query).abs().max().item() for a, b in zip(exact, lowered, strict=True))
    if precision == "fp32-onednn":
        # Every streamed call here has fewer than MIN_ONEDNN_ROWS rows (2 frames of 17 tokens, 2 LM rows), so each
        # takes F.linear on the shared weights: the stream is fp32's, bit for bit.
        assert gap == 0, gap
    else:
        assert 0 < gap < 0.1, gap  # rounded weights move the plans a little, never a lot
    # The model given is untouched (still fp32 nn.Linear, same values); the copy shares its tensors.
    assert quantised_linears(model) == 0 and replaced_linears(model, "fp32-onednn") == 0
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    vit, copied_vit = model.foveated_encoder, stream.model.foveated_encoder
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(vit.parameters(), copied_vit.parameters(), strict=True))
    assert stream.model.lm_head.weight.data_ptr() == model.lm_head.weight.data_ptr()


def test_fp32_is_the_default_and_streams_the_model_itself(clip):
    model, _, _ = clip
    assert model.stream().model is model
    assert model.stream(precision="fp32").model is model


@pytest.mark.parametrize("precision", ["bf16", "INT8", None, 8])
def test_an_unknown_precision_is_a_clear_error(clip, precision):
    model, _, _ = clip
    expected = r"\['fp32', 'fp32-onednn', 'fp16', 'int8'\]"
    with pytest.raises(ValueError, match=rf"precision must be one of {expected}; got {precision!r}"):
        model.stream(precision=precision)


def test_the_cli_streams_at_int8(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "checkpoint")
    video = tmp_path / "clip.mp4"
    write_video(video, num_frames=12)
    out = tmp_path / "stream.gif"
    arguments = ["stream", "--model", str(checkpoint), str(video), "--out", str(out), "--max_frames", "3"]
    result = main([*arguments, "--sample_fps", "6", "--max_new_tokens", "2", "--precision", "int8"])
    assert result["frames"] == 3 and out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--precision", "bf16"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bf16'" in capsys.readouterr().err
