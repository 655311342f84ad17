"""Annotation files read lazily, in contiguous blocks, and the video paths they name resolved under their root.

A stream over a 300k-record file must not hand its records to `IterableDataset.from_generator`: `datasets` hashes
its `gen_kwargs`, and every DataLoader worker would get a pickled copy. So a source scans its files once when it is
built (`scan_csv`, `scan_jsonl`, `scan_json_list`: one pass that keeps only where each record starts), cuts the
records into `num_shards` contiguous `Segment`s of (file, start byte, stop byte, first line or index)
(`contiguous_blocks`), and the generator reads each block's records from disk when it gets to it (`read_csv`,
`read_jsonl`, `read_json_list`). Blocks are what `split_dataset_by_node` and DataLoader workers hand out whole, so
ranks see disjoint records.

What is wrong with a whole file is a `ValueError` that names the file (and the line or record) when the stream is
built: a file that is not UTF-8, a CSV header without the needed columns, a first JSONL line that is not a JSON
object, a LLaVA file that is not a JSON list or whose JSON is broken (nothing after a syntax error can be read).
What is wrong with one record of a line file (a JSONL line that is not a JSON object, a CSV row with more cells than
its header) is found only when the record is read; the readers yield a `BadRecordError` in its place, which the
source counts and skips.

Paths in annotations are relative to the source's root; `resolve_under` resolves them, symlinks too, and refuses
(`OutsideRootError`) any that leaves the root (`../x.mp4`, `/etc/x.mp4`, a symlink pointing out).
"""

import codecs
import csv
import io
import json
import re
from array import array
from pathlib import Path
from typing import NamedTuple

import fsspec

__all__ = [
    "BadRecordError",
    "OutsideRootError",
    "Scan",
    "Segment",
    "contiguous_blocks",
    "read_csv",
    "read_json_list",
    "read_jsonl",
    "resolve_under",
    "scan_csv",
    "scan_json_list",
    "scan_jsonl",
]

_CHUNK = 1 << 20  # bytes read at a time from a JSON list
_MAX_RECORD_BYTES = 64 << 20  # a JSON record longer than this is taken as broken, not buffered on without bound
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_JSON_KINDS = {"{": "a JSON object", '"': "a JSON string", "t": "a JSON boolean", "f": "a JSON boolean",
               "n": "JSON null"}  # fmt: skip


class BadRecordError(ValueError):
    """A record that names no usable video or caption."""


class OutsideRootError(ValueError):
    """A path in an annotation that resolves outside the root it must stay under."""


class Segment(NamedTuple):
    """Records of one file from byte `start` up to `stop`; `first` is the first one's line (line files, from 1) or
    index (JSON lists, from 0), for messages."""

    file: str
    start: int
    stop: int
    first: int


class Scan(NamedTuple):
    """Where each record of `file` starts (`offsets`, bytes), its line or index (`firsts`), and the file's size
    (`end`: every record starts before it)."""

    file: str
    offsets: array
    firsts: array | range
    end: int


def resolve_under(root, name: str) -> Path:
    """`root / name` with every symlink resolved; `OutsideRootError` if that is not inside `root`."""
    if "\0" in name:  # the OS refuses such a name with a bare ValueError
        raise BadRecordError(f"{name!r} holds a NUL character: not a path")
    root = Path(root).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise OutsideRootError(f"{name!r} resolves to {path}, outside the root {root}")
    return path


