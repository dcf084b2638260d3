"""Request/response codecs: every media type, negotiation, and the 4xx a client sees for each mistake."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inference.codecs import (
    REQUEST_MEDIA_TYPES,
    RESPONSE_MEDIA_TYPES,
    decode_json_request,
    decode_request,
    encode_request,
    encode_response,
    negotiate,
    parse_media_type,
    response_media_type,
    split_json_payload,
)
from inference.codecs.arrays import count_string_values, has_string_values
from inference.errors import (
    BadRequestError,
    NotAcceptableError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from model_package.manifest import Signature, TensorSpec

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
JSON_LINES = ("application/jsonlines", "application/jsonl", "application/x-ndjson")

Spec = tuple[str, str, tuple[int, ...]]


def signature(inputs: Sequence[Spec], outputs: Sequence[Spec] | None = None) -> Signature:
    """A signature from ``(name, dtype, shape)`` triples; outputs default to a single float32 ``y``."""
    return Signature(
        inputs=tuple(TensorSpec(name=n, dtype=d, shape=s) for n, d, s in inputs),
        outputs=tuple(TensorSpec(name=n, dtype=d, shape=s) for n, d, s in (outputs or [("y", "float32", (-1,))])),
    )


FEATURES = signature([("x", "float32", (-1, 3))])
MULTI = signature(
    [("pixels", "float32", (-1, 2)), ("ids", "int64", (-1,))],
    [("scores", "float32", (-1, 2)), ("label", "bytes", (-1,))],
)


def npy_bytes(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npz_bytes(arrays: Mapping[str, np.ndarray], *, compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    save: Callable[..., None] = np.savez_compressed if compressed else np.savez
    save(buffer, **arrays)
    return buffer.getvalue()


def bad_request(body: bytes, content_type: str | None, sig: Signature = FEATURES, **kwargs: bool) -> str:
    with pytest.raises(BadRequestError) as info:
        decode_request(body, content_type, sig, **kwargs)
    assert info.value.status == 400
    return info.value.message


# --------------------------------------------------------------------------- media types


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", ("application/json", {})),
        ("Application/JSON", ("application/json", {})),
        ("application/json; charset=utf-8", ("application/json", {"charset": "utf-8"})),
        ("text/csv;charset=UTF-8", ("text/csv", {"charset": "utf-8"})),
        ('text/csv ; Charset = "UTF-8" ; Header=Present', ("text/csv", {"charset": "utf-8", "header": "Present"})),
        ('a/b; x="semi;colon \\"q\\""', ("a/b", {"x": 'semi;colon "q"'})),
        ("text/csv;", ("text/csv", {})),
        ("  application/x-npy  ", ("application/x-npy", {})),
        (None, ("", {})),
        ("", ("", {})),
    ],
)
def test_parse_media_type(header: str | None, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_media_type(header) == expected


@pytest.mark.parametrize(
    "header", ["application", "application/", "/json", "application/json; charset", "a/b; =x", 'a/b; c="open', "a b/c"]
)
def test_malformed_media_type_is_415(header: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="malformed Content-Type"):
        parse_media_type(header)


AVAILABLE = (JSON, "application/jsonlines", CSV, NPY)


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("text/csv", CSV),
        ("*/*", JSON),
        ("text/*", CSV),
        ("application/*", JSON),
        ("text/csv;q=0.5, application/x-npy;q=0.9", NPY),
        ("text/csv;q=0.9, application/x-npy;q=0.5", CSV),
        ("*/*;q=0.1, text/csv", CSV),
        ("*/*, application/json;q=0", "application/jsonlines"),
        # The most specific range wins even with a lower q-value.
        ("application/*;q=0.9, application/json;q=0.2, text/*;q=0.5", "application/jsonlines"),
        # Ties go to the default, else to the server's order.
        ("text/csv, application/json", JSON),
        ("application/x-npy, text/csv", CSV),
        ("text/csv; charset=utf-8", CSV),
        ("TEXT/CSV", CSV),
        # Unparseable ranges are ignored; nothing parseable means the default.
        ("garbage, text/csv", CSV),
        ("text/csv;q=2, application/x-npy", NPY),
        ("garbage", JSON),
        ('text/csv;foo="a,b", application/x-npy;q=0.1', CSV),
    ],
)
def test_negotiate(accept: str | None, chosen: str) -> None:
    assert negotiate(accept, AVAILABLE, JSON) == chosen


@pytest.mark.parametrize("accept", ["image/png", "text/html, image/*", "*/*;q=0", "text/csv;q=0, application/*;q=0"])
def test_nothing_acceptable_is_406_listing_types(accept: str) -> None:
    with pytest.raises(NotAcceptableError) as info:
        negotiate(accept, AVAILABLE, JSON)
    assert info.value.status == 406
    assert all(media_type in info.value.message for media_type in AVAILABLE)


def test_a_long_header_is_quoted_in_part_in_406_and_415_messages() -> None:
    # A header may be kilobytes long: the error names the supported types, not the whole header back.
    long_accept = ", ".join(f"image/x-{i}" for i in range(600))
    with pytest.raises(NotAcceptableError) as refused:
        negotiate(long_accept, AVAILABLE, JSON)
    long_type = "application/x-" + "y" * 5000
    with pytest.raises(UnsupportedMediaTypeError) as unreadable:
        decode_request(b"[[1]]", long_type, FEATURES)
    for error, media_types in ((refused.value, AVAILABLE), (unreadable.value, REQUEST_MEDIA_TYPES)):
        assert all(media_type in error.message for media_type in media_types)
        assert len(error.message) < 400, error.message


def test_unknown_content_type_is_415_listing_types() -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        decode_request(b"<xml/>", "application/xml", FEATURES)
    assert info.value.status == 415
    assert all(media_type in info.value.message for media_type in REQUEST_MEDIA_TYPES)


@pytest.mark.parametrize("content_type", ["application/json; charset=latin-1", "text/csv; charset=utf-16"])
def test_text_with_other_charset_is_415(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="UTF-8"):
        decode_request(b"[[1, 2, 3]]", content_type, FEATURES)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[[1, 2, 3]]", None),
        (b"[[1, 2, 3]]", ""),
        (b"[[1, 2, 3]]", "application/json; charset=utf-8"),
        (b"[[1, 2, 3]]", "application/json; charset=US-ASCII"),
        (b"1,2,3\n", "text/csv; charset=UTF-8"),
        (b"1,2,3\n", 'text/csv; charset="utf-8"'),
        (b"[1, 2, 3]\n", "application/jsonlines; charset=utf-8"),
    ],
)
def test_charset_and_missing_content_type_are_accepted(body: bytes, content_type: str | None) -> None:
    decoded = decode_request(body, content_type, FEATURES)
    np.testing.assert_array_equal(decoded["x"], np.array([[1, 2, 3]], dtype=np.float32))
    assert decoded["x"].dtype == np.float32


def test_media_type_lists() -> None:
    assert REQUEST_MEDIA_TYPES[0] == JSON
    for media_type in (JSON, CSV, NPY, NPZ, *JSON_LINES):
        assert media_type in REQUEST_MEDIA_TYPES
        assert media_type in RESPONSE_MEDIA_TYPES


# --------------------------------------------------------------------------- JSON requests


@pytest.mark.parametrize(
    "payload",
    [
        [[1, 2, 3], [4, 5, 6]],
        {"instances": [[1, 2, 3], [4, 5, 6]]},
        {"instances": [{"x": [1, 2, 3]}, {"x": [4, 5, 6]}]},
        {"inputs": [[1, 2, 3], [4, 5, 6]]},
        {"inputs": {"x": [[1, 2, 3], [4, 5, 6]]}},
        {"instances": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "parameters": {"temperature": 0.5}},
    ],
)
def test_json_request_forms(payload: object) -> None:
    decoded = decode_request(orjson.dumps(payload), JSON, FEATURES)
    assert list(decoded) == ["x"]
    np.testing.assert_array_equal(decoded["x"], np.arange(1, 7, dtype=np.float32).reshape(2, 3))
    assert decoded["x"].dtype == np.float32


def test_json_multi_input_row_and_column_forms_agree() -> None:
    rows = {"instances": [{"pixels": [0.5, 1.5], "ids": 7}, {"ids": 8, "pixels": [2.5, 3.5]}]}
    columns = {"inputs": {"ids": [7, 8], "pixels": [[0.5, 1.5], [2.5, 3.5]]}}
    for payload in (rows, columns):
        decoded = decode_request(orjson.dumps(payload), JSON, MULTI)
        assert list(decoded) == ["pixels", "ids"]  # signature order, whatever the body's order
        np.testing.assert_array_equal(decoded["pixels"], np.array([[0.5, 1.5], [2.5, 3.5]], dtype=np.float32))
        np.testing.assert_array_equal(decoded["ids"], np.array([7, 8], dtype=np.int64))
        assert decoded["ids"].dtype == np.int64


def test_split_json_payload_and_decode_json_request_return_parameters() -> None:
    body = orjson.dumps({"instances": [[1, 2, 3]], "parameters": {"top_k": 3}})
    inputs, parameters = split_json_payload(body)
    assert (inputs.form, inputs.data, parameters) == ("instances", [[1, 2, 3]], {"top_k": 3})
    assert split_json_payload(b"[[1, 2, 3]]")[1] == {}
    tensors, parameters = decode_json_request(body, FEATURES)
    assert parameters == {"top_k": 3}
    assert tensors["x"].shape == (1, 3)


@pytest.mark.parametrize(
    ("body", "sig", "fragments"),
    [
        (b"[[1, 2", FEATURES, ["not valid JSON", "line 1"]),
        (b"\xff\xfe[1]", FEATURES, ["not valid"]),
        (b'{"instance": [[1, 2, 3]]}', FEATURES, ["unexpected keys ['instance']", '"instances"', '"inputs"']),
        (b'{"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}', FEATURES, ["not both"]),
        (b'{"parameters": {}}', FEATURES, ['no "instances" or "inputs"']),
        (b'{"instances": [[1, 2, 3]], "parameters": 5}', FEATURES, ['"parameters" must be a JSON object']),
        (b"42", FEATURES, ["got a number alone", '"instances"']),
        (b'{"instances": {"x": [1, 2, 3]}}', FEATURES, ['"instances" must be a list']),
        (b"[[0.5, 1.5]]", MULTI, ["single-input", "'pixels'", "'ids'"]),
        (b'{"inputs": [[0.5, 1.5]]}', MULTI, ["'pixels'", "'ids'"]),
        (b'{"inputs": {"pixels": [[0.5, 1.5]]}}', MULTI, ["missing ['ids']"]),
        (b'{"inputs": {"pixels": [[0.5, 1.5]], "ids": [1], "extra": [1]}}', MULTI, ["unexpected ['extra']"]),
        (b'{"instances": [{"pixels": [0.5, 1.5], "ids": 1}, {"pixels": [0.5, 1.5]}]}', MULTI, ["row 1", "['ids']"]),
        (b'{"instances": [[0.5, 1.5]]}', MULTI, ["row 0 is a list", "'pixels'"]),
    ],
)
def test_json_request_mistakes(body: bytes, sig: Signature, fragments: list[str]) -> None:
    message = bad_request(body, JSON, sig)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("payload", "fragments"),
    [
        ([[1, 2, 3], [4, 5]], ["input 'x' is ragged", "row 1 has 2 values", "row 0 has 3"]),
        ([[1, 2, 3], 4], ["input 'x' is ragged", "row 0 is a list", "row 1"]),
        ([1, [2, 3, 4]], ["input 'x' is ragged", "row 1 is a list but row 0 is a single value"]),
        (
            [[[1, 2], [3, 4]], [[5, 6], [7]]],
            ["is ragged", "row 1 at index [1] has 1 value but row 0 at index [0] has 2"],
        ),
        ([[[1, 2], [3, 4]], [[5, 6], 7]], ["is ragged", "row 0 at index [0] is a list but row 1 at index [1] is"]),
        (
            [[1, 2, 3], [4, "five", 6]],
            ["input 'x' expects float32 numbers", "row 1 at index [1] has a string ('five')"],
        ),
        ([[1, 2, None]], ["expects float32 numbers", "row 0 at index [2] has null"]),
        ([[1, 2, {"a": 1}]], ["row 0 at index [2] has an object"]),
        ([[True, False, True]], ["expects float32 numbers", "row 0 at index [0] has true"]),
        ([[1e300, 2, 3]], ["row 0 at index [0] has 1e+300", "beyond the float32 range"]),
        ([], ["empty batch", "'x'"]),
        ([1, 2, 3], []),  # a bare row: rank is the model runner's business, not a codec error
    ],
)
def test_json_value_mistakes(payload: object, fragments: list[str]) -> None:
    if not fragments:
        assert decode_request(orjson.dumps(payload), JSON, FEATURES)["x"].shape == (3,)
        return
    message = bad_request(orjson.dumps(payload), JSON, FEATURES)
    for fragment in fragments:
        assert fragment in message


def test_a_ragged_body_is_refused_at_its_first_odd_row_without_a_step_per_row() -> None:
    # One wide row and then 480,000 numbers: the walk that words the error kept a path tuple per
    # item of the level, +46 MiB over the parse (and 0.6 s of one core) for a 1 MB body the model
    # never sees. Now the refusal costs one list of the rows over what parsing the body costs.
    payload = orjson.dumps([[0.5] * 1_000] + [1.0] * 480_000)
    parse_peak = traced_peak(lambda: orjson.loads(payload))
    messages: list[str] = []
    refusal_peak = traced_peak(
        lambda: messages.append(bad_request(payload, JSON, signature([("x", "float32", (-1, 1_000))])))
    )
    assert "row 0 is a list but row 1 is a single value" in messages[0]
    assert refusal_peak - parse_peak < 12 * 2**20, f"{(refusal_peak - parse_peak) / 2**20:.0f} MiB over the parse"


def traced_peak(work: Callable[[], object]) -> int:
    """Peak bytes Python allocated while ``work`` ran."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_empty_instances_is_an_empty_batch() -> None:
    assert "empty batch" in bad_request(b'{"instances": []}', JSON)
    assert "empty batch" in bad_request(b'{"instances": []}', JSON, MULTI)


