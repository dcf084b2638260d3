"""Large bodies with more rows, lines or arrays than valid rows could fill are refused before parsing.

Parsing costs per row, line and array: six megabytes of ``[]`` or of ``",\\n"`` took 2-4 s of CPU to
parse into Python objects (a valid body of that size: 0.5-1 s, model included) and then decoded to
tensors of the wrong width, or, blank, to no rows at all. The codecs now count a large body's lines
or ``[`` first (``python -m bench.hostile_bodies`` measures both). These tests go through the codecs'
public entry points, as the server and local batch scoring call them; valid bodies of the smallest
size each form allows must still decode.
"""

from __future__ import annotations

import orjson
import pytest

from inference.codecs.dispatch import decode_json_request, decode_request
from inference.codecs.oip_json import parse_infer_request
from inference.errors import BadRequestError
from model_package.manifest import Signature, TensorSpec

ROWS = 1_000  # 130 KB of the smallest valid JSON rows of 64 numbers: above the counted size (64 KiB)


def _signature(*inputs: tuple[str, str, tuple[int, ...]]) -> Signature:
    return Signature(
        inputs=tuple(TensorSpec(name=name, dtype=dtype, shape=shape) for name, dtype, shape in inputs),
        outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 10)),),
    )


MLP = _signature(("x", "float32", (-1, 64)))
SMALLEST_ROW = b"[" + b",".join([b"0"] * 64) + b"]"
SMALLEST_CSV_LINE = b",".join([b"0"] * 64)


@pytest.mark.parametrize(
    ("body", "content_type", "things"),
    [
        pytest.param(b"[" + b",".join([b"[]"] * 200_000) + b"]", "application/json", "arrays", id="json empty rows"),
        pytest.param(
            b'{"instances": [' + b",".join([SMALLEST_ROW] * 10 + [b"[]"] * 200_000) + b"]}",
            "application/json",
            "arrays",
            id="json valid rows then empty ones",
        ),
        pytest.param(b"[" + b",".join([b"[[]]"] * 100_000) + b"]", "application/json", "arrays", id="json nested"),
        pytest.param(b",\n" * 200_000, "text/csv", "lines", id="csv commas"),
        pytest.param(
            b"\n".join([SMALLEST_CSV_LINE] * 10) + b"\n" * 400_000, "text/csv", "lines", id="csv blank padding"
        ),
        pytest.param(b"[]\n" * 200_000, "application/jsonlines", "lines", id="json lines empty records"),
        pytest.param(
            (b"[" * 60 + b"0" + b"]" * 60 + b"\n") * 2_000,  # 40,000 of these: 1.9 s parsed, the health route 0.8 s
            "application/jsonlines",
            "arrays",
            id="json lines of deeply nested single numbers",
        ),
    ],
)
def test_a_body_with_more_rows_than_its_size_could_hold_is_a_400_naming_the_count(
    body: bytes, content_type: str, things: str
) -> None:
    with pytest.raises(BadRequestError, match=rf"body has [\d,]+ {things} in [\d,]+ bytes.*64 numbers per row"):
        decode_request(body, content_type, MLP)


def test_vertex_and_kserve_v1_bodies_are_bounded_too() -> None:
    body = b'{"instances": [' + b",".join([b"[]"] * 100_000) + b'], "parameters": {}}'
    with pytest.raises(BadRequestError, match="arrays in"):
        decode_json_request(body, MLP)


@pytest.mark.parametrize(
    "line_break",
    [b"\x0b", b"\x1c", "\u2028".encode()],
    ids=["vertical tab", "file separator", "line separator"],
)
def test_csv_lines_do_not_end_at_other_breaks(line_break: bytes) -> None:
    """str.splitlines also broke lines at these, which the count of line feeds did not see: a body of
    one-comma lines ending in one cost what it did before the count (4 s for 6 MB)."""
    body = (b"," + line_break) * 100_000
    with pytest.raises(BadRequestError, match="line 1 has"):
        decode_request(body, "text/csv", MLP)


def test_csv_lines_ended_by_a_lone_carriage_return_are_counted_as_lines() -> None:
    with pytest.raises(BadRequestError, match=r"text/csv body has 100,000 lines"):
        decode_request(b",\r" * 100_000, "text/csv", MLP)


