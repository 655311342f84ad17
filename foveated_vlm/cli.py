"""The `foveated-vlm` command line.

    foveated-vlm caption --model DIR VIDEO [--prompt TEXT]          # prints the caption
    foveated-vlm stream  --model DIR VIDEO --out FILE.gif           # frame by frame, fixations drawn, fps printed
    foveated-vlm evaluate --model DIR --dataset NAME --json OUT.json # held-out metrics, fine vs coarse
    foveated-vlm evaluate --model DIR --benchmark mvbench|videomme --data_dir DIR --json OUT.json  # accuracy

`stream` pushes the video's frames one at a time through `model.stream`, draws each frame beside where the coarse
(static) and fine (planned) queries looked on it and what the model predicted it would look like (models trained
on pixel targets; with `--vae`, models trained on SD-VAE latents), under panel titles and over the prompt, then
prints the caption the fine stream gives. VIDEO is a file path; `/dev/videoN` reads a camera through PyAV (v4l2).
`--precision fp32-onednn` runs every linear on oneDNN's packed fp32 kernels (faster on CPU, same arithmetic);
`--precision fp16|int8` dynamically quantises the language model's linears (`model.stream`).

Exit status: 0 on success; 2 with argparse's usage message for bad arguments (checked before any work: `--model`
must be a checkpoint directory holding `config.json` or a Hub model id, counts and rates must be > 0, `--out`
an animation file in an existing folder); 1 with one line `foveated-vlm: error: ...` when the work fails (an
unreadable video, a checkpoint whose weights do not match the model, a full disk).
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .inference_precision import PRECISIONS
from .training.checkpoints import load_strictly
from .training.data_collator import chat_prompt

__all__ = ["main", "run"]

ANIMATION_SUFFIXES = (".gif", ".png", ".apng", ".webp")  # what PIL writes as a timed, looping animation


def _load(model_dir: str):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import foveated_vlm  # noqa: F401 - registers the classes, so no remote code is needed

    try:
        model = load_strictly(
            AutoModelForImageTextToText, model_dir
        ).eval()  # a missing weight is an error, not a random one
        processor = AutoProcessor.from_pretrained(model_dir)
    except OSError as error:  # unreadable files, or a Hub id that is not there (or no network)
        raise OSError(f"--model {model_dir!r}: {error}") from error
    processor.check_model_config(model.config)
    return model, processor


def _positive(kind: type):
    """An argparse type: a finite `kind` (int or float) above 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {'an integer' if kind is int else 'a number'} > 0")
        return value

    return parse


def _checkpoint(text: str) -> str:
    """An argparse type: a directory `save_pretrained` wrote (it holds config.json), or a Hub model id."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise argparse.ArgumentTypeError(
                f"{text!r} holds no config.json: not a saved checkpoint (expected the --output_dir of train.py or a "
                "save_pretrained directory)"
            )
        return str(path)
    if path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; expected a checkpoint directory")
    try:
        validate_repo_id(text)
    except HFValidationError:
        raise argparse.ArgumentTypeError(f"{text!r}: no such directory; expected a checkpoint directory") from None
    return text  # "owner/name" on the Hub; loading it says whether it is there


def _output_file(suffixes: tuple[str, ...] | None = None):
    """An argparse type: a file to write, in a folder that exists, ending in one of `suffixes` (any if None)."""

    def parse(text: str) -> str:
        path = Path(text)
        if suffixes and path.suffix.lower() not in suffixes:
            got = f"ends in {path.suffix!r}" if path.suffix else "has no extension"
            raise argparse.ArgumentTypeError(f"{text!r} {got}; expected one of {', '.join(suffixes)}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a directory; expected a file name")
        if not path.resolve().parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r}: its folder {str(path.parent)!r} does not exist")
        return text

    return parse


def caption(args) -> str:
    model, processor = _load(args.model)
    batch = processor(text=[chat_prompt(processor, args.prompt)], videos=[args.video], num_frames=args.num_frames)
    with torch.inference_mode():
        ids = model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=False)
    text = processor.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()
    print(text)
    return text


def _camera_frames(device: str, max_frames: int):
    """Live frames `[3, H, W]` uint8 from a v4l2 camera."""
    import av

    with av.open(device, format="v4l2") as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= max_frames:
                break
            yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)


def _file_frames(processor, path: str, sample_fps: float, max_frames: int):
    """Frames `[3, H, W]` of a file, sampled at `sample_fps` (decoding only those), the shorter side at most twice the
    model's frame size (a 4K file is decoded straight to that, never held at full size)."""
    video_processor = processor.video_processor
    frames, _, _ = video_processor.load_frames(
        path, fps=sample_fps, max_frames=max_frames, max_size=2 * video_processor.frame_size
    )
    yield from frames


