"""Input files -> chunks of records, streamed: memory stays flat in the input size.

JSON Lines and CSV are read line by line from a byte offset (so a resumed run seeks straight to
where it stopped); ``.npy`` is memory-mapped and sliced by rows. A directory is every regular,
non-hidden file under it, in sorted order. Blank lines are not records, as in the server's codecs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from model_package.errors import MissingFileError, UsageError
from model_package.manifest import Signature

JSON_LINES: Final = "application/jsonlines"
CSV: Final = "text/csv"
NPY: Final = "application/x-npy"
#: File extension -> the media type the server decodes it as.
EXTENSIONS: Final[dict[str, str]] = {".jsonl": JSON_LINES, ".ndjson": JSON_LINES, ".csv": CSV, ".npy": NPY}
#: The read buffer of a text input (see ``_line_chunks``).
READ_BUFFER: Final = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One input object: where it is, what it holds, how it is named in the output."""

    path: Path
    media_type: str
    name: str
    """The path relative to ``--input`` (the file's own name for a single file)."""


@dataclass
class Chunk:
    """Consecutive records of one file."""

    first: int
    """0-based index, within the file, of the first record."""
    lines: list[int]
    """Each record's 1-based line number in the file (row number + 1 for ``.npy``)."""
    end: int
    """Where the next chunk starts: a byte offset (text) or a row index (``.npy``)."""
    nbytes: int
    """Input bytes the chunk covers (for the progress bar)."""
    records: list[bytes] | None = None
    """The records' text (JSON Lines, CSV), without line ends."""
    array: np.ndarray | None = None
    """The records as rows of one array (``.npy``)."""

    def __len__(self) -> int:
        return len(self.lines)


def discover(location: Path) -> list[InputFile]:
    """The input files of ``--input``; raises ``UsageError``/``MissingFileError`` naming what is wrong."""
    if not location.exists():
        raise MissingFileError(f"--input {location} does not exist")
    if location.is_file():
        return [_input_file(location, location.name)]
    files = sorted(
        path
        for path in location.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(location).parts)
    )
    if not files:
        raise UsageError(f"--input {location} is a directory with no files to score")
    return [_input_file(path, path.relative_to(location).as_posix()) for path in files]


def _input_file(path: Path, name: str) -> InputFile:
    media_type = EXTENSIONS.get(path.suffix.lower())
    if media_type is None:
        raise UsageError(
            f"cannot score {path}: unsupported extension {path.suffix or '(none)'!r}; allowed: {', '.join(EXTENSIONS)}"
        )
    if media_type == NPY:
        npy_layout(path)  # a header read: a broken file is refused before any other is scored
    else:
        _check_text_encoding(path, media_type)
    return InputFile(path, media_type, name)


#: Byte-order marks of the encodings a text input may not be in (longest first: UTF-32 LE starts as UTF-16 LE's).
_OTHER_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _check_text_encoding(path: Path, media_type: str) -> None:
    """Refuse text inputs the line reader would misread, from their first block.

    A UTF-16 file (PowerShell's ``Out-File`` default) had its first record read (JSON detects the
    encoding) and every other one failed as "not valid UTF-8"; a CSV whose lines end in a lone CR
    (classic Mac OS, Excel's "CSV (Macintosh)") was one record whose answer "has 3 lines for 1".
    """
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    for bom, encoding in _OTHER_BOMS:
        if head.startswith(bom):
            raise UsageError(
                f"cannot score {path}: it is {encoding} text; records are read as UTF-8 (convert it, e.g. "
                f"iconv -f {encoding} -t UTF-8, or PowerShell's Out-File -Encoding utf8)"
            )
    if media_type == CSV and b"\n" not in head and b"\r" in head.rstrip(b"\r"):
        raise UsageError(
            f"cannot score {path}: its lines end in a lone carriage return (\\r, classic Mac OS); records are "
            "read one per \\n-ended line (convert it, e.g. tr '\\r' '\\n')"
        )


def check_fit(files: list[InputFile], signature: Signature) -> None:
    """Refuse, before the model loads, input files no record of which could fit the model's inputs.

    Known from the signature and a ``.npy`` header alone: a ``.npy`` feeding a model of several
    inputs, rows of another shape, and CSV (numbers) for a string input. Scored anyway, each record
    failed alone: 50,000 "record failed" lines and an errors file of 8 MB, to say one thing. Not for
    packages with user code, whose ``input_fn`` decides what a record holds.
    """
    for file in files:
        if file.media_type == NPY:
            _check_npy_fit(file, signature)
        elif file.media_type == CSV and any(spec.dtype == "bytes" for spec in signature.inputs):
            strings = [spec.name for spec in signature.inputs if spec.dtype == "bytes"]
            raise UsageError(
                f"cannot score {file.path}: CSV records are numbers, and this model's input {strings[0]!r} takes "
                "strings; write the records as JSON Lines"
            )


