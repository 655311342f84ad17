"""What Trainer and Hub users type works as they expect: `--push_to_hub` uploads the finished folder once (its filled
card with the held-out metrics in `model-index`, metrics.json, the figures), `--preset=NAME` is `--preset NAME`, and
the collator takes `datasets`' torch-formatted frames and says what to set when a plain `Trainer` drops its columns.

The Hub is a recording stand-in for `huggingface_hub.HfApi` (the Trainer's `hf_api()` is one): no network."""

import concurrent.futures
import json
import os

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.utils import filter_repo_objects
from test_processing import make_processor
from tiny import config_for_processor
from transformers import Trainer, TrainingArguments

import train
from foveated_vlm import FoveatedVLMForConditionalGeneration, VideoTextCollator, build_target_encoder
from foveated_vlm.training.arguments import parse
from foveated_vlm.training.data_collator import SkippingCollator
from foveated_vlm.training.trainer import FoveatedTrainer

REPO = "someone/tiny-foveated"
TINY_RUN = [
    "--max_steps", "2", "--logging_steps", "1", "--eval_videos", "2", "--per_device_train_batch_size", "2",
    "--per_device_eval_batch_size", "2", "--num_frames", "3", "--frame_size", "32", "--target_size", "8",
    "--vision_layers", "1", "--vision_hidden_size", "32", "--text_hidden_size", "32", "--text_layers", "1",
    "--disable_tqdm", "True", "--report_to", "none", "--push_to_hub", "True", "--hub_model_id", REPO,
]  # fmt: skip


class RecordingHub:
    """Stands in for the Hub's `create_repo` and `upload_folder`: each upload records the files it would send (after
    its ignore patterns, at the moment of the call) and the README.md among them."""

    def __init__(self, monkeypatch):
        self.uploads = []
        monkeypatch.setattr(HfApi, "create_repo", self.create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", self.upload_folder)

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, ignore_patterns=None, **kwargs):
        found = [
            os.path.relpath(os.path.join(directory, name), folder_path).replace(os.sep, "/")
            for directory, _, names in os.walk(folder_path)
            for name in names
        ]
        files = sorted(filter_repo_objects(found, ignore_patterns=ignore_patterns))
        card = (
            open(os.path.join(folder_path, "README.md")).read() if "README.md" in files and not path_in_repo else None
        )
        self.uploads.append({"repo_id": repo_id, "path_in_repo": path_in_repo, "files": files, "card": card})
        done = concurrent.futures.Future()  # checkpoint pushes run as futures: this one has finished
        done.set_result(None)
        return done if kwargs.get("run_as_future") else None


def check_filled_card(upload: dict, metrics: dict) -> None:
    """The upload holds the card train.py filled: usage code loading the repository, metrics in model-index."""
    card = ModelCard(upload["card"])
    assert f'from_pretrained("{REPO}"' in upload["card"] and "More information needed" not in upload["card"]
    assert card.data.model_name == REPO
    indexed = {result.metric_type: result.metric_value for result in card.data.eval_results}
    for key in ("loss_fine", "loss_coarse", "ratio", "caption_loss_fine", "caption_loss_coarse", "caption_ratio"):
        assert indexed[key] == pytest.approx(metrics[key]), key
    assert {result.task_type for result in card.data.eval_results} == {"video-text-to-text"}
    assert {result.dataset_type for result in card.data.eval_results} == {"synthetic"}


# ------------------------------------------------------------------------------------------ --push_to_hub
def test_push_to_hub_uploads_the_finished_folder_once(tmp_path, monkeypatch):
    hub = RecordingHub(monkeypatch)
    saves = []  # the push must not save the model again: on FSDP that save gathers over ranks, and rank 0 pushes
    original_save = FoveatedTrainer._save
    monkeypatch.setattr(
        FoveatedTrainer,
        "_save",
        lambda self, *args, **kwargs: saves.append(args) or original_save(self, *args, **kwargs),
    )
    output = tmp_path / "run"
    metrics = train.main(TINY_RUN + ["--output_dir", str(output)])
    assert len(hub.uploads) == 1, [upload["files"] for upload in hub.uploads]
    assert len(saves) == 1
    (upload,) = hub.uploads
    assert upload["repo_id"] == REPO
    expected = {"README.md", "metrics.json", "config.json", "model.safetensors", "figures/loss_curves.png"}
    expected |= {"figures/fixations_00.png", "figures/fixations_00.gif", "log_history.json", "train_args.json"}
    assert expected <= set(upload["files"])
    assert json.loads((output / "metrics.json").read_text()) == metrics
    check_filled_card(upload, metrics)
    assert upload["card"] == (output / "README.md").read_text()