def test_integer_inputs_take_integral_floats_only() -> None:
    sig = signature([("ids", "int64", (-1,))])
    np.testing.assert_array_equal(decode_request(b"[1, 2.0, -3]", JSON, sig)["ids"], [1, 2, -3])
    assert "input 'ids' expects int64 integers; row 1 has 2.5" in bad_request(b"[1, 2.5]", JSON, sig)
    small = signature([("ids", "int8", (-1,))])
    assert "outside the int8 range [-128, 127]" in bad_request(b"[1, 300]", JSON, small)
    unsigned = signature([("ids", "uint8", (-1,))])
    assert "row 0 has -1" in bad_request(b"[-1]", JSON, unsigned)
    assert "int64 range" in bad_request(b"[18446744073709551615]", JSON, sig)
    assert "int64 range" in bad_request(b"[1, 100000000000000000000000]", JSON, sig)


@pytest.mark.parametrize(
    ("content_type", "body", "where"),
    [
        # NumPy reads [true, 2] as [1, 2]: the boolean reached the number input with a 200.
        (JSON, b'{"inputs": {"pixels": [[0.5, 1]], "ids": [true]}}', "'ids' expects int64 integers; row 0 has true"),
        (JSON, b'{"instances": [{"pixels": [true, 0.5], "ids": 3}]}', "'pixels' expects float32 numbers; row 0"),
        ("application/jsonlines", b'{"pixels": [0.5, false], "ids": 3}', "'pixels' expects float32 numbers; line 1"),
    ],
)
def test_a_boolean_among_numbers_is_refused(content_type: str, body: bytes, where: str) -> None:
    assert where in bad_request(body, content_type, MULTI)
    # The same body with numbers is fine: only the boolean is wrong.
    numbers = body.replace(b"true", b"1").replace(b"false", b"0")
    assert set(decode_request(numbers, content_type, MULTI)) == {"pixels", "ids"}


