"""A local folder of videos with a caption file: the source for your own clips.

The folder holds the videos (any layout) and an annotation file, CSV or JSONL, with one row per clip:

    video,caption[,prompt]          # CSV header; JSONL rows are {"video": ..., "caption": ..., "prompt": ...}
    clips/0001.mp4,A dog runs along a beach.,

`video` is a path relative to the folder, `caption` the answer the model learns, and `prompt` (optional, per row)
the instruction; rows without one get the dataset's `prompt` ("Describe the video."). Each row becomes the sample
`{"frames": uint8 [T, H, W, 3], "prompt", "answer": caption, "video_id": video}` that `VideoTextCollator` reads:
`num_frames` frames sampled uniformly and decoded (only those) inside the stream, so DataLoader workers decode in
parallel and a missing or corrupt file is skipped and counted (`SampleFailures`: "missing_file", "decode",
"bad_record") instead of failing a batch.

The annotation file is small, so it is read whole; `folder_dataset` cuts its rows into `num_shards` contiguous
blocks, which `split_dataset_by_node` and DataLoader workers hand out whole, so ranks see disjoint clips.
`load_clip` and `classify_failure` are shared with the WebVid source.
"""

import csv
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import IterableDataset

from datasets_scripts.faults import SampleFailures
from foveated_vlm.video_processing_foveated import FoveatedVideoProcessor, VideoDecodeError

__all__ = [
    "ANNOTATION_NAMES",
    "CAPTION_PROMPT",
    "BadRecordError",
    "classify_failure",
    "folder_dataset",
    "folder_samples",
    "load_clip",
    "read_annotations",
    "text_field",
]

logger = logging.getLogger(__name__)

CAPTION_PROMPT = "Describe the video."
# Looked up in this order in the folder when no annotation file is named.
ANNOTATION_NAMES = ("annotations.csv", "annotations.jsonl", "metadata.csv", "metadata.jsonl")
REQUIRED_COLUMNS = ("video", "caption")


class BadRecordError(ValueError):
    """A record that names no usable video or caption."""


