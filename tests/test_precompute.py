"""Precomputed targets: same values as on-the-fly targets, resumable, idempotent, and their size on disk."""

import itertools
import json
import os
import pickle

import pytest
import torch
from diffusers import AutoencoderKL
from test_llava_video import CAPTIONS, OPEN_ENDED, VIDEOS, mp4, write_shard
from test_processing import make_processor

from foveated_vlm import FoveatedVideoProcessor, VideoTextCollator, build_target_encoder
from foveated_vlm.data import precompute
from foveated_vlm.data.pipeline import build_dataset
from foveated_vlm.data.precompute import (
    PrecomputedTargets,
    PrecomputedTargetsCollator,
    main,
    precompute_targets,
    video_id_of,
)

SIZE, FRAMES = 32, 4


def tiny_vae(directory, blocks=(8, 16)):
    """A tiny AutoencoderKL (latents at 1 / 2 ** (len(blocks) - 1) of the frame size, 4 channels), saved as on the
    Hub, so the sd-vae target loads it by path."""
    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    ).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def vae_encoder(tmp_path_factory):
    return build_target_encoder("sd-vae", vae_name_or_path=tiny_vae(tmp_path_factory.mktemp("vae")))


def clips(n, seed=0, size=SIZE, frames=FRAMES):
    return list(itertools.islice(build_dataset("synthetic", seed=seed, frame_size=size, num_frames=frames), n))


def run(samples, out, encoder, **kwargs):
    kwargs = {"shard_size": 3, "batch_size": 2, "dtype": torch.float32} | kwargs
    return precompute_targets(samples, out, encoder, FoveatedVideoProcessor(size=SIZE, num_frames=FRAMES), **kwargs)


def shard_files(out):  # every file but the index and precompute's bookkeeping (its lock and its list of files)
    return sorted(path.name for path in out.iterdir() if path.name not in ("index.json", precompute.LOCK,
                                                                           precompute.MANIFEST))  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_precomputed_batches_equal_on_the_fly_targets(vae_encoder, tmp_path, dtype):
    samples = clips(7)
    report = run(samples, tmp_path, vae_encoder, dtype=dtype)
    assert report["written"] == report["videos"] == 7 and report["shards"] == 3  # 3 + 3 + 1
    processor = make_processor(num_frames=FRAMES, size=SIZE)
    targets = PrecomputedTargets(tmp_path)
    assert len(targets) == 7 and targets.complete  # the list ran out
    assert targets.get(video_id_of(samples[0])).shape == (FRAMES, 4, 16, 16)  # [T, C, h, w]
    copy = pickle.loads(pickle.dumps(targets))  # as DataLoader workers receive it: open files stay behind
    torch.testing.assert_close(copy.get(video_id_of(samples[6])), targets.get(video_id_of(samples[6])), rtol=0, atol=0)

    for chunk in (samples[:3], samples[3:]):  # batches that cut across the precompute's batches and shards
        expected = VideoTextCollator(processor, vae_encoder)(chunk)
        batch = PrecomputedTargetsCollator(VideoTextCollator(processor), targets)(chunk)
        assert set(batch) == set(expected)
        for name in ("input_ids", "labels", "pixel_values_videos"):
            torch.testing.assert_close(batch[name], expected[name], rtol=0, atol=0)
        if dtype == torch.float32:  # float32 storage is exact
            torch.testing.assert_close(batch["target_latents"], expected["target_latents"], rtol=0, atol=0)
        else:  # bfloat16 keeps 8 significant bits: rounding to nearest is within 2**-8 relative
            torch.testing.assert_close(batch["target_latents"], expected["target_latents"], rtol=2**-8, atol=0)
            assert not torch.equal(batch["target_latents"], expected["target_latents"])


