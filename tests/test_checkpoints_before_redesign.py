"""Checkpoints saved by an earlier layout of the package still load and compute what they computed then.

The fixtures (tests/fixtures/checkpoints_before_redesign, see its README) were written before the redesign that
took the experiment's knobs out of the saved config; their config.json still carries those fields.
"""

import pathlib

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from foveated_vlm import FoveatedVLMForConditionalGeneration, FoveatedVLMProcessor
from foveated_vlm.training.foveation_losses import FoveationLosses

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "checkpoints_before_redesign"
INPUTS = ("input_ids", "attention_mask", "pixel_values_videos", "target_latents", "labels")
OUTPUTS = ("loss", "loss_fine", "loss_coarse", "caption_loss_fine", "caption_loss_coarse", "logits")
OUTPUTS += ("predicted_latents", "queries", "fixations_fine", "fixations_coarse")
# The regularisers the experiment checkpoint's config switched on were in the loss it saved; they are training
# options now, composed from outside the model, so its `loss` is the model's plus theirs.
REGULARISERS = {
    "experiment": FoveationLosses(contrastive_loss_weight=0.1, entropy_margin_loss_weight=0.2, entropy_margin=1.0)
}


def saved(name: str) -> tuple[dict, dict]:
    tensors = load_file(FIXTURES / name / "expected_outputs.safetensors")
    return {key: tensors[key] for key in INPUTS}, {key[9:]: v for key, v in tensors.items() if key.startswith("exp")}


@pytest.mark.parametrize("name", ["plain", "experiment"])
@pytest.mark.parametrize("loader", [FoveatedVLMForConditionalGeneration, AutoModelForImageTextToText])
def test_old_checkpoint_gives_the_outputs_it_gave_when_saved(name, loader):
    model = loader.from_pretrained(FIXTURES / name).eval()
    assert isinstance(model, FoveatedVLMForConditionalGeneration)
    batch, expected = saved(name)
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    foveation = REGULARISERS.get(name, FoveationLosses())
    out.loss = out.loss + foveation.weighted(foveation.terms(out))
    for key in OUTPUTS:
        torch.testing.assert_close(getattr(out, key), expected[key], rtol=1e-5, atol=1e-6, msg=key)
    ids = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values_videos=batch["pixel_values_videos"],
        max_new_tokens=5,
        do_sample=False,
    )
    assert torch.equal(ids, expected["generate"])


@pytest.mark.parametrize("name, k", [("plain", 1), ("experiment", 2)])
def test_old_processor_loads_and_matches_its_model(name, k):
    for loader in (FoveatedVLMProcessor, AutoProcessor):
        processor = loader.from_pretrained(FIXTURES / name)
        assert isinstance(processor, FoveatedVLMProcessor)
        model = FoveatedVLMForConditionalGeneration.from_pretrained(FIXTURES / name)
        processor.check_model_config(model.config)
        video = torch.rand(6, 3, 40, 48)  # [T, 3, H, W]: sampled to the saved 4 frames, resized to 32 px
        batch = processor(text=["w5 <video> w7"], videos=[video], return_tensors="pt")
        assert tuple(batch["pixel_values_videos"].shape) == (1, 4, 3, 32, 32)
        assert (batch["input_ids"] == model.config.frame_token_id).sum() == 4 * k
        with torch.no_grad():
            model.eval()(**batch)