@pytest.mark.parametrize(
    ("dtype", "body", "values"),
    [
        # NumPy reads these lists as float64, which rounded them (2**63 + 1 to 2**63, 2**53 + 1 to 2**53)
        # or put uint64's largest value "out of range" as 1.8446744073709552e+19.
        ("uint64", b"[[1, 18446744073709551615]]", [1, 2**64 - 1]),
        ("uint64", b"[[9223372036854775809, 2]]", [2**63 + 1, 2]),
        ("uint64", b"[[9007199254740993, 2.0]]", [2**53 + 1, 2]),
        ("int64", b"[[9007199254740993, 2.0]]", [2**53 + 1, 2]),
        ("int64", b'{"instances": [[-9223372036854775808, 1.0]]}', [-(2**63), 1]),
    ],
)
def test_large_integers_reach_integer_inputs_exactly(dtype: str, body: bytes, values: list[int]) -> None:
    sig = signature([("ids", dtype, (-1, 2))])
    decoded = decode_request(body, JSON, sig)["ids"]
    assert decoded.dtype == np.dtype(dtype) and decoded.tolist() == [values]

    # Read element by element, the other rules still hold: whole numbers, within the dtype's range.
    assert "row 0 at index [1] has 2.5" in bad_request(b"[[9007199254740993, 2.5]]", JSON, sig)
    assert f"outside the {dtype} range" in bad_request(b"[[9007199254740993, 1e300]]", JSON, sig)


