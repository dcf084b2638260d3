"""JSON batches of plain numbers read without Python floats: the same arrays as the general path, or not taken.

``numeric_batch`` must give exactly what ``np.asarray(orjson.loads(body))`` gives (as float64) for
the bodies it takes, and ``None`` for every body it cannot read that way, which the general path
then decodes (and words the errors of) as before; through the JSON codec, a request decodes to the
same tensors with and without it.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inference.codecs import json_numbers
from inference.codecs.dispatch import decode_request
from inference.codecs.json_blocks import LARGE_BODY
from inference.errors import BadRequestError
from model_package.manifest import Signature, TensorSpec


def _general(body: bytes) -> np.ndarray:
    parsed = orjson.loads(body)
    return np.asarray(parsed["instances"] if isinstance(parsed, dict) else parsed, dtype=np.float64)


@pytest.mark.parametrize(
    "body",
    [
        b"[[0.5, 1.5, -2.25]]",
        b"[[1, 2, 3], [4, 5, 6]]",  # integers: the same values as float64
        b'{"instances": [[[0.1, 0.2], [0.3, 0.4]], [[1e-3, 2E5], [-0.0, 7]]]}',
        b" \n[ [ 1.0 ,2.0 ] ,\t[3.0, 4.0] ]\r\n",
        b"[9007199254740991.0, 5e-324, 0.1, 123456789.123456789]",
        b"[]",
        b"[[]]",
    ],
)
def test_a_regular_batch_of_numbers_is_the_general_paths_array(body: bytes) -> None:
    batch = json_numbers.numeric_batch(body)
    assert batch is not None
    expected = _general(body)
    assert batch.dtype == np.float64 and batch.shape == expected.shape
    assert np.array_equal(batch, expected)


@pytest.mark.parametrize(
    "body",
    [
        b"[[1, 2], [3]]",  # ragged
        b"[[1, 2], [3], [4, 5, 6]]",  # ragged with as many numbers as a regular (3, 2) batch
        b"[[1, 2], 3]",  # mixed depths
        b"[[1, [2]], [3, 4]]",
        b'[["1", 2]]',
        b"[[true, 2]]",
        b"[[null, 2]]",
        b"[[NaN, 2]]",
        b"[[1e400, 2]]",  # beyond a double: the general path names it
        b"[[123456789012345678901234567890, 2]]",
        b"[[9007199254740992, 2]]",  # 2**53: maybe a batch of integers, which the general path reads as int64
        b"[1.7976931348623157e308]",  # as large, and whether the body holds only integers is not known here
        b'{"inputs": [[1, 2]]}',
        b'{"instances": [[1, 2]], "parameters": {}}',
        b'{"instances": 5}',
        b"5",
        b"[[1, 2]",  # not JSON
        b"",
    ],
)
def test_anything_else_is_left_to_the_general_path(body: bytes) -> None:
    assert json_numbers.numeric_batch(body) is None


def _row(count: int, start: float = 0.0) -> str:
    """``count`` numbers, comma-separated: long rows make a body of few arrays for its size."""
    return ", ".join(f"{start + i / 7:.6f}" for i in range(count))


# Rows of 100 numbers: about 1 KB per array, so these bodies are proven regular by walking their
# arrays, not by comparing every bracket and comma (``json_numbers._regular``).
LONG_REGULAR = [
    f"[[{_row(100)}], [{_row(100, 1)}]]",
    f'{{"instances": [[[{_row(100)}], [{_row(100, 2)}]], [[{_row(100, 3)}], [{_row(100, 4)}]]]}}',
    f" [\n [ {_row(100)} ] ,\t[{_row(100, 5)}]\n]\r\n",
]
LONG_IRREGULAR = [
    f"[[{_row(100)}], [{_row(99)}]]",  # ragged
    f"[[{_row(100)}], [{_row(99)}], [{_row(101)}]]",  # ragged with as many numbers as a regular (3, 100)
    f"[[{_row(100)}], [{_row(98)}, [1.5], [2.5]]]",  # arrays among the last row's numbers, counts intact
    f"[[{_row(100)}], [{_row(98)}, [1.5, 2.5], []]]",  # the same, one array empty
    f"[[{_row(100)}], {_row(100)}]",  # mixed depths
    f"[[[{_row(50)}], [{_row(50)}]], [[{_row(50)}], [{_row(48)}, [1, 2]]]]",  # deeper, the same trick
    f'{{"instances": [[{_row(100)}], [{_row(100)}]], "x": 1}}',
    f'{{"instances": [[{_row(100)}], [{_row(100)}]]}} "',
    f'{{"inst[nces": [[{_row(100)}], [{_row(100)}]]}}',
]


@pytest.mark.parametrize("text", LONG_REGULAR)
def test_a_regular_batch_of_long_rows_is_the_general_paths_array(text: str) -> None:
    body = text.encode()
    batch = json_numbers.numeric_batch(body)
    assert batch is not None
    expected = _general(body)
    assert json_numbers._regular_array_count(expected.shape) * json_numbers._BYTES_PER_WALKED_ARRAY <= len(body)
    assert batch.shape == expected.shape and np.array_equal(batch, expected)


@pytest.mark.parametrize("text", LONG_IRREGULAR)
def test_long_rows_that_are_not_a_regular_batch_are_left_to_the_general_path(text: str) -> None:
    assert json_numbers.numeric_batch(text.encode()) is None


def test_a_large_body_is_left_to_the_block_parser() -> None:
    rows = LARGE_BODY // 40 + 1
    body = orjson.dumps(np.full((rows, 8), 0.123).tolist())
    assert len(body) >= LARGE_BODY
    assert json_numbers.numeric_batch(body) is None
    assert json_numbers.numeric_batch(body[: LARGE_BODY // 2].rpartition(b"],")[0] + b"]]") is not None


SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 2, 3)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
)


def _decode_both_ways(
    body: bytes, monkeypatch: pytest.MonkeyPatch, media_type: str = "application/json", signature: Signature = SIGNATURE
) -> tuple[object, object]:
    """What ``body`` decodes to (the one input's array or the error's message), with and without the shortcut."""

    def decode() -> object:
        try:
            return decode_request(body, media_type, signature)[signature.inputs[0].name]
        except BadRequestError as exc:
            return str(exc)

    fast = decode()
    with monkeypatch.context() as patched:
        patched.setattr(json_numbers, "numeric_batch", lambda *_, **__: None)
        general = decode()
    return fast, general


@settings(max_examples=60, deadline=None)
@given(
    batch=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.just(2), st.just(3)),
        elements=st.floats(-1e30, 1e30, allow_nan=False) | st.integers(-(2**40), 2**40).map(float),
    ),
    envelope=st.booleans(),
)
def test_the_codec_decodes_the_same_tensors_with_and_without_it(batch: np.ndarray, envelope: bool) -> None:
    body = json.dumps({"instances": batch.tolist()} if envelope else batch.tolist()).encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, general = _decode_both_ways(body, monkeypatch)
    assert isinstance(fast, np.ndarray) and isinstance(general, np.ndarray)
    assert fast.dtype == general.dtype == np.float32
    assert np.array_equal(fast, general)
    assert fast.flags.writeable


@pytest.mark.parametrize(
    "body",
    [
        b"[[[1, 2, 3], [4, 5, 6]], [[1, 2, 3]]]",  # ragged
        b"[[[1e300, 2, 3], [4, 5, 6]]]",  # beyond float32
        b"[]",
        b"[" * 1000 + b"1" + b"]" * 1000,  # more dimensions than NumPy holds: a 400, not a 500
    ],
)
def test_refusals_read_as_they_did(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, general = _decode_both_ways(body, monkeypatch)
    assert isinstance(general, str)
    assert fast == general


def _decode_lines_both_ways(lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    """:func:`_decode_both_ways` for a JSON Lines body of ``lines`` to the image model."""
    return _decode_both_ways(b"\n".join(lines) + b"\n", monkeypatch, "application/jsonlines", IMAGE_SIGNATURE)


IMAGE_SIGNATURE = Signature(
    inputs=(TensorSpec(name="image", dtype="float32", shape=(-1, 3, 16, 16)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
)
IMAGE = np.round(np.random.default_rng(3).standard_normal((3, 16, 16)), 4)  # a record of about 5 KB


def test_json_lines_of_large_records_decode_to_the_same_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [orjson.dumps((IMAGE * k).tolist()) for k in range(1, 6)]
    assert min(map(len, lines)) >= 4096  # the shortcut's threshold, and the shortcut reads them
    assert all(json_numbers.numeric_batch(line, envelope=False) is not None for line in lines)
    fast, general = _decode_lines_both_ways(lines, monkeypatch)
    assert isinstance(fast, np.ndarray) and isinstance(general, np.ndarray)
    assert fast.shape == (5, 3, 16, 16) and fast.dtype == np.float32
    assert np.array_equal(fast, general)


@pytest.mark.parametrize(
    "odd_line",
    [
        orjson.dumps(IMAGE[:2].tolist()),  # another shape
        orjson.dumps({"instances": IMAGE.tolist()}),  # not a row
        orjson.dumps(IMAGE.tolist()).replace(b"]]]", b', "x"]]]'),  # a string
        orjson.dumps(np.where(IMAGE.flat[7] == IMAGE, 1e300, IMAGE).tolist()),  # beyond float32, on line 3
    ],
    ids=["shape", "envelope", "string", "overflow"],
)
def test_json_lines_the_shortcut_cannot_read_or_that_are_refused_read_as_they_did(
    odd_line: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [orjson.dumps(IMAGE.tolist()), orjson.dumps(IMAGE.tolist()), odd_line]
    fast, general = _decode_lines_both_ways(lines, monkeypatch)
    assert isinstance(general, str)
    assert fast == general
    if b"1e+300" in odd_line:
        assert "line 3" in fast


def test_a_small_body_of_empty_rows_cannot_make_the_shortcut_build_a_huge_structure() -> None:
    # 60 KB read as 10,000 x 10,000 x 0: no number, so the count "fits" any outer sizes; the
    # structure of such an array would be 300 MB, built (and cached) only to find the body ragged.
    inner = b"[" + b",".join([b"[]"] * 10_000) + b"]"
    body = b"[" + inner + b"," + b",".join([b"[]"] * 9_999) + b"]"
    tracemalloc.start()
    try:
        assert json_numbers.numeric_batch(body) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(body), peak


@pytest.mark.parametrize(
    ("body", "dtype"),
    [
        (b"[[1152921573326323713, 0]]", "float32"),  # 2**60 + 2**36 + 1: int64 -> float32 rounds once
        (b'{"instances": [[9007199254740993, 2]]}', "float64"),  # 2**53 + 1
        (b"[[65520, 1]]", "float16"),  # beyond float16: the message quotes the integer as sent
        (b"[[9007199254740993, 2]]", "float16"),
    ],
)
def test_integers_read_as_the_general_path_reads_them(body: bytes, dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    signature = Signature(inputs=(TensorSpec(name="x", dtype=dtype, shape=(-1, 2)),), outputs=SIGNATURE.outputs)
    fast, general = _decode_both_ways(body, monkeypatch, signature=signature)
    if isinstance(general, str):
        assert fast == general
    else:
        assert isinstance(fast, np.ndarray) and fast.dtype == general.dtype  # type: ignore[attr-defined]
        assert np.array_equal(fast, general)  # type: ignore[arg-type]
