"""A JSON batch of plain numbers read straight into an array, without a Python float per number.

The general JSON path (``orjson.loads``, then ``np.asarray`` over the nested lists) makes a Python
float of every number and reads it back: for one image sent as JSON (3x64x64, 12,288 numbers,
85 KB) that is most of a millisecond, as much as the benchmark CNN's forward pass. simdjson
(pysimdjson) parses the document in C and copies a homogeneous array of numbers into a buffer of
doubles (``Array.as_buffer``, which flattens nested arrays), which NumPy reads without a copy.

:func:`numeric_batch` takes a body only when it is the batch itself or ``{"instances": batch}``,
every leaf of the batch is a number (``as_buffer`` refuses anything else), and the nesting is
regular, an array of the shape read off its first element at every depth (``as_buffer`` would
flatten ``[[1, 2], [3]]`` as readily as ``[[1], [2]]``): proven by walking its arrays when they are
few for the body's size (an image), else by comparing its brackets and commas, in order, with a
regular array's (rows of a few numbers). Every other body is ``None``, for the general path to
decode and word its errors: another envelope, strings, booleans or nulls, ``NaN``, a number beyond
a double (the general path names it), ragged rows, JSON simdjson refuses, and bodies of
:data:`~json_blocks.LARGE_BODY` or more, which the general path parses in blocks so that no call
holds the interpreter for long.

The array is the one the general path builds, as float64: the same numbers (both parsers round
decimal to the nearest double), the same shape. The general path makes int64 of a batch of integers;
callers use this only for float32 and float64 inputs, where ``coerce`` casts either to the same
values as long as every magnitude is below 2**53 (a batch with a larger one is ``None``). float16
inputs take the general path: its messages for integers out of their range quote them as sent.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np
import simdjson

from inference.codecs.arrays import Locator, coerce, locate_row
from inference.codecs.json_blocks import LARGE_BODY
from model_package.manifest import TensorSpec

#: Every byte but the brackets and commas, deleted to compare a body's structure with a regular array's.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b"[],")
_local = threading.local()
#: Walking a body's arrays proves it regular when it has at most one array per this many bytes;
#: past that, comparing its brackets and commas is cheaper (see ``_regular``).
_BYTES_PER_WALKED_ARRAY = 200
_OPEN_BRACKET = ord("[")
#: Below this magnitude a double holds every integer exactly.
_EXACT_INTEGERS = float(2**53)
#: The most dimensions any NumPy version holds (``numpy.MAXDIMS`` was 32 before NumPy 2.0).
_MAX_RANK = 32
#: The input dtypes whose JSON numbers may take the shortcut (float16: see above).
_DTYPES = frozenset({"float32", "float64"})


def takes(inputs: tuple[TensorSpec, ...]) -> bool:
    """Whether a model with these inputs may have its JSON batches read here: one float32/float64 input."""
    return len(inputs) == 1 and inputs[0].dtype in _DTYPES


def as_input(
    batch: np.ndarray, spec: TensorSpec, *, allow_non_finite: bool, locate: Locator = locate_row
) -> np.ndarray:
    """``batch`` cast for ``spec`` as the general path casts it (``coerce``), and writable as its arrays are."""
    array = coerce(batch, spec, allow_non_finite=allow_non_finite, locate=locate)
    return array if array.flags.writeable else array.copy()  # float64 in, float64 out: still NumPy's view of the buffer


def numeric_batch(body: bytes, *, envelope: bool = True) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """The batch of ``body`` as float64, or ``None`` when it is not a regular array of plain numbers.

    ``envelope=False``: only a bare array (a JSON Lines record, where ``{"instances": ...}`` is not a row).
    """
    if len(body) >= LARGE_BODY or not body:
        return None
    first = body.find(b'"')  # memchr: no count over the whole body when there is no string at all
    if first >= 0:
        second = body.find(b'"', first + 1)
        if not envelope or second < 0 or body.find(b'"', second + 1) >= 0 or body[:first].lstrip()[:1] != b"{":
            return None  # a string other than the key "instances": not a batch of numbers, no parse wasted on it
    parser = getattr(_local, "parser", None)
    if parser is None:
        # One per thread: a parser serves one document at a time, and the codec thread and the
        # event loop both decode.
        parser = _local.parser = simdjson.Parser()
    try:
        parsed = _parse(parser, body, envelope)
    except (ValueError, TypeError, RuntimeError, KeyError, IndexError):
        return None  # not JSON simdjson takes, or not numbers only: the general path says what is wrong
    if parsed is None:
        return None
    shape, values = parsed
    if values.size and not float(np.abs(values).max()) < _EXACT_INTEGERS:
        # From 2**53 a double no longer holds every integer: the general path reads a batch of
        # integers as int64 and casts it once, where doubles would round twice.
        return None
    return values.reshape(shape)


def _parse(
    parser: Any, body: bytes, envelope: bool
) -> tuple[tuple[int, ...], np.ndarray[Any, np.dtype[np.float64]]] | None:
    """The batch's shape (read off its first elements) and its numbers, or ``None`` if it is not regular.

    Keeps no reference to the parsed document past its return: simdjson refuses to parse the next
    body while one lives.
    """
    document = parser.parse(body)
    if isinstance(document, simdjson.Object):
        if not envelope or list(document.keys()) != ["instances"]:
            return None
        document = document["instances"]
    if not isinstance(document, simdjson.Array):
        return None
    shape: list[int] = []
    node = document
    while isinstance(node, simdjson.Array):
        shape.append(len(node))
        if not shape[-1] or len(shape) > _MAX_RANK:
            break
        node = node[0]
    if len(shape) > _MAX_RANK:
        return None  # NumPy holds at most 64 dimensions (32 before 2.0): the general path words the refusal
    values = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
    if values.size != math.prod(shape) or not _regular(document, body, tuple(shape)):
        return None
    return tuple(shape), values


def _regular(document: Any, body: bytes, shape: tuple[int, ...]) -> bool:
    """Whether ``document`` is an array of ``shape`` all the way down (its numbers are counted already).

    Two proofs, the cheaper for the body: walking the arrays (about 0.1 us each: an image of
    3x64x64 floats has 196 arrays in 240 KB) or comparing every bracket and comma with a regular
    array's (about 0.6 ns a byte: cheaper for rows of a few numbers, where arrays are many).
    """
    arrays = _regular_array_count(shape)
    if arrays * _BYTES_PER_WALKED_ARRAY <= len(body):
        # Every '[' is an array (no strings but the key "instances"): as many as a regular array has,
        # and the walk finds all of them where they belong, so no leaf is an array. With the count of
        # numbers (the caller's), that leaves no room for a ragged row.
        opened = int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == _OPEN_BRACKET))
        return opened == arrays and _walk(document, shape, 0)
    # Lengths first: the regular skeleton of a shape read off a hostile body (``[[[], [], ...]]``
    # holds no number, so any outer sizes "fit" it) could be far larger than the body itself.
    skeleton = _skeleton(body)
    return len(skeleton) == _regular_skeleton_length(shape) and skeleton == _regular_skeleton(shape)


def _walk(node: Any, shape: tuple[int, ...], depth: int) -> bool:
    """Whether every array from ``node`` down has the length ``shape`` gives its depth, and arrays only
    above the last depth."""
    if len(node) != shape[depth]:
        return False
    if depth + 1 == len(shape):
        return True
    for child in node:  # noqa: SIM110 (a loop: all() over a generator costs twice the walk)
        if not isinstance(child, simdjson.Array) or not _walk(child, shape, depth + 1):
            return False
    return True


def _regular_array_count(shape: tuple[int, ...]) -> int:
    """How many arrays (``[``) a regular array of ``shape`` holds: 1 + s0 + s0*s1 + ... (not the innermost's items)."""
    count, level = 0, 1
    for size in shape:
        count += level
        level *= size
    return count


def _skeleton(body: bytes) -> bytes:
    """The body's brackets and commas, in order (outside any string: callers only pass bodies whose
    only string is the key ``"instances"``)."""
    return body.translate(None, _NOT_STRUCTURE)


def _regular_skeleton_length(shape: tuple[int, ...]) -> int:
    """``len(_regular_skeleton(shape))``, without building it."""
    length = 0
    for size in reversed(shape):
        length = 2 + size * length + max(size - 1, 0)
    return length


@functools.lru_cache(maxsize=16)
def _regular_skeleton(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a regular array of ``shape``, e.g. ``[[,],[,]]`` for (2, 2)."""
    inner = b""
    for size in reversed(shape):
        inner = b"[" + b",".join([inner] * size) + b"]"
    return inner
