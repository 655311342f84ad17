"""A local folder of videos with a caption file: the source for your own clips.

The folder holds the videos (any layout) and an annotation file, CSV or JSONL, with one row per clip:

    video,caption[,prompt]          # CSV header; JSONL rows are {"video": ..., "caption": ..., "prompt": ...}
    clips/0001.mp4,A dog runs along a beach.,

`video` is a path relative to the folder, `caption` the answer the model learns, and `prompt` (optional, per row)
the instruction; rows without one get the dataset's `prompt` ("Describe the video."). Each row becomes the sample
`{"frames": uint8 [T, H, W, 3], "prompt", "answer": caption, "video_id": video}` that `VideoTextCollator` reads:
`num_frames` frames sampled uniformly and decoded (only those) inside the stream, so DataLoader workers decode in
parallel and a bad row is skipped and counted (`SampleFailures`, with the row's file:line in the debug log) instead
of failing a batch: "missing_file", "decode", "outside_root" (a `video` that resolves outside the folder: `../x.mp4`,
an absolute path elsewhere, a symlink pointing out; such a file is never opened) and "bad_record" (no video or
caption, a JSONL line that is not a JSON object, a JSON caption that is not a string, a CSV row with more cells than
its header). CSV cells are text, so a caption "1984" in a CSV is the text "1984".

The annotation file is read lazily (`foveated_vlm.data.annotations`): building the stream scans it once for where its
rows start, and raises a `ValueError` naming the file and line for a wrong file (not UTF-8, a CSV header without
`video` and `caption`, a first JSONL line that is not a JSON object); `folder_dataset` cuts the rows into
`num_shards` contiguous blocks, which `split_dataset_by_node` and DataLoader workers hand out whole, so ranks see
disjoint clips, and each block's rows are read from the file when the stream reaches it.
`load_clip` (decoding bounded to `MAX_FRAME_SIDE`) is shared with the WebVid and LLaVA-Video sources, `classify_failure`
with WebVid.
"""

import logging
from pathlib import Path

import numpy as np
from datasets import IterableDataset

from ..video_processing_foveated import FoveatedVideoProcessor, VideoDecodeError
from .annotations import (
    BadRecordError,
    OutsideRootError,
    Scan,
    contiguous_blocks,
    read_csv,
    read_jsonl,
    resolve_under,
    scan_csv,
    scan_jsonl,
)
from .check import check_parser, run_check
from .faults import SampleFailures

__all__ = [
    "ANNOTATION_NAMES",
    "CAPTION_PROMPT",
    "MAX_FRAME_SIDE",
    "BadRecordError",
    "classify_failure",
    "folder_dataset",
    "folder_samples",
    "load_clip",
    "main",
    "read_annotations",
    "text_field",
]

logger = logging.getLogger(__name__)

CAPTION_PROMPT = "Describe the video."
# Frames of the real-video sources are decoded with the shorter side at most this (twice the 256 px model size).
MAX_FRAME_SIDE = 512
# Looked up in this order in the folder when no annotation file is named.
ANNOTATION_NAMES = ("annotations.csv", "annotations.jsonl", "metadata.csv", "metadata.jsonl")
REQUIRED_COLUMNS = ("video", "caption")