@pytest.mark.parametrize(
    ("body", "values"),
    [
        (b'{"instances": [[1, 2], [3, 4]]}', 0),
        (b'{"instances" :\n [[1, 2]], "parameters": {"k": 1}}', 0),
        (b'{"inputs": {"x": [1, "two"]}}', 1),
        (b'["a \\" b", 1, "c"]', 2),  # an escaped quote does not end the string
        (b'{"key \\": x": [1]}', 0),  # nor does one inside a key
        (b'[{"x": "v"}, {"x" : "w"}]', 2),
        (b"[1.5, 2e3, -4]", 0),
    ],
)
def test_string_values_are_told_from_object_keys(body: bytes, values: int) -> None:
    # The scan that lets a body of numbers skip the walk for strings (which NumPy would widen to).
    assert count_string_values(body) == values
    assert has_string_values(body) is (values > 0)


def test_bool_inputs_take_booleans_and_zero_or_one() -> None:
    sig = signature([("mask", "bool", (-1,))])
    for body in (b"[true, false]", b"[1, 0]", b"[1.0, 0.0]"):
        decoded = decode_request(body, JSON, sig)["mask"]
        assert decoded.dtype == np.bool_
        np.testing.assert_array_equal(decoded, [True, False])
    assert "expects bool booleans" in bad_request(b"[2, 0]", JSON, sig)
    assert "has a string" in bad_request(b'["yes"]', JSON, sig)


def test_non_finite_values_are_refused_unless_allowed() -> None:
    body = json.dumps([[1.0, float("nan"), 3.0], [float("inf"), 0.0, 1.0]]).encode()
    message = bad_request(body, JSON)
    assert "input 'x' has NaN at row 0 at index [1]" in message
    assert "finite" in message
    decoded = decode_request(body, JSON, FEATURES, allow_non_finite=True)["x"]
    assert np.isnan(decoded[0, 1])
    assert np.isposinf(decoded[1, 0])
    # Overflow is never "allowed": it would silently change the value.
    assert "beyond the float32 range" in bad_request(b"[[1e39, 0, 0]]", JSON, FEATURES, allow_non_finite=True)


def test_a_number_too_large_for_a_double_is_not_called_inf() -> None:
    """JSON has no infinity and the client sent none: 1e400 (or 5,000 digits of CSV) parses to it, and
    the refusal said the input "has inf", a value the client cannot find in its request."""
    ids = signature([("ids", "int64", (-1, 2))])
    for body, media_type, sig in (
        (b"[[1, 1e400, 0]]", JSON, FEATURES),
        (b"1,-1e400,0", CSV, FEATURES),
        (b"1," + b"9" * 5000, CSV, ids),
        (b"[[1, 1e400]]", JSON, ids),
    ):
        message = bad_request(body, media_type, sig)
        assert not re.search(r"has -?inf\b", message), message
        assert "a number beyond ±1.8e308 reads as infinity" in message, message


def test_bytes_inputs_take_text_and_base64() -> None:
    sig = signature([("text", "bytes", (-1,))])
    decoded = decode_request('["héllo", {"b64": "AP8="}]'.encode(), JSON, sig)["text"]
    assert decoded.dtype == object
    assert decoded.tolist() == ["héllo".encode(), b"\x00\xff"]
    # A single-input model named in each instance, with a binary value.
    decoded = decode_request(b'{"instances": [{"text": {"b64": "AAA="}}]}', JSON, sig)["text"]
    assert decoded.tolist() == [b"\x00\x00"]
    assert "invalid base64" in bad_request(b'[{"b64": "!!"}]', JSON, sig)
    assert "input 'text' expects strings" in bad_request(b'["a", 5]', JSON, sig)
    assert "ragged" in bad_request(b'[["a", "b"], ["c"]]', JSON, signature([("text", "bytes", (-1, 2))]))


