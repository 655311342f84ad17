"""The shipped accelerate/DeepSpeed configs parse with the loaders that use them, say what the README says, and the
CPU one really starts two processes."""

import json
import os
import re
import subprocess
import sys

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")

# What the README's multi-process paragraph says each config is.
ACCELERATE_CONFIGS = {
    "accelerate_cpu2.yaml": {"distributed_type": DistributedType.MULTI_CPU, "num_processes": 2, "use_cpu": True},
    "accelerate_ddp.yaml": {"distributed_type": DistributedType.MULTI_GPU, "num_processes": 2, "use_cpu": False},
    "accelerate_fsdp.yaml": {"distributed_type": DistributedType.FSDP, "num_processes": 2, "use_cpu": False},
}


def readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as handle:
        return handle.read()


def test_every_shipped_config_is_known_here_and_named_in_the_readme():
    shipped = sorted(os.listdir(CONFIGS))
    assert shipped == sorted([*ACCELERATE_CONFIGS, "deepspeed_zero2.json", "localhost.hostfile"])
    text = readme()
    for name in shipped:
        assert f"configs/{name}" in text, f"README.md does not name configs/{name}"


@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_accelerate_config_parses_as_the_readme_says(name):
    config = load_config_from_file(os.path.join(CONFIGS, name))  # accelerate launch's own loader
    for key, expected in ACCELERATE_CONFIGS[name].items():
        assert getattr(config, key) == expected, (name, key)
    with open(os.path.join(CONFIGS, name)) as handle:
        head = handle.readline() + handle.readline()
    assert head.startswith("# ") and f"--config_file configs/{name}" in head, "the first lines give the command"


def test_fsdp_config_wraps_only_the_language_model_layers_with_fsdp2():
    config = load_config_from_file(os.path.join(CONFIGS, "accelerate_fsdp.yaml"))
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"


def test_cpu_config_is_fp32_so_its_losses_compare_with_fsdp_on_cpu():
    assert load_config_from_file(os.path.join(CONFIGS, "accelerate_cpu2.yaml")).mixed_precision == "no"


def test_deepspeed_config_is_zero2_and_leaves_the_sizes_to_the_trainer():
    with open(os.path.join(CONFIGS, "deepspeed_zero2.json")) as handle:
        config = json.load(handle)
    assert config["zero_optimization"]["stage"] == 2
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert config[key] == "auto", key  # the Trainer fills them from its flags


def test_hostfile_offers_two_slots_on_this_machine():
    with open(os.path.join(CONFIGS, "localhost.hostfile")) as handle:
        assert handle.read().split() == ["localhost:2"]


def test_cpu_config_starts_two_processes_that_train_as_one_run(tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "configs/accelerate_cpu2.yaml",
        "--mpirun_hostfile",
        "configs/localhost.hostfile",
        "train.py",
        "--max_steps",
        "1",
        "--logging_steps",
        "1",
        "--eval_videos",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--num_frames",
        "2",
        "--frame_size",
        "32",
        "--target_size",
        "8",
        "--vision_layers",
        "1",
        "--text_layers",
        "1",
        "--text_hidden_size",
        "64",
        "--disable_tqdm",
        "True",
        "--output_dir",
        str(output),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    # Every rank prints the start-up summary with the world size the Trainer sees.
    assert re.findall(r"effective batch 2 x (\d+) process\(es\)", result.stdout) == ["2", "2"]
    assert json.loads((output / "metrics.json").read_text())["data"]["succeeded"] == 4  # 2 clips x 2 ranks


def test_a_run_sharded_with_fsdp2_finishes_and_saves_a_checkpoint_that_loads(tmp_path):
    # The shipped FSDP config, on two CPU processes with FSDP2 really sharding (benchmarks/distributed_losses.py lifts
    # accelerate's GPU-only gate in its own ranks). It used to save torch's FSDP code as the checkpoint's and then
    # crash: rank 0 ran the held-out evaluation on a model whose every forward gathers from the rank that had left.
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import distributed_losses

    flags = ["--max_steps", "2", "--logging_steps", "1", "--eval_videos", "2", "--disable_tqdm", "True"]
    report = distributed_losses.launch(
        "fsdp",
        ["--config_file", "configs/accelerate_fsdp.yaml", "--mixed_precision", "no"],
        flags + ["--use_cpu", "True", "--ddp_backend", "gloo"],
        str(tmp_path),
    )
    assert report["returncode"] == 0, report.get("error")
    assert report["wrapped"].startswith("FSDP") and report["sharded_parameters"] == report["parameters"]
    output = tmp_path / "fsdp"
    auto_map = json.loads((output / "config.json").read_text())["auto_map"]
    assert set(auto_map.values()) == {"configuration_foveated.FoveatedVLMConfig",
                                      "modeling_foveated.FoveatedVLMForConditionalGeneration"}  # fmt: skip
    assert not list(output.glob("_fsdp*.py"))
    assert json.loads((output / "metrics.json").read_text())["num_videos"] == 2  # the held-out evaluation ran
