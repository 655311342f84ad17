"""The generic checks transformers' model mixins promise, run over a grid of tiny foveated models.

Shaped like transformers' model tests (`tests/test_modeling_common.py`'s `ModelTesterMixin` and llava's
`LlavaVisionText2TextModelTester`): a tester builds tiny configs and inputs for one point of the grid, and each check
below runs at every point. The checks are written for this model: hidden states are the fine pass's language model,
the tuple output is the dict's, a resized vocabulary keeps `lm_head` tied, the language model's eager and SDPA
attention agree, `generate` gives the same tokens with and without its cache, and a saved model loads into the same
outputs. The property tests that only this model has (exact cache equality, stream = parallel, causality over frames)
stay in their own files.
"""

import copy

import pytest
import torch
from tiny import FRAME, VIDEO_END, VIDEO_START, tiny_batch, tiny_config, tiny_text_config

from foveated_vlm import FoveatedVLMForConditionalGeneration

# The architectural options that add parameters and buffers: a prompt query head and batch norms on the queries
# and on the frame tokens (running statistics that save/load and the attention paths must carry exactly), with the
# planned queries on the static queries as their base and tokens that embed where their glimpse looked.
PROMPT_QUERY_AND_NORMS = {
    "prompt_query": True,
    "query_norm": "batch",
    "token_norm": "batch",
    "static_query_base": True,
    "glimpse_location": True,
}
COMMON_INPUTS = ("input_ids", "attention_mask", "pixel_values_videos")
LOSSES = ("loss_fine", "loss_coarse", "caption_loss_fine", "caption_loss_coarse")
NEVER = [VIDEO_START, FRAME, VIDEO_END]  # generated text stays free of video tokens


class FoveatedVLMModelTester:
    """Tiny configs and inputs for one point of the grid: vision encoder, tokens per frame K, optional parts."""

    def __init__(self, vision_type: str, tokens_per_frame: int, prompt_query_and_norms: bool, batch_size: int = 2):
        self.vision_type = vision_type
        self.tokens_per_frame = tokens_per_frame
        self.options = PROMPT_QUERY_AND_NORMS if prompt_query_and_norms else {}
        self.batch_size = batch_size
        self.num_frames = 3

    def __repr__(self) -> str:
        return f"{self.vision_type}-K{self.tokens_per_frame}" + ("-prompt_query+norms" if self.options else "")

    def get_config(self, **overrides):
        return tiny_config(self.vision_type, tokens_per_frame=self.tokens_per_frame, **{**self.options, **overrides})

    def prepare_config_and_inputs(self, **overrides):
        """A config and every input of the contract, targets and caption labels included (so the losses run)."""
        config = self.get_config(**overrides)
        return config, tiny_batch(config, batch=self.batch_size, frames=self.num_frames)

    def prepare_config_and_inputs_for_common(self, **overrides):
        """A config and the inputs a user gives at inference: ids, mask and frames."""
        config, inputs = self.prepare_config_and_inputs(**overrides)
        return config, {name: inputs[name] for name in COMMON_INPUTS}

    def create_model(self, config, **from_config_kwargs):
        """The model in eval mode. Its batch norms' running statistics are first moved off their initial 0 and 1 by a
        training-mode forward, so that checks comparing two models also compare those buffers."""
        model = FoveatedVLMForConditionalGeneration._from_config(config, **from_config_kwargs)
        if self.options:
            with torch.no_grad():
                model.train()(**tiny_batch(config, batch=self.batch_size, frames=self.num_frames, seed=1))
        return model.eval()


