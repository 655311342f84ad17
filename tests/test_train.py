"""train.py end to end on the embedded default (few steps), its checkpoint, and its argument handling."""

import json
import os

import pytest
import torch
from test_folder import folder  # noqa: F401 - a fixture
from tiny import PASS_METRICS, check_pass_metrics, needs_smollm2
from transformers import AutoModel, AutoProcessor

import train
from foveated_vlm.training.arguments import parse
from foveated_vlm.training.data_collator import chat_prompt

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
    check_pass_metrics(saved)
    logged = [entry for entry in json.loads((output / "log_history.json").read_text()) if "loss" in entry]
    assert len(logged) == 3
    card = (output / "README.md").read_text()
    assert card.startswith("---") and f"{saved['loss_fine']:.4f}"[:5] in card
    assert sorted(p.name for p in (output / "figures").iterdir()) == sorted(
        ["loss_curves.png"] + [f"fixations_{i:02d}.{ext}" for i in range(4) for ext in ("png", "gif")]
    )
    assert list((output / "runs").rglob("events.out.tfevents.*")), "TensorBoard logs by default"
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
    batch = processor(text=[chat_prompt(processor, "Describe the video.")], videos=[video])
    ids = model.generate(**batch, max_new_tokens=3, do_sample=False)
    length = batch["input_ids"].shape[1]
    assert torch.equal(ids[:, :length], batch["input_ids"]) and ids.shape[1] > length


@needs_smollm2
def test_the_reloaded_checkpoint_reproduces_its_metrics(trained):
    from foveated_vlm import build_target_encoder
    from foveated_vlm.data.pipeline import build_dataset
    from foveated_vlm.evaluation.metrics import evaluate_model

    output, metrics = trained
    model, processor = AutoModel.from_pretrained(output), AutoProcessor.from_pretrained(output)
    held_out = build_dataset("synthetic", seed=1, frame_size=32, num_frames=4)  # training seed 0 + offset 1
    again = evaluate_model(
        model, processor, held_out, num_videos=4, batch_size=4,
        target_encoder=build_target_encoder("pixels", target_size=8), progress=False,
    )  # fmt: skip
    for key in (*PASS_METRICS, "psnr_fine", "caption_bleu"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-5), key


def test_preset_flags_are_defaults_the_user_overrides():
    model_args, data_args, _, training_args = parse(["--max_steps", "7", "--output_dir", "somewhere"])
    assert training_args.max_steps == 7 and training_args.output_dir == "somewhere"
    assert training_args.learning_rate == 1e-3 and not training_args.remove_unused_columns  # from the preset
    assert model_args.preset == "synthetic" and data_args.dataset == "synthetic"
    model_args, _, _, training_args = parse(["--preset", "smollm2-offline"])
    assert model_args.text_model == "smollm2-gguf" and training_args.output_dir == "outputs/smollm2-offline"


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        parse(["--preset", "nope"])


# ------------------------------------------------------------------------------------------ training options
def run(tmp_path, name, *flags):
    output = tmp_path / name
    metrics = train.main(QUICK + ["--output_dir", str(output), "--disable_tqdm", "True", *flags])
    return output, metrics


def initial_model(*flags):
    """The model `train.main` starts from with these flags (same seed, same construction)."""
    from transformers import set_seed

    from foveated_vlm.training.model_building import build_model_and_processor

    model_args, data_args, _, training_args = parse(QUICK + list(flags))
    set_seed(training_args.seed)
    return build_model_and_processor(model_args, data_args)[0]


def changed(before, after, prefix):
    names = [name for name in before if name.startswith(prefix)]
    assert names, prefix
    return {name: not torch.equal(before[name], after[name]) for name in names}


def saved_weights(output):
    from foveated_vlm import FoveatedVLMForConditionalGeneration

    return FoveatedVLMForConditionalGeneration.from_pretrained(output).state_dict()


