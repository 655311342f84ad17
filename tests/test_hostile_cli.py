"""Hostile input to the command line and to checkpoints: the installed script's exit status, bad arguments, a
checkpoint with a weight removed, a resume without optimizer state, and a disk that fills while saving."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from test_cli import save_checkpoint
from test_processing import make_tokenizer
from test_train import QUICK
from test_video_processing import write_video

import train
from foveated_vlm.cli import main
from foveated_vlm.training.checkpoints import CheckpointError, CheckpointWriteError, resume_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the writers really raise on a full disk (seen on a 24 MiB tmpfs): torch's zip writer, then safetensors.
TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 987648 vs 987540"
SAFETENSORS_FULL_DISK = "Error while serializing: I/O error: No space left on device (os error 28)"
REMOVED = "model.foveated_encoder.query_in_proj.weight"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", num_frames=30)


def remove_weight(directory, name: str = REMOVED):
    """Rewrite `directory`'s safetensors file without the tensor `name`."""
    path = os.path.join(directory, "model.safetensors")
    weights = load_file(path)
    del weights[name]
    save_file(weights, path, metadata={"format": "pt"})


def installed_script() -> str:
    """The console script pip wrote next to this Python (`.venv/bin/foveated-vlm`)."""
    script = os.path.join(os.path.dirname(sys.executable), "foveated-vlm")
    found = script if os.path.exists(script) else shutil.which("foveated-vlm")
    assert found, "the foveated-vlm console script is not installed (pip install -e .)"
    return found


# ------------------------------------------------------------------------------------------ exit status
def test_installed_script_exits_0_on_success_and_1_with_one_line_on_failure(checkpoint, video, tmp_path):
    model, missing = ["--model", str(checkpoint)], str(tmp_path / "missing.mp4")
    commands = {
        "caption": [installed_script(), "caption", *model, str(video), "--max_new_tokens", "2"],
        "missing video": [installed_script(), "caption", *model, missing],
        "python -m": [sys.executable, "-m", "foveated_vlm.cli", "caption", *model, missing],
    }
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ["PATH"]}
    # All at once: each process spends its first seconds importing torch.
    running = {
        name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for name, command in commands.items()
    }
    done = {name: (process.wait(timeout=120), *process.communicate()) for name, process in running.items()}
    code, out, err = done["caption"]
    assert code == 0 and out.strip(), err[-2000:]  # the caption is printed, and that is a success
    for name in ("missing video", "python -m"):
        code, out, err = done[name]
        assert code == 1 and "Traceback" not in err, (name, err[-2000:])
        assert err.strip().splitlines()[-1] == f"foveated-vlm: error: cannot read video '{missing}': no such file"


@pytest.mark.parametrize("command", ["caption", "stream", "evaluate"])
def test_every_command_gives_the_console_script_status_0(command, checkpoint, video, tmp_path, monkeypatch):
    """What the installed script does: `sys.exit(main())` with the arguments in `sys.argv`."""
    arguments = {
        "caption": [str(video), "--max_new_tokens", "2"],
        "stream": [str(video), "--out", str(tmp_path / "a.gif"), "--max_frames", "2", "--max_new_tokens", "2"],
        "evaluate": [
            "--dataset",
            "synthetic",
            "--num_videos",
            "2",
            "--batch_size",
            "2",
            "--json",
            str(tmp_path / "m.json"),
        ],
    }[command]
    monkeypatch.setattr(sys, "argv", ["foveated-vlm", command, "--model", str(checkpoint), *arguments])
    assert main() == 0
    if command == "stream":
        assert Image.open(tmp_path / "a.gif").n_frames == 2
    if command == "evaluate":
        assert {"loss_fine", "loss_coarse", "ratio"} <= set(json.loads((tmp_path / "m.json").read_text()))