@pytest.mark.parametrize(
    "line_break", [b"\n", b"\r\n", b"\r", b"\r\r\n"], ids=["LF", "CRLF", "CR (classic Mac OS)", "CR CR LF"]
)
def test_csv_with_each_kind_of_line_break_decodes(line_break: bytes) -> None:
    body = line_break.join([SMALLEST_CSV_LINE] * ROWS) + line_break
    assert decode_request(body, "text/csv", MLP)["x"].shape == (ROWS, 64)


def test_csv_mixing_line_feeds_with_lone_carriage_returns_is_refused_naming_the_line() -> None:
    """Read with line feeds only, "a,b\r1,2\n3,4" would lose the row 1,2 to the header silently."""
    signature = _signature(("x", "float32", (-1, 2)))
    with pytest.raises(BadRequestError, match=r"mixes line breaks: line 2 holds a \\r not followed by \\n"):
        decode_request(b"1,2\n3,4\r5,6\n", "text/csv", signature)


def test_open_inference_protocol_data_may_be_nested_in_any_way() -> None:
    """A tensor's data may be flat, nested as its shape, or deeper (images of 28x28 for [-1, 784]):
    its arrays say nothing about its rows, so Open Inference Protocol bodies are not counted."""
    signature = _signature(("x", "float32", (-1, 784)))
    images = [[[0] * 28] * 28] * 100
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [100, 784], "datatype": "FP32", "data": images}]})
    assert len(body) > 64 * 1024
    assert parse_infer_request(body, signature).inputs["x"].shape == (100, 784)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"[" + b",".join([SMALLEST_ROW] * ROWS) + b"]", "application/json", id="json"),
        pytest.param(b'{"instances":[' + b",".join([SMALLEST_ROW] * ROWS) + b"]}", "application/json", id="instances"),
        pytest.param(b"\n".join([SMALLEST_ROW] * ROWS) + b"\n", "application/jsonlines", id="json lines"),
        pytest.param(b"\n".join([SMALLEST_CSV_LINE] * ROWS) + b"\n", "text/csv", id="csv"),
        pytest.param(
            b"\n" * 50 + b"\r\n".join([SMALLEST_CSV_LINE] * ROWS) + b"\n" * 10, "text/csv", id="csv with blank lines"
        ),
    ],
)
def test_the_smallest_valid_rows_still_decode(body: bytes, content_type: str) -> None:
    assert len(body) > 64 * 1024
    assert decode_request(body, content_type, MLP)["x"].shape == (ROWS, 64)


def test_arrays_in_parameters_do_not_count_as_missing_numbers() -> None:
    rows = b",".join([SMALLEST_ROW] * 600)
    body = b'{"instances": [' + rows + b'], "parameters": {"thresholds": ' + orjson.dumps([[0.5, 0.5]] * 300) + b"}}"
    tensors, parameters = decode_json_request(body, MLP)
    assert tensors["x"].shape == (600, 64) and len(parameters["thresholds"]) == 300


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"".join(SMALLEST_CSV_LINE + b"\n\n" for _ in range(ROWS)), "text/csv", id="csv"),
        pytest.param(b"".join(SMALLEST_CSV_LINE + b"\r\n\r\n" for _ in range(ROWS)), "text/csv", id="csv crlf"),
        pytest.param(b"".join(SMALLEST_ROW + b"\n\n" for _ in range(ROWS)), "application/jsonlines", id="json lines"),
    ],
)
def test_a_blank_line_after_every_row_still_decodes(body: bytes, content_type: str) -> None:
    assert decode_request(body, content_type, MLP)["x"].shape == (ROWS, 64)


def test_the_smallest_valid_nested_rows_still_decode() -> None:
    signature = _signature(("x", "float32", (-1, 2, 3)))
    row = b"[[0,0,0],[0,0,0]]"
    rows = 8_000
    body = b"[" + b",".join([row] * rows) + b"]"
    assert len(body) > 64 * 1024
    assert decode_request(body, "application/json", signature)["x"].shape == (rows, 2, 3)