GRID = [
    FoveatedVLMModelTester(vision_type, k, prompt_query_and_norms)
    for vision_type in ("dinov3_vit", "dinov2")
    for k in (1, 2)
    for prompt_query_and_norms in (False, True)
]
grid = pytest.mark.parametrize("tester", GRID, ids=repr)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Models this small run faster on one thread: two threads on the shared cores made this file 2.6x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_outputs(actual, expected, path: str = "output"):
    """Nested tuples of tensors are exactly equal (the same nesting, None where the other is None)."""
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)), f"{path}: {type(actual).__name__} where a tuple was expected"
        assert len(actual) == len(expected), f"{path}: {len(actual)} elements, expected {len(expected)}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_outputs(a, e, f"{path}[{index}]")
    elif expected is None:
        assert actual is None, f"{path}: {type(actual).__name__} where None was expected"
    else:
        torch.testing.assert_close(actual, expected, atol=0, rtol=0, msg=path)


@grid
@torch.no_grad()
def test_hidden_states_are_the_fine_pass_language_model(tester):
    config, inputs = tester.prepare_config_and_inputs_for_common()
    model = tester.create_model(config)
    out = model(**inputs, output_hidden_states=True)
    batch, length = inputs["input_ids"].shape
    layers, width = config.text_config.num_hidden_layers, config.text_config.hidden_size
    assert len(out.hidden_states) == layers + 1  # the embeddings, then each layer's output
    for hidden in out.hidden_states:
        assert hidden.shape == (batch, length, width)
    # The last is the fine pass's final (normed) state: the logits come from it.
    torch.testing.assert_close(model.lm_head(out.hidden_states[-1]), out.logits, atol=1e-6, rtol=1e-6)
    # The first is the fine pass's input: token embeddings on the text before the video.
    prompt = inputs["input_ids"][:, :3]
    torch.testing.assert_close(out.hidden_states[0][:, :3], model.get_input_embeddings()(prompt), atol=0, rtol=0)
    assert model(**inputs).hidden_states is None  # only on request
    # Text alone (no video) gives them too.
    text = model(input_ids=prompt, output_hidden_states=True)
    assert len(text.hidden_states) == layers + 1 and text.hidden_states[-1].shape == (batch, 3, width)


@grid
@torch.no_grad()
def test_tuple_output_is_the_dict_output(tester):
    config, inputs = tester.prepare_config_and_inputs()
    model = tester.create_model(config)
    common = {name: inputs[name] for name in COMMON_INPUTS}
    # With targets and labels the tuple starts with the loss; without them, with the logits. Nested outputs
    # (hidden states) are tuples inside it.
    for given, first in ((inputs, "loss"), (common, "logits")):
        kwargs = dict(given, output_hidden_states=True, output_attentions=True, use_cache=False)
        as_dict = model(**kwargs)
        as_tuple = model(**kwargs, return_dict=False)
        assert isinstance(as_tuple, tuple)
        assert_same_outputs(as_tuple, as_dict.to_tuple())
        torch.testing.assert_close(as_tuple[0], as_dict[first], atol=0, rtol=0)


@grid
@torch.no_grad()
def test_resized_vocabulary_keeps_lm_head_tied(tmp_path, tester):
    config, inputs = tester.prepare_config_and_inputs_for_common()
    model = tester.create_model(config)
    old_size, width = config.text_config.vocab_size, config.text_config.hidden_size
    old_rows = model.get_input_embeddings().weight.clone()
    new_size = old_size + 5
    model.resize_token_embeddings(new_size)
    embeddings, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert model.config.text_config.vocab_size == new_size
    assert embeddings.shape == (new_size, width)
    assert head.data_ptr() == embeddings.data_ptr()  # one storage: a training step moves both
    torch.testing.assert_close(embeddings[:old_size], old_rows, atol=0, rtol=0)
    # The new ids are accepted (the input checks read the resized vocabulary) and get logits.
    ids = inputs["input_ids"].clone()
    ids[:, 0], ids[:, 1] = new_size - 1, old_size
    out = model(**{**inputs, "input_ids": ids})
    assert out.logits.shape == (*ids.shape, new_size)
    # The resized, tied model survives a save and a load.
    model.save_pretrained(tmp_path)
    loaded = FoveatedVLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.get_output_embeddings().weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    torch.testing.assert_close(loaded(**{**inputs, "input_ids": ids}).logits, out.logits, atol=0, rtol=0)