def contiguous_blocks(scans: list[Scan], num_shards: int) -> list[tuple[Segment, ...]]:
    """The records of `scans`, in order, cut into exactly `num_shards` contiguous blocks (some maybe empty, so a
    world size dividing `num_shards` gives each rank whole blocks); a block spanning files has a segment per file."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    total = sum(len(scan.offsets) for scan in scans)
    cuts = [j * total // num_shards for j in range(num_shards + 1)]
    blocks = []
    for low, high in zip(cuts, cuts[1:], strict=False):
        segments, base = [], 0
        for scan in scans:
            count = len(scan.offsets)
            first, last = max(low - base, 0), min(high - base, count)  # this block's records of this file
            if first < last:
                stop = scan.offsets[last] if last < count else scan.end
                segments.append(Segment(scan.file, scan.offsets[first], stop, scan.firsts[first]))
            base += count
        blocks.append(tuple(segments))
    return blocks


def _not_utf8(error: UnicodeDecodeError, where: str) -> str:
    byte = error.object[error.start : error.start + 1].hex()
    return f"not UTF-8 (byte 0x{byte} {where}); annotation files must be UTF-8 (re-save it: iconv -f latin1 -t utf-8)"


class _Lines:
    """The decoded lines of a binary file from its current position, counting the lines and bytes pulled so far
    (a csv reader pulls exactly the lines of one row at a time, so the counts say where the next row starts)."""

    def __init__(self, handle, file, line: int = 0, position: int = 0):
        self.handle, self.file, self.line, self.position = handle, file, line, position

    def __iter__(self):
        for raw in self.handle:
            self.line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                reason = _not_utf8(error, f"at column {error.start + 1}")
                raise ValueError(f"{self.file}:{self.line}: {reason}") from None
            if self.position == 0:
                text = text.removeprefix("\ufeff")  # the byte order mark spreadsheets write
            self.position += len(raw)
            yield text


def scan_csv(path, required=()) -> tuple[list[str], Scan]:
    """The header of a CSV file and where its rows start. Raises `ValueError` for a file that is not UTF-8, cannot
    be parsed as CSV, or whose header lacks a `required` column."""
    with open(path, "rb") as handle:
        lines = _Lines(handle, path)
        reader = csv.reader(lines)
        try:
            header = next(reader, [])
            missing = [column for column in required if column not in header]
            if missing:
                raise ValueError(f"{path}: the CSV header {header} lacks the column(s) {missing}")
            offsets, firsts = array("q"), array("q")
            while True:
                start, line = lines.position, lines.line + 1
                row = next(reader, None)
                if row is None:
                    break
                if row:  # a blank line is no record
                    offsets.append(start)
                    firsts.append(line)
        except csv.Error as error:
            raise ValueError(f"{path}:{lines.line}: not a valid CSV row ({error})") from None
    return header, Scan(str(path), offsets, firsts, lines.position)


def read_csv(segment: Segment, header: list[str]):
    """(location "file:line", row) for each row of `segment`: a dict of the header's columns, or a
    `BadRecordError` for a row with more cells than the header (an unquoted comma would shift every cell after it)."""
    with open(segment.file, "rb") as handle:
        handle.seek(segment.start)
        lines = _Lines(handle, segment.file, segment.first - 1, segment.start)
        reader = csv.reader(lines)
        while lines.position < segment.stop:
            location = f"{segment.file}:{lines.line + 1}"
            cells = next(reader, None)
            if cells is None:
                return
            if not cells:
                continue
            if len(cells) > len(header):
                yield location, BadRecordError(f"{len(cells)} cells, but the header has {len(header)}: {cells}")
            else:
                yield location, dict(zip(header, cells, strict=False))  # missing trailing cells stay absent


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRecordError(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise BadRecordError(f"expected a JSON object, got {type(value).__name__}")
    return value


def scan_jsonl(path) -> Scan:
    """Where the records (non-blank lines) of a JSONL file start. Raises `ValueError` for a file that is not UTF-8
    or whose first record is not a JSON object (a JSON list, say: the wrong file); later lines are read lazily."""
    offsets, firsts = array("q"), array("q")
    with open(path, "rb") as handle:
        lines = _Lines(handle, path)
        start = 0
        for text in lines:
            if text.strip():
                if not offsets:
                    try:
                        _json_object(text)
                    except BadRecordError as error:
                        raise ValueError(f"{path}:{lines.line}: one JSON object per line expected; {error}") from None
                offsets.append(start)
                firsts.append(lines.line)
            start = lines.position
    return Scan(str(path), offsets, firsts, lines.position)


def read_jsonl(segment: Segment):
    """(location "file:line", row) for each record of `segment`: a dict, or a `BadRecordError` for a line that is
    not a JSON object."""
    with open(segment.file, "rb") as handle:
        handle.seek(segment.start)
        lines = _Lines(handle, segment.file, segment.first - 1, segment.start)
        for text in lines:
            if text.strip():
                location = f"{segment.file}:{lines.line}"
                try:
                    row = _json_object(text)
                except BadRecordError as error:
                    row = error
                yield location, row
            if lines.position >= segment.stop:
                return


class _JsonText:
    """A JSON text read in chunks from a binary file and decoded one value at a time, counting bytes, so a list of a
    million records is never held whole and each record's byte offset can be seeked to later."""

    def __init__(self, handle, file, position: int):
        self.handle, self.file = handle, file
        self.decoder = json.JSONDecoder()
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buffer, self.index, self.position = "", 0, position  # `position`: the byte offset of buffer[index]
        self.read_bytes, self.eof = position, False
        self.broken = None  # why the text stops early: a byte that is not UTF-8, raised once the parser reaches it

    def _fill(self) -> bool:
        """Read more text after what is buffered; False at the end of the file."""
        if self.broken:
            raise ValueError(self.broken)
        if self.eof:
            return False
        pending = len(self.buffer) - self.index
        if pending > _MAX_RECORD_BYTES:
            raise ValueError(f"a record longer than {_MAX_RECORD_BYTES} bytes (broken JSON?)")
        data = self.handle.read(max(_CHUNK, pending))  # doubling what is read keeps re-parsing a long record cheap
        try:
            text = self.utf8.decode(data, final=not data)
        except UnicodeDecodeError as error:  # keep the text before the bad byte: the record holding it is named
            offset = self.read_bytes + len(data) - len(error.object) + error.start
            self.broken = _not_utf8(error, f"at byte {offset}")
            text = error.object[: error.start].decode("utf-8")
        self.read_bytes += len(data)
        self.eof = not data
        self.buffer, self.index = self.buffer[self.index :] + text, 0
        return bool(data)

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end of the file), not consumed."""
        while True:
            end = _WHITESPACE.match(self.buffer, self.index).end()
            self.position += end - self.index  # whitespace is ASCII: a byte a character
            self.index = end
            if end < len(self.buffer):
                return self.buffer[end]
            if not self._fill():
                return ""

    def take(self):
        """Consume the (ASCII) character `peek` returned."""
        self.index += 1
        self.position += 1

    def value(self) -> tuple[object, str]:
        """Decode the JSON value that starts at the current character: the value and its text."""
        first_error = None
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.index)
            except json.JSONDecodeError as error:
                first_error = first_error or error
                # Only an error at the end of the buffer (or in a string that runs to it) may be text not read yet.
                at_end = len(self.buffer) - error.pos <= 16 or error.msg.startswith("Unterminated string")
                if at_end and self._fill():
                    continue
                raise ValueError(f"not valid JSON ({first_error.msg})") from None
            if end == len(self.buffer) and self._fill():
                continue  # a number at the end of the buffer may go on in the next chunk
            text = self.buffer[self.index : end]
            self.position += len(text.encode("utf-8"))
            self.index = end
            return value, text


def _elements(handle, file, position: int, index: int, top_level: bool, stop: int | None = None):
    """(index, byte offset, value, its JSON text) of the elements of a JSON list in `handle`, read from byte
    `position`: the list's opening bracket when `top_level`, else an element's first byte; the elements that start
    before `stop`."""
    text = _JsonText(handle, file, position)
    where = ""  # the record being read, for messages
    try:
        more = True
        if top_level:
            first = text.peek()
            if first != "[":
                kind = _JSON_KINDS.get(first, "a JSON number or no JSON at all") if first else "an empty file"
                raise ValueError(f"expected a JSON list of records (as on the Hub), got {kind}")
            text.take()
            more = text.peek() != "]"
            if not more:
                text.take()
        while more and (stop is None or text.position < stop):
            where = f"[{index}] (byte {text.position})"
            yield index, text.position, *text.value()
            index += 1
            separator = text.peek()
            if separator not in (",", "]"):
                raise ValueError(f"expected ',' or ']' after the record, got {separator or 'the end of the file'!r}")
            text.take()
            more = separator == ","
            if more:
                text.peek()  # on to the next record's first byte: `position` is its offset
        where = ""
        if top_level and stop is None and text.peek():
            raise ValueError("extra data after the list")
    except ValueError as error:
        raise ValueError(f"{file}{where}: {error}") from None


def scan_json_list(file) -> Scan:
    """Where each record of a JSON list file (a local path or fsspec URL) starts. Raises `ValueError`, naming the
    file and the record, for a file that is not UTF-8, not a JSON list, or not valid JSON."""
    offsets = array("q")
    with fsspec.open(str(file), "rb") as handle:
        for _, offset, _value, _text in _elements(handle, file, 0, 0, top_level=True):
            offsets.append(offset)
        size = handle.seek(0, io.SEEK_END)
    return Scan(str(file), offsets, range(len(offsets)), size)


def read_json_list(segment: Segment):
    """(location "file[index]", record, its JSON text) for each record of `segment` of a JSON list file; the text is
    for a caller that keeps many records (a string takes a fraction of the memory of the parsed objects)."""
    with fsspec.open(segment.file, "rb") as handle:
        handle.seek(segment.start)
        for index, _, value, text in _elements(handle, segment.file, segment.start, segment.first, False, segment.stop):
            yield f"{segment.file}[{index}]", value, text
