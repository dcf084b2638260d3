"""Parsing and converting large JSON in blocks gives exactly what one call gives, errors included."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.codecs import json_blocks


def outcome(parse: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "value", parse(body)
    except orjson.JSONDecodeError as exc:
        return "error", str(exc)


def rows(count: int, width: int = 64) -> list[list[float]]:
    return np.random.default_rng(count).standard_normal((count, width)).round(6).tolist()  # type: ignore[no-any-return]


LARGE_BODIES = {
    "instances": orjson.dumps({"instances": rows(9_000)}),
    "bare list": orjson.dumps(rows(9_000)),
    "inputs and parameters": orjson.dumps({"inputs": rows(9_000), "parameters": {"note": "a: [1, 2]"}}),
    "oip, flat and nested data": orjson.dumps(
        {
            "id": "x",
            "inputs": [
                {"name": "a", "shape": [4_000, 64], "datatype": "FP32", "data": np.ravel(rows(4_000)).tolist()},
                {"name": "b", "shape": [4_000, 64], "datatype": "FP32", "data": rows(4_000)},
            ],
        }
    ),
    "whitespace everywhere": b'{ "instances" :\n [ ' + b" ,\n ".join(orjson.dumps(r) for r in rows(9_000)) + b" ] }",
    "images": orjson.dumps({"instances": np.random.default_rng(1).random((12, 3, 64, 64)).round(4).tolist()}),
    "numbers beside lists": orjson.dumps([1, [2, 3]] * 100_000),
    "an object among the rows": orjson.dumps([{}, *rows(9_000)]),
    "one key twice": b'{"a": ' + orjson.dumps(rows(5_000)) + b', "a": ' + orjson.dumps(rows(4_000)) + b"}",
}
ONES = b"1," * 100_000
BROKEN_BODIES = {
    "trailing comma": b"[" + ONES + b"]",
    "two commas": b"[" + ONES + b",1]",
    "leading comma": b"[," + ONES + b"1]",
    "commas after rows": b"[" + b"[1,2]," * 30_000 + b",[1,2]]",
    "no commas between rows": b"[" + b"[1,2] " * 30_000 + b"[1,2]]",
    "an extra bracket": b"[" + b"[1,2]," * 30_000 + b"[1,2]]]",
    "trailing text": b'{"instances": [' + ONES + b"2]} trailing",
    "object left open": b'{"instances": [' + ONES + b'2], "x": }',
    "NaN (the standard library's spelling)": b"[NaN," + ONES + b"2]",
    "a list inside a string": b'{"note": "see: [' + ONES + b'2]", "instances": [1]}',
    "an escaped NUL key": b'{"\\u0000": 0, "instances": [' + ONES + b"2]}",
}


@pytest.mark.parametrize("body", LARGE_BODIES.values(), ids=LARGE_BODIES.keys())
def test_a_large_body_parses_to_what_one_call_gives(body: bytes) -> None:
    assert len(body) >= json_blocks.LARGE_BODY or body == LARGE_BODIES["images"]
    assert json_blocks.loads(body) == orjson.loads(body)


@pytest.mark.parametrize("body", BROKEN_BODIES.values(), ids=BROKEN_BODIES.keys())
def test_a_large_body_that_one_call_refuses_is_refused_with_its_error(body: bytes) -> None:
    assert outcome(json_blocks.loads, body) == outcome(orjson.loads, body)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(
    document=json_values, cut=st.integers(0, 10_000), junk=st.sampled_from([b"", b",", b"]", b"[", b" ", b'"', b":"])
)
def test_any_document_in_tiny_blocks_parses_as_one_call_parses_it(document: Any, cut: int, junk: bytes) -> None:
    # Tiny thresholds put a cut between nearly every two elements of every list; the junk byte,
    # inserted anywhere, makes most documents invalid, and those must fail exactly as one call fails.
    body = json.dumps(document, indent=2 if cut % 2 else None).encode()
    at = cut % (len(body) + 1)
    body = body[:at] + junk + body[at:]
    with mock.patch.object(json_blocks, "LARGE_BODY", 0), mock.patch.object(json_blocks, "BLOCK_BYTES", 2):
        assert outcome(json_blocks.loads, body) == outcome(orjson.loads, body)


ARRAYS = {
    "rows of floats": rows(9_000),
    "flat floats": np.ravel(rows(9_000)).tolist(),
    "images": np.random.default_rng(2).random((20, 3, 64, 64)).round(4).tolist(),
    "integers": np.random.default_rng(3).integers(-100, 100, (9_000, 64)).tolist(),
    "integers, then floats": [[1, 2]] * 40_000 + [[1.5, 2.5]] * 40_000,
    "booleans, then integers": [[True, False]] * 40_000 + [[1, 2]] * 40_000,
}
ODD_ARRAYS = {
    "a short row at the end": [[1, 2]] * 40_000 + [[1, 2, 3]],
    "an integer beyond 64 bits": [[1, 2]] * 40_000 + [[2**64, 1]],
    "an unsigned 64-bit integer": [[1, 2]] * 40_000 + [[2**63, 1]],
    "a null": [[1, 2]] * 40_000 + [[None, 1]],
    "a string": [[1, 2]] * 40_000 + [["1", 1]],
}


@pytest.mark.parametrize("value", [*ARRAYS.values(), *ODD_ARRAYS.values()], ids=[*ARRAYS, *ODD_ARRAYS])
def test_a_long_list_converts_to_what_one_call_gives(value: list[Any]) -> None:
    try:
        want = np.asarray(value)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            json_blocks.asarray(value)
        return
    got = json_blocks.asarray(value)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def test_releasing_empties_the_batches_it_is_given() -> None:
    batch, other = rows(5_000), rows(3)
    document = {"x": batch, "y": other, "z": "kept"}
    json_blocks.release(document)
    assert batch == [] and other == [] and document["z"] == "kept"


def test_a_body_of_colons_is_scanned_once_not_once_per_colon() -> None:
    # Each colon followed by "[" started a scan to the next quote: 40,000 of them before 600 KB of
    # digits took 14 s of one core for a 680 KB body. A valid document has one colon per key, right
    # after its quote, so the rest of a window is never a list value.
    body = b"[" + b":[" * 40_000 + b"1" * 600_000
    scanned: list[int] = []
    scan = json_blocks._scan

    def counting(body: bytes, start: int, stop: int) -> tuple[int, np.ndarray] | None:
        scanned.append(stop - start)
        return scan(body, start, stop)

    with mock.patch.object(json_blocks, "_scan", counting):
        assert outcome(json_blocks.loads, body) == outcome(orjson.loads, body)
    assert sum(scanned) <= len(body)


def test_a_body_nesting_too_deeply_in_all_is_refused_though_each_part_is_not() -> None:
    # A list 1,023 levels deep inside an object inside the document: the cut list and the rest were
    # each within orjson's 1,024 levels, the whole was not, and the cut parse returned a value where
    # one call refuses the body (review finding).
    batch = orjson.dumps(rows(2_000))
    deep = b"[" * 1_023 + b",".join([b"1"] * 40_000) + b"]" * 1_023
    body = b'{"instances": ' + batch + b', "parameters": {"p": ' + deep + b"}}"
    assert outcome(orjson.loads, body)[0] == "error"
    assert outcome(json_blocks.loads, body) == outcome(orjson.loads, body)


def test_finding_a_lists_end_keeps_memory_far_below_the_body() -> None:
    # Every bracket's offset and depth were kept: 10 MB of brackets took +359 MB (and 1.2 s) before
    # the one-call parse refused them. Depth past any document's limit now ends the scan at once.
    import tracemalloc

    body = b"[" * 5_000_000 + b"]" * 5_000_000
    tracemalloc.start()
    try:
        assert json_blocks._scan(body, 0, len(body)) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(body) / 2, f"{peak / 1e6:.0f} MB for a {len(body) / 1e6:.0f} MB body"


def test_a_list_made_to_need_tiny_blocks_is_converted_in_one_call() -> None:
    # A first row of 16,385 numbers set one row per block for 2 million scalars after it: 2.2 s and
    # +180 MB before the one-call conversion refused them anyway. Now the second block stops it.
    value = [[0] * 16_385, *([0] * 2_000_000)]
    calls: list[int] = []
    real = np.asarray

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    with mock.patch.object(json_blocks.np, "asarray", counting), pytest.raises(ValueError):
        json_blocks.asarray(value)
    assert len(calls) <= 3


def test_a_refused_body_is_freed_in_blocks_too() -> None:
    from inference.codecs.json_codec import split_json_payload
    from inference.errors import BadRequestError

    body = orjson.dumps({"instances": rows(9_000), "instance": 1})
    freed: list[Any] = []
    with mock.patch.object(json_blocks, "release", freed.append), pytest.raises(BadRequestError):
        split_json_payload(body)
    assert freed and len(freed[0]["instances"]) == 9_000