def text_field(value, field: str = "value", numbers: bool = True) -> str | None:
    """A text cell as a stripped string, or None when empty; CSV readers give NaN or None for empty cells and may
    parse a caption such as "1984" as a number, which `numbers` keeps as its text. Anything else (a list, a dict,
    a bool; a number when not `numbers`, as from JSON, which has types) is a `BadRecordError` naming `field`."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if not (isinstance(value, str) or (numbers and isinstance(value, (int, float)) and not isinstance(value, bool))):
        raise BadRecordError(f"{field} must be text, got {type(value).__name__} {repr(value)[:80]}")
    text = str(value).strip()
    return text or None


def classify_failure(error: Exception) -> str:
    """A short reason for `SampleFailures` from an error raised while turning a record into a sample."""
    if isinstance(error, BadRecordError):
        return "bad_record"
    if isinstance(error, OutsideRootError):
        return "outside_root"
    if isinstance(error, FileNotFoundError):
        return "missing_file"
    if isinstance(error, VideoDecodeError):
        return "decode"
    return type(error).__name__  # unexpected: named by its class, so the summary shows it plainly


def load_clip(video, processor: FoveatedVideoProcessor, num_frames: int, max_size: int | None) -> np.ndarray:
    """Decode `num_frames` uniformly sampled frames of a video (path or bytes) -> uint8 `[T, H, W, 3]`, the shorter
    side at most `max_size` (None keeps the source size).

    Samples wait in shuffle buffers and batches before the collator resizes them to the model's frame size; 2x that
    size keeps the crop and resize there as sharp as from the source, while a 4K clip, decoded straight to the bound,
    cannot take gigabytes."""
    frames, _, _ = processor.load_frames(video, num_frames=num_frames, max_size=max_size)  # [T, 3, H', W'] uint8
    return frames.permute(0, 2, 3, 1).contiguous().numpy()  # [T, H', W', 3]


def _scan(path) -> tuple[tuple[str, ...] | None, Scan]:
    """The CSV header (None for JSONL) and where the rows of an annotation file start; a wrong file raises here."""
    path = Path(path)
    if path.suffix == ".csv":
        header, scan = scan_csv(path, REQUIRED_COLUMNS)
        return tuple(header), scan  # a tuple: `datasets` would split a list in gen_kwargs across workers
    if path.suffix in (".jsonl", ".json"):
        return None, scan_jsonl(path)
    raise ValueError(f"{path}: annotations must be a .csv or .jsonl file")


def _read_block(block, header):
    """(location "file:line", row dict or `BadRecordError`) of each row of a block of segments."""
    for segment in block:
        yield from read_csv(segment, header) if header is not None else read_jsonl(segment)


def read_annotations(path) -> list[dict]:
    """All the rows of a CSV (with a header) or JSONL annotation file, as dicts, read at once and strictly: a
    wrong file or any bad row (a JSONL line that is not a JSON object, ...) is a `ValueError` naming its line.
    Rows with empty cells are kept, for the stream to count."""
    header, scan = _scan(path)
    rows = []
    for location, row in _read_block(contiguous_blocks([scan], 1)[0], header):
        if isinstance(row, BadRecordError):
            raise ValueError(f"{location}: {row}")
        rows.append(row)
    return rows


def _find_annotations(root: Path) -> Path:
    for name in ANNOTATION_NAMES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no annotation file in {root}; expected one of {ANNOTATION_NAMES} or pass annotations=")


def _row_to_sample(row, root: Path, processor, num_frames: int, prompt: str, max_size: int | None) -> dict:
    if isinstance(row, BadRecordError):  # what reading the row found
        raise row
    # CSV cells are always text; JSON has types, and a number or list where text belongs is a mistake in the row.
    video, caption = (text_field(row.get(key), key, numbers=False) for key in ("video", "caption"))
    if video is None or caption is None:
        raise BadRecordError(f"row {row} needs a video and a caption")
    path = resolve_under(root, video)  # before anything touches the file: one outside the folder is never opened
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    frames = load_clip(path, processor, num_frames, max_size)  # [T, H, W, 3] uint8
    return {"frames": frames, "prompt": text_field(row.get("prompt"), "prompt", numbers=False) or prompt,
            "answer": caption, "video_id": video}  # fmt: skip


def folder_samples(
    root,
    rows,
    *,
    num_frames: int = 8,
    prompt: str = CAPTION_PROMPT,
    max_size: int | None = MAX_FRAME_SIDE,
    failures: SampleFailures | None = None,
):
    """Yield the samples of the annotation `rows`, skipping and counting the ones that fail.

    `rows` are (location, row) pairs, as the readers of `foveated_vlm.data.annotations` yield them: the location
    ("file:line") names the row in messages, the row is a dict of its fields or the `BadRecordError` reading it
    gave. `failures` raises `NoSamplesError` once `give_up_after` rows have failed before any success (a wrong
    folder, say); a summary is logged when the rows run out."""
    root = Path(root)
    failures = failures if failures is not None else SampleFailures("folder")
    processor = FoveatedVideoProcessor(num_frames=num_frames)  # decoding only: its size is not used here
    attempted_before = failures.attempted
    for location, row in rows:
        sample = failures.attempt(
            location,
            lambda row=row: _row_to_sample(row, root, processor, num_frames, prompt, max_size),
            classify_failure,
        )
        if sample is not None:
            yield failures.stamp(sample)  # the skips since the sample before travel with it out of the worker
    if failures.attempted > attempted_before:  # most of the many shards of a small folder are empty: nothing to report
        failures.report_end(f"folder {root}", logger)


def _generate_shards(shards, root, header, options):
    # `datasets` calls this with this worker's blocks; the shared `failures` carries the counts from one to the next.
    rows = (pair for block in shards for pair in _read_block(block, header))  # read from disk only as needed
    yield from folder_samples(root, rows, **options)


def folder_dataset(
    root,
    annotations=None,
    *,
    num_frames: int = 8,
    prompt: str = CAPTION_PROMPT,
    max_size: int | None = MAX_FRAME_SIDE,
    seed: int | None = None,
    num_shards: int = 64,
    failures: SampleFailures | None = None,
) -> IterableDataset:
    """The clips of a local folder as a `datasets.IterableDataset` of samples.

    Args:
        root: the folder; `video` paths are relative to it, and one that resolves outside it (symlinks resolved)
            is skipped ("outside_root").
        annotations: the CSV or JSONL file (a path, relative to the working directory); by default the first of
            `ANNOTATION_NAMES` found in `root`.
        num_frames: frames sampled uniformly over each clip (T).
        prompt: the instruction for rows without a `prompt`.
        max_size: frames whose shorter side is longer are downscaled to it (None keeps the source size).
        seed: shuffle the order of the shards with this seed (`datasets` reshuffles per `set_epoch`); None keeps
            the file's order.
        num_shards: contiguous blocks of rows; a multiple of world size x DataLoader workers gives each whole ones.
            Only the blocks' places in the file travel to the generator; their rows are read when it reaches them.
        failures: the `SampleFailures` that counts skipped rows; pass your own to read the counts (in-process
            iteration; each DataLoader worker counts its own copy and logs its summary).
    """
    root = Path(root)
    if root.is_file():
        raise NotADirectoryError(f"folder_dataset: root {root} is a file, not the folder that holds the videos")
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} does not exist")
    header, scan = _scan(annotations if annotations is not None else _find_annotations(root))
    # Exactly `num_shards` blocks, some maybe empty, so a world size dividing it never falls back to striding over
    # decoded samples (which would decode everything on every rank).
    shards = contiguous_blocks([scan], num_shards)
    options = {"num_frames": num_frames, "prompt": prompt, "max_size": max_size,
               "failures": failures if failures is not None else SampleFailures("folder")}  # fmt: skip
    # No `features`: frame sizes differ between videos, which no fixed-shape Array feature describes, and without
    # features `datasets` passes the numpy frames through untouched.
    dataset = IterableDataset.from_generator(
        _generate_shards, gen_kwargs={"shards": shards, "root": str(root), "header": header, "options": options}
    )
    return dataset.shuffle(seed=seed, buffer_size=1) if seed is not None else dataset


def main(argv: list[str] | None = None) -> int:
    """`python datasets_scripts/folder.py --check ANNOTATIONS [--video_root DIR] [--limit N]`: decode the first N
    clips an annotation file (CSV or JSONL) names and print the clips read and the skips by reason; the exit status
    says whether any clip came out (`foveated_vlm.data.check`)."""
    parser = check_parser("Decode the first clips of a folder's annotation file (CSV or JSONL).")
    parser.add_argument("--video_root", help="the folder the video paths are relative to (default: the file's)")
    args = parser.parse_args(argv)
    if len(args.check) != 1:
        parser.error(f"--check takes one annotation file, got {len(args.check)}: {args.check}")
    annotations = Path(args.check[0])
    root = args.video_root or annotations.parent

    def build(failures):
        return folder_dataset(root, annotations, num_frames=args.num_frames, num_shards=1, failures=failures)

    return run_check("folder", build, args.limit)
