"""Figures a person can read without the code: titled GIF panels with the prompt, a tint no object colour hides,
"attention ~uniform" where a map singles nothing out, loss curves with markers and the uniform-entropy line (even
after one logged step), and the held-out metrics and figures in the run's TensorBoard events (offline)."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import save_checkpoint
from test_video_processing import write_video

from foveated_vlm import FoveatedVLMForConditionalGeneration, FoveatedVLMProcessor
from foveated_vlm.cli import main
from foveated_vlm.data.pipeline import build_dataset
from foveated_vlm.data.synthetic import PALETTE
from foveated_vlm.evaluation.reporting import (
    GAP,
    LABEL_WIDTH,
    fixation_figures,
    log_figures_to_tensorboard,
    loss_curves,
    tensorboard_logging_dir,
)
from foveated_vlm.evaluation.visualize import (
    PANEL_GAP,
    TINT_RGB,
    TITLE_HEIGHT,
    fixation_cell,
    is_uniform,
    overlay_fixation,
    titled_panel,
)

CELL = 128  # 32 px frames are drawn at the 128 px minimum cell
FRAMES = 4  # what the tiny checkpoint's processor samples


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def samples():
    return list(build_dataset("synthetic", seed=5, frame_size=32, num_frames=FRAMES).take(1))


def peaked_map() -> torch.Tensor:
    fixation = torch.zeros(4, 4)
    fixation[0, 0] = 1.0  # all attention on the top-left patch
    return fixation


# ------------------------------------------------------------------------------------------------ tint
def test_the_tint_stands_out_on_every_object_colour():
    # Every colour the synthetic generator paints objects with, fully attended: the tinted pixel must differ from
    # the object and from every other object colour (the old red tint moved a red object by 43 RGB units only).
    palette = np.array(list(PALETTE.values()), dtype=float)  # [colours, 3]
    for name, rgb in PALETTE.items():
        image = np.full((4, 4, 3), rgb, dtype=np.uint8)
        tinted = overlay_fixation(image, torch.full((2, 2), 1.0))[0, 0].astype(float)  # every patch at 4x uniform
        distances = np.linalg.norm(palette - tinted, axis=1)
        assert distances.min() > 60, f"tinted {name} {tinted} looks like {list(PALETTE)[distances.argmin()]}"
    assert min(np.linalg.norm(palette - np.array(TINT_RGB), axis=1)) > 60


# ------------------------------------------------------------------------------------------------ uniform label
def test_uniform_attention_is_written_on_the_cell_and_peaked_attention_is_not():
    image = np.full((32, 32, 3), 40, dtype=np.uint8)
    plain = np.asarray(Image.fromarray(image).resize((CELL, CELL), Image.NEAREST))
    uniform, peaked = torch.full((4, 4), 1 / 16), peaked_map()
    assert is_uniform(uniform) and not is_uniform(peaked)
    near = torch.full((4, 4), 1.0)
    near[0, 0] = 1.9  # under twice the least attended patch's share: still "nowhere in particular"
    assert is_uniform(near / near.sum()) and not is_uniform(torch.cat([near[:3], torch.full((1, 4), 0.4)]))

    labelled, tinted = fixation_cell(image, uniform, CELL), fixation_cell(image, peaked, CELL)
    assert labelled.shape == tinted.shape == (CELL, CELL, 3)
    band = np.s_[-18:, :]  # the label's band along the bottom edge
    assert np.array_equal(labelled[:-20], plain[:-20])  # the picture above the label is untouched
    assert (labelled[band].min(axis=-1) > 180).sum() > 50  # light letters on the darkened band
    assert np.array_equal(tinted[band], plain[band])  # no label where attention is peaked (bottom is unattended)
    assert (tinted[:32, :32] != plain[:32, :32]).any()  # ... and the attended corner is tinted


# ------------------------------------------------------------------------------------------------ GIF panels
def title_strip(gif_frame: np.ndarray, panel: int, width: int = CELL) -> np.ndarray:
    left = panel * (width + PANEL_GAP)
    return gif_frame[:TITLE_HEIGHT, left : left + width]


def has_text(region: np.ndarray) -> bool:
    return bool((region.min(axis=-1) < 100).sum() > 10)  # dark letter pixels on white


def test_fixation_gif_titles_every_panel_and_shows_the_prompt(checkpoint, samples, tmp_path):
    model = FoveatedVLMForConditionalGeneration.from_pretrained(checkpoint)
    processor = FoveatedVLMProcessor.from_pretrained(checkpoint)
    png, gif_path = fixation_figures(model, processor, samples, tmp_path, num_videos=1)
    renamed = [{**samples[0], "prompt": "Track the blue cross. Where does it end up? " * 3}]
    other_gif = fixation_figures(model, processor, renamed, tmp_path / "other", num_videos=1)[1]

    gif, other = Image.open(gif_path), Image.open(other_gif)
    assert gif.n_frames == FRAMES
    width = 3 * CELL + 2 * PANEL_GAP  # frame, static query, planned query
    assert gif.size[0] == width and gif.size[1] > TITLE_HEIGHT + CELL  # titles above, the prompt beneath
    assert other.size[1] > gif.size[1]  # a longer prompt wraps onto more lines
    grid = np.asarray(Image.open(png).convert("RGB"))
    for t in range(FRAMES):
        gif.seek(t)
        other.seek(t)
        frame, other_frame = np.asarray(gif.convert("RGB")), np.asarray(other.convert("RGB"))
        assert all(has_text(title_strip(frame, panel)) for panel in range(3))
        picture = frame[TITLE_HEIGHT : TITLE_HEIGHT + CELL, :CELL].astype(int)
        assert (
            np.abs(picture - grid[:CELL, LABEL_WIDTH + t * (CELL + GAP) :][:, :CELL]).mean() < 8
        )  # frame t sits below
        assert has_text(frame[TITLE_HEIGHT + CELL :])  # the prompt
        # Same frame, other prompt: the frame panel and its title agree (up to each GIF's own 256-colour
        # palette; the planned queries may move with the prompt), the strip below the pictures does not.
        head = np.s_[: TITLE_HEIGHT + CELL, :CELL]
        assert np.abs(frame[head].astype(int) - other_frame[head]).mean() < 4
        assert not np.array_equal(frame[TITLE_HEIGHT + CELL :], other_frame[TITLE_HEIGHT + CELL : gif.size[1]])
    gif.seek(0)
    first = np.asarray(gif.convert("RGB"))
    gif.seek(1)
    assert not np.array_equal(title_strip(first, 0), title_strip(np.asarray(gif.convert("RGB")), 0))  # "frame t/T"


def test_stream_gif_titles_frame_static_planned_and_predicted_panels(checkpoint, tmp_path):
    video = write_video(tmp_path / "clip.mp4", num_frames=6, width=32, height=32)
    out = tmp_path / "stream.gif"
    main(["stream", "--model", str(checkpoint), str(video), "--out", str(out), "--max_frames", "3"]
         + ["--max_new_tokens", "1", "--prompt", "Watch the red ball."])  # fmt: skip
    gif = Image.open(out)
    # Four 128 px panels: the frame, the static query, the planned query and the predicted frame.
    assert gif.size[0] == 4 * CELL + 3 * PANEL_GAP and gif.size[1] > TITLE_HEIGHT + CELL
    frame = np.asarray(gif.convert("RGB"))
    assert all(has_text(title_strip(frame, panel)) for panel in range(4))
    assert has_text(frame[TITLE_HEIGHT + CELL :])


def test_titled_panel_needs_a_title_per_image():
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        titled_panel([np.zeros((4, 4, 3), np.uint8)] * 2, ["frame"])


# ------------------------------------------------------------------------------------------------ loss curves
@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib Figures `loss_curves` saves, to find where it drew each point."""
    figures, save = [], Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def test_one_logged_point_draws_a_visible_marker_and_the_uniform_entropy_line(tmp_path, saved_figures):
    history = [{"step": 10, "loss_fine": 1.19, "loss_coarse": 0.6, "ratio": 0.504}]
    history[0].update(fixation_entropy_fine=4.1588, fixation_entropy_coarse=4.1587)
    path = loss_curves(history, tmp_path / "curves.png", num_patches=64)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    reconstruction, ratio, entropy = saved_figures[0].axes
    # Each point's centre, in the saved PNG's pixels, has its series' colour (the old line-only style drew
    # nothing for one point: white there).
    for value, colour in ((1.19, (31, 119, 180)), (0.6, (255, 127, 14))):  # fine: tab:blue, coarse: tab:orange
        x, y = reconstruction.transData.transform((10, value))
        assert np.abs(image[image.shape[0] - round(y), round(x)] - colour).max() < 40
    bottom, top = reconstruction.get_ylim()
    assert bottom == 0 and top > 1.19  # the marker is inside the axes, not clipped at its edge
    (uniform,) = [line for line in entropy.lines if line.get_label().startswith("uniform")]
    assert uniform.get_ydata()[0] == pytest.approx(math.log(64))
    assert entropy.get_ylim()[1] > math.log(64)  # the line and the entropies near it are both in view
    assert all(line.get_marker() not in (None, "None", "") for line in entropy.lines if line is not uniform)