@needs_smollm2
def test_position_init_redraws_learned_positions_and_refuses_rope():
    model = initial_model("--vision_type", "dinov2", "--vision_position_init_std", "3")
    positions = model.foveated_encoder.vision_model.embeddings.position_embeddings
    assert 2.7 < positions.std().item() < 3.3
    default = initial_model("--vision_type", "dinov2").foveated_encoder.vision_model.embeddings.position_embeddings
    assert default.std().item() < 0.1
    none = initial_model("--vision_type", "dinov2", "--vision_position_init_std", "0")
    positions = none.foveated_encoder.vision_model.embeddings.position_embeddings
    assert not positions.any() and not positions.requires_grad  # no positions, and none learned
    with pytest.raises(ValueError, match="learned position embeddings"):
        initial_model("--vision_type", "dinov3_vit", "--vision_position_init_std", "3")
    with pytest.raises(ValueError, match="--vision_position_init_std -1.0 is a standard deviation: it must be >= 0"):
        initial_model("--vision_type", "dinov2", "--vision_position_init_std", "-1")
    with pytest.raises(ValueError, match="--vision_model .facebook/dinov2-small. is pretrained"):
        initial_model("--vision_model", "facebook/dinov2-small", "--vision_position_init_std", "3")


@needs_smollm2
def test_freezing_changes_exactly_the_other_parts(tmp_path):
    before = initial_model().state_dict()
    after = saved_weights(run(tmp_path, "frozen", "--freeze_vision", "True")[0])
    assert not any(changed(before, after, "model.foveated_encoder.vision_model.").values())
    assert any(changed(before, after, "model.language_model.").values())
    assert any(changed(before, after, "model.query_head.").values())


@needs_smollm2
def test_lora_trains_adapters_and_exports_merged_plain_weights(tmp_path):
    before = initial_model().state_dict()
    output, _ = run(tmp_path, "lora", "--lora_rank", "4", "--lora_alpha", "8")
    from safetensors import safe_open

    with safe_open(str(output / "model.safetensors"), "pt") as handle:
        assert not any("lora" in name for name in handle.keys()), "the export holds plain weights"
    after = saved_weights(output)  # loads without peft, every weight in place
    assert set(after) == set(before)
    attention = changed(before, after, "model.language_model.layers.0.self_attn.")
    assert all(attention.values()), "adapters were merged into every targeted projection"
    assert not any(changed(before, after, "model.language_model.layers.0.mlp.").values()), "untargeted stays"
    assert not any(changed(before, after, "model.language_model.embed_tokens.").values())
    assert any(changed(before, after, "model.foveated_encoder.").values()), "the rest still trains"


@needs_smollm2
def test_backbones_can_have_their_own_learning_rate(tmp_path):
    before = initial_model().state_dict()
    after = saved_weights(run(tmp_path, "backbone_lr", "--backbone_learning_rate", "0")[0])
    assert not any(changed(before, after, "model.foveated_encoder.vision_model.").values())
    assert not any(changed(before, after, "model.language_model.").values())
    assert all(changed(before, after, "model.static_queries").values())
    assert any(changed(before, after, "predictor.").values())


@needs_smollm2
def test_resume_continues_the_same_loss_trajectory(tmp_path):
    constant = ["--lr_scheduler_type", "constant", "--warmup_steps", "0"]
    whole = json.loads((run(tmp_path, "whole", *constant, "--max_steps", "4")[0] / "log_history.json").read_text())
    first = run(tmp_path, "resumed", *constant, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2")[0]
    assert (first / "checkpoint-2" / "modeling_foveated.py").exists(), "Trainer checkpoints carry the model code"
    resumed = run(
        tmp_path, "resumed", *constant, "--max_steps", "4", "--resume_from_checkpoint", str(first / "checkpoint-2")
    )[0]
    uninterrupted = losses_of(whole)
    continued = losses_of(json.loads((resumed / "log_history.json").read_text()))
    assert set(continued) == {1, 2, 3, 4}  # the checkpoint brings the history of steps 1-2 along
    for step in (1, 2, 3, 4):
        assert continued[step] == pytest.approx(uninterrupted[step], rel=1e-5), step


def losses_of(history):
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@needs_smollm2
@pytest.mark.slow
def test_two_processes_with_gloo(tmp_path):
    import subprocess
    import sys

    output = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "train.py",
        *QUICK,
        "--output_dir",
        str(output),
        "--use_cpu",
        "True",
        "--ddp_backend",
        "gloo",
        "--disable_tqdm",
        "True",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "effective batch 2 x 2 process(es)" in result.stdout
    assert json.loads((output / "metrics.json").read_text())["steps"] == 3
    assert result.stdout.count('"num_videos"') == 1, "only rank 0 evaluates and reports"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--reconstruction_loss_weight", "0", "--train_captions", "False"], "nothing to train"),
        (["--lora_rank", "4", "--freeze_language_model", "True"], "conflicts with --freeze_language_model"),
        (["--caption_mix", "0.5"], "mixes described clips into --dataset clutter"),
        (["--dataset", "clutter", "--caption_mix", "1"], "must be in"),
        (["--curriculum_clips", "100"], "grows clutter scenes"),
        (["--dataset", "clutter", "--curriculum_clips", "-1"], "must be >= 0"),
        (["--fixation_loss_weight", "1"], "--fixation_loss_weight needs clips whose ground truth"),
        (["--dataset", "clutter", "--curriculum_clips", "6"], "leaves no step for the full scene: the run reads 6"),
        (
            ["--prompt_query", "True", "--query_norm", "batch", "--per_device_train_batch_size", "1"],
            "--per_device_train_batch_size 1 must be >= 2",
        ),
        (["--dataset", "clutter", "--fixation_loss_steps", "-2"], "--fixation_loss_steps -2 must be >= 0"),
        (["--dataset", "clutter", "--fixation_loss_steps", "5"], "ends a fixation loss that is off"),
        (["--glimpse_draw_loss_weight", "1"], "needs --glimpse_samples 2 or more"),
        (
            ["--dataset", "clutter", "--fixation_loss_weight", "1", "--caption_mix", "0.5"],
            "described clips, which name none",
        ),
        (["--dataset", "synthetic", "--task", "clutter", "--target", "vqgan"], "unknown target kind"),
    ],
)
def test_conflicting_flags_fail_before_any_work(tmp_path, flags, message):
    with pytest.raises((SystemExit, ValueError), match=message):
        train.main(QUICK + ["--output_dir", str(tmp_path / "x"), *flags])


