"""``text/csv``: header-less rows of numbers, as SageMaker's built-in algorithms and batch transform use.

Requests feed a model with a single numeric input of shape ``[-1, n]`` (one
line per row, ``n`` comma-separated values) or ``[-1]`` (one value per line).
Blank lines and a UTF-8 byte-order mark are ignored; there is no header row
unless the Content-Type says ``header=present`` (RFC 7111), in which case the
first line is skipped. Bool inputs take ``0``/``1`` or ``true``/``false``.

Responses are header-less too: one line per row, ending in ``\\n``. Each line
holds the row's values of every output in signature order, each output
flattened row-major: an output of shape ``[-1]`` gives one column, ``[-1, 3]``
three, ``[-1, 2, 2]`` four. Numbers use the shortest text that reads back to the
same value (float32 ``0.1`` is ``0.1``), bools are ``1``/``0``, NaN and infinity
are ``nan``/``inf``/``-inf``. String outputs are written as UTF-8 text, quoted
per RFC 4180 when they contain a comma, quote or line break, or as base64 when
they are not valid UTF-8.
"""

from __future__ import annotations

import base64
import csv
import re
from collections.abc import Mapping, Sequence
from typing import NoReturn

import numpy as np
import orjson

from inference.codecs.arrays import Locator, Path, batch_size, coerce, count, expects, is_text, json_column, ordered
from inference.codecs.base import Tensors
from inference.codecs.limits import DecodeLimits, check_structure
from inference.errors import BadRequestError
from model_package.manifest import Signature, TensorSpec

_TRUE = ("1", "true")
_FALSE = ("0", "false")
#: Rows turned into numbers per NumPy call. One call holds the interpreter until it returns (about
#: 200 ms for 9,000 rows of 64 cells on the benchmark VMs), so a large body decoded on the codec
#: thread in one call would still stop the event loop, health checks included, for that long;
#: between blocks of this many rows (a few ms each) the loop gets its turn.
_BLOCK_ROWS = 256


