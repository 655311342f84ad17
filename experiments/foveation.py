"""The foveation experiment end to end: train the `clutter` preset over several seeds, its ablations and the
`global-control` preset, evaluate every run on held-out clips, and write the results table.

    python experiments/foveation.py                       # 3 seeds + control + every ablation (about 2.5 h, 2 cores)
    python experiments/foveation.py --ablations none      # 3 seeds + control only
    python experiments/foveation.py --ablation_max_steps 400   # ablations shorter than the seeds' runs
    python experiments/foveation.py --max_steps 300 --seeds 0 --ablations temperature-1 random-queries   # a quick look
    python experiments/foveation.py --preset clutter-emergent     # no fixation label: 3 seeds, control, ablations

`--preset clutter-emergent` trains that preset's seeds and its own ablations (`EMERGENT_ABLATIONS`), each on
`--ablation_seeds` (default 0 and 1; runs named `<ablation>-seed<N>`), into outputs/foveation_experiment-emergent.

Runs go `--jobs` at a time (default 2, the machine's two cores), one thread each. A run shortened with `--max_steps`
keeps the preset's share of curriculum clips (9000 of the 16 000 clips of 2000 steps at batch 8: 1125 steps), so it
still reaches the full scene, and a fixation loss released (or a restart check made) at a step is so at the same
share of the run.
Each run is `python train.py --preset ...` in its own process, evaluated afterwards with `foveated-vlm evaluate` on
clips from `--eval_seed`, a stream no training run reads (training reads the stream of its `--seed`, and train.py's
own held-out stream is seed + 1). Results land in
`--out`: one directory per run, `results.json` (every metric of every run) and `results.md` (the table
docs/foveation_experiment.md quotes). A run whose `evaluation.json` exists is not trained again: after changing a
preset, pass `--overwrite` (or a new `--out`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from foveated_vlm.training.presets import PRESETS  # noqa: E402

# Each ablation changes one thing of the preset: `clutter` (supervised fixations; seed 0) ...
ABLATIONS = {
    "temperature-1": ["--query_temperature", "1.0"],
    "top-k-4": ["--query_top_k", "4"],
    "K-2": ["--tokens_per_frame", "2"],
    "K-4": ["--tokens_per_frame", "4"],
    "frozen-vit": ["--freeze_vision", "True"],
    "contrastive": ["--contrastive_loss_weight", "0.1"],
    "entropy-margin": ["--entropy_margin_loss_weight", "0.1"],
    "no-query-norm": ["--query_norm", "none"],
    "no-token-norm": ["--token_norm", "none"],
    "random-queries": ["--fine_queries", "random"],
    "no-prompt-query": ["--prompt_query", "False"],
    "no-curriculum": ["--curriculum_clips", "0"],
    "small-positions": ["--vision_position_init_std", "0.1"],  # drawn like every other ViT weight
    "no-fixation-loss": ["--fixation_loss_weight", "0"],  # the planned queries learn from the answers alone
    "fixation-released": ["--fixation_loss_steps", "1125"],  # supervised through the curriculum only
}
# ... or `clutter-emergent` (no fixation label anywhere), each on --ablation_seeds.
EMERGENT_ABLATIONS = {
    "static-query-base": ["--static_query_base", "True"],  # planned queries = the static query + the heads' part
    "no-glimpse-policy": ["--glimpse_samples", "0"],  # soft glimpses only: the answers' own gradient
    "draws-16": ["--glimpse_samples", "16"],  # twice the hard glimpses drawn per video and step
    "no-glimpse-location": ["--glimpse_location", "False"],  # frame tokens without where their glimpse looked
    "random-queries": ["--fine_queries", "random"],  # the fine pass reads with queries nobody chose
    "no-curriculum": ["--curriculum_clips", "0"],
    "vision-pretraining": ["--vision_pretraining_steps", "500"],  # a label-free masked-patch stage for the ViT first
    # a start that has not chosen by the end of the three-object stage is begun again, twice at most
    "restarts": ["--restart_step", "900", "--restart_window", "300"],
}
COLUMNS = (
    ("steps", "steps", "{:d}"),
    ("caption_ratio", "caption ratio", "{:.3f}"),
    ("ratio", "ratio", "{:.3f}"),
    ("accuracy_fine", "acc. fine", "{:.1%}"),
    ("accuracy_coarse", "acc. coarse", "{:.1%}"),
    ("target_fixation_fine", "on target, fine", "{:.1%}"),
    ("target_fixation_coarse", "on target, coarse", "{:.1%}"),
    ("fixation_entropy_fine", "entropy fine", "{:.2f}"),
    ("fixation_entropy_coarse", "entropy coarse", "{:.2f}"),
)


def run(name: str, preset: str, extra: list[str], ablation: bool, args) -> dict:
    """Train one run and evaluate it on the held-out stream; return its metrics (cached on disk)."""
    output = os.path.join(args.out, name)
    result = os.path.join(output, "evaluation.json")
    if os.path.exists(result) and not args.overwrite:
        with open(result) as handle:
            return json.load(handle)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    train = [sys.executable, os.path.join(ROOT, "train.py"), "--preset", preset, "--output_dir", output]
    steps = args.ablation_max_steps if ablation and args.ablation_max_steps else args.max_steps
    train += ["--disable_tqdm", "True", "--eval_videos", "0"] + (shortened(preset, steps, extra) if steps else extra)
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "train.log"), "w") as log:
        subprocess.run(train, check=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    dataset = "global_change" if preset == "global-control" else "clutter"
    evaluate = [sys.executable, "-m", "foveated_vlm.cli", "evaluate", "--model", output, "--dataset", dataset]
    evaluate += ["--seed", str(args.eval_seed), "--num_videos", str(args.eval_videos), "--json", result]
    with open(os.path.join(output, "train_args.json")) as handle:  # the random-query control is evaluated as it trained
        evaluate += ["--fine_queries", json.load(handle)["foveation"]["fine_queries"]]
    with open(os.path.join(output, "evaluate.log"), "w") as log:
        subprocess.run(evaluate, check=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    with open(result) as handle:
        metrics = json.load(handle)
    with open(os.path.join(output, "metrics.json")) as handle:  # what train.py recorded: steps and seconds
        trained = json.load(handle)
    metrics.update(steps=trained["steps"], train_seconds=trained["train_seconds"])
    with open(result, "w") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics


# Flags counted in steps or clips: scaled with a shortened run, whether an ablation or the preset sets them.
SCHEDULED = ("--curriculum_clips", "--fixation_loss_steps", "--restart_step", "--restart_window")


def shortened(preset: str, steps: int, extra: list[str]) -> list[str]:
    """`extra` for a run of `steps` instead of the preset's `--max_steps`, with its schedule scaled to match: the
    `SCHEDULED` flags `extra` sets, and the preset's own that `extra` does not."""
    flags, scale = PRESETS[preset], steps / int(PRESETS[preset]["--max_steps"])
    extra = list(extra)
    for name in SCHEDULED:
        if name in extra:
            index = extra.index(name) + 1
            extra[index] = str(round(int(extra[index]) * scale))
        elif name in flags:
            extra += [name, str(max(1, round(int(flags[name]) * scale)))]
    return extra + ["--max_steps", str(steps)]


