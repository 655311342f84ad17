"""WebVid-10M, streamed: captioned stock-footage clips fetched by URL and decoded inside the stream.

WebVid-10M (Bain et al., "Frozen in Time", ICCV 2021) is 10.7M short clips with alt-text captions. Its metadata,
`TempoFunk/webvid-10M` on the Hub, is CSV partitions with the columns `videoid`, `contentUrl` (the clip's URL),
`duration` (ISO 8601, "PT00H00M12S"), `page_dir` and `name` (the caption); `load_dataset(..., streaming=True)`
reads it without a download. Local CSV or parquet files of the same columns work too (`data_files=`, through the
builtin `csv`/`parquet` builders), and parquet rows may carry the clip itself as bytes in a `video` column
(a pre-fetched mirror), in which case no URL is fetched.

Each row becomes `{"frames": uint8 [T, H, W, 3], "prompt": "Describe the video.", "answer": name, "video_id":
videoid}`, the sample `VideoTextCollator` reads. A URL is fetched by `foveated_vlm.download.download`: http(s)
only (a `file://`, `ftp://` or `data:` URL, or a redirect to one, is refused), each attempt within `timeout` seconds
in all however slowly the server sends, at most `max_bytes`, with bounded retries and exponential backoff of only
what may pass on a second try (timeouts, 5xx/408/429, resets, cut-off bodies; never a 404), and decoded from memory,
only the `num_frames` sampled frames. Many WebVid URLs are gone, so failures are the normal case: each is skipped
and counted by reason in a `SampleFailures` ("http_404", "http_500", "timeout", "truncated", "too_large",
"connection", "not_http", "unsupported_scheme", "decode", "bad_record"; see `foveated_vlm.download`), which logs
summaries as it goes and raises `NoSamplesError` once `give_up_after` rows (100 by default) have failed before
any success.
Within a stream `concurrency` rows are fetched ahead by threads (downloads wait on the network, not the CPU), and
samples come out in row order.

Sharding: the metadata files are cut into exactly `num_shards` shards (a file read by several shards is split by
row index, rows k % parts == part), listed in `from_generator`'s `gen_kwargs`, so `split_dataset_by_node` and
DataLoader workers hand out whole shards and ranks fetch disjoint rows whenever the world size divides
`num_shards`.
"""

import itertools
import logging
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from datasets import IterableDataset, load_dataset

from ..download import DownloadError, check_download_bounds, download
from ..video_processing_foveated import FoveatedVideoProcessor
from .check import check_parser, run_check
from .faults import SampleFailures
from .folder import (
    CAPTION_PROMPT,
    MAX_FRAME_SIDE,
    BadRecordError,
    classify_failure,
    load_clip,
    text_field,
)

__all__ = [
    "WEBVID_REPO",
    "FetchError",
    "classify_webvid_failure",
    "fetch_video",
    "main",
    "parse_duration",
    "webvid_dataset",
    "webvid_records",
    "webvid_samples",
]

logger = logging.getLogger(__name__)

WEBVID_REPO = "TempoFunk/webvid-10M"
_DURATION = re.compile(r"^P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")

FetchError = DownloadError  # the name this module gave its download errors before `foveated_vlm.download` held them


def fetch_video(url: str, *, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5, max_bytes: int = 64 << 20):
    """GET the http(s) `url` -> bytes, each attempt within `timeout` seconds in all and `max_bytes`; transient
    failures are retried up to `retries` times after `backoff * 2**i` seconds.

    Raises `FetchError` (`foveated_vlm.download.DownloadError`) with the last attempt's reason."""
    return download(url, timeout=timeout, max_bytes=max_bytes, retries=retries, backoff=backoff)


def classify_webvid_failure(error: Exception) -> str:
    return error.reason if isinstance(error, FetchError) else classify_failure(error)