@grid
@torch.no_grad()
def test_eager_attention_matches_sdpa_on_the_language_model(tester):
    config, inputs = tester.prepare_config_and_inputs()
    inputs["attention_mask"][0, :2] = 0  # row 0 left-padded by two tokens: the masked paths differ most
    # Each model its own config: the language model reads the implementation from its config at every forward, and
    # `_from_config` writes it into the config it is given (one shared config would make both "sdpa").
    eager = tester.create_model(copy.deepcopy(config), attn_implementation={"text_config": "eager"})
    sdpa = tester.create_model(copy.deepcopy(config), attn_implementation={"text_config": "sdpa"})
    assert eager.model.language_model.config._attn_implementation == "eager"
    assert sdpa.model.language_model.config._attn_implementation == "sdpa"
    sdpa.load_state_dict(eager.state_dict())
    a, b = eager(**inputs, output_hidden_states=True), sdpa(**inputs, output_hidden_states=True)
    kept = inputs["attention_mask"].bool()  # padded positions' own states are never read
    torch.testing.assert_close(b.logits[kept], a.logits[kept], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.hidden_states[-1][kept], a.hidden_states[-1][kept], atol=1e-5, rtol=1e-5)
    for name in ("queries", "predicted_latents") + LOSSES:
        torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=1e-5, rtol=1e-5, msg=name)


@grid
@torch.no_grad()
def test_greedy_generate_is_the_same_with_and_without_the_cache(tester):
    # Wider embeddings than the default init make the random model's greedy text vary from step to step.
    config, inputs = tester.prepare_config_and_inputs_for_common(text_config=tiny_text_config(initializer_range=0.5))
    model = tester.create_model(config)
    ids = inputs["input_ids"][:, :-4]  # the prompt and the video, up to <video_end>
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # a left-padded row: positions must follow the mask on both paths
    kwargs = dict(
        input_ids=ids,
        attention_mask=mask,
        pixel_values_videos=inputs["pixel_values_videos"],
        max_new_tokens=5,
        do_sample=False,
        suppress_tokens=NEVER,
    )
    cached, uncached = model.generate(**kwargs, use_cache=True), model.generate(**kwargs, use_cache=False)
    assert cached.shape == (ids.shape[0], ids.shape[1] + 5)
    assert torch.equal(cached, uncached)
    assert len(set(cached[:, ids.shape[1] :].flatten().tolist())) > 1, "degenerate text would prove nothing"


@grid
@torch.no_grad()
def test_save_and_load_give_the_same_outputs(tmp_path, tester):
    config, inputs = tester.prepare_config_and_inputs()
    model = tester.create_model(config)
    model.save_pretrained(tmp_path)
    loaded, info = FoveatedVLMForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    loaded.eval()
    kwargs = dict(inputs, output_hidden_states=True, output_attentions=True, use_cache=False)
    assert_same_outputs(loaded(**kwargs).to_tuple(), model(**kwargs).to_tuple())
    assert loaded.lm_head.weight.data_ptr() == loaded.model.language_model.embed_tokens.weight.data_ptr()


@grid
@torch.no_grad()
def test_each_video_alone_gives_what_it_gives_in_the_batch(tester):
    config, inputs = tester.prepare_config_and_inputs()
    model = tester.create_model(config)  # eval mode: the batch norms use their running statistics
    batched = model(**inputs)
    for row in range(tester.batch_size):
        alone = model(**{name: value[row : row + 1] for name, value in inputs.items()})
        for name in ("logits", "queries", "predicted_latents"):
            expected = getattr(batched, name)[row : row + 1]
            torch.testing.assert_close(getattr(alone, name), expected, atol=1e-5, rtol=1e-5, msg=f"row {row} {name}")