def test_cli_pixels_and_sd_vae(tmp_path):
    common = ["--dataset", "synthetic", "--num_frames", "4", "--frame_size", "32", "--max_videos", "5"]
    pixels = main([*common, "--out", str(tmp_path / "px"), "--target", "pixels", "--target_size", "8",
                   "--dtype", "float32", "--shard_size", "2"])  # fmt: skip
    assert (pixels["videos"], pixels["shards"]) == (5, 3)
    targets, samples = PrecomputedTargets(tmp_path / "px"), clips(5)
    encoder = build_target_encoder("pixels", target_size=8)
    frames = FoveatedVideoProcessor(size=32, num_frames=4)([s["frames"] for s in samples], return_target_frames=True)
    expected = encoder.encode(frames["target_frames"])  # [B, T, 3, 8, 8]
    got = torch.stack([targets.get(video_id_of(s)) for s in samples])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)

    vae = tiny_vae(tmp_path / "vae")
    report = main([*common, "--out", str(tmp_path / "vae_targets"), "--target", "sd-vae", "--vae", vae])
    assert report["videos"] == 5 and PrecomputedTargets(tmp_path / "vae_targets").settings["dtype"] == "bfloat16"
    with pytest.raises(SystemExit):  # synthetic never ends: a bound is required
        main(["--dataset", "synthetic", "--out", str(tmp_path / "x"), "--target", "pixels"])


def test_cli_llava_video(tmp_path):
    """LLaVA-Video names a video once per question: its targets are computed once, under its relative path."""
    paths = list(VIDEOS)[:2]
    write_shard(tmp_path / "videos_1.tar.gz", {path: mp4(VIDEOS[path]) for path in paths})
    (tmp_path / "cap.json").write_text(json.dumps(CAPTIONS[:2] + OPEN_ENDED[:1]))  # v0 twice, v1 once
    report = main(["--dataset", "llava_video", "--annotation_files", str(tmp_path / "cap.json"),
                   "--shards", str(tmp_path / "videos_1.tar.gz"), "--out", str(tmp_path / "t"), "--target", "pixels",
                   "--num_frames", "3", "--frame_size", "32", "--target_size", "4"])  # fmt: skip
    assert (report["written"], report["shards"]) == (2, 1)
    targets = PrecomputedTargets(tmp_path / "t")
    assert targets.complete and len(targets) == 2 and all(path in targets for path in paths)
    assert targets.get(paths[1]).shape == (3, 3, 4, 4)


def test_rerun_is_a_no_op_and_more_videos_append(vae_encoder, tmp_path, monkeypatch):
    samples = clips(8)
    run(samples, tmp_path, vae_encoder, max_videos=6)
    stamps = {name: os.stat(tmp_path / name).st_mtime_ns for name in os.listdir(tmp_path)}
    index = (tmp_path / "index.json").read_bytes()

    calls = []  # encoder calls: a re-run computes nothing

    def counting_encode(frames):
        calls.append(len(frames))
        return type(vae_encoder).encode(vae_encoder, frames)

    monkeypatch.setattr(vae_encoder, "encode", counting_encode)
    report = run(samples, tmp_path, vae_encoder, max_videos=6)
    assert calls == [] and report["written"] == 0 and report["videos"] == 6
    assert {name: os.stat(tmp_path / name).st_mtime_ns for name in os.listdir(tmp_path)} == stamps
    assert (tmp_path / "index.json").read_bytes() == index

    report = run(samples, tmp_path, vae_encoder)  # the source runs out after 2 more videos: the run is complete
    assert report["written"] == 2 and report["videos"] == 8 and calls == [2]
    assert all(os.stat(tmp_path / name).st_mtime_ns == stamps[name] for name in shard_files(tmp_path)[:2])
    assert PrecomputedTargets(tmp_path).complete

    def never():  # a complete directory does not even read its source
        raise AssertionError("the source was read")
        yield

    assert run(never(), tmp_path, vae_encoder)["written"] == 0 and calls == [2]