@needs_smollm2
def test_fixation_loss_trains_for_its_steps_then_releases_the_queries(tmp_path):
    flags = ["--dataset", "clutter", "--question", "quadrant", "--fixation_loss_weight", "1"]
    output, _ = run(
        tmp_path, "fixation", *flags, "--fixation_loss_steps", "2", "--eval_strategy", "steps", "--eval_steps", "3"
    )
    history = json.loads((output / "log_history.json").read_text())
    logged = [entry for entry in history if "loss" in entry]
    assert [("fixation_loss" in entry) for entry in logged] == [True, True, False]
    evaluated = [entry for entry in history if "eval_loss" in entry]
    assert evaluated and not any("eval_fixation_loss" in entry for entry in evaluated)  # held out: no ground truth
    assert logged[0]["fixation_loss"] > 0
    assert "fixation_loss_weight" not in json.loads((output / "config.json").read_text())  # a training option
    assert json.loads((output / "train_args.json").read_text())["foveation"]["fixation_loss_weight"] == 1


def test_an_output_dir_holding_another_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(SystemExit, match="holds another model"):
        train.main(QUICK + ["--output_dir", str(tmp_path)])


def test_push_to_hub_keeps_the_written_model_card(tmp_path):
    from tiny import tiny_config
    from transformers import TrainingArguments

    from foveated_vlm import FoveatedVLMForConditionalGeneration
    from foveated_vlm.training.trainer import FoveatedTrainer

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    trainer = FoveatedTrainer(model=FoveatedVLMForConditionalGeneration(tiny_config()), args=args)
    (tmp_path / "README.md").write_text("our card")
    trainer.create_model_card()  # what push_to_hub calls right before uploading
    assert (tmp_path / "README.md").read_text() == "our card"


@needs_smollm2
def test_a_local_folder_of_videos_trains_end_to_end(tmp_path, folder):  # noqa: F811
    """Real decoded videos (with a missing and a corrupt one skipped) through the whole run."""
    output, metrics = run(
        tmp_path,
        "folder",
        "--dataset",
        "folder",
        "--video_root",
        str(folder),
        "--data_files",
        str(folder / "annotations.csv"),
        "--eval_data_files",
        str(folder / "captions.jsonl"),
        "--reconstruction_loss_weight",
        "0.5",
        "--max_steps",
        "2",
        "--eval_videos",
        "3",
    )
    assert metrics["num_videos"] == 3 and metrics["steps"] == 2
    assert {"caption_loss_fine", "caption_loss_coarse", "loss_fine", "loss_coarse"} <= set(metrics)


@pytest.mark.parametrize("preset", ["webvid-reconstruction", "llava-video-captioning", "joint"])
def test_gpu_presets_carry_the_seeds_settings(preset):
    # bf16 needs a GPU: parsing with it on a CPU machine is transformers' clear error, so it is turned off here.
    model_args, data_args, _, training_args = parse(["--preset", preset, "--bf16", "False"])
    assert model_args.vision_model == "facebook/dinov3-vits16-pretrain-lvd1689m"
    assert model_args.text_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (data_args.frame_size, data_args.target, data_args.target_size) == (256, "sd-vae", 32)
    assert (training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps) == (2, 4)
    assert training_args.learning_rate == 3e-5 and model_args.coarse_loss_weight == 1.0
    with pytest.raises(ValueError, match="bf16"):
        parse(["--preset", preset])  # as shipped: bf16 on, which this CPU machine cannot do