def text_field(value) -> str | None:
    """A text cell as a stripped string, or None when empty; CSV readers give NaN or None for empty cells and may
    parse a caption such as "1984" as a number."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def classify_failure(error: Exception) -> str:
    """A short reason for `SampleFailures` from an error raised while turning a record into a sample."""
    if isinstance(error, BadRecordError):
        return "bad_record"
    if isinstance(error, FileNotFoundError):
        return "missing_file"
    if isinstance(error, VideoDecodeError):
        return "decode"
    return type(error).__name__  # unexpected: named by its class, so the summary shows it plainly


def _bound_size(frames: torch.Tensor, max_size: int | None) -> torch.Tensor:
    """Downscale uint8 frames `[T, 3, H, W]` so the shorter side is at most `max_size`, keeping the aspect ratio.

    Samples wait in shuffle buffers and batches before the collator resizes them to the model's frame size; 2x that
    size keeps the crop and resize there as sharp as from the source while a 4K clip cannot take gigabytes."""
    height, width = frames.shape[-2:]
    if max_size is None or min(height, width) <= max_size:
        return frames
    scale = max_size / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def load_clip(video, processor: FoveatedVideoProcessor, num_frames: int, max_size: int | None) -> np.ndarray:
    """Decode `num_frames` uniformly sampled frames of a video (path or bytes) -> uint8 `[T, H, W, 3]`."""
    frames, _, _ = processor.load_frames(video, num_frames=num_frames)  # [T, 3, H, W] uint8, only these decoded
    return _bound_size(frames, max_size).permute(0, 2, 3, 1).contiguous().numpy()  # [T, H', W', 3]


def read_annotations(path) -> list[dict]:
    """The rows of a CSV (with a header) or JSONL annotation file, as dicts.

    A file without a `video` or `caption` column, or a JSONL line that is not a JSON object, is an error here, at
    construction: it is a wrong file, not a bad sample. Rows with empty cells are left to the stream to count."""
    path = Path(path)
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: the CSV header {reader.fieldnames} lacks the column(s) {missing}")
            return list(reader)
    if path.suffix in (".jsonl", ".json"):
        rows = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not valid JSON ({error})") from error
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
        return rows
    raise ValueError(f"{path}: annotations must be a .csv or .jsonl file")


def _find_annotations(root: Path) -> Path:
    for name in ANNOTATION_NAMES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no annotation file in {root}; expected one of {ANNOTATION_NAMES} or pass annotations=")


def _row_to_sample(row: dict, root: Path, processor, num_frames: int, prompt: str, max_size: int | None) -> dict:
    video, caption = text_field(row.get("video")), text_field(row.get("caption"))
    if video is None or caption is None:
        raise BadRecordError(f"row {row} needs a video and a caption")
    path = root / video
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    frames = load_clip(path, processor, num_frames, max_size)  # [T, H, W, 3] uint8
    return {"frames": frames, "prompt": text_field(row.get("prompt")) or prompt, "answer": caption,
            "video_id": video}  # fmt: skip


def folder_samples(
    root,
    rows,
    *,
    num_frames: int = 8,
    prompt: str = CAPTION_PROMPT,
    max_size: int | None = 512,
    failures: SampleFailures | None = None,
):
    """Yield the samples of the annotation `rows` (an iterable of dicts), skipping and counting the ones that fail.

    `failures` raises `NoSamplesError` once `give_up_after` rows have failed before any success (a wrong folder,
    say); a summary is logged when the rows run out."""
    root = Path(root)
    failures = failures if failures is not None else SampleFailures("folder")
    processor = FoveatedVideoProcessor(num_frames=num_frames)  # decoding only: its size is not used here
    attempted_before = failures.attempted
    for row in rows:
        sample = failures.attempt(
            str(row.get("video")),
            lambda row=row: _row_to_sample(row, root, processor, num_frames, prompt, max_size),
            classify_failure,
        )
        if sample is not None:
            yield sample
    if failures.attempted > attempted_before:  # most of the many shards of a small folder are empty: nothing to report
        logger.info("folder %s: %s", root, failures.summary())


def _generate_shards(shards, root, options):
    # `datasets` calls this once per shard; the shared `failures` carries the counts from one shard to the next.
    yield from folder_samples(root, itertools.chain.from_iterable(shards), **options)


def folder_dataset(
    root,
    annotations=None,
    *,
    num_frames: int = 8,
    prompt: str = CAPTION_PROMPT,
    max_size: int | None = 512,
    seed: int | None = None,
    num_shards: int = 64,
    failures: SampleFailures | None = None,
) -> IterableDataset:
    """The clips of a local folder as a `datasets.IterableDataset` of samples.

    Args:
        root: the folder; `video` paths are relative to it.
        annotations: the CSV or JSONL file (a path, relative to the working directory); by default the first of
            `ANNOTATION_NAMES` found in `root`.
        num_frames: frames sampled uniformly over each clip (T).
        prompt: the instruction for rows without a `prompt`.
        max_size: frames whose shorter side is longer are downscaled to it (None keeps the source size).
        seed: shuffle the order of the shards with this seed (`datasets` reshuffles per `set_epoch`); None keeps
            the file's order.
        num_shards: contiguous blocks of rows; a multiple of world size x DataLoader workers gives each whole ones.
        failures: the `SampleFailures` that counts skipped rows; pass your own to read the counts (in-process
            iteration; each DataLoader worker counts its own copy and logs its summary).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} does not exist")
    rows = read_annotations(annotations if annotations is not None else _find_annotations(root))
    # Exactly `num_shards` blocks, some maybe empty, so a world size dividing it never falls back to striding over
    # decoded samples (which would decode everything on every rank).
    shards = [rows[j * len(rows) // num_shards : (j + 1) * len(rows) // num_shards] for j in range(num_shards)]
    options = {"num_frames": num_frames, "prompt": prompt, "max_size": max_size,
               "failures": failures if failures is not None else SampleFailures("folder")}  # fmt: skip
    # No `features`: frame sizes differ between videos, which no fixed-shape Array feature describes, and without
    # features `datasets` passes the numpy frames through untouched.
    dataset = IterableDataset.from_generator(
        _generate_shards, gen_kwargs={"shards": shards, "root": str(root), "options": options}
    )
    return dataset.shuffle(seed=seed, buffer_size=1) if seed is not None else dataset
