"""Train a foveated video VLM with the HF Trainer (one GPU, many through `accelerate launch`, or the CPU).

    python train.py                                   # the embedded default: offline synthetic video, tiny model
    python train.py --preset smollm2-offline          # real SmolLM2-135M-Instruct weights (offline GGUF), fresh ViT
    python train.py --preset synthetic --max_steps 50 --output_dir outputs/try   # any TrainingArguments flag

A preset is a set of default flags; flags given on the command line win. With `--vision_pretraining_steps N` a
label-free stage comes first (the fresh ViT pretrained on the training frames, saved to
`<output_dir>/vision_pretrained`), and the run trains from it. The run writes to `--output_dir` a
checkpoint that `from_pretrained` loads (model with its code, and the processor), `metrics.json` with the
held-out fine/coarse losses, their ratios and the fixation entropies, `log_history.json` (every logged step),
`figures/` (where the static and the planned queries looked, frame by frame, PNG and GIF; the loss curves) and a
filled model card `README.md`. `--push_to_hub` uploads the whole folder once, at the end, when the card, the
metrics and the figures are written (to `--hub_model_id`, which the card's usage code then loads; without it, a
repository named after `--output_dir`); checkpoint pushes during training (`--hub_strategy`, with a
`--save_strategy`) carry weights, processor and checkpoints but no card: the repository gets its card at the end.

Bad data never ends a run: samples a source cannot read and samples that fail while batching are skipped and
counted by reason; the counts (summed over DataLoader workers and ranks) are in the training logs (`data/...`,
TensorBoard) and in `metrics.json` (`data`). Only a training stream that gives no sample at all fails, with
`NoSamplesError` and the counts, before anything is saved. Without held-out data (a real corpus without
`--eval_data_files`/`--eval_shards`) the run says so, `metrics.json` holds the training-time figures only
(`training`: the last logging window) and the figures show training clips.

The pieces are in `foveated_vlm.training`: `arguments` (the flags), `presets`, `model_building` and `run`.
"""

import sys

from transformers import set_seed

from foveated_vlm.training.arguments import check_arguments, parse
from foveated_vlm.training.model_building import build_model_and_processor
from foveated_vlm.training.restart_check import RESTART_SEED_STRIDE, RestartCheck
from foveated_vlm.training.run import pretrain_vision_stage, run_training


def main(argv: list[str] | None = None) -> dict:
    """Parse (a preset's flags, then `argv`), check, build the model and processor, train; the metrics.

    With `--restart_step` a start whose fine pass has not beaten the coarse one by then is stopped and the model
    built again from other initial weights (`restart_check`), up to `--restarts` times."""
    model_args, data_args, foveation_args, training_args = parse(sys.argv[1:] if argv is None else argv)
    check_arguments(model_args, data_args, foveation_args, training_args)
    set_seed(training_args.seed)
    model_args = pretrain_vision_stage(model_args, data_args, training_args)  # a stage first, when asked
    starts = 1 + (foveation_args.restarts if foveation_args.restart_step else 0)
    stopped = []
    for start in range(starts):
        init_seed = training_args.seed + start * RESTART_SEED_STRIDE  # the first start is the run without restarts
        set_seed(init_seed)
        model, processor = build_model_and_processor(model_args, data_args)
        check = None
        if foveation_args.restart_step:
            check = RestartCheck(
                foveation_args.restart_step,
                foveation_args.restart_window,
                foveation_args.restart_margin,
                init_seed,
                final=start == starts - 1,
            )
        metrics = run_training(model, processor, model_args, data_args, foveation_args, training_args, check, stopped)
        if metrics is not None:
            return metrics
        stopped.append(check.report())
    raise AssertionError("the last start is never stopped")


if __name__ == "__main__":
    main()