def _check_npy_fit(file: InputFile, signature: Signature) -> None:
    inputs = signature.inputs
    if len(inputs) != 1:
        raise UsageError(
            f"cannot score {file.path}: a .npy file feeds a model with a single input, and this model has inputs "
            f"{[spec.name for spec in inputs]}; write the records as JSON Lines, one object per line keyed by input"
        )
    spec, layout = inputs[0], npy_layout(file.path)
    want = spec.shape[1:]
    same_rank = len(layout.row_shape) == len(want)
    fits = same_rank and all(size in (-1, got) for got, size in zip(layout.row_shape, want, strict=True))
    if not fits:
        raise UsageError(
            f"cannot score {file.path}: its rows have shape {list(layout.row_shape)}, and this model's input "
            f"{spec.name!r} takes rows of shape {list(want)} (-1 = any size); its first axis counts records"
        )


def total_bytes(files: list[InputFile]) -> int:
    """The progress bar's total."""
    return sum(file.path.stat().st_size for file in files)


def bytes_read(file: InputFile, start: int, offset: int) -> int:
    """The progress bar's bytes for records from ``start`` to ``offset`` (byte offsets, or ``.npy`` rows)."""
    if file.media_type == NPY:
        return (offset - start) * npy_layout(file.path).row_bytes
    return offset - start


def read_chunks(
    file: InputFile,
    *,
    start: int,
    first_record: int,
    size: int,
    end: int | None = None,
    anchor: tuple[int, int] = (0, 0),
) -> Iterator[Chunk]:
    """Chunks of at most ``size`` records from ``start`` up to ``end`` (byte offsets, or rows for ``.npy``).

    A text ``end`` must be where a line starts (a :class:`Span` boundary). ``anchor`` is a known
    (byte offset, lines before it) at or before ``start``, so line numbers are counted from there.
    """
    if file.media_type == NPY:
        yield from _npy_chunks(file.path, start=start, size=size, end=end)
    else:
        yield from _line_chunks(file.path, start=start, first_record=first_record, size=size, end=end, anchor=anchor)


def _line_chunks(
    path: Path, *, start: int, first_record: int, size: int, end: int | None, anchor: tuple[int, int]
) -> Iterator[Chunk]:
    # A 1 MiB buffer: with the default 8 KiB, each line of an image (hundreds of KB of JSON) is read
    # in pieces and joined, and reading the file cost as much as parsing it.
    with path.open("rb", buffering=READ_BUFFER) as handle:
        handle.seek(start)
        offset = start
        # Line numbers only matter in messages; counting them from the anchor once is cheap next to scoring.
        line = anchor[1] + _newlines_between(path, anchor[0], start)
        record = first_record
        records: list[bytes] = []
        lines: list[int] = []
        begin = offset
        for raw in handle:
            if end is not None and offset >= end:
                break
            offset += len(raw)
            line += 1
            text = raw.rstrip(b"\r\n")
            if line == 1 and text.startswith(b"\xef\xbb\xbf"):
                text = text[3:]  # a UTF-8 byte-order mark is not part of the first record
            if not text or (text[:1].isspace() and not text.strip()):
                continue  # blank (stripped only when it may be: strip copies the line)
            records.append(text)
            lines.append(line)
            if len(records) == size:
                yield Chunk(record, lines, offset, offset - begin, records=records)
                record += len(records)
                records, lines, begin = [], [], offset
        if records or offset > begin:
            yield Chunk(record, lines, offset, offset - begin, records=records)


