"""LLaVA-Video-178K (`lmms-lab/LLaVA-Video-178K`, Zhang et al. 2024, https://arxiv.org/abs/2410.02713) as a stream
of video samples.

On the Hub the dataset has one config per subset (`0_30_s_academic_v0_1`, `30_60_s_youtube_v0_1`, ...), whose splits
`caption`, `open_ended` and `multi_choice` are annotation JSON files (`<subset>/*cap*.json`, `*oe*.json`, `*mc*.json`),
and whose videos ship in `<subset>/<subset>_videos_<N>.tar.gz` shards of about 5 GB. An annotation record is

    {"id": ..., "video": "relative/path.mp4", "data_source": ...,
     "conversations": [{"from": "human", "value": "<image>\\nQuestion"}, {"from": "gpt", "value": "Answer"}, ...]}

Videos are read either from a folder the shards were extracted into (`video_root`, random access by path) or straight
out of the `.tar.gz` shards (`shards`; `.tgz` and plain `.tar` too): each shard is read once, front to back (`tarfile`
stream mode, which never seeks), and each member's bytes are decoded from memory, so memory stays at one video
whatever the shard size, and a shard may be a local file or an `hf://` URL read over the network (`hub_files`).
Members are joined to annotations by relative path; members nobody annotated are skipped without being read into
memory (stream mode reads past their data in small blocks), and an annotated member larger than `max_member_bytes`
(`MAX_MEMBER_BYTES`, 1 GiB, by default) is skipped the same way and counted ("too_large"). In `video_root`, a `video`
that resolves outside the folder (`../x.mp4`, an absolute path elsewhere, a symlink pointing out) is never opened:
it is counted ("outside_root").

Annotation files are read lazily (`foveated_vlm.data.annotations`): building the stream scans each once, keeping only
where each record starts, and raises a `ValueError` naming the file and the record for a wrong file (not UTF-8, not a
JSON list, broken JSON). With `video_root` the records are cut into `num_shards` contiguous blocks that the generator
reads from disk as it gets to them; with `shards` each worker reads the annotations into its index of videos when its
stream starts. Either way no record passes through `gen_kwargs`, which `datasets` would hash and copy to every worker.

Every human turn followed by a gpt turn becomes one sample (prompt: the human text without its `<image>`/`<video>`
tag; answer: the gpt text). LLaVA-Video-178K's multi-turn records ask independent questions about one video, so each
pair stands alone, and a video decoded once serves all of its pairs (and all records that name it). Samples of one
video come out back to back: shuffle with a buffer (`dataset.shuffle(buffer_size=...)`) before training.

Failures are counted by reason in a `SampleFailures` (the record's "file[index]" in the debug log) and never end the
stream: "bad_annotation" (a record that is not an object, missing keys, roles out of order, no gpt turn, empty or
non-text values), "missing_file" (a video absent from `video_root`, or absent from every shard), "outside_root",
"too_large", "decode" (an unreadable video) and "truncated_shard" (a shard that ends early; what was read before
still counts).
"""

import functools
import json
import logging
import posixpath
import re
import tarfile
import zlib
from collections import defaultdict
from pathlib import Path

import fsspec
from datasets import Array4D, Features, IterableDataset, Value

from ..video_processing_foveated import FoveatedVideoProcessor
from .annotations import (
    BadRecordError,
    OutsideRootError,
    contiguous_blocks,
    read_json_list,
    resolve_under,
    scan_json_list,
)
from .check import check_parser, run_check
from .faults import SampleFailures
from .folder import MAX_FRAME_SIDE, load_clip
from .sample_counts import SKIPPED_FIELD

__all__ = [
    "HUB_REPO",
    "MAX_MEMBER_BYTES",
    "SPLITS",
    "AnnotationError",
    "hub_files",
    "iter_llava_video",
    "llava_video_dataset",
    "llava_video_features",
    "main",
    "parse_conversation",
]

logger = logging.getLogger(__name__)

HUB_REPO = "lmms-lab/LLaVA-Video-178K"
SPLITS = {"caption": "cap", "open_ended": "oe", "multi_choice": "mc"}  # split -> file name part, as the card's globs
_MEDIA_TAG = re.compile(r"<(?:image|video)>")
# The largest tar member read into memory to decode: a 30-60 s clip of the dataset is tens of MB; 1 GiB is a mistake.
MAX_MEMBER_BYTES = 1 << 30
# What a shard that ends early (cut download, partial copy) raises while tarfile/gzip read on.
_TRUNCATED = (EOFError, tarfile.ReadError, zlib.error)


class AnnotationError(ValueError):
    """An annotation record that cannot become a sample."""


