"""What a training run leaves for people to read: fixation figures, training curves and a filled model card.

    paths = fixation_figures(model, processor, held_out_samples, output_dir, target_encoder)  # figures/*.png, *.gif
    curve = loss_curves(trainer.state.log_history, f"{output_dir}/figures/loss_curves.png")
    write_model_card(output_dir, metrics, train_args, figures=[curve, *paths])             # output_dir/README.md

The card template is `model_card.md` at the repository root, the one place its text lives (see `find_template`).
Its `{{ name }}` placeholders are filled by plain substitution (no Jinja); its YAML front matter comes from
`huggingface_hub.ModelCardData`, so it is valid Hub metadata (https://huggingface.co/docs/hub/model-cards).
Curves are drawn with matplotlib's object API (no pyplot, so no global backend state); frames with PIL.
"""

import importlib.metadata
import itertools
import math
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from ..training import foveation_losses
from ..training.data_collator import VideoTextCollator
from .visualize import fixation_cell, save_gif, titled_panel, to_uint8_image

__all__ = [
    "fixation_figures",
    "loss_curves",
    "tensorboard_logging_dir",
    "log_figures_to_tensorboard",
    "write_model_card",
    "find_template",
    "LABEL_WIDTH",
    "GAP",
]

LABEL_WIDTH = 150  # px of row labels left of the fixation grid
GAP = 2  # px of white after every cell of the grid, so neighbouring frames stay apart
_CELL_RANGE = (128, 256)  # cells are frames scaled (nearest) into this range: 32 px frames stay visible
_DISTRIBUTION = "foveated-vlm"
_TEMPLATE_NAME = "model_card.md"
# Hub ids of the datasets `train.py --dataset` streams (the local synthetic video has none).
_HUB_DATASETS = {"webvid": "TempoFunk/webvid-10M", "llava_video": "lmms-lab/LLaVA-Video-178K"}
_SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what `--text_model smollm2-gguf` loads, quantised


# ------------------------------------------------------------------------------------------------ fixations
def _cells(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST)) for image in images]