def test_checkpoint_pushes_carry_no_card_and_the_last_push_the_filled_one(tmp_path, monkeypatch):
    hub = RecordingHub(monkeypatch)
    flags = ["--save_strategy", "steps", "--save_steps", "1", "--hub_strategy", "checkpoint"]
    metrics = train.main(TINY_RUN + flags + ["--output_dir", str(tmp_path / "run")])
    *during, final = hub.uploads
    # Each save pushes the output folder and the checkpoint (as last-checkpoint): two saves, two pairs.
    assert [upload["path_in_repo"] for upload in during] == [None, "last-checkpoint"] * 2
    assert all("README.md" not in upload["files"] for upload in during)
    assert "model.safetensors" in during[0]["files"]
    assert final["path_in_repo"] is None and not any(name.startswith("checkpoint-") for name in final["files"])
    check_filled_card(final, metrics)


# ------------------------------------------------------------------------------------------ --preset=NAME
def test_preset_with_equals_is_the_same_as_preset_with_a_space():
    spaced, joined = parse(["--preset", "clutter"]), parse(["--preset=clutter"])
    assert joined[0].preset == "clutter" and joined[1].dataset == "clutter"  # the preset's flags, not synthetic's
    assert vars(joined[0]) == vars(spaced[0]) and vars(joined[1]) == vars(spaced[1])
    assert vars(joined[2]) == vars(spaced[2]) and joined[3].to_dict() == spaced[3].to_dict()
    model_args, _, _, training_args = parse(["--preset=clutter", "--max_steps=7"])
    assert training_args.max_steps == 7 and training_args.output_dir == "outputs/clutter"  # the user's flag wins
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        parse(["--preset=nope"])


# ------------------------------------------------------------------------------------------ data conventions
def rows(count: int = 4) -> list[dict]:
    return [
        {"frames": np.random.default_rng(i).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
         "prompt": "what happens ?", "answer": "a red ball rolls", "video_id": f"clip{i}"}
        for i in range(count)
    ]  # fmt: skip


def test_torch_formatted_frames_batch_as_their_uint8_pixels():
    collator = VideoTextCollator(make_processor(num_frames=4))
    formatted = list(datasets.Dataset.from_list(rows(2)).with_format("torch"))
    assert formatted[0]["frames"].dtype == torch.int64  # what `datasets` gives
    as_uint8 = collator(rows(2))
    for batch in (collator(formatted), collator([dict(row, frames=row["frames"].astype(np.int32)) for row in rows(2)])):
        torch.testing.assert_close(batch["pixel_values_videos"], as_uint8["pixel_values_videos"])
        assert torch.equal(batch["input_ids"], as_uint8["input_ids"])


@pytest.mark.parametrize("value", [-1, 256])
def test_integer_frames_outside_0_255_are_named_and_skipped(value):
    collator = VideoTextCollator(make_processor(num_frames=4))
    bad = dict(rows(1)[0], video_id="loud", frames=torch.full((4, 32, 32, 3), value, dtype=torch.int64))
    with pytest.raises(ValueError, match=f"sample loud: integer frames .*0..255.* from {value} to {value}"):
        collator([bad])
    batch = SkippingCollator(collator, report_counts=True)([bad, *rows(1)])
    assert batch["input_ids"].shape[0] == 1 and batch["sample_counts"]["skipped"] == {"collate_value_error": 1}


def plain_trainer(tmp_path, **overrides) -> Trainer:
    """A user's plain `transformers.Trainer` over a torch-formatted `datasets` stream and the collator."""
    processor = make_processor(num_frames=4)
    stream = datasets.IterableDataset.from_generator(rows).with_format("torch")
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to="none", save_strategy="no",
        use_cpu=True, disable_tqdm=True, **overrides,
    )  # fmt: skip
    model = FoveatedVLMForConditionalGeneration(config_for_processor(processor, target_size=8))
    collator = VideoTextCollator(processor, build_target_encoder("pixels", target_size=8))
    return Trainer(model=model, args=args, train_dataset=stream, data_collator=collator)


def test_a_plain_trainer_trains_with_the_collator(tmp_path):
    trainer = plain_trainer(tmp_path, remove_unused_columns=False)
    result = trainer.train()
    assert trainer.state.global_step == 2 and np.isfinite(result.training_loss)


def test_a_plain_trainer_that_drops_the_columns_is_told_what_to_set(tmp_path):
    trainer = plain_trainer(tmp_path)  # remove_unused_columns=True, the Trainer's default
    with pytest.raises(ValueError, match=r"lacks \['frames', 'prompt', 'answer'\].*remove_unused_columns=False"):
        trainer.train()