def _cell(metrics: dict, key: str, form: str) -> str:
    return form.format(metrics[key]) if key in metrics else "-"


def table(results: dict[str, dict]) -> str:
    """Markdown: the seeds' mean and spread, then every run."""
    lines = ["| run | " + " | ".join(title for _, title, _ in COLUMNS) + " |"]
    lines.append("|" + " --- |" * (len(COLUMNS) + 1))
    seeds = [metrics for name, metrics in results.items() if name.startswith("clutter-seed")]
    if len(seeds) > 1:
        cells = []
        for key, _, form in COLUMNS:
            values = [m[key] for m in seeds if key in m]
            if not values:
                cells.append("-")
                continue
            mean, spread = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
            if key == "steps":
                cells.append(form.format(round(mean)))
                continue
            cells.append(f"{form.format(mean)} ± {form.format(spread)}")
        lines.append(f"| clutter, mean ± sd of {len(seeds)} seeds | " + " | ".join(cells) + " |")
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(_cell(metrics, key, form) for key, _, form in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="clutter", choices=["clutter", "clutter-emergent"])
    parser.add_argument("--out", default=None, help="default: outputs/foveation_experiment[-emergent]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablations", nargs="+", default=["all"], help="'all', 'none' or names of the preset's")
    parser.add_argument("--ablation_seeds", type=int, nargs="+", default=None, help="default: 0 (clutter), 0 1")
    parser.add_argument("--max_steps", type=int, default=None, help="override the presets' step counts")
    parser.add_argument("--ablation_max_steps", type=int, default=None, help="steps of the ablation runs alone")
    parser.add_argument("--eval_seed", type=int, default=1000)
    parser.add_argument("--eval_videos", type=int, default=256)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--overwrite", action="store_true", help="retrain runs that already have results")
    args = parser.parse_args(argv)
    emergent = args.preset == "clutter-emergent"
    args.out = args.out or "outputs/foveation_experiment" + ("-emergent" if emergent else "")
    ablations = EMERGENT_ABLATIONS if emergent else ABLATIONS
    names = sorted(ablations) if args.ablations == ["all"] else [] if args.ablations == ["none"] else args.ablations
    unknown = set(names) - set(ablations)
    if unknown:
        parser.error(f"unknown ablations {sorted(unknown)}; expected from {sorted(ablations)}")
    ablation_seeds = args.ablation_seeds or ([0, 1] if emergent else [0])

    jobs = {f"clutter-seed{seed}": (args.preset, ["--seed", str(seed)], False) for seed in args.seeds}
    jobs["global-control"] = ("global-control", [], False)
    for name in names:  # one seed keeps the plain name (the supervised table's rows); more are named by seed
        for seed in ablation_seeds:
            label = name if len(ablation_seeds) == 1 else f"{name}-seed{seed}"
            jobs[label] = (args.preset, ablations[name] + ["--seed", str(seed)], True)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {name: pool.submit(run, name, *job, args) for name, job in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}

    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    markdown = table(results)
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write(markdown + "\n")
    print(markdown)
    return results


if __name__ == "__main__":
    main()