def parse_duration(value) -> float | None:
    """Seconds from WebVid's ISO 8601 durations ("PT00H00M12S") or a plain number; None when unreadable."""
    if isinstance(value, (int, float)):
        return None if value != value else float(value)  # NaN: an empty CSV cell
    match = _DURATION.match(str(value).strip()) if value is not None else None
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (float(group or 0) for group in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _as_strings(data_files):
    """Paths as `load_dataset` takes them: a string, a list of strings, or a dict of split -> either."""
    if isinstance(data_files, dict):
        return {split: _as_strings(files) for split, files in data_files.items()}
    if isinstance(data_files, (str, os.PathLike)):
        return str(data_files)
    return [str(name) for name in data_files]


def _builder(data_files) -> str:
    files = data_files.values() if isinstance(data_files, dict) else [data_files]
    names = [name for group in files for name in ([group] if isinstance(group, str) else group)]
    kinds = {"parquet" if name.endswith(".parquet") else "csv" if name.endswith(".csv") else None for name in names}
    if len(kinds) != 1 or None in kinds:
        raise ValueError(f"data_files must all be .csv or all .parquet files, got {names}")
    return kinds.pop()


def webvid_records(data_files=None, split: str = "train") -> IterableDataset:
    """The metadata rows, streamed: the Hub's `TempoFunk/webvid-10M`, or local CSV/parquet `data_files` (a path,
    glob, list, or a dict of split -> files, as `load_dataset` takes). One shard per file."""
    if data_files is None:
        records = load_dataset(WEBVID_REPO, split=split, streaming=True)
    else:
        data_files = _as_strings(data_files)
        records = load_dataset(_builder(data_files), data_files=data_files, split=split, streaming=True)
    return records


def _rows(records: IterableDataset, batch_size: int = 1024):
    """The rows of `records` as dicts, undecoded (a `Video` cell stays {"bytes", "path"}). Through `iter`, not
    `for row in records`: inside a DataLoader worker the latter deals `records`' shards out across the workers
    again, and each worker would read only a fraction of the shard it was given."""
    for table in records.with_format("arrow").iter(batch_size=batch_size):
        yield from table.to_pylist()


def _load(row: dict, options: dict, processor) -> dict:
    """One metadata row -> sample; raises on any failure (run inside `SampleFailures.attempt`)."""
    caption = text_field(row.get("name"))
    if caption is None:
        raise BadRecordError("no caption in the name column")
    video = row.get(options["video_column"])
    video = video.get("bytes") if isinstance(video, dict) else video  # a `Video`/struct cell: {"bytes", "path"}
    if not isinstance(video, (bytes, bytearray)) or not video:
        url = text_field(row.get("contentUrl"))
        if url is None:
            raise BadRecordError("no video bytes and no contentUrl")
        video = fetch_video(url, timeout=options["timeout"], retries=options["retries"],
                            backoff=options["backoff"], max_bytes=options["max_bytes"])  # fmt: skip
    frames = load_clip(video, processor, options["num_frames"], options["max_size"])  # [T, H, W, 3] uint8
    return {"frames": frames, "prompt": options["prompt"], "answer": caption, "video_id": str(row.get("videoid"))}


def _ahead(load, rows, concurrency: int):
    """(row, future of load(row)) in row order, with up to `concurrency` loads running ahead of the consumer."""
    concurrency = max(1, concurrency)
    pool = ThreadPoolExecutor(max_workers=concurrency)
    pending = deque()
    try:
        for row in rows:
            pending.append((row, pool.submit(load, row)))
            if len(pending) >= concurrency:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:  # a consumer that stops early must not wait for downloads it will never read
        pool.shutdown(wait=False, cancel_futures=True)


def webvid_samples(
    rows,
    *,
    num_frames: int = 8,
    prompt: str = CAPTION_PROMPT,
    max_duration: float | None = None,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.5,
    max_bytes: int = 64 << 20,
    max_size: int | None = MAX_FRAME_SIDE,
    video_column: str = "video",
    concurrency: int = 4,
    failures: SampleFailures | None = None,
):
    """Yield the samples of metadata `rows` (dicts), fetching and decoding each; failures are skipped and counted.

    Rows whose `duration` is known to exceed `max_duration` seconds are dropped before any fetch (not failures);
    rows whose duration cannot be read are kept. `failures` raises `NoSamplesError` once `give_up_after` rows have
    failed before any success; a summary is logged when the rows run out."""
    check_download_bounds(timeout=timeout, max_bytes=max_bytes, retries=retries, backoff=backoff)  # not per row
    failures = failures if failures is not None else SampleFailures("webvid")
    options = {"num_frames": num_frames, "prompt": prompt, "timeout": timeout, "retries": retries, "backoff": backoff,
               "max_bytes": max_bytes, "max_size": max_size, "video_column": video_column}  # fmt: skip
    processor = FoveatedVideoProcessor(num_frames=num_frames)  # decoding only: its size is not used here
    if max_duration is not None:
        rows = (row for row in rows if (parse_duration(row.get("duration")) or 0.0) <= max_duration)
    attempted_before = failures.attempted
    for row, future in _ahead(lambda row: _load(row, options, processor), rows, concurrency):
        sample = failures.attempt(str(row.get("videoid")), future.result, classify_webvid_failure)
        if sample is not None:
            yield failures.stamp(sample)  # the skips since the sample before travel with it out of the worker
    if failures.attempted > attempted_before:  # the many shards of small metadata may be empty: nothing to report
        failures.report_end("webvid", logger)


def _plan_shards(num_files: int, num_shards: int) -> list[tuple]:
    """Exactly `num_shards` shards, each a tuple of pieces (file, part, parts): the rows k of `file` with
    k % parts == part. Few files are split by row; many files are dealt out whole."""
    if num_files >= num_shards:
        return [tuple((f, 0, 1) for f in range(j, num_files, num_shards)) for j in range(num_shards)]
    return [((j % num_files, j // num_files, len(range(j % num_files, num_shards, num_files))),)
            for j in range(num_shards)]  # fmt: skip


def _generate_shards(shards, num_files, source, options):
    # `datasets` calls this once per shard; opening the records lists the files, and rows stream per piece. The
    # shared `failures` carries the counts (and the give-up rule) from one shard to the next.
    records = webvid_records(**source)
    rows = (
        row
        for shard in shards
        for file, part, parts in shard
        for row in itertools.islice(_rows(records.shard(num_shards=num_files, index=file)), part, None, parts)
    )
    yield from webvid_samples(rows, **options)


def webvid_dataset(
    data_files=None,
    *,
    num_frames: int = 8,
    split: str = "train",
    seed: int | None = None,
    prompt: str = CAPTION_PROMPT,
    max_duration: float | None = None,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.5,
    max_bytes: int = 64 << 20,
    max_size: int | None = MAX_FRAME_SIDE,
    video_column: str = "video",
    concurrency: int = 4,
    num_shards: int = 64,
    failures: SampleFailures | None = None,
) -> IterableDataset:
    """WebVid samples as a `datasets.IterableDataset`, decoded inside the stream.

    Args:
        data_files: local CSV or parquet metadata (see `webvid_records`); None streams `TempoFunk/webvid-10M`.
        num_frames: frames sampled uniformly over each clip (T).
        split: the split to stream.
        seed: shuffle the order of the shards with this seed (`datasets` reshuffles per `set_epoch`); None keeps
            the files' order. Rows are never buffered, so shuffling costs no memory.
        prompt: the captioning instruction of every sample.
        max_duration: drop clips known to be longer, in seconds, before fetching them (the seeds used < 15 s).
        timeout, retries, backoff, max_bytes: the download bounds of `fetch_video`.
        max_size: frames whose shorter side is longer are downscaled to it (None keeps the source size).
        video_column: the column that may hold the clip's bytes instead of a URL.
        concurrency: downloads in flight per stream (per DataLoader worker). They run ahead within a shard, as
            `datasets` reads one shard at a time, so metadata of a few rows per shard gets little of it.
        num_shards: shards to cut the metadata into; a multiple of world size x DataLoader workers.
        failures: the `SampleFailures` that counts skipped rows; pass your own to read the counts (in-process
            iteration; each DataLoader worker counts its own copy and logs its summary).
    """
    check_download_bounds(timeout=timeout, max_bytes=max_bytes, retries=retries, backoff=backoff)
    source = {"data_files": data_files, "split": split}
    num_files = webvid_records(**source).num_shards
    options = {"num_frames": num_frames, "prompt": prompt, "max_duration": max_duration, "timeout": timeout,
               "retries": retries, "backoff": backoff, "max_bytes": max_bytes, "max_size": max_size,
               "video_column": video_column, "concurrency": concurrency,
               "failures": failures if failures is not None else SampleFailures("webvid")}  # fmt: skip
    # No `features`: frame sizes differ between videos, which no fixed-shape Array feature describes, and without
    # features `datasets` passes the numpy frames through untouched.
    dataset = IterableDataset.from_generator(
        _generate_shards,
        gen_kwargs={"shards": _plan_shards(num_files, num_shards), "num_files": num_files, "source": source,
                    "options": options},
    )  # fmt: skip
    return dataset.shuffle(seed=seed, buffer_size=1) if seed is not None else dataset


def main(argv: list[str] | None = None) -> int:
    """`python datasets_scripts/webvid.py --check FILE [FILE ...] [--limit N]`: fetch and decode the first N clips of
    local WebVid metadata (CSV or parquet) and print the clips read and the skips by reason; the exit status says
    whether any clip came out (`foveated_vlm.data.check`)."""
    parser = check_parser("Fetch and decode the first clips of WebVid metadata files (CSV or parquet).")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per download attempt, in all")
    args = parser.parse_args(argv)

    def build(failures):
        return webvid_dataset(args.check, num_frames=args.num_frames, timeout=args.timeout, num_shards=1,
                              failures=failures)  # fmt: skip

    return run_check("webvid", build, args.limit)
