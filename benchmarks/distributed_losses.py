"""DDP, FSDP2 and DeepSpeed ZeRO-2 on two CPU processes: the same run's training losses, step by step, under each.

    pip install mpich deepspeed       # mpirun for configs/accelerate_cpu2.yaml; DeepSpeed for the ZeRO-2 run
    python benchmarks/distributed_losses.py [--steps 10] [--json OUT.json] [--work_dir DIR]

All runs are `accelerate launch ... train.py` with the default tiny model, the same seed and the same flags
(`--max_steps N --logging_steps 1`); each rank reads its own shard of the same synthetic stream.

- DDP: `accelerate launch --config_file configs/accelerate_cpu2.yaml --mpirun_hostfile configs/localhost.hostfile`
  (MULTI_CPU, gloo, fp32).
- FSDP2: `accelerate launch --config_file configs/accelerate_fsdp.yaml --mixed_precision no` with train.py's
  `--use_cpu True --ddp_backend gloo`. What differs from the shipped GPU run: fp32 instead of bf16 (so the losses
  are comparable with DDP's), and one gate of accelerate lifted in the ranks of this measurement only —
  accelerate 1.15 turns FSDP on only over MULTI_GPU-like process groups, so on CPU its `AcceleratorState` keeps
  MULTI_CPU and runs the FSDP config as plain DDP, silently. `_lift_fsdp_cpu_gate` sets the state to FSDP with the
  config's own plugin, after which accelerate's own `fully_shard` path (FSDP2) shards the model; nothing here
  distributes anything itself.
- ZeRO-2: the DDP launch with train.py's `--deepspeed configs/deepspeed_zero2.json` (DeepSpeed's CPU accelerator).

Each rank entry writes, from rank 0, the Trainer's `log_history` right after training, the distributed type the
Trainer ran under, the wrapper class of the model and how many parameters are sharded (DTensors), so a run that
fails later (saving, the final evaluation) still reports its losses. Not a test: it reports, and exits non-zero
when a run gives no losses.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANK_ENTRY = "--rank_entry"  # argv[1] of this script when accelerate launches it as a rank


def _lift_fsdp_cpu_gate() -> None:
    """Let accelerate's own FSDP2 path run over a CPU (gloo) process group (see the module docstring)."""
    import accelerate.state
    from accelerate.utils import DistributedType

    original = accelerate.state.AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        # Every later `AcceleratorState()` copies the process group's MULTI_CPU back in: set it again each time.
        plugin = fsdp_plugin or self.__dict__.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin

    accelerate.state.AcceleratorState.__init__ = init


def _record_training(report_path: str) -> None:
    """After `Trainer.train`, rank 0 writes the log history, the distributed type and the sharded parameters."""
    from torch.distributed.tensor import DTensor
    from transformers import Trainer

    train = Trainer.train

    def recorded(self, *args, **kwargs):
        result = train(self, *args, **kwargs)
        if self.is_world_process_zero():
            parameters = list(self.model_wrapped.parameters())
            report = {
                "distributed_type": str(self.accelerator.distributed_type),
                "world_size": self.args.world_size,
                "wrapped": type(self.model_wrapped).__name__,
                "sharded_parameters": sum(isinstance(p, DTensor) for p in parameters),
                "parameters": len(parameters),
                "log_history": self.state.log_history,
            }
            with open(report_path, "w") as handle:
                json.dump(report, handle, indent=2)
        return result

    Trainer.train = recorded


def rank_main(report_path: str, train_argv: list[str]) -> None:
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        _lift_fsdp_cpu_gate()
    _record_training(report_path)
    sys.path.insert(0, ROOT)
    import train

    train.main(train_argv)


def launch(name: str, launcher: list[str], train_flags: list[str], work_dir: str) -> dict:
    """One `accelerate launch` of this script's rank entry; the rank-0 report, the exit status and the last error."""
    output = os.path.join(work_dir, name)
    report_path = os.path.join(work_dir, f"{name}_report.json")
    if os.path.exists(report_path):
        os.remove(report_path)  # written by this script's previous run
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *launcher,
        os.path.abspath(__file__),
        RANK_ENTRY,
        report_path,
        *train_flags,
        "--output_dir",
        output,
    ]
    print(f"{name}: {' '.join(command)}", flush=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    with open(os.path.join(work_dir, f"{name}.log"), "w") as handle:
        handle.write(result.stdout + result.stderr)
    report = {"returncode": result.returncode}
    if os.path.exists(report_path):
        with open(report_path) as handle:
            report.update(json.load(handle))
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if "Error" in line and "Traceback" not in line]
        report["error"] = errors[-1].strip() if errors else result.stderr[-500:]
    return report


def losses(report: dict) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in report.get("log_history", []) if "loss" in entry}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "outputs", "distributed_losses"))
    parser.add_argument("--json", help="write the table and every run's report here")
    args = parser.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    # The default tiny model and data; only the final evaluation is cut (it does not touch the training losses).
    train_flags = ["--max_steps", str(args.steps), "--logging_steps", "1", "--eval_videos", "2", "--disable_tqdm"]
    train_flags += ["True", "--seed", "42"]
    mpirun = ["--config_file", "configs/accelerate_cpu2.yaml", "--mpirun_hostfile", "configs/localhost.hostfile"]
    on_cpu = ["--use_cpu", "True", "--ddp_backend", "gloo"]
    runs = {  # name: (launcher flags, train.py flags beyond the common ones, the model wrapper it is meant to run)
        "ddp": (mpirun, [], "DistributedDataParallel"),
        "fsdp": (["--config_file", "configs/accelerate_fsdp.yaml", "--mixed_precision", "no"], on_cpu, "FSDP"),
        "zero2": (mpirun, ["--deepspeed", "configs/deepspeed_zero2.json"], "DeepSpeedEngine"),
    }
    reports = {
        name: launch(name, launcher, train_flags + extra, args.work_dir) for name, (launcher, extra, _) in runs.items()
    }
    curves = {name: losses(report) for name, report in reports.items()}
    steps = sorted(set.intersection(*(set(curve) for curve in curves.values())))
    table = [{"step": step, **{name: curves[name][step] for name in runs}} for step in steps]
    for name, report in reports.items():
        shown = {key: report.get(key) for key in ("returncode", "distributed_type", "world_size", "wrapped", "error")}
        shown["sharded"] = f"{report.get('sharded_parameters')} of {report.get('parameters')} parameters"
        print(f"{name}: {shown}")
        meant = runs[name][2]
        if not str(report.get("wrapped")).startswith(meant):  # a launcher can drop the engine without a word
            print(f"{name}: NOT the run it names: the model was wrapped in {report.get('wrapped')}, not {meant}")
    print("| step | DDP loss | FSDP2 loss | abs diff | ZeRO-2 loss | abs diff |\n| --- | --- | --- | --- | --- | --- |")
    for row in table:
        fsdp, zero2 = abs(row["fsdp"] - row["ddp"]), abs(row["zero2"] - row["ddp"])
        print(
            f"| {row['step']} | {row['ddp']:.6f} | {row['fsdp']:.6f} | {fsdp:.2e} | {row['zero2']:.6f} | {zero2:.2e} |"
        )
    for name in ("fsdp", "zero2"):
        if table:
            worst = max(abs(row[name] - row["ddp"]) / abs(row["ddp"]) for row in table)
            print(f"{name}: largest |diff| / DDP loss {worst:.2e} over {len(table)} steps")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"table": table, **reports}, handle, indent=2)
    return 0 if len(table) == args.steps else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == RANK_ENTRY:
        rank_main(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