class MemberTooLargeError(ValueError):
    """A shard member over `max_member_bytes`: skipped without being read."""


def hub_files(subset: str, splits=tuple(SPLITS), revision: str | None = None) -> tuple[list[str], list[str]]:
    """`hf://` URLs of a subset's annotation files (for `splits`) and video shards (in shard order), resolved on the
    Hub by name. Pass them to `llava_video_dataset`: the JSON files are read lazily, the shards are streamed."""
    from huggingface_hub import HfFileSystem  # only this function talks to the Hub

    filesystem = HfFileSystem()
    base = f"datasets/{HUB_REPO}{'@' + revision if revision else ''}/{subset}"
    annotations = [path for split in splits for path in sorted(filesystem.glob(f"{base}/*{SPLITS[split]}*.json"))]
    shards = filesystem.glob(f"{base}/{subset}_videos_*.tar.gz")
    shards.sort(key=lambda path: int(re.search(r"_videos_(\d+)\.tar\.gz$", path).group(1)))
    return [f"hf://{path}" for path in annotations], [f"hf://{path}" for path in shards]


def parse_conversation(record) -> list[tuple[str, str]]:
    """A record -> its (prompt, answer) pairs, in order. Raises `AnnotationError` unless the record has an `id`, a
    `video` path and `conversations` alternating human and gpt turns of non-empty text."""
    if not isinstance(record, dict):
        raise AnnotationError(f"a record must be a JSON object, got {type(record).__name__}")
    missing = [key for key in ("id", "video", "conversations") if key not in record]
    if missing:
        raise AnnotationError(f"missing keys {missing}")
    if _video_key(record["video"]) is None:
        raise AnnotationError(f"video must be a relative path, got {record['video']!r}")
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns or len(turns) % 2:
        raise AnnotationError("conversations must be a non-empty list of human/gpt pairs")
    pairs = []
    for human, gpt in zip(turns[::2], turns[1::2], strict=True):
        if not (isinstance(human, dict) and isinstance(gpt, dict)):
            raise AnnotationError("a turn must be a JSON object")
        if (human.get("from"), gpt.get("from")) != ("human", "gpt"):
            raise AnnotationError(f"turns must alternate human, gpt; got {human.get('from')}, {gpt.get('from')}")
        prompt, answer = human.get("value"), gpt.get("value")
        if not (isinstance(prompt, str) and isinstance(answer, str)):
            raise AnnotationError("a turn's value must be text")
        prompt, answer = _MEDIA_TAG.sub("", prompt).strip(), answer.strip()
        if not (prompt and answer):
            raise AnnotationError("empty prompt or answer")
        pairs.append((prompt, answer))
    return pairs


def _classify(error: Exception) -> str:
    if isinstance(error, (AnnotationError, BadRecordError)):
        return "bad_annotation"
    if isinstance(error, OutsideRootError):
        return "outside_root"
    if isinstance(error, MemberTooLargeError):
        return "too_large"
    if isinstance(error, FileNotFoundError):
        return "missing_file"
    if isinstance(error, _TRUNCATED):
        return "truncated_shard"
    return "decode"  # VideoDecodeError, and anything else a broken file makes the decoder raise


def _raise(error: Exception):
    """A `work` for `SampleFailures.attempt` that only fails: counts what was found outside a record's conversion."""

    def work():
        raise error

    return work


def _video_key(path) -> str | None:
    """A record's `video` or a tar member's name as a normalised relative POSIX path (None if not a path)."""
    if not isinstance(path, str) or not path.strip():
        return None
    return posixpath.normpath(path.strip()).lstrip("/")


def _samples(location: str, record, frames, failures: SampleFailures, video_id: str | None):
    """The samples of one record (found at `location`, "file[index]"), with `frames()` decoding its video; a failure
    is counted under its reason."""
    record_id = f"{location} (id {record.get('id')!r})" if isinstance(record, dict) else location
    converted = failures.attempt(record_id, lambda: (parse_conversation(record), frames()), _classify)
    if converted is None:
        return
    pairs, decoded = converted
    for prompt, answer in pairs:  # the skips since the sample before travel with it out of the worker
        yield failures.stamp({"frames": decoded, "prompt": prompt, "answer": answer, "video_id": video_id})


def _decoder(video_processor: FoveatedVideoProcessor, num_frames: int):
    # path or bytes -> [T, H, W, 3] uint8: only the sampled frames, decoded with the shorter side at most 512 px
    return functools.partial(load_clip, processor=video_processor, num_frames=num_frames, max_size=MAX_FRAME_SIDE)


