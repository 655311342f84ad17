"""Reporting: fixation figures, training curves and the filled model card, on a tiny saved model (offline)."""

import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from test_cli import save_checkpoint
from test_targets import tiny_vae_dir  # noqa: F401 - a fixture
from test_video_processing import write_video

from foveated_vlm import (
    FoveatedVLMForConditionalGeneration,
    FoveatedVLMProcessor,
    PixelTargetEncoder,
    SDVAETargetEncoder,
    VideoTextCollator,
)
from foveated_vlm.data.pipeline import build_dataset
from foveated_vlm.evaluation.reporting import (
    GAP,
    LABEL_WIDTH,
    find_template,
    fixation_figures,
    loss_curves,
    write_model_card,
)
from foveated_vlm.evaluation.visualize import PANEL_GAP, TITLE_HEIGHT, fixation_cell, to_uint8_image
from foveated_vlm.training.arguments import DataArguments, ModelArguments

FRAMES = 4
CELL = 128  # 32 px frames are drawn at the 128 px minimum cell


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def load(directory):
    return FoveatedVLMForConditionalGeneration.from_pretrained(directory), FoveatedVLMProcessor.from_pretrained(
        directory
    )


@pytest.fixture(scope="module")
def samples():
    return list(build_dataset("synthetic", seed=3, frame_size=32, num_frames=FRAMES).take(2))


def cell(image: np.ndarray, row: int, column: int) -> np.ndarray:
    left, top = LABEL_WIDTH + column * (CELL + GAP), row * (CELL + GAP)
    return image[top : top + CELL, left : left + CELL]


def upscaled(picture: torch.Tensor) -> np.ndarray:
    """How the figure draws a `[3, h, w]` picture in [-1, 1]: nearest-upscaled to one cell."""
    return np.asarray(Image.fromarray(to_uint8_image(picture)).resize((CELL, CELL), Image.NEAREST))


@pytest.mark.parametrize("target", ["pixels", "sd-vae"])
def test_fixation_figures_put_each_prediction_under_its_frame(checkpoint, samples, tmp_path, target, request):
    if target == "pixels":
        model, processor = load(checkpoint)
        encoder = PixelTargetEncoder(model.config.target_size)
    else:  # the tiny VAE halves the frame: 4 x 16 x 16 latents for 32 px frames
        model, processor = load(save_checkpoint(tmp_path / "latent", target_channels=4, target_size=16))
        encoder = SDVAETargetEncoder.from_pretrained(str(request.getfixturevalue("tiny_vae_dir")), target_size=16)
    model.train()  # as the Trainer leaves it
    paths = fixation_figures(model, processor, samples, tmp_path, target_encoder=encoder, num_videos=2)
    assert model.training
    assert paths == [str(tmp_path / "figures" / f"fixations_{i:02d}.{ext}") for i in range(2) for ext in ("png", "gif")]

    png = np.asarray(Image.open(paths[2]).convert("RGB"))  # the second video
    rows = 5  # frame, static-query fixation, planned-query fixation, target, prediction
    assert png.shape == (rows * (CELL + GAP), LABEL_WIDTH + FRAMES * (CELL + GAP), 3)

    # The same inputs through the model: column t must show frame t, its fine fixation and the prediction of it.
    batch = VideoTextCollator(processor, encoder, train_captions=False)(samples)
    frames = processor(videos=[sample["frames"] for sample in samples], return_target_frames=True)["target_frames"]
    model.eval()
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    predictions = encoder.decode(out.predicted_latents)[1]  # [T, 3, H, W]
    for t in range(FRAMES):
        frame = to_uint8_image(frames[1, t])
        assert np.array_equal(cell(png, 0, t), upscaled(frames[1, t]))
        assert np.array_equal(cell(png, 2, t), fixation_cell(frame, out.fixations_fine[1, t], CELL))
        assert np.array_equal(cell(png, 4, t), upscaled(predictions[t]))

    gif = Image.open(paths[3])
    # Panels under their titles, the prompt beneath (tests/test_figures.py checks the text).
    assert gif.n_frames == FRAMES and gif.size[0] == rows * CELL + (rows - 1) * PANEL_GAP
    for t in range(FRAMES):  # GIF frame t is column t laid side by side, up to the GIF's 256-colour palette
        gif.seek(t)
        panels = np.asarray(gif.convert("RGB")).astype(int)[TITLE_HEIGHT : TITLE_HEIGHT + CELL]
        errors = [np.abs(panels[:, :CELL] - cell(png, 0, column)).mean() for column in range(FRAMES)]
        assert np.argmin(errors) == t and errors[t] < 8
        assert np.abs(panels[:, 4 * (CELL + PANEL_GAP) :] - cell(png, 4, t)).mean() < 8