def test_interrupted_run_resumes_to_the_same_result(vae_encoder, tmp_path, monkeypatch):
    samples = clips(8)
    # One video named twice (as LLaVA-Video names a video once per question): encoded once.
    samples.insert(2, samples[1])
    run(samples, tmp_path / "whole", vae_encoder)

    def crashing(stop):
        yield from samples[:stop]
        raise RuntimeError("killed")

    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        run(crashing(6), out, vae_encoder)  # 5 distinct videos: one full shard, two videos lost with the run
    assert json.loads((out / "index.json").read_text())["shards"][0]["file"] == "shard-00000.safetensors"
    assert shard_files(out) == ["shard-00000.safetensors"]

    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):  # the machine dies while the second shard is being written (after listing its name)
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("disk gone")
        real_fsync(fd)

    monkeypatch.setattr(precompute.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk gone"):
        run(iter(samples), out, vae_encoder)
    assert shard_files(out) == ["shard-00000.safetensors"]  # no half-written shard, no temporary file
    monkeypatch.undo()

    real_replace = os.replace

    def dying_replace(source, target):  # the run is killed between the shard's rename and the index's
        real_replace(source, target)
        if str(target).endswith(".safetensors"):
            raise OSError("killed")

    monkeypatch.setattr(precompute.os, "replace", dying_replace)
    with pytest.raises(OSError, match="killed"):
        run(iter(samples), out, vae_encoder)
    assert shard_files(out) == ["shard-00000.safetensors", "shard-00001.safetensors"]  # not in the index
    monkeypatch.undo()
    report = run(iter(samples), out, vae_encoder)
    assert report["videos"] == 8 and report["written"] == 5
    whole, resumed = PrecomputedTargets(tmp_path / "whole"), PrecomputedTargets(out)
    assert json.loads((out / "index.json").read_text()) == json.loads((tmp_path / "whole" / "index.json").read_text())
    for sample in samples:
        torch.testing.assert_close(resumed.get(video_id_of(sample)), whole.get(video_id_of(sample)), rtol=0, atol=0)


def test_mismatches_are_refused(vae_encoder, tmp_path):
    samples = clips(2)
    run(samples, tmp_path, vae_encoder)
    with pytest.raises(ValueError, match="other settings.*'dtype': \\('float32', 'bfloat16'\\)"):
        run(samples, tmp_path, vae_encoder, dtype=torch.bfloat16)
    targets = PrecomputedTargets(tmp_path)
    with pytest.raises(ValueError, match="computed with"):
        targets.check(FoveatedVideoProcessor(size=64, num_frames=FRAMES))
    with pytest.raises(KeyError, match="no precomputed targets for video 'nope'"):
        targets.get("nope")
    with pytest.raises(ValueError, match="already computes targets"):
        PrecomputedTargetsCollator(VideoTextCollator(make_processor(), vae_encoder), targets)
    with pytest.raises(ValueError, match="no precomputed targets"):
        PrecomputedTargets(tmp_path / "empty")


def test_bytes_per_video_at_the_reference_size(tmp_path):
    """SD-VAE's shape at 256 px (4 x 32 x 32 per frame) from a 4-block tiny VAE, 8 frames, stored in bfloat16."""
    encoder = build_target_encoder("sd-vae", vae_name_or_path=tiny_vae(tmp_path / "vae", (8, 8, 8, 8)))
    processor = FoveatedVideoProcessor(size=256, num_frames=8)
    report = precompute_targets(clips(4, size=256, frames=8), tmp_path / "t", encoder, processor, shard_size=4)
    assert PrecomputedTargets(tmp_path / "t").get("synthetic-caption-describe-0").shape == (8, 4, 32, 32)
    latent_bytes = 8 * 4 * 32 * 32 * 2  # 64 KiB
    assert latent_bytes <= report["bytes_per_video"] < latent_bytes + 256  # plus the video's entry in the header
    print(f"bytes per 8-frame video: {report['bytes_per_video']:.0f}")