def test_strings_nested_deeper_than_numpy_allows_are_a_400() -> None:
    # 70 levels: NumPy's array of that shape raised ValueError ("maximum supported dimension"), a 500.
    body = b"[" * 70 + b'"a"' + b"]" * 70
    message = bad_request(body, JSON, signature([("text", "bytes", (-1,))]))
    assert "'text' is nested 70 levels deep; it takes 1" in message


# --------------------------------------------------------------------------- CSV requests


def test_csv_request_rows() -> None:
    body = b"\xef\xbb\xbf1,2,3\r\n\r\n 4.5 , -5e-1 ,6\r\n"
    decoded = decode_request(body, "text/csv", FEATURES)["x"]
    np.testing.assert_array_equal(decoded, np.array([[1, 2, 3], [4.5, -0.5, 6]], dtype=np.float32))
    assert decoded.dtype == np.float32


def test_csv_single_column_feeds_a_vector_input() -> None:
    sig = signature([("v", "int64", (-1,))])
    decoded = decode_request(b"9007199254740993\n-2\n", CSV, sig)["v"]
    assert decoded.tolist() == [9007199254740993, -2]  # beyond 2**53: parsed as integers, not through float
    assert "one value per CSV line" in bad_request(b"1,2\n", CSV, sig)


def test_csv_header_needs_header_present() -> None:
    body = b"a,b,c\n1,2,3\n"
    message = bad_request(body, CSV)
    assert "line 1, column 1 has 'a'" in message
    assert "header=present" in message
    decoded = decode_request(body, "text/csv; header=present", FEATURES)["x"]
    np.testing.assert_array_equal(decoded, [[1, 2, 3]])


def test_csv_quoted_numbers_and_bools() -> None:
    assert decode_request(b'"1","2","3"\n', CSV, FEATURES)["x"].tolist() == [[1, 2, 3]]
    sig = signature([("m", "bool", (-1, 2))])
    assert decode_request(b"1,0\ntrue,FALSE\n", CSV, sig)["m"].tolist() == [[True, False], [True, False]]
    assert "line 1, column 2 has 'maybe'" in bad_request(b"1,maybe\n", CSV, sig)


@pytest.mark.parametrize(
    ("body", "sig", "fragments"),
    [
        (b"1,2,3\n4,5\n", FEATURES, ["ragged", "line 2 has 2 values", "line 1 has 3"]),
        (b"1,2\n3,4\n", FEATURES, ["expects 3 values per CSV line", "line 1 has 2"]),
        (b"1,2,3\n4,x,6\n", FEATURES, ["expects float32 numbers", "line 2, column 2 has 'x'"]),
        (b"1,,3\n", FEATURES, ["line 1, column 2 has an empty value"]),
        (b"1,nan,3\n", FEATURES, ["NaN", "line 1, column 2", "finite"]),
        (b"\n\n", FEATURES, ["empty batch"]),
        (b"", FEATURES, ["empty batch"]),
        (b"1,2.5\n", signature([("i", "int32", (-1, 2))]), ["int32 integers", "line 1, column 2 has 2.5"]),
        (b"1,2\n", MULTI, ["single input", "'pixels'", "'ids'"]),
        (b"1,2\n", signature([("img", "float32", (-1, 2, 2))]), ["shape [-1] or [-1, n]"]),
        (b"\xff\n", FEATURES, ["not valid UTF-8"]),
        # Python's float() reads 1_000 as 1000: a typo or a separator reached the model as another number.
        (b"1,2,3\n1_000,5,6\n", FEATURES, ["expects float32 numbers", "line 2, column 1 has '1_000'"]),
        (b"1,2_0\n", signature([("i", "int32", (-1, 2))]), ["int32 integers", "line 1, column 2 has '2_0'"]),
    ],
)
def test_csv_request_mistakes(body: bytes, sig: Signature, fragments: list[str]) -> None:
    message = bad_request(body, CSV, sig)
    for fragment in fragments:
        assert fragment in message


# --------------------------------------------------------------------------- JSON Lines requests


@pytest.mark.parametrize("media_type", JSON_LINES)
def test_json_lines_request(media_type: str) -> None:
    body = b"[1, 2, 3]\n\n   \n[4, 5, 6]\r\n"
    decoded = decode_request(body, media_type, FEATURES)["x"]
    np.testing.assert_array_equal(decoded, np.arange(1, 7, dtype=np.float32).reshape(2, 3))


def test_json_lines_multi_input_and_line_numbers_in_errors() -> None:
    body = b'{"pixels": [1, 2], "ids": 1}\n\n{"pixels": [3, 4], "ids": 2}\n'
    decoded = decode_request(body, "application/jsonlines", MULTI)
    assert decoded["ids"].tolist() == [1, 2]
    assert "line 3 must have exactly the keys" in bad_request(
        b'{"pixels": [1, 2], "ids": 1}\n\n{"pixels": [3, 4]}\n', "application/jsonlines", MULTI
    )
    assert "line 2 of the JSON Lines body is not valid JSON" in bad_request(
        b"[1, 2, 3]\n[4, 5\n", "application/jsonlines"
    )
    assert "line 3 at index [1] has a string" in bad_request(b'[1, 2, 3]\n\n[4, "x", 6]\n', "application/jsonlines")
    assert "empty batch" in bad_request(b"\n \n", "application/jsonlines")