def _newlines_between(path: Path, begin: int, offset: int) -> int:
    if offset <= begin:
        return 0
    count = 0
    with path.open("rb") as handle:
        handle.seek(begin)
        remaining = offset - begin
        while remaining > 0:
            block = handle.read(min(remaining, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count


@dataclass(frozen=True)
class NpyLayout:
    """Where a ``.npy`` file's rows are: what its header says."""

    rows: int
    row_shape: tuple[int, ...]
    dtype: np.dtype
    data_start: int

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize


def npy_layout(path: Path) -> NpyLayout:
    """Read and check a ``.npy`` header; ``UsageError`` naming what is wrong with it."""
    with path.open("rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
        except (ValueError, OSError) as exc:
            raise UsageError(f"{path} is not a readable .npy file: {exc}") from None
        data_start = handle.tell()
    if dtype.hasobject:
        raise UsageError(f"{path} holds Python objects, which are never unpickled; save numeric arrays")
    if fortran and len(shape) > 1:
        raise UsageError(f"{path} is in Fortran order; save it with np.save(path, np.ascontiguousarray(a))")
    if not shape:
        raise UsageError(f"{path} holds a single value; a .npy input holds one record per row (first axis)")
    layout = NpyLayout(shape[0], tuple(shape[1:]), dtype, data_start)
    if path.stat().st_size < data_start + layout.rows * layout.row_bytes:
        raise UsageError(f"{path} is truncated: its header promises {layout.rows} rows")
    return layout


def _npy_chunks(path: Path, *, start: int, size: int, end: int | None) -> Iterator[Chunk]:
    """Rows read with plain file reads from the header's data offset.

    Not ``np.load(mmap_mode="r")``: pages of a memory map stay resident (and counted in RSS) until
    the kernel needs them, so memory would grow with the input; reads keep it at one chunk.
    """
    layout = npy_layout(path)
    row_bytes = layout.row_bytes
    with path.open("rb") as handle:
        handle.seek(layout.data_start + start * row_bytes)
        stop = layout.rows if end is None else min(end, layout.rows)
        for begin in range(start, stop, size):
            last = min(begin + size, stop)
            raw = handle.read(row_bytes * (last - begin))
            rows = np.frombuffer(raw, dtype=layout.dtype).reshape((last - begin, *layout.row_shape))
            yield Chunk(begin, list(range(begin + 1, last + 1)), last, row_bytes * (last - begin), array=rows)


@dataclass(frozen=True)
class Span:
    """A contiguous range of one file's records, scored by one worker."""

    start: int
    """Where it starts: a byte offset at a line start, or a ``.npy`` row."""
    end: int
    """Where the next span starts (the file's size, or its row count, for the last)."""
    first_record: int
    """0-based index of its first record within the file."""
    line: int
    """Lines before ``start`` (text), so its line numbers need no count from the top."""


#: ASCII whitespace as ``bytes.strip()`` removes it: a line of nothing else is blank, not a record.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True
_BOM = b"\xef\xbb\xbf"
_SCAN_BLOCK = 1 << 22


def split_records(file: InputFile, parts: int, align: int) -> list[Span]:
    """``file`` in at most ``parts`` spans of whole multiples of ``align`` records (the batch size).

    Spans start where a chunk of a single reader would, so every model call sees the same rows as
    with one worker, and the joined answers are the same bytes. Text files are scanned once for
    record starts, vectorised per block (no Python per line); ``.npy`` rows need no scan.
    """
    if file.media_type == NPY:
        total = npy_layout(file.path).rows
        starts = None
    else:
        starts, total = _record_starts(file.path, align)
    per = max(1, -(-total // (parts * align))) * align
    spans: list[Span] = []
    for first in range(0, max(total, 1), per):
        if starts is None:
            spans.append(Span(first, min(first + per, total), first, 0))
        else:
            offset, line = (0, 0) if first == 0 else starts[first // align]
            spans.append(Span(offset, 0, first, line))
    if starts is not None:
        size = file.path.stat().st_size
        spans = [
            dataclasses.replace(span, end=spans[i + 1].start if i + 1 < len(spans) else size)
            for i, span in enumerate(spans)
        ]
    return spans


def _record_starts(path: Path, every: int) -> tuple[list[tuple[int, int]], int]:
    """(byte offset, lines before it) of records 0, ``every``, 2 x ``every``, ...; and the record count.

    Blank lines (only whitespace, or a lone byte-order mark on line 1) are not records, exactly as
    :func:`_line_chunks` reads them. Line breaks are found with NumPy; a line whose first byte is
    not whitespace holds a record, and only lines starting with whitespace (rare) are looked at
    in Python.
    """
    found: list[tuple[int, int]] = []
    records = lines = base = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(_SCAN_BLOCK)
            data = carry + block
            if not data:
                return found, records
            cut = len(data) if not block else data.rfind(b"\n") + 1
            if cut == 0:
                carry = data  # a line longer than the block: read on
                continue
            array = np.frombuffer(data, dtype=np.uint8, count=cut)
            breaks = np.flatnonzero(array == 10)
            starts = np.concatenate(([0], breaks + 1))
            if starts[-1] == cut:
                starts = starts[:-1]
            nonblank = ~_WHITESPACE[array[starts]]
            ends = np.append(breaks, cut)[: len(starts)]
            for index in np.flatnonzero(~nonblank).tolist():
                nonblank[index] = bool(data[starts[index] : ends[index]].strip())
            if base == 0 and data.startswith(_BOM):
                nonblank[0] = bool(data[3 : ends[0]].strip())
            numbers = np.flatnonzero(nonblank)
            wanted = numbers[(-records) % every :: every]
            found.extend(zip((starts[wanted] + base).tolist(), (wanted + lines).tolist(), strict=True))
            records += len(numbers)
            lines += len(breaks)
            base += cut
            carry = data[cut:]
            if not block:
                return found, records