def test_the_smallest_valid_open_inference_protocol_request_with_many_inputs_still_decodes() -> None:
    names = [f"x{i}" for i in range(100)]
    signature = _signature(*((name, "float32", (-1, 2)) for name in names))
    rows = 200
    data = [[0, 0]] * rows
    body = orjson.dumps(
        {"inputs": [{"name": name, "shape": [rows, 2], "datatype": "FP32", "data": data} for name in names]}
    )
    assert len(body) > 64 * 1024
    request = parse_infer_request(body, signature)
    assert request.inputs["x0"].shape == (rows, 2)


def test_inputs_whose_rows_may_be_small_are_not_bounded() -> None:
    """A dynamic axis may be empty: ``[[], [], ...]`` is a valid batch of empty sequences."""
    signature = _signature(("tokens", "int64", (-1, -1)))
    body = b"[" + b",".join([b"[]"] * 30_000) + b"]"
    assert len(body) > 64 * 1024
    assert decode_request(body, "application/json", signature)["tokens"].shape == (30_000, 0)


SEQUENCES = _signature(("input_ids", "int64", (-1, -1)), ("attention_mask", "int64", (-1, -1)))
DEEP = b"[" * 60 + b"1" + b"]" * 60


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(
            b'{"inputs": {"input_ids": [' + b",".join([DEEP] * 2_000) + b'], "attention_mask": [[1]]}}',
            "application/json",
            id="json",
        ),
        pytest.param(
            b"\n".join([b'{"input_ids": ' + DEEP + b', "attention_mask": [1]}'] * 2_000),
            "application/jsonlines",
            id="json lines",
        ),
    ],
)
def test_a_model_with_a_varying_axis_refuses_nesting_deeper_than_its_inputs(body: bytes, content_type: str) -> None:
    """Rows of any length give no least row size to count against, so nesting is bounded instead:
    5 MB of ids nested 60 deep took 1.5 s to parse before the rank check, holding the health route."""
    with pytest.raises(BadRequestError, match=r"body nests arrays 6\d deep; this model's inputs take at most [12] "):
        decode_request(body, content_type, SEQUENCES)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(
            b'{"instances": ['
            + b",".join([b'{"input_ids": [1, 2, 3, 4, 5, 6], "attention_mask": [1, 1, 1, 1, 1, 1]}'] * 2_000)
            + b"]}",
            "application/json",
            id="instances",
        ),
        pytest.param(
            b'{"inputs": {"input_ids": ['
            + b",".join([b"[1, 2, 3, 4, 5, 6]"] * 5_000)
            + b'], "attention_mask": ['
            + b",".join([b"[1, 1, 1, 1, 1, 1]"] * 5_000)
            + b"]}}",
            "application/json",
            id="columns",
        ),
        pytest.param(
            b"\n".join([b'{"input_ids": [1, 2, 3, 4, 5, 6], "attention_mask": [1, 1, 1, 1, 1, 1]}'] * 2_000),
            "application/jsonlines",
            id="json lines",
        ),
    ],
)
def test_valid_bodies_for_a_varying_axis_still_decode(body: bytes, content_type: str) -> None:
    assert len(body) > 64 * 1024
    assert decode_request(body, content_type, SEQUENCES)["input_ids"].shape[1] == 6


def test_an_open_inference_protocol_body_of_empty_lists_is_refused_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every list of tensor data holds a value; 6 MB of ``[[],[],...]`` took 2.2 s to parse, in one call
    holding the interpreter (and ``/ping``), before the shape check refused it."""
    data = b"[" + b",".join([b"[]"] * 100_000) + b"]"
    body = b'{"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ' + data + b"}]}"
    monkeypatch.setattr("inference.codecs.json_blocks.loads", lambda _: pytest.fail("parsed before refused"))
    with pytest.raises(BadRequestError, match=r"empty lists \(\[\]\); a tensor's data holds its values in every list"):
        parse_infer_request(body, MLP)


def test_texts_holding_empty_brackets_are_still_read() -> None:
    signature = _signature(("text", "bytes", (-1,)))
    texts = ["[]"] * 30_000
    body = orjson.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]})
    assert len(body) > 64 * 1024
    assert parse_infer_request(body, signature).inputs["text"].shape == (len(texts),)