# --------------------------------------------------------------------------- npy / npz requests


def test_npy_request_casts_and_keeps_layout() -> None:
    array = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    decoded = decode_request(npy_bytes(array), NPY, FEATURES)["x"]
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, array)
    same_dtype = decode_request(npy_bytes(array.astype(np.float32)), NPY, FEATURES)["x"]
    assert same_dtype.flags.writeable  # frameworks may write into their inputs


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (npy_bytes(np.array([[1, "a", None]], dtype=object), allow_pickle=True), ["pickle", "refused"]),
        (b"not an npy file at all", ["not a valid .npy array"]),
        (npy_bytes(np.zeros((2, 3), np.float32))[:-4], ["holds 20 bytes"]),
        (npy_bytes(np.zeros((2, 3), np.float32)) + b"trailing", ["holds 32 bytes"]),
        (npy_bytes(np.zeros((0, 3), np.float32)), ["empty batch"]),
        (npy_bytes(np.array([["a", "b", "c"]])), ["expects float32 numbers", "strings"]),
        (npy_bytes(np.array([[1, 2, 3]], dtype=np.complex64)), ["dtype complex64"]),
        (npy_bytes(np.array([[np.nan, 0, 0]], dtype=np.float32)), ["NaN", "finite"]),
        # NumPy's header check takes True as a size; reshaping by it was a TypeError, answered 500.
        (npy_bytes(np.zeros((1, 3), np.float32)).replace(b"(1, 3)", b"(True, 3)"), ["(True, 3)", "whole numbers"]),
    ],
)
def test_npy_request_mistakes(body: bytes, fragments: list[str]) -> None:
    message = bad_request(body, NPY)
    for fragment in fragments:
        assert fragment in message


def test_npy_header_cannot_claim_more_data_than_it_holds() -> None:
    # A header declaring ~4 TB must be refused from its size, not by trying to allocate it.
    header = npy_bytes(np.zeros((1, 3), np.float32)).replace(b"(1, 3)", b"(1000000000000, 3)")
    assert "declares shape [1000000000000, 3]" in bad_request(header, NPY)


def test_npy_request_for_a_multi_input_model_points_to_npz() -> None:
    message = bad_request(npy_bytes(np.zeros((1, 2), np.float32)), NPY, MULTI)
    assert NPZ in message
    assert "'pixels'" in message


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_request(compressed: bool) -> None:
    body = npz_bytes({"ids": np.array([1, 2]), "pixels": np.ones((2, 2))}, compressed=compressed)
    decoded = decode_request(body, NPZ, MULTI)
    assert list(decoded) == ["pixels", "ids"]
    assert decoded["pixels"].dtype == np.float32
    assert decoded["ids"].tolist() == [1, 2]


def test_npz_request_mistakes() -> None:
    missing = bad_request(npz_bytes({"pixels": np.ones((2, 2))}), NPZ, MULTI)
    assert "exactly the arrays ['pixels', 'ids']" in missing
    assert "missing ['ids']" in missing
    extra = npz_bytes({"pixels": np.ones((1, 2)), "ids": np.array([1]), "junk": np.array([1])})
    assert "unexpected ['junk']" in bad_request(extra, NPZ, MULTI)
    assert "not a valid .npz" in bad_request(b"PK but not really", NPZ, MULTI)
    pickled = io.BytesIO()
    with zipfile.ZipFile(pickled, "w") as archive:
        archive.writestr("pixels.npy", npy_bytes(np.ones((1, 2))))
        archive.writestr("ids.npy", npy_bytes(np.array([{"a": 1}], dtype=object), allow_pickle=True))
    assert "array 'ids'" in bad_request(pickled.getvalue(), NPZ, MULTI)
    # One name twice (zip allows it; so does ids and ids.npy): the last copy fed the model, silently.
    for second_name in ("ids.npy", "ids"):
        twice = io.BytesIO()
        with zipfile.ZipFile(twice, "w") as archive, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it writes
            archive.writestr("pixels.npy", npy_bytes(np.ones((1, 2))))
            archive.writestr("ids.npy", npy_bytes(np.array([1])))
            archive.writestr(second_name, npy_bytes(np.array([2])))
        assert "holds array 'ids' more than once" in bad_request(twice.getvalue(), NPZ, MULTI)


def test_npz_request_that_expands_too_far_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    from inference.codecs import npz_codec

    monkeypatch.setattr(npz_codec, "MAX_EXPANDED_BYTES", 100)
    body = npz_bytes({"pixels": np.zeros((100, 2)), "ids": np.zeros(100, np.int64)}, compressed=True)
    with pytest.raises(PayloadTooLargeError, match="expands to"):
        decode_request(body, NPZ, MULTI)


def test_npy_strings_feed_bytes_inputs() -> None:
    sig = signature([("text", "bytes", (-1,))])
    for array in (np.array([b"ab", b"c"]), np.array(["ab", "c"])):
        decoded = decode_request(npy_bytes(array), NPY, sig)["text"]
        assert decoded.dtype == object
        assert decoded.tolist() == [b"ab", b"c"]


# --------------------------------------------------------------------------- responses


