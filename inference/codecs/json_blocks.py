"""Large JSON bodies parsed and converted in blocks, so no single call holds the interpreter for long.

Decoding runs on the codec thread (``inference.offload``), but ``orjson.loads`` and ``np.asarray``
hold the GIL for a whole call: 50-100 ms for a 5 MB body of numbers on the 2-core VMs ``bench/``
runs on, during which the event loop (health checks, every other connection) waits
(``python -m bench.health_under_load --format json``: ``/ping`` p99 161 ms, max 228 ms). Python
hands the interpreter over between calls, not inside one, so the work is cut into calls of a few
milliseconds each:

- :func:`loads`: the bulk of a large body is its batch, a list of numbers (rows of numbers,
  images as nested lists, the Open Inference Protocol's ``"data"``). Each such list that holds no
  string is cut at its own top-level commas into blocks of about :data:`BLOCK_BYTES` and parsed
  block by block; the rest of the document (keys, ``"parameters"``) is parsed once with the lists
  taken out and put back. The result is what ``orjson.loads(body)`` returns; when anything does
  not fit that picture (a block that does not parse, a document that is not mostly such lists) the
  whole body is parsed in one call as before, so errors read exactly as they did.
- :func:`asarray`: ``np.asarray`` of a long list of rows, a block of rows per call, concatenated;
  the same array (values, dtype and shape) as one call, or that one call when the blocks differ in
  a way concatenation would not reproduce (objects, unsigned integers, ragged rows).
- :func:`release`: the parsed lists, once converted, freed a block at a time (freeing them at once
  is a single cascade of deallocations).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

#: Bodies from this size are parsed in blocks (a smaller one is one call of at most a few ms).
LARGE_BODY = 512 * 1024
#: About how much JSON text one block holds: 1-3 ms of parsing on the slow VMs.
BLOCK_BYTES = 64 * 1024
#: Numbers per ``np.asarray`` call: about 1 ms on the slow VMs.
BLOCK_VALUES = 32 * 1024
#: The rest of a document, outside its lists of numbers, is parsed in one call: keep it small.
_MAX_ENVELOPE = 64 * 1024
#: How many bytes of a list are scanned per NumPy call while looking for its brackets.
_SCAN_BYTES = 1 << 20
#: The nesting a cut document may have in all: orjson refuses documents deeper than 1024 levels,
#: and anything near that is parsed in one call, so the limit and its error stay orjson's own.
_MAX_DEPTH = 1000
#: JSON's whitespace: these four bytes.
_WHITESPACE = re.compile(rb"[ \t\n\r]*")
#: What stands for the i-th list while the rest is parsed: an object no valid request holds (a key
#: of one NUL character, which a body can only spell escaped, and bodies holding that are not cut).
_PLACEHOLDER_KEY = "\x00"
_OPEN, _CLOSE = ord("["), ord("]")
#: ``np.asarray`` over Python numbers gives these; concatenating them gives what one call gives.
_PLAIN_DTYPES = frozenset({np.dtype(np.bool_), np.dtype(np.int64), np.dtype(np.float64)})


class _NotInBlocks(Exception):
    """The body does not fit the picture :func:`loads` cuts: parse it whole."""


def loads(body: bytes) -> Any:
    """``orjson.loads(body)``, a large body's lists of numbers parsed a block at a time (see the module docstring)."""
    if len(body) < LARGE_BODY:
        return orjson.loads(body)
    try:
        return _loads_in_blocks(body)
    except (_NotInBlocks, orjson.JSONDecodeError):
        return orjson.loads(body)  # the one-call parse: the same value, or the same error as always