# ------------------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "command, message",
    [
        (["caption", "--model", "/nope", "{video}"], "argument --model: '/nope': no such directory"),
        (["caption", "--model", "{empty}", "{video}"], "holds no config.json: not a saved checkpoint"),
        (["caption", "--model", "{video}", "{video}"], "is a file; expected a checkpoint directory"),
        (["stream", "--model", "{model}", "{video}", "--out", "{tmp}/a.gif", "--sample_fps", "0"],
         "argument --sample_fps: '0': expected a number > 0"),
        (["stream", "--model", "{model}", "{video}", "--out", "{tmp}/a.gif", "--sample_fps", "-1"],
         "argument --sample_fps: '-1': expected a number > 0"),
        (["stream", "--model", "{model}", "{video}", "--out", "{tmp}/a.gif", "--sample_fps", "nan"],
         "argument --sample_fps: 'nan': expected a number > 0"),
        (["stream", "--model", "{model}", "{video}", "--out", "{tmp}/a.gif", "--max_frames", "0"],
         "argument --max_frames: '0': expected an integer > 0"),
        (["stream", "--model", "{model}", "{video}", "--out", "{tmp}/stream"],
         "argument --out: '{tmp}/stream' has no extension; expected one of .gif, .png, .apng, .webp"),
        (["stream", "--model", "{model}", "{video}", "--out", "{tmp}/stream.mp4"], "ends in '.mp4'; expected one of"),
        (["stream", "--model", "{model}", "{video}", "--out", "{tmp}/no/such/folder/a.gif"],
         "argument --out: '{tmp}/no/such/folder/a.gif': its folder '{tmp}/no/such/folder' does not exist"),
        (["evaluate", "--model", "{model}", "--dataset", "synthetic", "--num_videos", "0"],
         "argument --num_videos: '0': expected an integer > 0"),
        (["evaluate", "--model", "{model}", "--dataset", "synthetic", "--batch_size", "2.5"],
         "argument --batch_size: '2.5': expected an integer > 0"),
    ],
)  # fmt: skip
def test_bad_arguments_are_usage_errors_before_any_work(command, message, checkpoint, video, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    names = {"model": checkpoint, "video": video, "empty": tmp_path / "empty", "tmp": tmp_path}
    with pytest.raises(SystemExit) as exit_info:
        main([part.format(**names) for part in command])
    assert exit_info.value.code == 2
    assert message.format(**names) in capsys.readouterr().err
    assert not list(tmp_path.glob("*.gif")), "nothing was run"


def test_a_hub_id_stays_accepted_and_its_failure_names_the_argument(video):
    with pytest.raises(OSError, match="--model 'nobody/no-such-model': "):  # offline in tests
        main(["caption", "--model", "nobody/no-such-model", str(video)])


# ------------------------------------------------------------------------------------------ weights
def test_a_checkpoint_missing_a_weight_is_an_error_naming_it(checkpoint, video, tmp_path):
    broken = shutil.copytree(checkpoint, tmp_path / "broken")
    remove_weight(broken)
    with pytest.raises(CheckpointError, match=f"missing weights: 1 \\({REMOVED}\\).*random values"):
        main(["caption", "--model", str(broken), str(video), "--max_new_tokens", "2"])


# ------------------------------------------------------------------------------------------ resume
@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> list[str]:
    """train.py's QUICK flags with a word-level tokenizer saved here (no GGUF to parse), no held-out evaluation."""
    tokenizer = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer().save_pretrained(tokenizer)
    return QUICK + ["--tokenizer", str(tokenizer), "--eval_videos", "0", "--disable_tqdm", "True"]


@pytest.fixture(scope="module")
def run_with_checkpoints(tmp_path_factory, quick):
    """A two-step run that saved checkpoint-1 and checkpoint-2 (each with optimizer and scheduler state)."""
    output = tmp_path_factory.mktemp("run")
    train.main(
        quick + ["--output_dir", str(output), "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1"]
    )
    return output


def test_resume_without_optimizer_state_warns_naming_what_restarts(run_with_checkpoints, quick, tmp_path, caplog):
    run = shutil.copytree(run_with_checkpoints, tmp_path / "run")
    assert resume_problems(str(run / "checkpoint-1")) == ([], None)  # a complete checkpoint resumes silently
    for name in ("optimizer.pt", "scheduler.pt"):
        (run / "checkpoint-2" / name).unlink()  # as `--save_only_model True` writes it
    with caplog.at_level("WARNING", logger="foveated_vlm.training.trainer"):
        metrics = train.main(
            quick + ["--output_dir", str(tmp_path / "resumed"), "--max_steps", "3",
                     "--resume_from_checkpoint", str(run / "checkpoint-2")]
        )  # fmt: skip
    assert metrics["steps"] == 3
    warnings = [record.getMessage() for record in caplog.records if "resuming from" in record.getMessage()]
    assert warnings == [
        f"resuming from {run}/checkpoint-2, which lacks optimizer.pt and scheduler.pt: the optimizer (its moment "
        "estimates) and the learning-rate schedule start again from step 0, warm-up included, while training "
        f"continues at step 2. For an exact resume use a checkpoint that holds them ({run}/checkpoint-1 does)."
    ]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda checkpoint: remove_weight(checkpoint), f"missing weights: 1 \\({REMOVED}\\)"),
        (lambda checkpoint: (checkpoint / "trainer_state.json").unlink(), "it has no trainer_state.json"),
        (lambda checkpoint: shutil.rmtree(checkpoint), "no such directory"),
    ],
    ids=["missing weight", "no trainer state", "no directory"],
)
def test_resume_from_a_damaged_checkpoint_is_refused_naming_the_damage(
    damage, message, run_with_checkpoints, quick, tmp_path
):
    checkpoint = shutil.copytree(run_with_checkpoints / "checkpoint-2", tmp_path / "checkpoint-2")
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=f"{checkpoint}.*{message}"):
        train.main(
            quick + ["--output_dir", str(tmp_path / "out"), "--max_steps", "3",
                     "--resume_from_checkpoint", str(checkpoint)]
        )  # fmt: skip
    assert not (tmp_path / "out" / "config.json").exists(), "nothing trained or saved"


