"""Checkpoints: safetensors + config + code, loadable where `foveated_vlm` was never imported."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny import BLOCK_PACKAGE, tiny_batch, tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration

OPTIONS = {"prompt_query": True, "query_norm": "batch", "token_norm": "batch", "query_temperature": 0.5}


@pytest.mark.parametrize("vision_type, k, options", [("dinov3_vit", 1, {}), ("dinov2", 2, {}), ("dinov2", 1, OPTIONS)])
def test_save_and_load_gives_identical_outputs(tmp_path, vision_type, k, options):
    config = tiny_config(vision_type, tokens_per_frame=k, **options)
    model = FoveatedVLMForConditionalGeneration(config)
    batch = tiny_batch(config)
    with torch.no_grad():
        model.train()(**batch)  # moves the batch norms' running statistics off their initial values
    model.eval()
    model.save_pretrained(tmp_path)
    for loader in (FoveatedVLMForConditionalGeneration, AutoModel, AutoModelForImageTextToText):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, FoveatedVLMForConditionalGeneration)
        a, b = model(**batch), loaded(**batch)
        for name in ("loss", "logits", "predicted_latents", "queries"):
            torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=0, msg=name)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.language_model.embed_tokens.weight.data_ptr()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), FoveatedVLMConfig)
    assert {name: getattr(loaded.config, name) for name in options} == options


def test_checkpoint_carries_its_code(tmp_path):
    FoveatedVLMForConditionalGeneration(tiny_config()).save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_foveated.py", "configuration_foveated.py"} <= files
    assert {"encoder_foveated.py", "predictor_foveated.py"} <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_foveated.FoveatedVLMConfig",
        "AutoModel": "modeling_foveated.FoveatedVLMForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_foveated.FoveatedVLMForConditionalGeneration",
        "AutoModelForMultimodalLM": "modeling_foveated.FoveatedVLMForConditionalGeneration",
    }


FRESH_PROCESS = BLOCK_PACKAGE + textwrap.dedent(
    """
    import sys, torch

    from transformers import AutoModel
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert not any(m.split(".")[0] == "foveated_vlm" for m in sys.modules), "the package was imported"
    batch = torch.load(sys.argv[2])
    with torch.no_grad():
        out = model(**batch)
    torch.save({"logits": out.logits, "predicted_latents": out.predicted_latents, "queries": out.queries,
                "loss": out.loss, "module": type(model).__module__}, sys.argv[3])
    """
)


def test_fresh_process_loads_with_trust_remote_code(tmp_path):
    config = tiny_config(tokens_per_frame=2)
    model = FoveatedVLMForConditionalGeneration(config).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    batch = tiny_batch(config)
    torch.save(batch, tmp_path / "batch.pt")
    script = tmp_path / "load.py"
    script.write_text(FRESH_PROCESS)
    subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(tmp_path / "batch.pt"), str(tmp_path / "out.pt")],
        check=True,
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")},
    )
    result = torch.load(tmp_path / "out.pt")
    assert result["module"].startswith("transformers_modules.")
    with torch.no_grad():
        expected = model(**batch)
    for name in ("logits", "predicted_latents", "queries", "loss"):
        torch.testing.assert_close(result[name], getattr(expected, name), rtol=0, atol=0, msg=name)


def test_a_model_whose_class_fsdp2_swapped_saves_as_its_own_class(tmp_path):
    # FSDP2's `fully_shard` replaces the instance's class with `FSDP<Name>`, generated in torch's module: saved as
    # that class, the checkpoint carried torch's `_fsdp_*.py` as its code and named the subclass in `auto_map`.
    from torch.distributed.fsdp import FSDPModule

    model = FoveatedVLMForConditionalGeneration(tiny_config())
    sharded = type("FSDPFoveatedVLMForConditionalGeneration", (FSDPModule, FoveatedVLMForConditionalGeneration), {})
    sharded.__module__ = FSDPModule.__module__
    model.__class__ = sharded
    model.save_pretrained(tmp_path)
    assert type(model) is sharded  # the swap lasts only for the save
    saved = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert saved["AutoModelForImageTextToText"] == "modeling_foveated.FoveatedVLMForConditionalGeneration"
    assert not list(tmp_path.glob("_fsdp*.py")) and (tmp_path / "modeling_foveated.py").exists()
    assert type(AutoModelForImageTextToText.from_pretrained(tmp_path)) is FoveatedVLMForConditionalGeneration