def _grid(rows: list[list[np.ndarray]], labels: list[str], cell: int) -> Image.Image:
    """Rows of `cell`-sized images with a label column: `LABEL_WIDTH + T (cell + GAP)` by `rows (cell + GAP)`."""
    columns = len(rows[0])
    canvas = Image.new("RGB", (LABEL_WIDTH + columns * (cell + GAP), len(rows) * (cell + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        top = r * (cell + GAP)
        draw.multiline_text((8, top + cell // 2), label, fill="black", font=font, anchor="lm")
        for t, image in enumerate(row):
            canvas.paste(Image.fromarray(image), (LABEL_WIDTH + t * (cell + GAP), top))
    return canvas


def _prompt_label(prompt: str, cell: int) -> str:
    """The frame row's label: "frame" and the prompt (what the planned queries were asked to find), wrapped to fit."""
    lines = textwrap.wrap(prompt, width=18)[: max(1, cell // 18 - 1)]  # 14 px text: about 18 px a line
    return "\n".join(["frame", *lines])


@torch.no_grad()
def fixation_figures(
    model, processor, samples, output_dir, target_encoder=None, num_videos: int = 4, random_fine_queries: bool = False
) -> list[str]:
    """Draw where both passes looked on `num_videos` held-out samples, in one forward pass of the model.

    Per video, `figures/fixations_{i:02d}.png` is a grid whose columns are the frames and whose rows are the frame
    (labelled with the video's prompt),
    the static (coarse) query's fixation, the planned (fine) query's fixation and, with a `target_encoder`, the
    target of frame t and the model's prediction of it (from frames < t and target t-1), both decoded, so each
    prediction sits under the frame it predicts. `figures/fixations_{i:02d}.gif` shows the same cells of one
    frame side by side under their titles ("frame t/T", "static query", ...), with the prompt beneath, one GIF
    frame per video frame. A fixation cell whose map is uniform says so ("attention ~uniform"), as its tint is
    then blank. Returns the written paths, PNG then GIF per video. `random_fine_queries`: draw the random-query
    control's fine queries, as it trained (see `evaluate_model`); a checkpoint alone plans them.
    """
    samples = list(itertools.islice(samples, num_videos))
    if not samples:
        raise ValueError("fixation_figures got no samples to draw")
    collator = VideoTextCollator(processor)  # for its chat-formatted prompt: the one training and generation use
    prompts = [collator.prompt_text(sample["prompt"]) for sample in samples]
    # Straight from the processor rather than the collator: the figures need the [-1, 1] frames it returns.
    batch = processor(text=prompts, videos=[sample["frames"] for sample in samples], return_target_frames=True)
    frames = batch.pop("target_frames")  # [B, T, 3, H, W] in [-1, 1]
    inputs = {key: value.to(model.device) for key, value in batch.items()}
    if target_encoder is not None:
        inputs["target_latents"] = target_encoder.encode(frames).to(model.device)  # [B, T, C, h, w]
    if random_fine_queries:
        pixels = inputs["pixel_values_videos"]
        inputs["fine_queries"] = foveation_losses.random_fine_queries(model.config, pixels, model.dtype)

    was_training = model.training
    model.eval()
    try:
        out = model(**inputs, output_attentions=True)
    finally:
        model.train(was_training)
    coarse, fine = out.fixations_coarse.float().cpu(), out.fixations_fine.float().cpu()  # [B, T, K, gh, gw]
    labels = ["frame", "static query\n(coarse)", "planned query\n(fine)"]
    titles = ["static query", "planned query"]  # the GIF's panel titles after the frame's
    decoded = None
    if target_encoder is not None:
        # Both rows through the same decoder, so a blurry picture is the prediction's fault, not the decoder's.
        decoded = [
            target_encoder.decode(latents).float().cpu()
            for latents in (inputs["target_latents"], out.predicted_latents)
        ]
        labels += ["target t\n(decoded)", "predicted t\nfrom frames < t"]
        titles += ["target (decoded)", "predicted frame"]

    directory = Path(output_dir) / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    cell = min(max(frames.shape[-1], _CELL_RANGE[0]), _CELL_RANGE[1])
    paths = []
    for b in range(len(samples)):
        images = [to_uint8_image(frame) for frame in frames[b]]  # T x [H, W, 3]
        rows = [
            _cells(images, cell),
            [fixation_cell(image, fixation, cell) for image, fixation in zip(images, coarse[b], strict=True)],
            [fixation_cell(image, fixation, cell) for image, fixation in zip(images, fine[b], strict=True)],
        ]
        if decoded is not None:  # [3, h, w] pictures, each scaled to a cell
            rows += [_cells([to_uint8_image(picture) for picture in pictures[b]], cell) for pictures in decoded]
        png, gif = directory / f"fixations_{b:02d}.png", directory / f"fixations_{b:02d}.gif"
        _grid(rows, [_prompt_label(samples[b]["prompt"], cell), *labels[1:]], cell).save(png)
        columns = [
            titled_panel(
                list(column), [f"frame {t + 1}/{len(images)}", *titles], caption=f"prompt: {samples[b]['prompt']}"
            )
            for t, column in enumerate(zip(*rows, strict=True))
        ]
        save_gif(columns, str(gif), fps=2)
        paths += [str(png), str(gif)]
    return paths


# ------------------------------------------------------------------------------------------------ curves
# Panels: title, y label, y axis ("loss": from 0, log once the values span a decade; "ratio": around the values;
# "entropy": from 0 to above uniform), a reference line ("uniform": log of the patch count, known only from
# `num_patches`), and the series (log key, legend).
_PANELS = [
    ("next-frame reconstruction", "MSE", "loss", None, [("loss_fine", "fine"), ("loss_coarse", "coarse")]),
    ("caption", "cross-entropy", "loss", None, [("caption_loss_fine", "fine"), ("caption_loss_coarse", "coarse")]),
    (
        "coarse / fine (above 1: looking helped)",
        "ratio",
        "ratio",
        1.0,
        [("ratio", "reconstruction"), ("caption_ratio", "caption")],
    ),
    (
        "fixation entropy",
        "nats",
        "entropy",
        "uniform",
        [("fixation_entropy_fine", "fine"), ("fixation_entropy_coarse", "coarse")],
    ),
]
_COLORS = {"fine": "tab:blue", "coarse": "tab:orange", "reconstruction": "tab:green", "caption": "tab:purple"}


def _series(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    points = [(step, value) for step, value in points if value is not None and math.isfinite(value)]
    return [step for step, _ in points], [value for _, value in points]


def _reference(reference, num_patches: int | None) -> tuple[float, str] | None:
    """A panel's reference line as (value, legend), or None where it has none (or its patch count is unknown)."""
    if reference == "uniform":
        if num_patches is None:
            return None
        return math.log(num_patches), f"uniform over {num_patches} patches (log {num_patches})"
    return None if reference is None else (reference, f"{reference:g}: no difference")


def _scale_y(axes, y_axis: str, values: list[float], reference: tuple[float, str] | None) -> None:
    """Y limits that show a few nearly equal values (a short run) as what they are, not magnified noise."""
    if y_axis == "loss" and min(values) > 0 and max(values) > 10 * min(values):
        axes.set_yscale("log")  # losses that fell over decades
        return
    axes.ticklabel_format(axis="y", useOffset=False)  # "+4.158" offsets hide the values themselves
    if y_axis == "loss":  # from 0, with room above the highest marker
        axes.set_ylim(0, 1.1 * max(values) if max(values) > 0 else 1)
    elif y_axis == "entropy":  # from "looks at one patch" (0) to beyond uniform (the reference)
        top = max(values + ([reference[0]] if reference else []))
        axes.set_ylim(0, 1.1 * top if top > 0 else 1)


def loss_curves(log_history: list[dict], path, num_patches: int | None = None) -> str | None:
    """Plot the fine and coarse losses, their ratios and fixation entropies over steps to a PNG at `path`.

    `log_history` is the Trainer's (`trainer.state.log_history`): training entries carry `loss_fine`, ...;
    evaluation entries the same keys with an `eval_` prefix, drawn dashed. Every logged point has a marker, so a
    run that logged once or twice still shows its values. `num_patches` (patches per frame) draws the entropy of
    uniform attention, log(num_patches), on the entropy panel: maps at that line look nowhere in particular.
    Panels without data (no captions trained, no evaluation) are left out. Returns `path`, or None when nothing
    was logged (a run shorter than `logging_steps`), so a finished training run never fails over its figure.
    """
    if num_patches is not None and (
        isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1
    ):
        raise ValueError(f"loss_curves(num_patches={num_patches!r}) is invalid; expected a patch count >= 1 or None")
    panels = []
    for title, ylabel, y_axis, reference, keys in _PANELS:
        lines = []
        # The first series is drawn wider, so that it still shows when the second lies on top of it (ratio ~ 1).
        for (key, label), width in zip(keys, (2.6, 1.2), strict=True):
            for prefix, style, suffix in (("", "-o", ""), ("eval_", "--D", " (held out)")):
                steps, values = _series(log_history, prefix + key)
                if steps:
                    lines.append((steps, values, style, label + suffix, _COLORS[label], width))
        if lines:
            panels.append((title, ylabel, y_axis, _reference(reference, num_patches), lines))
    if not panels:
        return None

    figure = Figure(figsize=(4.5 * len(panels), 3.6), dpi=100, layout="constrained")
    all_axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (title, ylabel, y_axis, reference, lines) in zip(all_axes, panels, strict=True):
        for steps, values, style, label, color, width in lines:
            axes.plot(steps, values, style, label=label, color=color, linewidth=width, markersize=2 * width + 1)
        if reference is not None:
            value, legend = reference
            axes.axhline(value, color="gray", linewidth=1.2, linestyle=":", label=legend)
        _scale_y(axes, y_axis, [value for line in lines for value in line[1]], reference)
        steps = {step for line in lines for step in line[0]}
        if len(steps) == 1:  # one logged step: a range of steps around it, not of fractions of one
            axes.set_xlim(min(steps) - 1, min(steps) + 1)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set(title=title, xlabel="step", ylabel=ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return str(path)


# ------------------------------------------------------------------------------------------------ TensorBoard
_RUN_KEYS = ("steps", "train_seconds")  # in metrics.json beside the held-out metrics, but about the run itself


def tensorboard_logging_dir(trainer) -> str | None:
    """The directory the Trainer's TensorBoard callback wrote this run's events to (`<output_dir>/runs/<date>_<host>`
    or `$TENSORBOARD_LOGGING_DIR`), or None when the run does not report to TensorBoard."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            return callback.logging_dir
    return None


def log_figures_to_tensorboard(logging_dir, metrics: dict, figure_paths: list[str], step: int) -> None:
    """Add the held-out metrics and the figures to the TensorBoard run in `logging_dir`, at `step`.

    Scalars: every number at the top of `metrics` (metrics.json) as `held_out/<key>` (the run's `steps` and
    `train_seconds` left out). Images: each PNG as `figures/<file name>`; each GIF as an animated image
    `figures/<file name>`, its bytes as written (TensorBoard's image panel plays GIFs; `add_video` would need
    moviepy). `logging_dir` None (no TensorBoard in `--report_to`) does nothing.
    """
    if logging_dir is None:
        return
    for path in figure_paths:
        if Path(path).suffix.lower() not in (".png", ".gif"):
            raise ValueError(f"log_figures_to_tensorboard got figure {path!r}; expected .png or .gif files")
        if not Path(path).is_file():
            raise FileNotFoundError(f"log_figures_to_tensorboard: figure {path!r} does not exist")
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(logging_dir)) as writer:  # a new event file beside the Trainer's: one run
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _RUN_KEYS:
                writer.add_scalar(f"held_out/{key}", value, step)
        for path in map(Path, figure_paths):
            tag = f"figures/{path.name}"
            if path.suffix.lower() == ".png":
                writer.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")
                continue
            with Image.open(path) as gif:
                width, height = gif.size
            image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=path.read_bytes())
            writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


# ------------------------------------------------------------------------------------------------ model card
def find_template() -> Path:
    """The card template: `model_card.md` beside the package in a checkout (or an editable install), else the copy
    a wheel installs as a data file (setup.cfg `[options.data_files] share/foveated-vlm = model_card.md`)."""
    checkout = Path(__file__).resolve().parent.parent / _TEMPLATE_NAME
    if checkout.is_file():
        return checkout
    try:
        files = importlib.metadata.distribution(_DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == _TEMPLATE_NAME and Path(file.locate()).is_file():
            return Path(file.locate())
    raise FileNotFoundError(
        f"no model card template: neither {checkout} nor a {_TEMPLATE_NAME} installed with {_DISTRIBUTION}; "
        "pass write_model_card(template=...)"
    )


def _hub_name(name: str | None) -> str | None:
    """A Hub id for a `--vision_model`/`--text_model` value, or None for fresh weights and local directories,
    which the Hub cannot link as base models."""
    if name in (None, "config"):
        return None
    if name == "smollm2-gguf":
        return _SMOLLM2
    return None if os.path.exists(name) else name


def _describe_parts(model_args: dict) -> tuple[str, str]:
    """The vision and language parts in words: a Hub name, or the sizes of one trained from scratch."""
    vision, text = _hub_name(model_args["vision_model"]), _hub_name(model_args["text_model"])
    if vision:
        vision = f"`{vision}`"
    else:
        vision = (
            f"A DINOv3-style ViT ({model_args['vision_hidden_size']} wide, {model_args['vision_layers']} layers, "
            f"patch {model_args['patch_size']}) trained from scratch"
        )
    if text:
        text = f"`{text}`"
    elif model_args["text_model"] == "config":
        text = (
            f"a Llama-architecture model ({model_args['text_hidden_size']} wide, {model_args['text_layers']} layers) "
            "trained from scratch"
        )
    else:
        text = f"`{Path(model_args['text_model']).name}` (a local checkpoint)"
    return vision, text


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def _training_table(train_args: dict, metrics: dict) -> str:
    model_args, data = train_args["model"], train_args["data"]
    frozen = [part for part in ("vision", "language_model") if model_args["freeze_" + part]]
    rows = [
        ("preset", model_args["preset"]),
        ("dataset", f"{data['dataset']} ({data['task']} task)" if data["dataset"] == "synthetic" else data["dataset"]),
        ("frames per video", f"{data['num_frames']} at {data['frame_size']} × {data['frame_size']} px"),
        ("visual tokens per frame (K)", model_args["tokens_per_frame"]),
        ("reconstruction target", f"{data['target']}, {data['target_size']} × {data['target_size']}"),
        ("captions trained", "yes" if data["train_captions"] else "no"),
        (
            "loss weights",
            f"reconstruction {model_args['reconstruction_loss_weight']}, caption {model_args['caption_loss_weight']}, "
            f"coarse pass {model_args['coarse_loss_weight']}",
        ),
        ("frozen", ", ".join(frozen) or "nothing"),
    ]
    # The TrainingArguments are optional ("training"): train_args.json holds the model and data arguments.
    training = train_args.get("training", {})
    if "steps" in metrics:
        rows.append(("steps", metrics["steps"]))
    if "per_device_train_batch_size" in training:
        accumulation = training.get("gradient_accumulation_steps", 1)
        rows.append(("batch per device × accumulation", f"{training['per_device_train_batch_size']} × {accumulation}"))
    if "learning_rate" in training:
        rows.append(("peak learning rate", f"{training['learning_rate']:g}"))
    if "train_seconds" in metrics:
        rows.append(("training time", f"{metrics['train_seconds'] / 60:.1f} min"))
    return _table(("setting", "value"), rows)


# Metric name, its fine/coarse keys and the key of its coarse / fine ratio (only where the project defines one).
_RESULTS = [
    ("next-frame reconstruction MSE ↓", "loss", "ratio"),
    ("caption cross-entropy ↓", "caption_loss", "caption_ratio"),
    ("prediction PSNR (dB) ↑", "psnr", None),
    ("answer accuracy ↑", "accuracy", None),
    ("fixation entropy (nats)", "fixation_entropy", None),
]


def _results_table(metrics: dict) -> str:
    rows = []
    for name, stem, ratio in _RESULTS:
        fine, coarse = metrics.get(f"{stem}_fine"), metrics.get(f"{stem}_coarse")
        if fine is None and coarse is None:
            continue
        ratio_value = metrics.get(ratio) if ratio else None
        rows.append(
            (
                name,
                *(f"{value:.4g}" if value is not None else "–" for value in (fine, coarse)),
                f"{ratio_value:.4f}" if ratio_value is not None else "–",
            )
        )
    if not rows:
        return "No held-out metrics were recorded."
    held_out = f" on {metrics['num_videos']} held-out videos" if "num_videos" in metrics else " on held-out videos"
    return (
        f"Evaluated{held_out}. *Fine* reads each frame with the query the model planned, *coarse* with the static "
        "query; coarse / fine above 1 means that choosing where to look lowered the loss.\n\n"
        + _table(("metric", "fine (planned queries)", "coarse (static query)", "coarse / fine"), rows)
    )


def _eval_results(metrics: dict, data: dict):
    """The held-out metrics as the Hub reads them (`model-index` in the front matter): the results table's fine and
    coarse values, their ratios and the caption scores, on the held-out clips; [] without held-out metrics."""
    from huggingface_hub import EvalResult

    named = []
    for name, stem, ratio in _RESULTS:
        name = name.rstrip(" ↓↑")
        named += [(f"{stem}_fine", f"{name}, fine (planned queries)"), (f"{stem}_coarse", f"{name}, coarse (static)")]
        if ratio:
            named.append((ratio, f"{name}, coarse / fine"))
    named += [("caption_bleu", "caption BLEU-4"), ("caption_rouge_l", "caption ROUGE-L")]
    dataset = data["dataset"]
    clips = f"{metrics['num_videos']} held-out clips" if "num_videos" in metrics else "held-out clips"
    source = {
        "task_type": "video-text-to-text",
        "task_name": "video captioning and next-frame prediction",
        "dataset_type": _HUB_DATASETS.get(dataset, dataset),
        "dataset_name": f"{dataset} ({data['task']} task), {clips}"
        if dataset == "synthetic"
        else f"{dataset}, {clips}",
        "dataset_split": "validation",
    }
    return [
        EvalResult(**source, metric_type=key, metric_name=name, metric_value=float(metrics[key]))
        for key, name in named
        if isinstance(metrics.get(key), (int, float))
    ]


def _figures_section(figures, output_dir: Path) -> str:
    if not figures:
        return "No figures were written."
    lines = []
    for figure in figures:
        relative = Path(os.path.relpath(Path(figure).resolve(), output_dir.resolve())).as_posix()
        lines.append(f"![{Path(figure).name}]({relative})")
    if any(Path(figure).stem.startswith("fixations") for figure in figures):
        lines.append(
            "Fixation figures: columns are frames; rows are the frame, where the static (coarse) and the planned "
            '(fine) query looked (pink: attention above uniform; "attention ~uniform" where a map singles nothing '
            "out), and, with decodable targets, the target of each frame and the model's prediction of it from the "
            "frames before. The GIFs show the same panels over time, titled, with the prompt beneath."
        )
    return "\n\n".join(lines)


def write_model_card(
    output_dir,
    metrics: dict,
    train_args: dict,
    figures: list[str] | None = None,
    base_models: list[str] | None = None,
    model_id: str | None = None,
    template=None,
) -> str:
    """Fill the model card template and write it as `output_dir/README.md`, the file the Hub shows.

    Args:
        output_dir: the checkpoint directory; figure links are made relative to it.
        metrics: `metrics.json` (held-out fine/coarse metrics, ratios, `steps`, `train_seconds`).
        train_args: `train_args.json`: `{"model": ModelArguments, "data": DataArguments}` and, optionally,
            `"training"` (TrainingArguments as a dict) for the batch size and learning rate.
        figures: image paths (PNG, GIF) inside `output_dir`, embedded in order.
        base_models: Hub ids for the front matter's `base_model`; None: the pretrained parts named in train_args.
        model_id: the name usage code loads and `model-index` names (the Hub repository, `user/model`); None: the
            directory's name. The front matter's `model-index` holds the held-out metrics (see `_eval_results`).
        template: a template path; None: [`find_template`].
    Returns the card's path.
    """
    from huggingface_hub import ModelCardData  # a transformers dependency; imported here as only the card needs it

    output_dir = Path(output_dir)
    model_args, data = train_args["model"], train_args["data"]
    if base_models is None:
        base_models = [name for name in map(_hub_name, (model_args["vision_model"], model_args["text_model"])) if name]
    dataset = _HUB_DATASETS.get(data["dataset"])
    model_id = model_id or output_dir.resolve().name
    eval_results = _eval_results(metrics, data)
    card_data = ModelCardData(
        model_name=model_id if eval_results else None,
        eval_results=eval_results or None,
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="video-text-to-text",
        tags=["foveated-vlm", "video-text-to-text", "video", "vision-language", "custom_code"],
        base_model=base_models or None,
        datasets=[dataset] if dataset else None,
    )
    vision, language = _describe_parts(model_args)
    k = model_args["tokens_per_frame"]
    values = {
        "card_data": card_data.to_yaml(),
        "model_id": model_id,
        "frame_tokens": "one visual token" if k == 1 else f"K = {k} visual tokens",
        "num_frames": str(data["num_frames"]),
        "vision_model": vision,
        "language_model": language,
        "target": "SD-VAE latent" if data["target"] == "sd-vae" else "downsampled pixels",
        "training_table": _training_table(train_args, metrics),
        "results_table": _results_table(metrics),
        "figures": _figures_section(figures, output_dir),
    }
    template = Path(template or find_template())
    text = template.read_text()
    unknown = set(re.findall(r"\{\{ *(\w+) *\}\}", text)) - set(values)
    if unknown:
        raise ValueError(f"{template} has placeholders nothing fills: {sorted(unknown)}; known: {sorted(values)}")
    text = re.sub(r"\{\{ *(\w+) *\}\}", lambda match: values[match.group(1)], text)
    path = output_dir / "README.md"
    path.write_text(text)
    return str(path)