class CsvCodec:
    """``text/csv`` rows of numbers for a single-input model, and header-less CSV responses."""

    media_types: tuple[str, ...] = ("text/csv",)
    media_type: str = "text/csv"
    content_type: str = "text/csv; charset=utf-8"
    text: bool = True

    def decode(
        self,
        body: bytes,
        params: Mapping[str, str],
        signature: Signature,
        *,
        allow_non_finite: bool = False,
        limits: DecodeLimits | None = None,
    ) -> Tensors:
        """Decode header-less numeric rows (``header=present`` skips the first line)."""
        spec = _csv_input(signature)
        line_break = _line_break(body)
        check_structure(body, signature, "text/csv", line_break=line_break)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestError(f"the text/csv body is not valid UTF-8: {exc}") from exc
        lines = text.lstrip("\ufeff").split(line_break.decode())
        numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
        if params.get("header", "").lower() == "present":
            numbered = numbered[1:]
        if not numbered:
            raise BadRequestError("empty batch: the text/csv body has no rows; send one line per row")
        line_numbers = [number for number, _ in numbered]
        # The common case is unquoted numbers, where str.split is several times faster than csv.reader.
        rows = _read_quoted(numbered) if '"' in text else [line.split(",") for _, line in numbered]
        width = len(rows[0])
        for number, row in zip(line_numbers, rows, strict=True):
            if len(row) != width:
                raise BadRequestError(
                    f"input {spec.name!r} is ragged: CSV line {number} has {count(len(row), 'value')} but line "
                    f"{line_numbers[0]} has {width}; every line must have the same number of values"
                )
        if len(spec.shape) == 1 and width != 1:
            raise BadRequestError(
                f"input {spec.name!r} has shape {list(spec.shape)}: send one value per CSV line; "
                f"line {line_numbers[0]} has {width}"
            )
        if len(spec.shape) == 2 and spec.shape[1] not in (-1, width):
            raise BadRequestError(
                f"input {spec.name!r} expects {spec.shape[1]} values per CSV line (shape {list(spec.shape)}); "
                f"line {line_numbers[0]} has {width}"
            )
        if limits is not None:
            # Checked before parsing: the cells become 8-byte numbers (or smaller, after the cast).
            limits.check_size(len(rows) * width * max(8, np.dtype(spec.dtype).itemsize), "the text/csv body")
        array = _parse_cells(rows, spec, line_numbers, allow_non_finite, underscores=b"_" in body)
        return {spec.name: array[:, 0] if len(spec.shape) == 1 else array}

    def encode(self, outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """One line per row; several outputs' columns are concatenated in signature order."""
        return _encode(ordered(outputs, signature.outputs))

    def encode_request(self, inputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """The header-less CSV a client sends for a single-input model."""
        _csv_input(signature)
        return _encode(ordered(inputs, signature.inputs))


def _line_break(body: bytes) -> bytes:
    """What ends the body's lines: ``\n`` (a ``\r`` before it is whitespace to the cells), or ``\r`` alone.

    Exactly what check_structure counts and local batch scoring reads: ``str.splitlines`` also broke
    lines at ``\x0b``, ``\x1c``, U+2028 and more, and at a ``\r`` in the middle of a ``\n``-ended
    line, which let a body of one-comma lines ending in those slip past the count at full cost. Lines
    ended by a lone ``\r`` (classic Mac OS, Excel's "CSV (Macintosh)") are read as such; a body mixing
    them with ``\n`` is refused, naming the line, rather than read with two rows run together.
    """
    if b"\r" not in body:
        return b"\n"
    lone = body.count(b"\r") - body.count(b"\r\n")
    if not lone or lone == body.count(b"\r\r\n"):
        return b"\n"  # CRLF, or CR CR LF from a doubled conversion: the CRs before the LF are whitespace
    if b"\n" not in body:
        return b"\r"
    first = re.search(rb"\r(?![\r\n])", body)
    line = body.count(b"\n", 0, first.start() if first else len(body)) + 1
    raise BadRequestError(
        f"the text/csv body mixes line breaks: line {line} holds a \\r not followed by \\n; end every line "
        "with \\n or \\r\\n"
    )


def _read_quoted(numbered: Sequence[tuple[int, str]]) -> list[list[str]]:
    """The cells of lines with quotes; a line the csv module refuses is the client's 400, naming it."""
    rows = []
    for number, line in numbered:
        try:
            rows.append(next(csv.reader([line])))
        except csv.Error as exc:
            # Such as "field larger than field limit (131072)": no number is that long.
            raise BadRequestError(
                f"CSV line {number} cannot be read: {exc}; send unquoted numbers, one row per line"
            ) from None
    return rows


def _csv_input(signature: Signature) -> TensorSpec:
    names = [spec.name for spec in signature.inputs]
    if len(names) != 1:
        raise BadRequestError(
            f"text/csv requests feed a model with a single input; this model has inputs {names}: "
            "send application/json or application/x-npz"
        )
    spec = signature.inputs[0]
    if spec.dtype == "bytes" or len(spec.shape) not in (1, 2):
        raise BadRequestError(
            f"text/csv carries numbers of shape [-1] or [-1, n]; input {spec.name!r} is {spec.dtype} of shape "
            f"{list(spec.shape)}: send application/json or application/x-npy"
        )
    return spec


def _parse_cells(
    rows: list[list[str]],
    spec: TensorSpec,
    line_numbers: Sequence[int],
    allow_non_finite: bool,
    *,
    underscores: bool = True,
) -> np.ndarray:
    """The cells parsed straight to numbers: never through a fixed-width string array, whose size
    would be the cell count times the longest cell (one long cell would cost gigabytes).

    ``underscores``: the body holds a ``_``, so cells are looked at for one first. NumPy parses cells
    as Python's ``float`` does, which reads ``1_000`` as 1000 (a literal of Python, not of CSV or
    JSON): a typo or a thousands separator would reach the model as another number.
    """

    def locate(path: Path) -> str:
        return f"line {line_numbers[path[0]]}" + (f", column {path[1] + 1}" if len(path) > 1 else "")

    if underscores:
        grouped = np.array([["_" in cell for cell in row] for row in rows], dtype=bool)
        if grouped.any():
            _refuse_cell(rows, grouped, spec, locate)
    target = np.dtype(spec.dtype)
    if target.kind == "b":
        lowered = [[cell.strip().lower() for cell in row] for row in rows]
        known = np.array([[cell in _TRUE or cell in _FALSE for cell in row] for row in lowered], dtype=bool)
        if not known.all():
            _refuse_cell(rows, ~known, spec, locate)
        return np.array([[cell in _TRUE for cell in row] for row in lowered], dtype=bool)
    if target.kind in "iu":
        # Parse integers as integers: through float64 they would lose precision beyond 2**53.
        for parsed_dtype in (np.int64, np.uint64):
            try:
                return coerce(_numbers(rows, parsed_dtype), spec, locate=locate)
            except (ValueError, OverflowError):
                continue
    try:
        numbers = _numbers(rows, np.float64)
    except ValueError:
        _refuse_cell(rows, None, spec, locate)
    return coerce(numbers, spec, allow_non_finite=allow_non_finite, locate=locate)


def _numbers(rows: list[list[str]], dtype: type[np.generic]) -> np.ndarray:
    """``np.array(rows, dtype)`` in blocks of :data:`_BLOCK_ROWS` rows (the rows are all as wide)."""
    if len(rows) <= _BLOCK_ROWS:
        return np.array(rows, dtype=dtype)
    numbers = np.empty((len(rows), len(rows[0])), dtype=dtype)
    for start in range(0, len(rows), _BLOCK_ROWS):
        numbers[start : start + _BLOCK_ROWS] = np.array(rows[start : start + _BLOCK_ROWS], dtype=dtype)
    return numbers


def _refuse_cell(rows: list[list[str]], bad: np.ndarray | None, spec: TensorSpec, locate: Locator) -> NoReturn:
    """Explain the first cell that is not a number (only runs on the error path, so it may loop)."""
    if bad is None:
        bad = np.array([[not _is_float_text(cell) for cell in row] for row in rows], dtype=bool)
    row, column = (int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape))
    cell = rows[row][column].strip(" \t\r")  # other control characters shown: NumPy refuses them
    shown = repr(cell if len(cell) <= 40 else cell[:40] + "...") if cell else "an empty value"
    hint = ""
    if row == 0 and not _is_float_text(cell):
        hint = "; CSV requests have no header row (add 'header=present' to the Content-Type to skip one)"
    raise BadRequestError(f"{expects(spec)}; {locate((row, column))} has {shown}{hint}")


def _is_float_text(cell: str) -> bool:
    if "_" in cell:
        return False  # float() reads Python's 1_000; CSV and JSON numbers have no separators
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _encode(columns: Sequence[tuple[str, np.ndarray]]) -> bytes:
    rows = batch_size(columns)
    parts = [cells for name, array in columns if (cells := _row_cells(name, array, rows)) is not None]
    lines = [",".join(row) for row in zip(*parts, strict=True)] if parts else [""] * rows
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _row_cells(name: str, array: np.ndarray, rows: int) -> list[str] | None:
    """Each row of one output as comma-joined cells; ``None`` for an output with no values per row."""
    flat = array.reshape(rows, -1)
    if flat.shape[1] == 0:
        return None
    if is_text(flat):
        return [",".join(_text_cell(leaf) for leaf in row) for row in flat.tolist()]
    if flat.dtype.kind == "b":
        flat = flat.astype(np.uint8)
    elif flat.dtype.kind == "f" and not np.isfinite(flat).all():
        # orjson writes NaN and infinity as null; NumPy's str() spells them and keeps the shortest repr.
        return [",".join(str(value) for value in row) for row in flat]
    # orjson formats a whole 2-D array at C speed, with the shortest round-tripping repr per dtype:
    # "[[1.5,2.0],[3.0,4.0]]" -> "1.5,2.0],[3.0,4.0" -> one string per row.
    encoded = orjson.dumps(json_column(name, flat), option=orjson.OPT_SERIALIZE_NUMPY)
    return encoded[2:-2].decode("ascii").split("],[")


def _text_cell(leaf: object) -> str:
    if isinstance(leaf, bytes):
        try:
            text = leaf.decode("utf-8")
        except UnicodeDecodeError:
            text = base64.b64encode(leaf).decode("ascii")
    else:
        text = str(leaf)
    if any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
