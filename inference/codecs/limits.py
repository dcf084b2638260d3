"""How much a request may cost once decoded: bounded relative to the body limit and the model's input.

A request body is bounded by the platform's limit, but what it decodes to need not be: a compressed
``.npz`` of zeros, or a JSON list with one long string that NumPy would widen every element to, can
turn a megabyte into gigabytes. Every codec therefore keeps its decoded arrays within
:data:`DECODE_EXPANSION` times the body limit, checked before allocating where the size is known
in advance (``.npy`` and ``.npz`` headers, CSV rows), and the decoded request as a whole is checked
again against the same bound, which gives the largest number of rows one request may hold for this
model's input (a 413 names both).

CPU is bounded the same way. Parsing costs per row, per line and per JSON array, not per byte: six
megabytes of empty rows (``[[],[],...]``) or of short CSV lines (``",\n"`` repeated) took 1.8-4.6 s
to parse into Python objects before any check could refuse them, against 0.4-1 s for a body of the
same size holding valid rows, model call included (``python -m bench.hostile_bodies``). A valid row
takes a known least number of bytes (:class:`RowShape`), so before parsing a large body
:func:`check_structure` counts its lines or ``[`` (one NumPy pass) and refuses, as a 400, a body with
over twice as many as valid rows could hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inference.errors import BadRequestError, PayloadTooLargeError
from model_package.manifest import Signature

#: Decoded arrays may be this many times the body limit: text codecs expand numbers by up to 4x
#: ("0," -> float64), and casts (uint8 -> float32) by 4x; beyond that a body is a compression bomb.
DECODE_EXPANSION = 4
#: Bodies from this size have their structure counted before they are parsed (smaller ones cost little).
COUNTED_BODY = 64 * 1024
#: Lines or arrays a body may hold beyond twice its rows': the envelope's arrays, blank lines.
_SPARE = 64


@dataclass(frozen=True)
class DecodeLimits:
    """The decoded-size bound of one request."""

    max_bytes: int
    """The most bytes a request's decoded input arrays may hold together."""
    body_limit: int
    """The request-body limit the bound derives from (named in messages)."""

    @classmethod
    def for_body_limit(cls, max_request_bytes: int) -> DecodeLimits:
        """The bound for a server whose bodies are at most ``max_request_bytes``."""
        return cls(max_bytes=DECODE_EXPANSION * max_request_bytes, body_limit=max_request_bytes)

    def check_size(self, decoded_bytes: int, what: str) -> None:
        """Raise a 413 before allocating ``decoded_bytes`` for ``what`` when they exceed the bound."""
        if decoded_bytes > self.max_bytes:
            raise PayloadTooLargeError(
                f"{what} decodes to {decoded_bytes:,} bytes; this endpoint decodes at most {self.max_bytes:,} "
                f"bytes per request ({DECODE_EXPANSION} x its {self.body_limit:,}-byte body limit): "
                "split the batch into smaller requests"
            )

    def check_rows(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise a 413 naming the row limit when decoded ``inputs`` exceed the bound."""
        total = sum(_nbytes(array) for array in inputs.values())
        if total <= self.max_bytes:
            return
        first = next(iter(inputs.values()))
        rows = int(first.shape[0]) if first.ndim else 1
        max_rows = max(0, self.max_bytes * rows // total) if rows else 0
        raise PayloadTooLargeError(
            f"the request holds {rows:,} rows ({total:,} bytes once decoded); this endpoint accepts at most "
            f"{max_rows:,} rows of this model's input per request ({self.max_bytes:,} decoded bytes, "
            f"{DECODE_EXPANSION} x its {self.body_limit:,}-byte body limit): split it into smaller requests"
        )


@dataclass(frozen=True)
class RowShape:
    """What one row of a signature's inputs holds, and so the fewest bytes it takes as text."""

    values: int
    """Numbers in one row, all inputs together."""
    arrays: int
    """JSON arrays one row is written with, nested ones included (``[-1, 64]``: 1; ``[-1, 2, 3]``: 3)."""

    @classmethod
    def of(cls, signature: Signature) -> RowShape | None:
        """The row shape, or ``None`` when a row may be small or hold strings (no bound to check)."""
        values = arrays = 0
        for spec in signature.inputs:
            axes = spec.shape[1:]
            if spec.dtype == "bytes" or any(size <= 0 for size in axes):
                return None  # strings, or an axis that may be empty: a row of any size could be valid
            values += math.prod(axes)
            arrays += sum(math.prod(axes[:depth]) for depth in range(len(axes)))
        return cls(values, arrays)

    def json_bytes(self) -> int:
        """The fewest bytes of JSON a row takes with the comma after it: a digit and a comma per number, a
        ``[`` and a ``]`` per array, one comma fewer within each (``[0,0]``, ``[[0],[0]]``)."""
        return 2 * self.values + 2 * self.arrays

    def csv_bytes(self) -> int:
        """The fewest bytes of a CSV line with its line break: a digit and a comma or the break per number."""
        return 2 * self.values


#: A body's form, and what its messages call it.
BodyForm = Literal["text/csv", "JSON Lines", "JSON"]


def check_structure(body: bytes, signature: Signature, form: BodyForm, *, line_break: bytes = b"\n") -> None:
    """A 400 for a large ``body`` with more lines (CSV, JSON Lines: a row each, ended by ``line_break``) or
    JSON arrays than valid rows could fill.

    Called before parsing: a count costs ~7 us per 100 KB (``bytes.count``: 50 us) and ~0.5 ms for 6 MB.
    Not for the Open Inference Protocol, whose tensors' data may be nested in any way.
    """
    if len(body) < COUNTED_BODY:
        return
    shape = RowShape.of(signature)
    if shape is None:
        if form != "text/csv":
            _check_depth(body, signature, form)
        return
    counts: list[tuple[int, str, int]] = []  # (how many, of what, per valid row)
    if form != "JSON":
        counts.append((_occurrences(body, line_break), "lines", 1))
    if form != "text/csv" and shape.arrays:
        # JSON Lines too: a line of one number nested 60 deep is one line, and 40,000 of them took
        # 1.9 s to parse before the shape check refused them, holding the health route 0.8 s.
        counts.append((_occurrences(body, b"["), "arrays", shape.arrays))
    row_bytes = shape.csv_bytes() if form == "text/csv" else shape.json_bytes()
    rows = (len(body) + 1) // row_bytes
    for count, things, per_row in counts:
        # Twice what the smallest rows would hold, and a few more: room for a blank line after each row,
        # arrays or brackets in "parameters"; the bodies this stops hold many times more.
        if count > 2 * rows * per_row + _SPARE:
            shapes = ", ".join(f"{spec.name!r} {list(spec.shape)}" for spec in signature.inputs)
            raise BadRequestError(
                f"the {form} body has {count:,} {things} in {len(body):,} bytes, more than rows of this model's "
                f"input could fill ({shape.values:,} numbers per row: {shapes}), so some hold fewer numbers than "
                "the signature's shape; send each row with all of its numbers"
            )


#: Bytes of a body :func:`_check_depth` reads at once (its temporaries are 5x that).
_DEPTH_BLOCK = 1 << 18


def _check_depth(body: bytes, signature: Signature, form: BodyForm) -> None:
    """A 400 for JSON nested deeper than any input's rank allows, where rows have no least size to count.

    A model with a varying axis (a sequence) has rows of any length, so :func:`check_structure` has no
    bound on their number; a body nesting each number 60 deep still cost 1.5 s of parsing before the
    rank check refused it. Valid JSON nests an input at most its rank deep (``{"inputs": {"ids": rows}}``,
    ``{"instances": rows}``, or a bare list of rows; a JSON Lines record one less). Counting brackets
    costs 2-10 ms per MB on the decoding thread, in about 1.3 MB of memory whatever the body. Not for
    string inputs, whose values may hold brackets, nor with Vertex AI ``"parameters"``, which may too.
    """
    if any(spec.dtype == "bytes" for spec in signature.inputs) or b'"parameters"' in body:
        return
    allowed = max(len(spec.shape) for spec in signature.inputs) - (1 if form == "JSON Lines" else 0)
    depth = deepest = 0
    # A block at a time, the depth carried over: whole-body temporaries were 5x the body (int32 steps).
    for data in _blocks(body):
        steps = (data == ord("[")).astype(np.int32)
        steps -= data == ord("]")
        np.cumsum(steps, out=steps)
        deepest = max(deepest, depth + int(steps.max()))
        depth += int(steps[-1])
    if deepest > allowed:
        ranks = ", ".join(f"{spec.name!r} {list(spec.shape)}" for spec in signature.inputs)
        raise BadRequestError(
            f"the {form} body nests arrays {deepest} deep; this model's inputs take at most {allowed} "
            f"({ranks}, -1 = any size)"
        )


def _occurrences(body: bytes, byte: bytes) -> int:
    return int(np.count_nonzero(np.frombuffer(body, np.uint8) == ord(byte)))


def _nbytes(array: np.ndarray) -> int:
    if array.dtype.kind == "O":  # bytes inputs: the pointers plus the bytes they point to
        return int(array.nbytes) + sum(len(leaf) for leaf in array.reshape(-1).tolist() if isinstance(leaf, bytes))
    return int(array.nbytes)


#: Arrays and objects a body may hold beyond its bound: an envelope's, ``"parameters"``.
_SPARE_CONTAINERS = 64
_OPENERS = (ord("["), ord("{"))
_QUOTE = ord('"')


def check_containers_per_byte(body: bytes, least_bytes: int, holds: str) -> None:
    """A 400 (``the JSON body holds <holds>``) for a large body with more arrays and objects than one per
    ``least_bytes`` bytes, before it is parsed.

    Parsing costs per array, not per byte, and holds the interpreter throughout (4 MB of ``[[],[],...]``
    kept ``/ping`` waiting 1.3-2.4 s). Brackets are counted first (one NumPy pass); only a body over the
    bound is counted again outside its strings, which may hold brackets.
    """
    if len(body) < COUNTED_BODY:
        return
    allowed = len(body) // least_bytes + _SPARE_CONTAINERS
    if count_containers(body) <= allowed or count_containers(body, outside_strings=True) <= allowed:
        return
    raise BadRequestError(f"the JSON body holds {holds}")


def check_empty_lists(body: bytes, holds: str) -> None:
    """A 400 (``the JSON body holds <holds>``) for a large body with more empty lists (``[]``) than a few,
    before it is parsed: tensor data holds numbers in every list, yet 6 MB of ``[[],[],...]`` took 2.2 s
    to parse in one call, holding the interpreter. Counted as :func:`check_containers_per_byte` counts
    (``[]`` inside strings, which texts may hold, only when the first count is over)."""
    if len(body) < COUNTED_BODY:
        return
    if _empty_lists(body) <= _SPARE_CONTAINERS or _empty_lists(body, outside_strings=True) <= _SPARE_CONTAINERS:
        return
    raise BadRequestError(f"the JSON body holds {holds}")


def _empty_lists(body: bytes, *, outside_strings: bool = False) -> int:
    """The ``[]`` in ``body`` (a pair may straddle two blocks); with ``outside_strings``, outside JSON strings."""
    count, previous = 0, 0
    for data, outside in _blocks_outside_strings(body) if outside_strings else _plain_blocks(body):
        opens = np.empty(len(data), dtype=bool)
        opens[0] = previous == _OPENERS[0]
        np.equal(data[:-1], _OPENERS[0], out=opens[1:])
        pairs = opens & (data == ord("]"))
        if outside is not None:
            pairs &= outside  # the "[" just before an outside "]" is outside too: no quote between them
        count += int(np.count_nonzero(pairs))
        previous = int(data[-1])
    return count


def nested_list_bytes(depth: int) -> int:
    """The fewest bytes per list in values nested ``depth`` lists deep: ``[1],`` 4, ``[[1]],`` 3, deeper 2-3."""
    return 4 if depth <= 1 else 3 if depth == 2 else 2


def count_containers(body: bytes, *, outside_strings: bool = False) -> int:
    """The ``[`` and ``{`` in ``body``; with ``outside_strings``, only those outside JSON strings.

    Outside strings, in NumPy passes a block at a time (most of them without the interpreter lock; a
    regular expression removing the strings held it 0.4 s for 6 MB of ``"[",``): see
    :func:`_blocks_outside_strings`.
    """
    if not outside_strings:
        data = np.frombuffer(body, np.uint8)
        return int(np.count_nonzero(data == _OPENERS[0])) + int(np.count_nonzero(data == _OPENERS[1]))
    return sum(
        int(np.count_nonzero(outside & ((data == _OPENERS[0]) | (data == _OPENERS[1]))))
        for data, outside in _blocks_outside_strings(body)
    )


def _blocks(text: bytes) -> Iterator[np.ndarray]:
    """``text`` as NumPy views of :data:`_DEPTH_BLOCK` bytes: whole-body temporaries would be 4-5x the body."""
    for start in range(0, len(text), _DEPTH_BLOCK):
        yield np.frombuffer(text, np.uint8, count=min(_DEPTH_BLOCK, len(text) - start), offset=start)


def _plain_blocks(body: bytes) -> Iterator[tuple[np.ndarray, None]]:
    for data in _blocks(body):
        yield data, None


def _blocks_outside_strings(body: bytes) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The blocks of ``body`` without its escapes, each with a mask of the bytes outside JSON strings.

    Escaped backslashes, then escaped quotes, are dropped first (JSON reads escapes left to right, as
    ``bytes.replace`` does), so every quote left opens or closes a string, and a byte is inside one
    when an odd number of quotes precede it (the count carried from block to block).
    """
    inside = 0
    for data in _blocks(body.replace(b"\\\\", b"").replace(b'\\"', b"")):
        parity = np.cumsum(data == _QUOTE, dtype=np.int32)
        parity += inside
        inside = int(parity[-1]) & 1
        yield data, (parity & 1) == 0