MULTI_OUTPUTS = {
    "label": np.array([b"cat", b"\xff\x00"], dtype=object),
    "scores": np.array([[0.1, 0.9], [0.75, 0.25]], dtype=np.float32),
}


def test_json_response_single_and_multi_output() -> None:
    body, content_type = encode_response({"y": np.array([0.1, 2.5], dtype=np.float32)}, None, FEATURES)
    assert (body, content_type) == (b'{"predictions":[0.1,2.5]}', JSON)
    body, _ = encode_response(MULTI_OUTPUTS, "application/json", MULTI)
    # Signature order (scores before label), one object per row; invalid UTF-8 becomes {"b64": ...}.
    assert body == (
        b'{"predictions":[{"scores":[0.1,0.9],"label":"cat"},{"scores":[0.75,0.25],"label":{"b64":"/wA="}}]}'
    )


def test_json_response_writes_non_finite_as_null() -> None:
    body, _ = encode_response({"y": np.array([np.nan, np.inf], dtype=np.float32)}, JSON, FEATURES)
    assert orjson.loads(body) == {"predictions": [None, None]}


def test_csv_response_concatenates_outputs_in_signature_order() -> None:
    sig = signature([("x", "float32", (-1, 3))], [("a", "float32", (-1,)), ("b", "int64", (-1, 2, 2))])
    outputs: dict[str, np.ndarray] = {
        "b": np.arange(8).reshape(2, 2, 2),
        "a": np.array([0.1, np.nan], dtype=np.float32),
    }
    body, content_type = encode_response(outputs, "text/csv", sig)
    assert content_type == "text/csv; charset=utf-8"
    assert body == b"0.1,0,1,2,3\nnan,4,5,6,7\n"
    body, _ = encode_response(MULTI_OUTPUTS, "text/csv", MULTI)
    assert body == b"0.1,0.9,cat\n0.75,0.25,/wA=\n"
    body, _ = encode_response({"y": np.array([b'say "hi", bob'], dtype=object)}, "text/csv", FEATURES)
    assert body == b'"say ""hi"", bob"\n'


@pytest.mark.parametrize("media_type", JSON_LINES)
def test_json_lines_response(media_type: str) -> None:
    body, content_type = encode_response(MULTI_OUTPUTS, media_type, MULTI)
    assert content_type == media_type
    assert body == b'{"scores":[0.1,0.9],"label":"cat"}\n{"scores":[0.75,0.25],"label":{"b64":"/wA="}}\n'


def test_npy_and_npz_responses() -> None:
    single = {"y": np.array([1.5, 2.5], dtype=np.float32)}
    body, content_type = encode_response(single, NPY, FEATURES)
    assert content_type == NPY
    np.testing.assert_array_equal(np.load(io.BytesIO(body), allow_pickle=False), single["y"])
    body, content_type = encode_response(MULTI_OUTPUTS, NPZ, MULTI)
    assert content_type == NPZ
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        assert archive.files == ["scores", "label"]
        np.testing.assert_array_equal(archive["scores"], MULTI_OUTPUTS["scores"])
        assert archive["label"].tolist() == [b"cat", b"\xff"]  # fixed-width S drops trailing NULs
    # Deterministic bytes: equal outputs, equal bodies.
    assert encode_response(MULTI_OUTPUTS, NPZ, MULTI)[0] == body


def test_npy_for_several_outputs_is_406_naming_npz() -> None:
    with pytest.raises(NotAcceptableError) as info:
        encode_response(MULTI_OUTPUTS, NPY, MULTI)
    assert NPZ in info.value.message
    assert "2 outputs" in info.value.message
    with pytest.raises(NotAcceptableError, match="x-npz"):
        response_media_type(NPY, MULTI)
    # Another acceptable type is used instead of failing.
    assert encode_response(MULTI_OUTPUTS, f"{NPY}, text/csv;q=0.5", MULTI)[1].startswith("text/csv")
    assert response_media_type(f"{NPY}, {NPZ};q=0.1", MULTI) == NPZ
    assert response_media_type(NPY, FEATURES) == NPY


def test_response_negotiation_uses_accept_and_default() -> None:
    outputs = {"y": np.array([1.0], dtype=np.float32)}
    assert encode_response(outputs, "*/*", FEATURES)[1] == JSON
    assert encode_response(outputs, None, FEATURES, default=CSV)[1].startswith(CSV)
    assert encode_response(outputs, "text/*", FEATURES)[1].startswith(CSV)
    assert encode_response(outputs, "application/json;q=0, */*", FEATURES)[1] == "application/jsonlines"
    with pytest.raises(NotAcceptableError) as info:
        encode_response(outputs, "text/html", FEATURES)
    assert all(media_type in info.value.message for media_type in RESPONSE_MEDIA_TYPES)


# --------------------------------------------------------------------------- round trips (property-based)

_DTYPES = ("float32", "int64", "bool")
_ELEMENTS = {
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "bool": st.booleans(),
}
_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
_SETTINGS = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw: st.DrawFn, max_tensors: int = 3) -> tuple[Signature, dict[str, np.ndarray]]:
    """A random signature (each tensor both an input and an output) and a batch for it."""
    names = draw(st.lists(_NAMES, min_size=1, max_size=max_tensors, unique=True))
    rows = draw(st.integers(1, 4))
    specs: list[Spec] = []
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        dtype = draw(st.sampled_from(_DTYPES))
        width = draw(st.one_of(st.none(), st.integers(1, 3)))
        shape = (rows,) if width is None else (rows, width)
        arrays[name] = draw(hnp.arrays(np.dtype(dtype), shape, elements=_ELEMENTS[dtype]))
        specs.append((name, dtype, (-1,) if width is None else (-1, width)))
    return signature(specs, specs), arrays


