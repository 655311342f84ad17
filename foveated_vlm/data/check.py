"""`--check`: read the first samples of a real source's files and say how many came out and what was skipped, by
reason, before a training run depends on them.

The sources' `main`s (`webvid`, `folder`, `llava_video`, run as `python datasets_scripts/NAME.py --check FILE ...`)
build their stream with one shard, so samples come out in file order, and hand it to `run_check`. The counts are the
source's own (`SampleFailures`): a row the source skips here is a row training would skip.
"""

import argparse
import itertools
import sys
from collections.abc import Callable, Iterable

from .faults import NoSamplesError, SampleFailures

__all__ = ["check_parser", "run_check"]


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def check_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every source's check takes: `--check FILE [FILE ...]`, `--limit N`, `--num_frames T`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", nargs="+", required=True, metavar="FILE", help="the source's annotation files")
    parser.add_argument("--limit", type=_positive, default=16, help="stop after this many samples")
    parser.add_argument("--num_frames", type=_positive, default=8, help="frames decoded per clip, as in training")
    return parser


def run_check(source: str, build: Callable[[SampleFailures], Iterable[dict]], limit: int) -> int:
    """Stream the first `limit` samples of `build(failures)` and print the counts.

    Returns the exit status: 0 when at least one sample was read (the counts on stdout), 1 otherwise, with one line
    on stderr: files that cannot be read (a wrong annotation file, a missing folder) or a stream that gave nothing."""
    failures = SampleFailures(source)
    try:
        samples = sum(1 for _ in itertools.islice(build(failures), limit))
    except (NoSamplesError, ValueError, OSError) as error:  # the user's files, not a bug: say what is wrong
        print(f"{source}: error: {error}", file=sys.stderr)
        return 1
    if samples == 0:
        print(f"{source}: error: no sample read; {failures.summary()}", file=sys.stderr)
        return 1
    print(f"{source}: {samples} sample(s) read (limit {limit}); {failures.summary()}")
    return 0