def asarray(value: Any) -> np.ndarray:
    """``np.asarray(value)``; a long list is converted about :data:`BLOCK_VALUES` numbers per call.

    The rows per call follow the first row's size; at the first block that differs from the first
    (another shape, objects, unsigned integers) the whole list is converted in one call instead,
    so a list built to make blocks tiny costs one extra block, not one per element.
    """
    if not isinstance(value, list) or not value:
        return np.asarray(value)
    rows = max(1, BLOCK_VALUES // _values_in(value[0]))
    if len(value) < 2 * rows:
        return np.asarray(value)
    blocks: list[np.ndarray] = []
    for start in range(0, len(value), rows):
        try:
            block = np.asarray(value[start : start + rows])
        except (ValueError, OverflowError):
            return np.asarray(value)  # raises as one call does (ragged rows, say)
        if block.dtype not in _PLAIN_DTYPES or (blocks and block.shape[1:] != blocks[0].shape[1:]):
            return np.asarray(value)
        blocks.append(block)
    return np.concatenate(blocks)


def release(value: Any) -> None:
    """Empty ``value``'s long lists (it, or those an object maps to) a block of rows at a time.

    Once converted, a parsed batch is garbage, and freeing its half a million numbers in one
    cascade of deallocations holds the interpreter about as long as converting them did (~10 ms
    for a 5 MB body on the slow VMs). Call it on data nothing reads any more.
    """
    for rows in value.values() if isinstance(value, dict) else (value,):
        while isinstance(rows, list) and rows:
            del rows[-max(1, BLOCK_VALUES // _values_in(rows[-1])) :]  # sized by the rows it frees


def _values_in(row: Any) -> int:
    """How many numbers a row of nested lists holds, judged by its first element at each level."""
    count = 1
    while isinstance(row, list) and row:
        count *= len(row)
        row = row[0]
    return count


def _loads_in_blocks(body: bytes) -> Any:
    regions = list(_number_lists(body))
    if not regions or len(body) - sum(end - start for start, end, _, _ in regions) > _MAX_ENVELOPE:
        raise _NotInBlocks  # not mostly lists of numbers: one call, as for any other body
    edges = [0, *itertools.chain.from_iterable((start, end) for start, end, _, _ in regions), len(body)]
    outside = [body[left:right] for left, right in zip(edges[::2], edges[1::2], strict=True)]
    # Only the text outside the lists can spell the placeholder's key: the lists hold no quote, so
    # no string. (Looking through the whole body instead held the interpreter 10-40 ms, in one call,
    # for a 10 MB body.)
    if any(b"\\u0000" in piece for piece in outside):
        raise _NotInBlocks
    envelope = [outside[0]]
    for index, piece in enumerate(outside[1:]):
        envelope += [b'{"\\u0000":%d}' % index, piece]
    document = orjson.loads(b"".join(envelope))
    lists = [_parse_list(body, start, end, element_ends) for start, end, element_ends, _ in regions]
    found = _put_back(document, lists, [depth for *_, depth in regions])
    if found != len(lists):
        raise _NotInBlocks
    return document if not _is_placeholder(document) else lists[0]


def _number_lists(body: bytes) -> Iterator[tuple[int, int, np.ndarray, int]]:
    """``(start, end, element_ends, depth)`` of each list value of :data:`BLOCK_BYTES` or more without strings.

    A list value is the document itself or what follows a colon. ``start`` is its ``[``; the rest
    is what :func:`_scan` says. Without a quote inside, every bracket in
    it is structure, so its depth is a running sum. (A colon inside a string can
    make a piece of that string look like a list: the placeholder put there then breaks the
    document, which is parsed whole instead.)
    """
    colon = -1  # the document itself is the first candidate
    while True:
        blank = _WHITESPACE.match(body, colon + 1)
        start = blank.end() if blank else colon + 1
        quote = body.find(b'"', start)
        # The next candidate is past the next quote: a valid document's colons each follow a key's
        # closing quote, so other colons before it are invalid (or in a string), never a list value;
        # looking at each would scan the same window again per colon.
        after = len(body) if quote < 0 else quote
        if body[start : start + 1] == b"[" and after - start >= BLOCK_BYTES:
            found = _scan(body, start, after)
            if found is not None and found[0] - start >= BLOCK_BYTES:
                yield start, *found
                after = found[0]
        colon = body.find(b":", after)
        if colon < 0:
            return


def _scan(body: bytes, start: int, stop: int) -> tuple[int, np.ndarray, int] | None:
    """Where the list opening at ``start`` ends, where its elements that are lists end, how deep it nests.

    Returns ``(end, element_ends, depth)``: ``end`` just past the list's ``]``, ``element_ends``
    the offsets of the ``]`` that close its elements (none for a list of numbers), ``depth`` its
    levels (1 for a list of numbers). ``None`` when the list does not end before ``stop`` (the next
    quote), holds an object, or nests deeper than any document may. Only brackets are looked at, in
    windows that start small and double, so a short list costs little however long the rest is;
    what is kept per window is its element ends, so memory follows those, not every bracket.
    """
    depth = deepest = 0
    ends: list[np.ndarray] = []
    begin, size = start, BLOCK_BYTES
    while begin < stop:
        window = np.frombuffer(body, np.uint8, count=min(size, stop - begin), offset=begin)
        opens, closes = np.flatnonzero(window == _OPEN), np.flatnonzero(window == _CLOSE)
        where = np.concatenate([opens, closes])
        order = np.argsort(where, kind="stable")
        steps = np.concatenate([np.ones(opens.size, np.int32), np.full(closes.size, -1, np.int32)])[order]
        after = np.cumsum(steps, dtype=np.int32) + depth
        where = where[order] + begin
        closed = np.flatnonzero(after == 0)
        if closed.size:
            where, after, steps = where[: closed[0] + 1], after[: closed[0] + 1], steps[: closed[0] + 1]
        if after.size:
            deepest = max(deepest, int(after.max()))
            if deepest > _MAX_DEPTH:
                return None  # the one-call parse refuses it (or says where)
            ends.append(where[(after == 1) & (steps < 0)])
        if closed.size:
            end = int(where[-1]) + 1
            if body.find(b"{", start, end) >= 0:
                return None  # an object among the elements: not what this cuts
            return end, np.concatenate(ends), deepest
        if after.size:
            depth = int(after[-1])
        begin += window.size
        size = min(2 * size, _SCAN_BYTES)
    return None


def _parse_list(body: bytes, start: int, end: int, element_ends: np.ndarray) -> list[Any]:
    """The list at ``body[start:end]``, parsed a block of about :data:`BLOCK_BYTES` at a time.

    Blocks are cut at commas between elements: after an element's ``]`` when the elements are
    lists, anywhere when they are numbers (a list without nested lists has no other commas).
    """
    cuts: list[int] = []
    for target in range(start + BLOCK_BYTES, end - 1, BLOCK_BYTES):
        if cuts and cuts[-1] >= target:
            continue
        if element_ends.size:
            index = int(np.searchsorted(element_ends, target))
            if index >= element_ends.size:
                break
            blank = _WHITESPACE.match(body, int(element_ends[index]) + 1)
            comma = blank.end() if blank else -1
            if body[comma : comma + 1] != b",":
                break  # the list's own "]" (or a syntax error the one-call parse will word)
        else:
            comma = body.find(b",", target, end)
            if comma < 0:
                break
        cuts.append(comma)
    bounds = [start, *cuts, end - 1]
    items: list[Any] = []
    for left, right in itertools.pairwise(bounds):
        piece = body[left + 1 : right]
        if len(bounds) > 2 and not piece.strip(b" \t\n\r"):
            raise _NotInBlocks  # an empty element beside a comma ("[1,,2]", "[1,]"): one call words the error
        items += orjson.loads(b"[" + piece + b"]")
    return items


def _is_placeholder(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and type(value.get(_PLACEHOLDER_KEY)) is int


def _put_back(document: Any, lists: list[list[Any]], depths: list[int]) -> int:
    """Replace each placeholder in ``document`` by its list; how many were found (the document is small).

    Raises ``_NotInBlocks`` when a list's levels and those around it together nest deeper than a
    document may: each part alone was within orjson's limit, the whole is not, and the one-call
    parse says so.
    """
    if _is_placeholder(document):
        return 1
    found = 0
    stack = [(document, 1)]
    while stack:
        node, level = stack.pop()
        entries = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
        for key, value in list(entries):
            if _is_placeholder(value):
                index = value[_PLACEHOLDER_KEY]
                if level + depths[index] > _MAX_DEPTH:
                    raise _NotInBlocks
                node[key] = lists[index]
                found += 1
            elif type(value) in (dict, list):
                stack.append((value, level + 1))
    return found