# ------------------------------------------------------------------------------------------ a full disk
def test_a_checkpoint_write_that_fails_names_the_directory_and_its_free_space(quick, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise RuntimeError(TORCH_FULL_DISK)

    monkeypatch.setattr(torch, "save", full_disk)  # the Trainer's writer of optimizer, scheduler, arguments
    output = tmp_path / "run"
    with pytest.raises(CheckpointWriteError) as error:
        train.main(
            quick + ["--output_dir", str(output), "--max_steps", "1", "--save_strategy", "steps", "--save_steps", "1"]
        )
    message = str(error.value)
    assert message.startswith(f"writing the model to {output}/checkpoint-1 failed, ")
    assert " free of " in message and message.endswith(f"RuntimeError: {TORCH_FULL_DISK}")
    assert isinstance(error.value.__cause__, RuntimeError)


def test_a_model_save_that_fails_names_the_directory_and_its_free_space(tmp_path, monkeypatch):
    from tiny import tiny_config
    from transformers import TrainingArguments

    from foveated_vlm import FoveatedVLMForConditionalGeneration
    from foveated_vlm.training.trainer import FoveatedTrainer

    def full_disk(*args, **kwargs):
        raise SafetensorError(SAFETENSORS_FULL_DISK)

    monkeypatch.setattr("transformers.modeling_utils.safe_save_file", full_disk)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    trainer = FoveatedTrainer(model=FoveatedVLMForConditionalGeneration(tiny_config()), args=args)
    with pytest.raises(
        CheckpointWriteError, match=f"writing the model to {tmp_path}/out failed, .* free of .*"
    ) as error:
        trainer.save_model()
    assert str(error.value).endswith(f"SafetensorError: {SAFETENSORS_FULL_DISK}")