def assert_same(decoded: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
    assert list(decoded) == list(expected)
    for name, array in expected.items():
        assert decoded[name].dtype == array.dtype, name
        assert decoded[name].shape == array.shape, name
        # Exact: float32 goes through its shortest repr and back without loss.
        np.testing.assert_array_equal(decoded[name], array, strict=True)


def as_request(body: bytes, media_type: str) -> bytes:
    """A response body re-sent as a request: only JSON renames its key (predictions -> instances)."""
    if media_type == JSON:
        return orjson.dumps({"instances": orjson.loads(body)["predictions"]})
    return body


@_SETTINGS
@given(batch=batches(), media_type=st.sampled_from([JSON, NPZ, *JSON_LINES]))
def test_round_trip_any_number_of_tensors(batch: tuple[Signature, dict[str, np.ndarray]], media_type: str) -> None:
    sig, arrays = batch
    assert_same(decode_request(encode_request(arrays, media_type, sig), media_type, sig), arrays)
    body, content_type = encode_response(arrays, media_type, sig)
    assert_same(decode_request(as_request(body, media_type), content_type, sig), arrays)


@_SETTINGS
@given(batch=batches(max_tensors=1), media_type=st.sampled_from([CSV, NPY, JSON, NPZ]))
def test_round_trip_single_tensor(batch: tuple[Signature, dict[str, np.ndarray]], media_type: str) -> None:
    sig, arrays = batch
    assert_same(decode_request(encode_request(arrays, media_type, sig), media_type, sig), arrays)
    body, content_type = encode_response(arrays, media_type, sig)
    assert_same(decode_request(as_request(body, media_type), content_type, sig), arrays)


@_SETTINGS
@given(values=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 3)), elements=_ELEMENTS["float32"]))
def test_float32_json_text_is_the_shortest_repr(values: np.ndarray) -> None:
    sig = signature([("x", "float32", (-1, values.shape[1]))], [("y", "float32", (-1, values.shape[1]))])
    body, _ = encode_response({"y": values}, JSON, sig)
    written = orjson.loads(body)["predictions"]
    # Each number is the text NumPy considers shortest for float32, so the JSON stays small.
    assert [[float(str(v)) for v in row] for row in values] == written


# --------------------------------------------------------------------------- robustness (property-based)

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["x", "b64", "a"]), children),
    max_leaves=20,
)
_ANY_SIGNATURE = st.sampled_from(
    [
        FEATURES,
        MULTI,
        signature([("v", "int8", (-1,))]),
        signature([("m", "bool", (-1, 2))]),
        signature([("t", "bytes", (-1,))]),
        signature([("h", "float16", (-1,))]),
    ]
)


@_SETTINGS
@given(value=_JSON_VALUES, sig=_ANY_SIGNATURE, wrap=st.sampled_from(["bare", "instances", "inputs"]))
def test_any_json_gives_arrays_or_a_400(value: object, sig: Signature, wrap: str) -> None:
    payload = value if wrap == "bare" else {wrap: value}
    try:
        decoded = decode_request(json.dumps(payload).encode(), JSON, sig)
    except BadRequestError as exc:
        assert exc.message
        return
    assert list(decoded) == [spec.name for spec in sig.inputs]


@_SETTINGS
@given(body=st.binary(max_size=64), sig=_ANY_SIGNATURE, media_type=st.sampled_from(REQUEST_MEDIA_TYPES))
def test_any_bytes_give_arrays_or_a_400(body: bytes, sig: Signature, media_type: str) -> None:
    try:
        decode_request(body, media_type, sig)
    except BadRequestError as exc:
        assert exc.message


_VALID_BODIES = [
    (media_type, encode_request({"pixels": np.ones((3, 2)), "ids": np.arange(3)}, media_type, MULTI))
    for media_type in (JSON, NPZ, "application/jsonlines")
] + [(media_type, encode_request({"x": np.ones((2, 3))}, media_type, FEATURES)) for media_type in (NPY, CSV)]


@_SETTINGS
@given(
    case=st.sampled_from(_VALID_BODIES),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_bodies_give_arrays_or_a_4xx(case: tuple[str, bytes], edits: list[tuple[float, int]]) -> None:
    media_type, body = case
    corrupted = bytearray(body)
    for where, value in edits:
        corrupted[int(where * len(corrupted))] = value
    sig = FEATURES if media_type in (NPY, CSV) else MULTI
    try:
        decode_request(bytes(corrupted), media_type, sig)
    except (BadRequestError, PayloadTooLargeError) as exc:
        assert exc.message


def test_a_long_string_in_a_body_is_scanned_in_constant_memory() -> None:
    """The string scan kept a backtracking point per character: 6 MB of string cost 690 MB of memory."""
    import tracemalloc

    body = b'{"instances": [["' + b"a" * 6_000_000 + b'"]]}'
    tracemalloc.start()
    try:
        assert has_string_values(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak:,} bytes to scan a {len(body):,}-byte body"