def test_loss_curves_without_a_patch_count_draw_no_uniform_line_and_reject_bad_counts(tmp_path, saved_figures):
    history = [{"step": s, "fixation_entropy_fine": 3.0 - s / 10} for s in (1, 2)]
    assert loss_curves(history, tmp_path / "curves.png") is not None
    assert not [line for line in saved_figures[0].axes[0].lines if line.get_label().startswith("uniform")]
    with pytest.raises(ValueError, match=r"num_patches=0.*patch count >= 1"):
        loss_curves(history, tmp_path / "bad.png", num_patches=0)


# ------------------------------------------------------------------------------------------------ TensorBoard
class TinyRegression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return {"loss": ((self.weight - x) ** 2).mean()}


def test_held_out_metrics_and_figures_join_the_trainers_tensorboard_run(tmp_path):
    from transformers import Trainer, TrainingArguments

    arguments = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=2, logging_steps=1, report_to=["tensorboard"], use_cpu=True,
        disable_tqdm=True, save_strategy="no",
    )  # fmt: skip
    trainer = Trainer(model=TinyRegression(), args=arguments, train_dataset=[{"x": torch.ones(1)}] * 4)
    trainer.train()
    logging_dir = tensorboard_logging_dir(trainer)
    assert logging_dir is not None and logging_dir.startswith(str(tmp_path / "run" / "runs"))

    figures = tmp_path / "run" / "figures"
    figures.mkdir()
    Image.new("RGB", (40, 30), "red").save(figures / "loss_curves.png")
    frames = [Image.new("RGB", (20, 10), colour) for colour in ("white", "black")]
    frames[0].save(figures / "fixations_00.gif", save_all=True, append_images=frames[1:], duration=500, loop=0)
    metrics = {"loss_fine": 0.25, "ratio": 1.5, "steps": 2, "preset": "synthetic", "data": {"succeeded": 8}}
    paths = [str(figures / "loss_curves.png"), str(figures / "fixations_00.gif")]
    log_figures_to_tensorboard(logging_dir, metrics, paths, step=2)

    events = EventAccumulator(logging_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert "train/loss" in tags["scalars"]  # the Trainer's own curve: the same run
    assert {"held_out/loss_fine", "held_out/ratio"} <= set(tags["scalars"]) and "held_out/steps" not in tags["scalars"]
    assert events.Scalars("held_out/ratio")[0].value == 1.5 and events.Scalars("held_out/ratio")[0].step == 2
    assert set(tags["images"]) == {"figures/loss_curves.png", "figures/fixations_00.gif"}
    (png,) = events.Images("figures/loss_curves.png")
    assert (png.width, png.height) == (40, 30)
    (gif,) = events.Images("figures/fixations_00.gif")
    assert gif.encoded_image_string == (figures / "fixations_00.gif").read_bytes()  # the animation itself


def test_tensorboard_logging_is_skipped_without_tensorboard_and_refuses_other_files(tmp_path):
    log_figures_to_tensorboard(None, {"loss_fine": 1.0}, [], step=1)  # --report_to none: nothing to join
    assert not any(tmp_path.iterdir())
    (tmp_path / "notes.txt").write_text("not a figure")
    with pytest.raises(ValueError, match="notes.txt.*expected .png or .gif"):
        log_figures_to_tensorboard(tmp_path / "runs", {}, [str(tmp_path / "notes.txt")], step=1)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        log_figures_to_tensorboard(tmp_path / "runs", {}, [str(tmp_path / "missing.png")], step=1)
    assert not (tmp_path / "runs").exists()  # checked before any event file is written