def _iter_folder(records, video_root, decode, failures):
    for location, record in records:
        key = _video_key(record.get("video")) if isinstance(record, dict) else None

        def frames(record=record):  # called only once the record parsed, so its `video` is a path
            # Resolved before anything touches the file, so a path that leaves the folder is never opened.
            path = resolve_under(video_root, record["video"].strip())
            if not path.is_file():
                raise FileNotFoundError(f"no video at {path}")
            return decode(str(path))

        yield from _samples(location, record, frames, failures, key)


def _shard_members(shard):
    """(name, size, read) of each file in a tar shard (gzip-compressed or not), front to back: no seek, no
    extraction to disk. `read()` gives the member's bytes; a member whose `read` is not called before the next is
    skipped over in small blocks, never held in memory."""
    with fsspec.open(str(shard), "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            # Stream mode keeps every TarInfo it has read; drop them so memory stays bounded over a 5 GB shard.
            tar.members.clear()
            if member.isfile():
                yield member.name, member.size, lambda member=member: tar.extractfile(member).read()


def _index(annotations):
    """(location, JSON text) of the records of the annotation segments by normalised video path, and the locations
    of those that name no video. The text, parsed again on a hit, takes a fraction of the memory of the records."""
    index, unindexed = defaultdict(list), []
    for segment in annotations:
        for location, record, text in read_json_list(segment):
            key = _video_key(record.get("video")) if isinstance(record, dict) else None
            if key:
                index[key].append((location, text))
            else:
                unindexed.append(location)
    return index, unindexed


def _iter_shards(shards, annotations, first_shard, total_shards, max_member_bytes, decode, failures):
    index, unindexed = _index(annotations)  # built here, in the worker: records never travel in gen_kwargs
    if first_shard in shards:  # records that name no video cannot be joined; exactly one worker counts them
        for location in unindexed:
            failures.attempt(location, _raise(AnnotationError("the record names no video")), _classify)
    seen = set()
    for shard in shards:
        try:
            for name, size, read in _shard_members(shard):
                # A shard may pack the annotated paths under a folder of its own: try shorter and shorter suffixes.
                parts = _video_key(name).split("/")
                suffixes = ("/".join(parts[i:]) for i in range(len(parts)))
                key = next((suffix for suffix in suffixes if suffix in index), None)
                if key is None or key in seen:
                    continue  # not read: stream mode skips its data
                seen.add(key)
                if size > max_member_bytes:
                    too_large = MemberTooLargeError(f"{name} in {shard}: {size} bytes > {max_member_bytes=}")
                    for location, _ in index[key]:
                        failures.attempt(location, _raise(too_large), _classify)
                    continue
                frames = functools.cache(functools.partial(decode, read()))  # decoded once for all its records
                for location, text in index[key]:
                    yield from _samples(location, json.loads(text), frames, failures, key)
        except _TRUNCATED as error:
            failures.attempt(str(shard), _raise(error), _classify)
    if len(shards) == total_shards:  # only a worker that read every shard knows which videos no shard holds
        for key in sorted(index.keys() - seen):
            for location, _ in index[key]:
                failures.attempt(location, _raise(FileNotFoundError(f"{key} is in no shard")), _classify)
    else:
        logger.info("llava_video: %d annotated videos are not in this worker's shards", len(index.keys() - seen))


def iter_llava_video(
    annotation_files,
    *,
    num_frames: int,
    video_root=None,
    shards=None,
    video_processor: FoveatedVideoProcessor | None = None,
    failures: SampleFailures | None = None,
    num_shards: int = 64,
    max_member_bytes: int = MAX_MEMBER_BYTES,
):
    """Yield the samples of `annotation_files` (local paths or fsspec URLs), with videos from `video_root` or
    streamed from the tar `shards` (exactly one of the two), counting skips in `failures`.

    Samples are `{"frames": uint8 [T, H, W, 3], "prompt", "answer", "video_id"}`, `video_id` being the video's
    relative path (so targets precomputed per video serve every question about it)."""
    plan = _plan(annotation_files, num_frames, video_root, shards, video_processor, num_shards, max_member_bytes)
    yield from _generate(**plan, failures=failures)


def _plan(annotation_files, num_frames, video_root, shards, video_processor, num_shards, max_member_bytes) -> dict:
    """The generator's keyword arguments; its one list (blocks of records, or shards) is what `datasets` splits over
    workers. Scans the annotation files, so a wrong one is an error here, before any sample."""
    if (video_root is None) == (shards is None):
        raise ValueError("pass exactly one of video_root (an extracted folder) and shards (the .tar.gz files)")
    files = [annotation_files] if isinstance(annotation_files, (str, Path)) else list(annotation_files)
    scans = [scan_json_list(file) for file in files]
    if not any(len(scan.offsets) for scan in scans):
        raise ValueError(f"no annotation records in {annotation_files}")
    kwargs = {"video_processor": video_processor or FoveatedVideoProcessor(), "num_frames": num_frames}
    if video_root is not None:
        if Path(video_root).is_file():
            raise NotADirectoryError(f"video_root {video_root} is a file, not a folder; a tar shard goes in shards=")
        if not Path(video_root).is_dir():
            raise FileNotFoundError(f"video_root {video_root} does not exist")
        return kwargs | {"blocks": contiguous_blocks(scans, num_shards), "video_root": str(video_root)}
    shards = [str(shard) for shard in ([shards] if isinstance(shards, (str, Path)) else shards)]
    if not shards:
        raise ValueError("shards is empty; pass at least one .tar.gz file")
    if not max_member_bytes > 0:
        raise ValueError(f"max_member_bytes must be a positive number of bytes, got {max_member_bytes!r}")
    # Only `shards` may be a list: `datasets` splits every list in gen_kwargs, so the rest travel as tuples.
    return kwargs | {"shards": shards, "annotations": contiguous_blocks(scans, 1)[0], "first_shard": shards[0],
                     "total_shards": len(shards), "max_member_bytes": max_member_bytes}  # fmt: skip


def _generate(video_processor, num_frames, failures=None, blocks=None, video_root=None, **shard_kwargs):
    failures = failures if failures is not None else SampleFailures("llava_video")
    decode = _decoder(video_processor, num_frames)
    if blocks is not None:  # this worker's blocks of records, read from disk as the stream reaches them
        segments = (segment for block in blocks for segment in block)
        records = ((location, record) for segment in segments for location, record, _ in read_json_list(segment))
        yield from _iter_folder(records, video_root, decode, failures)
    else:
        yield from _iter_shards(**shard_kwargs, decode=decode, failures=failures)
    failures.report_end("llava_video", logger)


def llava_video_features() -> Features:
    """Frames keep each video's own resolution (the processor resizes), so only T and the channels are fixed."""
    text = Value("string")  # SKIPPED_FIELD too: the skips before the sample, as JSON (`SampleFailures.stamp`)
    return Features({"frames": Array4D((None, None, None, 3), "uint8"), "prompt": text, "answer": text,
                     "video_id": text, SKIPPED_FIELD: text})  # fmt: skip


def llava_video_dataset(
    annotation_files,
    *,
    num_frames: int,
    video_root=None,
    shards=None,
    video_processor: FoveatedVideoProcessor | None = None,
    failures: SampleFailures | None = None,
    num_shards: int = 64,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> IterableDataset:
    """`iter_llava_video` as a `datasets.IterableDataset`.

    With `shards`, the shard files are what `split_dataset_by_node` and DataLoader workers divide, so each rank reads
    whole, different shards: give at least as many shards as ranks x workers. With `video_root`, the records are
    divided instead, in `num_shards` contiguous blocks (a multiple of ranks x workers gives each whole ones). Either
    way the ranks' samples are disjoint. A shard member over `max_member_bytes` is skipped unread ("too_large").
    `failures` is shared only within one process (each DataLoader worker counts its own copy, and each logs its
    summary when its stream ends).

        annotations, shards = hub_files("0_30_s_academic_v0_1", splits=["caption"])
        dataset = llava_video_dataset(annotations, shards=shards, num_frames=8)
    """
    kwargs = _plan(annotation_files, num_frames, video_root, shards, video_processor, num_shards, max_member_bytes)
    kwargs |= {"failures": failures}
    return IterableDataset.from_generator(_generate, features=llava_video_features(), gen_kwargs=kwargs)


def main(argv: list[str] | None = None) -> int:
    """`python datasets_scripts/llava_video.py --check ANNOTATIONS.json ... [--video_root DIR | --shards TAR ...]
    [--limit N]`: decode the videos of the first N question-answer samples and print the samples read and the
    records skipped by reason; the exit status says whether any sample came out (`foveated_vlm.data.check`)."""
    parser = check_parser("Decode the first samples of LLaVA-Video annotation JSON files, from a folder or shards.")
    videos = parser.add_mutually_exclusive_group()
    videos.add_argument("--video_root", help="the extracted videos' folder (default: the first file's folder)")
    videos.add_argument("--shards", nargs="+", help=".tar.gz video shards, read front to back")
    args = parser.parse_args(argv)
    video_root = None if args.shards else (args.video_root or Path(args.check[0]).parent)

    def build(failures):
        return llava_video_dataset(args.check, num_frames=args.num_frames, video_root=video_root, shards=args.shards,
                                   failures=failures, num_shards=1)  # fmt: skip

    return run_check("llava_video", build, args.limit)