def stream(args) -> dict:
    from .data.targets import SDVAETargetEncoder
    from .evaluation.visualize import fixation_cell, save_gif, titled_panel, to_uint8_image

    model, processor = _load(args.model)
    video_processor, config = processor.video_processor, model.config
    before_video, after_video = chat_prompt(processor, args.prompt).split(processor.video_token, 1)
    tokenizer = processor.tokenizer
    prompt_ids = tokenizer(before_video, return_tensors="pt").input_ids
    suffix_ids = tokenizer(after_video, return_tensors="pt", add_special_tokens=False).input_ids
    if args.video.startswith("/dev/video"):
        source = _camera_frames(args.video, args.max_frames)
    else:
        source = _file_frames(processor, args.video, args.sample_fps, args.max_frames)

    live = model.stream(input_ids=prompt_ids, precision=args.precision)
    # A prediction can be drawn when it is a small picture (pixel targets) or when a VAE can decode it.
    vae = SDVAETargetEncoder.from_pretrained(args.vae, target_size=config.target_size) if args.vae else None
    if vae is not None and config.target_channels != vae.channels:
        raise SystemExit(f"--vae gives {vae.channels}-channel latents; the model predicts {config.target_channels}")
    pixel_targets = vae is None and config.target_channels == 3
    drawable = pixel_targets or vae is not None
    pictures, timings, previous_prediction = [], [], None
    with torch.inference_mode():
        for frame in source:
            unit = video_processor.resize_frames(frame[None])  # [1, 3, S, S] in [0, 1]
            target = None
            if vae is not None:
                target = vae.encode((unit * 2 - 1)[None])[0]  # [1, C, h, w]: what the next prediction starts from
            elif pixel_targets:
                target = torch.nn.functional.interpolate(unit * 2 - 1, size=config.target_size, mode="area")
            step = live.push(video_processor.normalize_frames(unit), target_latent=target)
            timings.append(step.timings)
            image = to_uint8_image(unit[0] * 2 - 1)
            height = max(image.shape[0], 128)  # small frames scaled up so the fixations and titles stay legible
            row = [
                image,
                fixation_cell(image, step.fixation_coarse[0], height),
                fixation_cell(image, step.fixation[0], height),
            ]
            titles = [f"frame {len(pictures) + 1}", "static query", "planned query"]
            if previous_prediction is not None:  # what the model expected this frame to look like
                picture = vae.decode(previous_prediction[None, None])[0, 0] if vae is not None else previous_prediction
                row.append(to_uint8_image(picture))
            elif drawable:  # nothing predicts the first frame
                row.append(np.zeros_like(image))
            if drawable:
                titles.append("predicted frame")
            pictures.append(titled_panel(row, titles, caption=f"prompt: {args.prompt}", height=height))
            previous_prediction = step.predicted_latent[0] if step.predicted_latent is not None else None
        if not pictures:
            raise SystemExit(f"no frames could be read from {args.video}")
        ids = live.generate(input_ids=suffix_ids, max_new_tokens=args.max_new_tokens, do_sample=False)
    save_gif(pictures, args.out, fps=args.gif_fps)

    seconds = {name: float(np.mean([t[name] for t in timings])) for name in timings[0]}
    per_frame = sum(seconds.values())
    text = tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    print(
        f"{len(pictures)} frames, {1 / per_frame:.2f} frames/s ("
        + ", ".join(f"{name} {1000 * value:.1f} ms" for name, value in seconds.items())
        + ")"
    )
    print(f"wrote {args.out} (panels: frame, static query, planned query" + (", predicted frame)" if drawable else ")"))
    print(text)
    return {"frames": len(pictures), "frames_per_second": 1 / per_frame, "timings": seconds, "caption": text}


