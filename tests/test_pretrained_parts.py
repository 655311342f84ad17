"""Assembling a model from a pretrained vision encoder and a pretrained language model."""

import os

import pytest
import torch
from tiny import needs_smollm2, tiny_text_config, tiny_vision_config
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from foveated_vlm import VIDEO_TOKENS, FoveatedVLMForConditionalGeneration
from foveated_vlm.training.model_building import smollm2_gguf_path

WORDS = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(57)]


@pytest.fixture
def tiny_parts(tmp_path):
    """A tiny DINOv3 and a tiny Llama with a word-level tokenizer, saved like Hub checkpoints."""
    vision = AutoModel.from_config(AutoConfig.for_model(**tiny_vision_config(image_size=224)))
    vision.save_pretrained(tmp_path / "vision")
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    text = AutoModelForCausalLM.from_config(AutoConfig.for_model(**tiny_text_config(vocab_size=len(WORDS))))
    text.save_pretrained(tmp_path / "text")
    tokenizer.save_pretrained(tmp_path / "text")
    return tmp_path / "vision", tmp_path / "text", vision, text


def test_assembles_from_local_directories(tiny_parts):
    vision_dir, text_dir, vision, text = tiny_parts
    model, tokenizer = FoveatedVLMForConditionalGeneration.from_pretrained_parts(
        str(vision_dir),
        str(text_dir),
        frame_size=32,
        tokens_per_frame=2,
        target_size=8,
        target_channels=3,
        predictor_channels=16,
    )
    config = model.config
    assert config.frame_size == 32 and config.tokens_per_frame == 2
    ids = [tokenizer.convert_tokens_to_ids(t) for t in VIDEO_TOKENS.values()]
    assert ids == [config.video_start_token_id, config.frame_token_id, config.video_end_token_id] == [60, 61, 62]
    assert config.text_config.vocab_size == len(tokenizer) == 63
    assert model.lm_head.weight.shape[0] == 63
    # Pretrained weights arrived in both towers; the original text rows are unchanged.
    torch.testing.assert_close(
        model.foveated_encoder.vision_model.model.layer[1].mlp.up_proj.weight, vision.model.layer[1].mlp.up_proj.weight
    )
    torch.testing.assert_close(model.model.language_model.embed_tokens.weight[:60], text.model.embed_tokens.weight[:60])
    # The text model behaves as before on text.
    ids = torch.tensor([[1, 5, 9, 12]])
    torch.testing.assert_close(model(input_ids=ids).logits[..., :60], text(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@needs_smollm2
def test_real_smollm2_weights_from_gguf(tiny_parts):
    vision_dir = tiny_parts[0]
    gguf_path = smollm2_gguf_path()
    directory, filename = os.path.split(gguf_path)
    model, tokenizer = FoveatedVLMForConditionalGeneration.from_pretrained_parts(
        str(vision_dir), directory, gguf_file=filename, frame_size=32, target_size=8
    )
    assert model.config.text_config.hidden_size == 576 and model.config.text_config.num_hidden_layers == 30
    assert model.config.video_start_token_id == 49152 and len(tokenizer) == 49155
    # The assembled language model still knows things: greedy continuation of a fact.
    prompt = tokenizer("The capital of France is", return_tensors="pt").input_ids
    ids = prompt
    with torch.no_grad():
        for _ in range(4):
            next_id = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
    assert "Paris" in tokenizer.decode(ids[0, prompt.shape[1] :])
    reference = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    assert reference("The capital of France is").input_ids == prompt[0].tolist()