def test_fixation_figures_without_targets_draw_three_rows(checkpoint, samples, tmp_path):
    model, processor = load(checkpoint)
    paths = fixation_figures(model, processor, iter(samples), tmp_path, num_videos=5)  # fewer samples than asked
    assert [Path(path).name for path in paths] == ["fixations_00.png", "fixations_00.gif"] + [
        "fixations_01.png",
        "fixations_01.gif",
    ]
    assert Image.open(paths[0]).size == (LABEL_WIDTH + FRAMES * (CELL + GAP), 3 * (CELL + GAP))
    assert Image.open(paths[1]).size[0] == 3 * CELL + 2 * PANEL_GAP
    # The frame row's label carries each video's prompt: other prompts, other label pixels, same frames.
    relabelled = [{**sample, "prompt": "Track the blue cross. Where does it end up?"} for sample in samples[:1]]
    other = fixation_figures(model, processor, relabelled, tmp_path / "other", num_videos=1)[0]
    label, frames = np.s_[:CELL, :LABEL_WIDTH], np.s_[:CELL, LABEL_WIDTH:]
    first, second = np.asarray(Image.open(paths[0])), np.asarray(Image.open(other))
    assert not np.array_equal(first[label], second[label]) and np.array_equal(first[frames], second[frames])
    with pytest.raises(ValueError, match="no samples"):
        fixation_figures(model, processor, [], tmp_path)


def fake_history(captions: bool) -> list[dict]:
    """What the FoveatedTrainer logs: training entries, an evaluation entry and the final summary."""
    history = []
    for step in (10, 20, 30):
        entry = {"step": step, "loss": 2 / step, "grad_norm": 1.0, "learning_rate": 1e-3, "loss_fine": 1 / step}
        entry.update(loss_coarse=1.1 / step, ratio=1.1, fixation_entropy_fine=3.0, fixation_entropy_coarse=4.1)
        if captions:
            entry.update(caption_loss_fine=5 / step, caption_loss_coarse=5.5 / step, caption_ratio=1.1)
        history.append(entry)
    history.append({"step": 30, "eval_loss_fine": 0.04, "eval_loss_coarse": 0.05, "eval_ratio": 1.25})
    history.append({"step": 30, "train_runtime": 12.0, "train_loss": 0.1})
    return history


def test_loss_curves_draw_a_panel_per_logged_quantity(tmp_path):
    # One 450 x 360 px panel each: reconstruction, caption (only when trained), ratios, fixation entropy.
    with_captions = loss_curves(fake_history(captions=True), tmp_path / "figures" / "curves.png")
    assert with_captions == str(tmp_path / "figures" / "curves.png")
    assert Image.open(with_captions).size == (4 * 450, 360)
    without = loss_curves(fake_history(captions=False), tmp_path / "no_captions.png")
    assert Image.open(without).size == (3 * 450, 360)
    assert loss_curves([], tmp_path / "empty.png") is None  # a run shorter than logging_steps
    assert loss_curves([{"step": 5, "train_runtime": 1.0}], tmp_path / "summary.png") is None
    assert not (tmp_path / "empty.png").exists()


METRICS = {
    "loss_fine": 0.0125,
    "loss_coarse": 0.0131,
    "ratio": 1.048,
    "caption_loss_fine": 0.638,
    "caption_loss_coarse": 0.702,
    "caption_ratio": 1.1003,
    "fixation_entropy_fine": 3.1,
    "fixation_entropy_coarse": 4.157,
    "num_videos": 64,
    "steps": 300,
    "train_seconds": 153.6,
    "preset": "synthetic",
}


def train_args(**data) -> dict:
    return {"model": asdict(ModelArguments()), "data": asdict(DataArguments(**data))}


