"""The `foveated-vlm` command line on a tiny saved checkpoint and a generated video."""

import subprocess
import sys

import pytest
from PIL import Image
from test_processing import make_processor
from test_targets import tiny_vae_dir  # noqa: F401 - a fixture
from test_video_processing import write_video
from tiny import config_for_processor

from foveated_vlm import FoveatedVLMForConditionalGeneration
from foveated_vlm.cli import main
from foveated_vlm.evaluation.visualize import PANEL_GAP


def save_checkpoint(directory, **overrides):
    processor = make_processor(num_frames=4)
    config = config_for_processor(processor, **overrides)
    FoveatedVLMForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, num_frames=30)  # 1 s at 30 fps
    return path


def test_caption_prints_text(checkpoint, video, capsys):
    text = main(["caption", "--model", str(checkpoint), str(video), "--max_new_tokens", "4"])
    assert isinstance(text, str)
    assert capsys.readouterr().out.strip().endswith(text)


def test_stream_writes_a_gif_and_reports_speed(checkpoint, video, tmp_path, capsys):
    out = tmp_path / "stream.gif"
    result = main(
        [
            "stream",
            "--model",
            str(checkpoint),
            str(video),
            "--out",
            str(out),
            "--sample_fps",
            "6",
            "--max_frames",
            "5",
            "--max_new_tokens",
            "3",
        ]
    )
    assert result["frames"] == 5 and result["frames_per_second"] > 0
    assert set(result["timings"]) == {"encode", "queries", "language_model", "predict"}
    gif = Image.open(out)
    assert gif.n_frames == 5
    # Four 128 px panels (frame, static query, planned query, predicted frame) under their titles.
    assert gif.size[1] > 128 and gif.size[0] == 4 * 128 + 3 * PANEL_GAP
    printed = capsys.readouterr().out
    assert "frames/s" in printed and str(out) in printed


def test_console_script_entry_point(checkpoint, video):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "foveated_vlm.cli",
            "caption",
            "--model",
            str(checkpoint),
            str(video),
            "--max_new_tokens",
            "2",
        ],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_missing_video_is_a_clear_error(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="cannot read video .*missing.mp4"):
        main(["caption", "--model", str(checkpoint), str(tmp_path / "missing.mp4")])


def test_overlay_tints_only_attention_above_uniform():
    import numpy as np
    import torch

    from foveated_vlm.evaluation.visualize import TINT_RGB, overlay_fixation

    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    uniform = torch.full((4, 4), 1 / 16)
    assert np.array_equal(overlay_fixation(image, uniform), image)
    peaked = torch.zeros(4, 4)
    peaked[0, 0] = 1.0
    tinted = overlay_fixation(image, peaked)
    assert np.abs(tinted[0, 0].astype(int) - TINT_RGB).max() < 60  # the attended corner takes the tint
    assert np.array_equal(tinted[4:, 4:], image[4:, 4:])  # the rest does not


def test_stream_decodes_predicted_latents_with_a_vae(tmp_path_factory, tiny_vae_dir, video, tmp_path):  # noqa: F811
    # The tiny VAE halves the frame: 4 x 16 x 16 latents for 32 px frames.
    latent_model = save_checkpoint(tmp_path_factory.mktemp("latent"), target_channels=4, target_size=16)
    out = tmp_path / "vae.gif"
    main(
        [
            "stream",
            "--model",
            str(latent_model),
            str(video),
            "--out",
            str(out),
            "--sample_fps",
            "4",
            "--max_frames",
            "3",
            "--max_new_tokens",
            "2",
            "--vae",
            str(tiny_vae_dir),
        ]
    )
    gif = Image.open(out)
    assert gif.n_frames == 3 and gif.size[0] == 4 * 128 + 3 * PANEL_GAP  # the predicted-frame panel is there
    with pytest.raises(SystemExit, match="4-channel latents; the model predicts 3"):
        main(
            [
                "stream",
                "--model",
                str(save_checkpoint(tmp_path / "pixels")),
                str(video),
                "--out",
                str(out),
                "--vae",
                str(tiny_vae_dir),
            ]
        )