def _training_data_arguments(model_dir: str) -> dict:
    """The data arguments `train.py` recorded beside the checkpoint (`train_args.json`), or {} without them."""
    import json
    import os

    path = os.path.join(model_dir, "train_args.json")
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle).get("data", {})


def _directory(text: str) -> str:
    """An argparse type: an existing directory."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return text


def _write_json(metrics: dict, path: str | None):
    import json

    text = json.dumps(metrics, indent=2)
    if path:
        with open(path, "w") as handle:
            handle.write(text + "\n")
    print(text)


def evaluate_video_benchmark(args) -> dict:
    """`evaluate --benchmark`: MVBench or Video-MME from `--data_dir`, scored by likelihood and by generation."""
    from .data.sample_counts import SampleCounts
    from .evaluation.video_benchmark_scoring import evaluate_benchmark
    from .evaluation.video_benchmarks import load_benchmark

    counts = SampleCounts()
    items = load_benchmark(args.benchmark, args.data_dir, subset=args.subset, counts=counts)  # checked before loading
    model, processor = _load(args.model)
    metrics = evaluate_benchmark(
        model, processor, items, scoring=args.scoring, num_frames=args.num_frames, limit=args.limit, counts=counts
    )
    metrics.update(model=args.model, data_dir=args.data_dir, subset=args.subset)
    metrics["num_frames"] = args.num_frames or processor.video_processor.num_frames
    _write_json(metrics, args.json)
    return metrics


def evaluate(args) -> dict:
    if args.benchmark:
        if args.fine_queries == "random":
            raise ValueError("--fine_queries random (the random-query control) is for --dataset evaluation")
        if args.data_dir is None:
            raise ValueError(f"--benchmark {args.benchmark} reads the benchmark from --data_dir; pass --data_dir DIR")
        return evaluate_video_benchmark(args)
    if args.data_dir or args.subset:
        raise ValueError("--data_dir and --subset belong to --benchmark; --dataset streams its own data")
    from foveated_vlm.data.pipeline import build_dataset

    from .data.targets import build_target_encoder
    from .evaluation.metrics import evaluate_model

    model, processor = _load(args.model)
    config, video_processor = model.config, processor.video_processor
    trained = _training_data_arguments(args.model)
    task = args.task or trained.get("task", "caption")
    question = args.question or trained.get("question", "direction")
    if config.target_channels == 4:
        target_encoder = build_target_encoder("sd-vae", target_size=config.target_size, vae_name_or_path=args.vae)
    else:
        target_encoder = build_target_encoder("pixels", target_size=config.target_size)
    samples = build_dataset(
        args.dataset,
        seed=args.seed,
        frame_size=video_processor.frame_size,
        num_frames=video_processor.num_frames,
        task=task,
        question=question,
    )
    metrics = evaluate_model(
        model,
        processor,
        samples,
        num_videos=args.num_videos,
        batch_size=args.batch_size,
        target_encoder=target_encoder,
        random_fine_queries=args.fine_queries == "random",
    )
    metrics.update(dataset=args.dataset, seed=args.seed, model=args.model)
    if args.dataset == "synthetic":
        metrics["task"] = task
    if args.dataset == "clutter" or task == "clutter":
        metrics["question"] = question
    _write_json(metrics, args.json)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foveated-vlm", description="Foveated video VLM: caption and stream videos.")
    commands = parser.add_subparsers(dest="command", required=True)

    checkpoint = {"required": True, "type": _checkpoint, "help": "a checkpoint directory (model and processor)"}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", **checkpoint)
    common.add_argument("video", help="a video file (stream also takes /dev/videoN)")
    common.add_argument("--prompt", default="Describe the video.")
    common.add_argument("--max_new_tokens", type=_positive(int), default=30)

    caption_parser = commands.add_parser("caption", parents=[common], help="print a caption for a video")
    caption_parser.add_argument("--num_frames", type=_positive(int), default=None, help="default: the processor's")
    caption_parser.set_defaults(run=caption)

    stream_parser = commands.add_parser("stream", parents=[common], help="run a video frame by frame")
    stream_parser.add_argument(
        "--out", required=True, type=_output_file(ANIMATION_SUFFIXES), help="the GIF (or APNG, WebP) to write"
    )
    stream_parser.add_argument(
        "--sample_fps", type=_positive(float), default=2.0, help="frames read per second of video"
    )
    stream_parser.add_argument("--max_frames", type=_positive(int), default=32)
    stream_parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (exact), fp32-onednn (the same on oneDNN's packed CPU kernels), fp16 or int8 (the language "
        "model's linears dynamically quantised; CPU)",
    )
    stream_parser.add_argument("--gif_fps", type=_positive(float), default=4.0)
    stream_parser.add_argument(
        "--vae", default=None, help="AutoencoderKL (name or dir) of a model trained on sd-vae targets"
    )
    stream_parser.set_defaults(run=stream)

    evaluate_parser = commands.add_parser("evaluate", help="held-out metrics of both passes")
    evaluate_parser.add_argument("--model", **checkpoint)
    source = evaluate_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a dataset name (see foveated_vlm.data.pipeline)")
    source.add_argument("--benchmark", choices=("mvbench", "videomme"), help="a video benchmark read from --data_dir")
    evaluate_parser.add_argument(
        "--data_dir", type=_directory, default=None, help="--benchmark: the dataset repository, downloaded"
    )
    evaluate_parser.add_argument(
        "--subset", nargs="+", default=None, help="--benchmark: MVBench tasks or Video-MME durations (default: all)"
    )
    evaluate_parser.add_argument(
        "--num_frames", type=_positive(int), default=None, help="--benchmark: frames per video (default: processor's)"
    )
    evaluate_parser.add_argument("--scoring", choices=("likelihood", "generation", "both"), default="both")
    evaluate_parser.add_argument(
        "--limit", type=_positive(int), default=None, help="--benchmark: score at most this many questions"
    )
    evaluate_parser.add_argument(
        "--task", default=None, help="synthetic task: caption, clutter or global (default: the model's training task)"
    )
    evaluate_parser.add_argument(
        "--question", default=None, help="clutter: direction, quadrant or mark (default: the model's training question)"
    )
    evaluate_parser.add_argument("--seed", type=int, default=1, help="stream seed; training used --seed (0)")
    evaluate_parser.add_argument("--num_videos", type=_positive(int), default=64)
    evaluate_parser.add_argument("--batch_size", type=_positive(int), default=8)
    evaluate_parser.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="for models on sd-vae targets")
    evaluate_parser.add_argument("--json", type=_output_file(), default=None, help="write the metrics here")
    evaluate_parser.add_argument(
        "--fine_queries",
        choices=("predicted", "random"),
        default="predicted",
        help="'random': the fine pass reads with fresh random queries (re-evaluates a run trained as that control)",
    )
    evaluate_parser.set_defaults(run=evaluate)
    return parser


def run(argv: list[str]):
    """Parse `argv` and run its command; returns the command's result (the caption, the stream's or the
    evaluation's numbers) and raises its errors."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    result = args.run(args)
    if args.command == "stream":
        print(f"total {time.perf_counter() - start:.1f} s")
    return result


def main(argv: list[str] | None = None):
    """With `argv` (from Python): `run(argv)`, the command's result. Without (the installed console script, which
    calls `sys.exit(main())`): the exit status, 0 on success, 1 with one line on stderr for a failure the user
    can act on (`OSError`, `ValueError`: an unreadable video or checkpoint, a full disk)."""
    if argv is not None:
        return run(argv)
    try:
        run(sys.argv[1:])
    except (OSError, ValueError) as error:
        print(f"foveated-vlm: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