def test_model_card_holds_metadata_metrics_and_figures(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    paths = [str(figures / name) for name in ("loss_curves.png", "fixations_00.png", "fixations_00.gif")]
    for path in paths:
        Image.new("RGB", (4, 4)).save(path)
    path = write_model_card(tmp_path, METRICS, train_args(), figures=paths, model_id="someone/foveated-tiny")
    assert path == str(tmp_path / "README.md")
    text = Path(path).read_text()

    card = ModelCard(text)  # what the Hub reads
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "video-text-to-text"
    assert {"foveated-vlm", "video-text-to-text"} <= set(card.data.tags)
    assert card.data.base_model is None and card.data.datasets is None  # fresh weights, local synthetic video

    assert "| next-frame reconstruction MSE ↓ | 0.0125 | 0.0131 | 1.0480 |" in text
    assert "| caption cross-entropy ↓ | 0.638 | 0.702 | 1.1003 |" in text
    assert "| fixation entropy (nats) | 3.1 | 4.157 | – |" in text
    assert "PSNR" not in text and "accuracy" not in text  # not measured, so not shown
    assert "Evaluated on 64 held-out videos" in text
    assert "| frames per video | 8 at 64 × 64 px |" in text and "| steps | 300 |" in text
    assert "| training time | 2.6 min |" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["figures/loss_curves.png", "figures/fixations_00.png", "figures/fixations_00.gif"]
    assert all((tmp_path / link).is_file() for link in links)
    assert 'AutoModelForImageTextToText.from_pretrained("someone/foveated-tiny", trust_remote_code=True)' in text
    assert "{{" not in text and "}}" not in text


def test_model_card_names_pretrained_parts_and_hub_datasets(tmp_path):
    args = train_args(dataset="llava_video", target="sd-vae", target_size=32)
    args["model"].update(vision_model="facebook/dinov2-small", text_model="smollm2-gguf")
    args["training"] = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 8, "learning_rate": 2e-4}
    metrics = {"loss_fine": 0.5, "loss_coarse": 0.6, "ratio": 1.2}  # no captions, no run facts
    text = Path(write_model_card(tmp_path, metrics, args)).read_text()
    card = ModelCard(text)
    assert card.data.base_model == ["facebook/dinov2-small", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert card.data.datasets == ["lmms-lab/LLaVA-Video-178K"]
    assert "`facebook/dinov2-small` encodes each frame" in text and "SD-VAE latent" in text
    assert "| batch per device × accumulation | 4 × 8 |" in text and "| peak learning rate | 0.0002 |" in text
    assert "caption cross-entropy" not in text and "No figures were written." in text
    # An explicit list wins; a local directory is never a base model.
    text = Path(write_model_card(tmp_path, {}, args, base_models=["org/model"])).read_text()
    assert ModelCard(text).data.base_model == ["org/model"] and "No held-out metrics were recorded." in text
    args["model"].update(vision_model=str(tmp_path), text_model="config")
    assert ModelCard(Path(write_model_card(tmp_path, metrics, args)).read_text()).data.base_model is None


def test_the_template_is_the_repository_file_and_checked(tmp_path):
    assert find_template() == Path(__file__).resolve().parents[1] / "model_card.md"
    template = tmp_path / "card.md"
    template.write_text("---\n{{ card_data }}\n---\n{{ results_table }} {{ colour }}\n")
    with pytest.raises(ValueError, match=r"placeholders nothing fills: \['colour'\]"):
        write_model_card(tmp_path, METRICS, train_args(), template=template)


def test_usage_code_in_the_card_runs(checkpoint, tmp_path):
    """Both Python blocks of the card's usage section, against a saved tiny checkpoint and a real mp4."""
    video = write_video(tmp_path / "clip.mp4", num_frames=30)  # 3 s at 10 fps: 6 frames streamed at 2 fps
    text = Path(write_model_card(checkpoint, METRICS, train_args(), model_id=str(checkpoint))).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    code = "\n".join(blocks).replace('"clip.mp4"', repr(str(video))).replace("max_new_tokens=30", "max_new_tokens=3")
    namespace = {}
    exec(compile(code, "model_card.md", "exec"), namespace)
    assert namespace["step"].fixation.shape == (1, 1, 4, 4)  # [B, K, gh, gw] of 32 px frames, patch 8
    assert namespace["ids"].shape[0] == 1