@needs_smollm2
def test_training_on_precomputed_targets_matches_on_the_fly_targets(tmp_path):
    import subprocess
    import sys

    stored = tmp_path / "targets"
    subprocess.run(
        [sys.executable, "-m", "foveated_vlm.data.precompute", "--dataset", "synthetic", "--seed", "0",
         "--out", str(stored), "--target", "pixels", "--target_size", "8", "--frame_size", "32",
         "--num_frames", "4", "--max_videos", "8", "--dtype", "float32"],
        check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
    )  # fmt: skip
    on_the_fly = run(tmp_path, "fly")[0]
    from_disk = run(tmp_path, "disk", "--precomputed_targets", str(stored))[0]
    history = lambda out: losses_of(json.loads((out / "log_history.json").read_text()))  # noqa: E731
    assert history(from_disk) == pytest.approx(history(on_the_fly), rel=1e-6)
    # The stored targets are really read: a run whose frames differ from theirs is refused.
    with pytest.raises(ValueError):
        run(tmp_path, "mismatch", "--precomputed_targets", str(stored), "--frame_size", "64")


@needs_smollm2
def test_a_start_that_has_not_chosen_by_the_restart_step_is_trained_again_from_other_weights(tmp_path):
    flags = ["--max_steps", "6", "--restart_step", "3", "--restart_window", "3", "--restarts", "2"]
    output, metrics = run(tmp_path, "restarted", *flags, "--restart_margin", "10")  # no start can beat it
    starts = metrics["restarts"]
    assert [start["init_seed"] for start in starts] == [0, 10_000, 20_000]
    assert [start["rejected"] for start in starts] == [True, True, False]  # the last start runs on
    assert all(start["step"] == 3 and start["gap"] < 10 for start in starts)
    assert metrics["steps"] == 6
    logged = [entry for entry in json.loads((output / "log_history.json").read_text()) if "loss" in entry]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4, 5, 6]  # the saved run is the last start alone
    assert json.loads((output / "metrics.json").read_text())["restarts"] == starts

    _, metrics = run(tmp_path, "kept", *flags, "--restart_margin", "-10")  # the first start beats it
    assert [(start["init_seed"], start["rejected"]) for start in metrics["restarts"]] == [(0, False)]


def test_the_restart_check_averages_the_window_and_stops_only_below_the_margin():
    from types import SimpleNamespace

    from transformers import TrainerControl

    from foveated_vlm.training.restart_check import RestartCheck

    def checked(margin, final=False):
        check = RestartCheck(step=4, window=2, margin=margin, init_seed=7, final=final)
        control = TrainerControl()
        for step, fine, coarse in [(1, 0.1, 0.9), (2, 0.5, 0.5), (3, 0.40, 0.45), (4, 0.40, 0.43), (5, 0.0, 1.0)]:
            logs = {"caption_loss_fine": fine, "caption_loss_coarse": coarse}
            check.on_log(None, SimpleNamespace(global_step=step), control, logs=logs)
        return check, control

    check, control = checked(margin=0.05)
    assert check.gap == pytest.approx(0.04)  # steps 3 and 4 only: the window, decided at step 4
    assert check.rejected and control.should_training_stop
    assert check.report() == {"init_seed": 7, "step": 4, "gap": check.gap, "rejected": True}
    check, control = checked(margin=0.03)
    assert not check.rejected and not control.should_training_stop
    check, control = checked(margin=0.05, final=True)  # the last start is measured, never stopped
    assert check.gap == pytest.approx(0.04) and not check.rejected and not control.should_training_stop


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--restart_step", "3"], "must come before the end of the run"),
        (["--restart_step", "2", "--train_captions", "False"], "compares the passes' caption losses"),
        (["--restart_step", "2", "--restart_window", "0"], "--restart_window 0 must be"),
        (["--restart_step", "-1"], "--restart_step -1 must be"),
    ],
)
def test_bad_restart_settings_fail_before_any_work(tmp_path, flags, message):
    with pytest.raises((SystemExit, ValueError), match=message):
        train.main(QUICK + ["--output_dir", str(tmp_path / "x"), *flags])
