"""The Open Inference Protocol's binary tensor data extension (Triton's ``extension_binary_data.md``).

The codec is checked against Triton's own Python client code (``tritonclient``): its request
builder makes the bodies we parse, and its response reader parses the bodies we make. Then
the client itself talks to real ``model-serve`` processes, and hostile bodies (sizes that lie,
bodies cut short, a header length beyond the body) get 4xx answers naming the problem while
the server stays healthy.
"""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from inference.codecs.limits import DecodeLimits
from inference.codecs.oip_binary import binary_outputs, encode_binary_tensor
from inference.codecs.oip_json import NUMPY_DTYPES, infer_response, parse_binary_request, parse_infer_request
from inference.errors import BadRequestError, PayloadTooLargeError
from model_package.formats import get_format
from model_package.manifest import Manifest, Signature, TensorSpec, read_manifest
from tests.inference.server_fixtures import ServerProcess, start_server

httpclient = pytest.importorskip("tritonclient.http")
triton_utils = pytest.importorskip("tritonclient.utils")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")

SIGNATURE = Signature(
    inputs=(
        TensorSpec(name="ids", dtype="int64", shape=(-1, 2)),
        TensorSpec(name="features", dtype="float16", shape=(-1, 2)),
        TensorSpec(name="flags", dtype="bool", shape=(-1,)),
        TensorSpec(name="text", dtype="bytes", shape=(-1,)),
    ),
    outputs=(
        TensorSpec(name="logits", dtype="float32", shape=(-1, 3)),
        TensorSpec(name="label", dtype="int64", shape=(-1,)),
    ),
)


def _inputs() -> dict[str, np.ndarray]:
    return {
        "ids": np.array([[1, -2], [2**40, 7]], dtype=np.int64),
        "features": np.array([[0.5, -1.25], [65504.0, 0.0]], dtype=np.float16),
        "flags": np.array([True, False]),
        "text": np.array([b"h\xc3\xa9llo", b""], dtype=object),
    }


def _triton_body(
    inputs: dict[str, np.ndarray], *, json_inputs: tuple[str, ...] = (), outputs: list[Any] | None = None
) -> tuple[bytes, int | None]:
    """The body and header length Triton's client sends for ``inputs`` (its own request builder)."""
    from tritonclient.http._utils import _get_inference_request

    infer_inputs = []
    for name, array in inputs.items():
        datatype = triton_utils.np_to_triton_dtype(array.dtype)
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=name not in json_inputs)
        infer_inputs.append(tensor)
    body, json_size = _get_inference_request(infer_inputs, "", outputs, 0, False, False, 0, None, None)
    return (body if isinstance(body, bytes) else body.encode()), json_size


# -- the codec against Triton's client code ------------------------------------------------------------------------


def test_requests_built_by_tritonclient_decode_exactly() -> None:
    want = _inputs()
    body, json_size = _triton_body(want)
    assert json_size is not None
    parsed = parse_binary_request(body, str(json_size), SIGNATURE)
    assert list(parsed.inputs) == list(want)
    for name, array in want.items():
        got = parsed.inputs[name]
        if name == "text":
            assert got.dtype.kind == "S"
            assert got.tolist() == array.tolist()
        else:
            assert got.dtype == array.dtype
            np.testing.assert_array_equal(got, array)
        assert got.flags.writeable  # the model gets its own copy, not a view of the request body
    # Without outputs, Triton's client asks for every output in binary (binary_data_output).
    assert parsed.binary_outputs == {"logits", "label"}


def test_binary_and_json_tensors_mix_in_one_request() -> None:
    want = _inputs()
    outputs = [httpclient.InferRequestedOutput("label", binary_data=False)]
    body, json_size = _triton_body(want, json_inputs=("ids", "flags"), outputs=outputs)
    parsed = parse_binary_request(body, str(json_size), SIGNATURE)
    np.testing.assert_array_equal(parsed.inputs["ids"], want["ids"])
    np.testing.assert_array_equal(parsed.inputs["features"], want["features"])
    assert parsed.outputs == ("label",)
    assert parsed.binary_outputs == frozenset()


def test_responses_read_back_by_tritonclient() -> None:
    manifest = Manifest.model_construct(name="m", version="3", signature=SIGNATURE)
    outputs = {
        "logits": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "label": np.array([2**40, -1], dtype=np.int64),
    }
    payload, json_length = infer_response(manifest, outputs, None, "r1", frozenset({"logits"}))
    assert json_length is not None
    header = orjson.loads(payload[:json_length])
    assert header["outputs"][0] == {
        "name": "logits",
        "datatype": "FP32",
        "shape": [2, 3],
        "parameters": {"binary_data_size": 24},
    }
    assert header["outputs"][1]["data"] == [2**40, -1]  # JSON unless asked for in binary
    result = httpclient.InferResult.from_response_body(payload, header_length=json_length)
    np.testing.assert_array_equal(result.as_numpy("logits"), outputs["logits"])
    np.testing.assert_array_equal(result.as_numpy("label"), outputs["label"])


def test_bytes_outputs_are_length_prefixed() -> None:
    array = np.array([[b"ab", b""], [b"\xff\x00z", b"c"]], dtype=object)
    encoded = encode_binary_tensor("t", "BYTES", array)
    assert encoded[:6] == struct.pack("<I", 2) + b"ab"
    assert triton_utils.deserialize_bytes_tensor(encoded).tolist() == array.reshape(-1).tolist()


@pytest.mark.parametrize(
    ("request_parameters", "outputs", "want"),
    [
        (None, None, set()),
        ({"binary_data_output": True}, None, {"a", "b"}),
        ({"binary_data_output": True}, [{"name": "a", "parameters": {"binary_data": False}}], {"b"}),
        (None, [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}], {"a"}),
    ],
)
def test_binary_data_overrides_binary_data_output(request_parameters: Any, outputs: Any, want: set[str]) -> None:
    assert binary_outputs(request_parameters, outputs, ["a", "b"]) == want


# -- hostile bodies, decoded -----------------------------------------------------------------------------------------

MLP = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 4)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 2)),),
)


def _hostile(tensor: dict[str, Any], binary: bytes, *, extra: dict[str, Any] | None = None) -> tuple[bytes, str]:
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", **tensor}], **(extra or {})})
    return header + binary, str(len(header))


HOSTILE: list[tuple[str, bytes, str, str]] = [
    ("header length beyond the body", b'{"inputs": []}', "15", "Inference-Header-Content-Length is 15 but the body"),
    ("header length not a number", b"{}", "1e3", "must be the byte length of the JSON part"),
    ("header length negative", b"{}", "-1", "must be the byte length of the JSON part"),
    ("header length cuts the JSON", b'{"inputs": []}', "5", "the body is not valid JSON"),
    (
        "size beyond the body",
        *_hostile({"shape": [1, 4], "parameters": {"binary_data_size": 16}}, bytes(8)),
        "binary_data_size 16 but only 8 bytes of binary data are left",
    ),
    (
        "size smaller than the shape",
        *_hostile({"shape": [2, 4], "parameters": {"binary_data_size": 16}}, bytes(16)),
        "binary_data_size 16 but its shape [2, 4] of FP32 needs 32 bytes",
    ),
    (
        "shape far beyond the size",
        *_hostile({"shape": [2**40, 2**40], "parameters": {"binary_data_size": 16}}, bytes(16)),
        "needs 4835703278458516698824704 bytes",
    ),
    (
        "size that is not a count",
        *_hostile({"shape": [1, 4], "parameters": {"binary_data_size": -16}}, bytes(16)),
        "binary_data_size -16; expected the tensor's size in bytes",
    ),
    (
        "size that is a boolean",
        *_hostile({"shape": [1, 1], "parameters": {"binary_data_size": True}}, bytes(1)),
        "binary_data_size True",
    ),
    (
        "more axes than NumPy builds",  # a 500 (NumPy's ValueError past 64 axes) before
        *_hostile({"shape": [1] * 64 + [4], "parameters": {"binary_data_size": 16}}, bytes(16)),
        "a shape of 65 axes; at most 32 are allowed",
    ),
    (
        "bytes left over",
        *_hostile({"shape": [1, 4], "parameters": {"binary_data_size": 16}}, bytes(20)),
        "the body has 4 bytes after the binary data of every input",
    ),
    (
        "data and a binary size",
        *_hostile({"shape": [1, 4], "data": [1, 2, 3, 4], "parameters": {"binary_data_size": 16}}, bytes(16)),
        "has both 'data' and a binary_data_size",
    ),
    (
        "output flag that is not a boolean",
        *_hostile(
            {"shape": [1, 4], "parameters": {"binary_data_size": 16}},
            bytes(16),
            extra={"parameters": {"binary_data_output": "yes"}},
        ),
        "binary_data_output 'yes'; expected true or false",
    ),
]


@pytest.mark.parametrize(("case", "body", "length", "message"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_binary_bodies_are_400s(case: str, body: bytes, length: str, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_binary_request(body, length, MLP, limits=DecodeLimits.for_body_limit(1 << 20))
    assert message in caught.value.message


TEXT = Signature(
    inputs=(TensorSpec(name="t", dtype="bytes", shape=(-1,)),),
    outputs=(TensorSpec(name="n", dtype="int32", shape=(-1,)),),
)


def _bytes_request(shape: list[int], binary: bytes) -> tuple[bytes, str]:
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "t", "datatype": "BYTES", "shape": shape, "parameters": {"binary_data_size": len(binary)}}
            ]
        }
    )
    return header + binary, str(len(header))


@pytest.mark.parametrize(
    ("shape", "binary", "message"),
    [
        ([1], struct.pack("<I", 0xFFFFFFFF) + b"abc", "element 0 has length 4294967295 but only 3 bytes"),
        ([3], struct.pack("<I", 1) + b"a" + struct.pack("<I", 1), "cannot hold that many"),
        ([10**12], bytes(8), "cannot hold that many"),
        ([1], struct.pack("<I", 1) + b"ab", "has 1 bytes after its 1 BYTES elements"),
        ([1], struct.pack("<I", 2) + b"a\0", "ending in a NUL byte"),
        # One element of 109 bytes where the shape claims two: element 1's length was read past the end
        # (struct.error, a logged 500).
        ([2], struct.pack("<I", 109) + b"x" * 109, "element 1's 4-byte length is missing"),
    ],
)
def test_lying_bytes_length_prefixes_are_400s(shape: list[int], binary: bytes, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        parse_binary_request(*_bytes_request(shape, binary), TEXT)


def test_bytes_tensors_are_bounded_before_numpy_widens_them() -> None:
    # 2,000 empty elements and one of 1,000 bytes: 9 KB on the wire, 2 MB as a fixed-width array.
    binary = struct.pack("<I", 0) * 2000 + struct.pack("<I", 1000) + b"x" * 1000
    with pytest.raises(PayloadTooLargeError, match="BYTES input 't' decodes to 2,001,000 bytes"):
        parse_binary_request(*_bytes_request([2001], binary), TEXT, limits=DecodeLimits.for_body_limit(100_000))


def test_bool_bytes_other_than_0_and_1_are_refused() -> None:
    flags = Signature(inputs=(TensorSpec(name="f", dtype="bool", shape=(-1,)),), outputs=MLP.outputs)
    header = orjson.dumps(
        {"inputs": [{"name": "f", "datatype": "BOOL", "shape": [2], "parameters": {"binary_data_size": 2}}]}
    )
    with pytest.raises(BadRequestError, match="BOOL: each element must be one byte, 0 or 1"):
        parse_binary_request(header + b"\x01\x02", str(len(header)), flags)


def test_raw_binary_request_deduces_the_batch() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    parsed = parse_binary_request(x.tobytes(), "0", MLP)
    np.testing.assert_array_equal(parsed.inputs["x"], x)
    assert parsed.binary_outputs == {"y"}  # Triton: a raw request gets every output in binary
    with pytest.raises(BadRequestError, match="must hold a multiple of 16 bytes; got 10"):
        parse_binary_request(bytes(10), "0", MLP)
    with pytest.raises(BadRequestError, match="needs a model with one input"):
        parse_binary_request(bytes(16), "0", SIGNATURE)


def test_binary_sizes_without_the_header_are_refused() -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}]}
    )
    with pytest.raises(BadRequestError, match="no Inference-Header-Content-Length header"):
        parse_infer_request(body, MLP)


# -- Triton's client against real servers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_io_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_package.export import export_model
    from tests.model_package import torch_models

    out = tmp_path_factory.mktemp("packages") / "two"
    export_model(
        torch_models.make_two_in_two_out(), torch_models.two_in_two_out_inputs(4), out, name="two", version="2.1"
    )
    return out


@pytest.fixture(scope="module")
def two_io_server(two_io_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path_factory.mktemp("two-binary"),
        args=["--model-dir", str(two_io_package)],
        health_path="/v2/health/ready",
        timeout=90.0,
    )
    yield server
    server.terminate()


def _reference(package: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    manifest = read_manifest(package)
    return get_format(manifest.format).load(package, manifest).predict(inputs)


def _triton_inputs(inputs: dict[str, np.ndarray], *, binary: bool = True) -> list[Any]:
    tensors = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), triton_utils.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return tensors


def _batch_calls(client: Any) -> float:
    metrics = client.get("/metrics").text
    line = next(line for line in metrics.splitlines() if line.startswith("model_server_batch_rows_count"))
    return float(line.split()[-1])


@needs_torch
def test_tritonclient_binary_round_trip(two_io_server: ServerProcess, two_io_package: Path) -> None:
    from tests.model_package import torch_models

    inputs = torch_models.two_in_two_out_inputs(5, seed=3)
    want = _reference(two_io_package, inputs)
    first, second = want
    client = httpclient.InferenceServerClient(f"127.0.0.1:{two_io_server.port}")
    try:
        assert client.is_server_ready()
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        # The client's defaults: binary inputs, every output in binary.
        result = client.infer("two", _triton_inputs(inputs), model_version="2.1")
        for name, array in want.items():
            np.testing.assert_allclose(result.as_numpy(name), array, rtol=1e-5, atol=1e-6)
        assert all("data" not in out for out in result.get_response()["outputs"])
        # JSON inputs, one output asked for in JSON and one in binary.
        asked = [
            httpclient.InferRequestedOutput(second, binary_data=False),
            httpclient.InferRequestedOutput(first, binary_data=True),
        ]
        result = client.infer("two", _triton_inputs(inputs, binary=False), outputs=asked, request_id="r-7")
        response = result.get_response()
        assert response["id"] == "r-7"
        assert [out["name"] for out in response["outputs"]] == [second, first]
        assert "data" in response["outputs"][0]
        assert "parameters" in response["outputs"][1]
        for name, array in want.items():
            np.testing.assert_allclose(result.as_numpy(name), array, rtol=1e-5, atol=1e-6)
        # A bad input through the client is the server's 400, named.
        wrong = {**inputs, "ids": inputs["ids"].astype(np.int32)}
        with pytest.raises(triton_utils.InferenceServerException, match="this model expects INT64"):
            client.infer("two", _triton_inputs(wrong))
    finally:
        client.close()


@needs_torch
def test_hostile_bodies_leave_the_server_healthy(two_io_server: ServerProcess) -> None:
    from tests.model_package import torch_models

    inputs = torch_models.two_in_two_out_inputs(2)
    body, json_size = _triton_body(inputs)
    assert json_size is not None
    truncated = body[:-10]
    cases = [
        (body, str(len(body) + 1), 400, "but the body holds only"),  # header length > body
        (truncated, str(json_size), 400, "bytes of binary data are left"),  # body cut short
        (body + b"\0" * 8, str(json_size), 400, "bytes after the binary data of every input"),
        (body, "12abc", 400, "must be the byte length of the JSON part"),
    ]
    with two_io_server.client() as client:
        calls = _batch_calls(client)
        for content, length, status, message in cases:
            response = client.post(
                "/v2/models/two/infer",
                content=content,
                headers={"Inference-Header-Content-Length": length, "content-type": "application/octet-stream"},
            )
            assert response.status_code == status, response.text
            assert message in response.json()["error"]
            assert client.get("/v2/health/ready").status_code == 200
        wrong_type = client.post(
            "/v2/models/two/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(json_size), "content-type": "text/csv"},
        )
        assert wrong_type.status_code == 415
        assert _batch_calls(client) == calls  # none of them reached the model


@needs_torch
def test_binary_response_refused_by_accept_is_406_before_the_model_runs(two_io_server: ServerProcess) -> None:
    from tests.model_package import torch_models

    body, json_size = _triton_body(torch_models.two_in_two_out_inputs(2))
    with two_io_server.client() as client:
        calls = _batch_calls(client)
        response = client.post(
            "/v2/models/two/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(json_size), "accept": "application/json"},
        )
        assert response.status_code == 406, response.text
        assert "application/octet-stream" in response.json()["error"]
        assert _batch_calls(client) == calls
        ok = client.post(
            "/v2/models/two/infer", content=body, headers={"Inference-Header-Content-Length": str(json_size)}
        )
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "application/octet-stream"
        header_length = int(ok.headers["inference-header-content-length"])
        assert orjson.loads(ok.content[:header_length])["outputs"][0]["parameters"]["binary_data_size"] > 0
        assert _batch_calls(client) == calls + 1


@needs_torch
def test_raw_binary_request_to_a_single_input_model(torch_package: Path, sagemaker_server: ServerProcess) -> None:
    from tests.model_package import torch_models

    x = torch_models.mlp_inputs(3)["x"]
    want = _reference(torch_package, {"x": x})
    with sagemaker_server.client() as client:
        response = client.post(
            "/v2/models/mlp/infer", content=x.tobytes(), headers={"Inference-Header-Content-Length": "0"}
        )
    assert response.status_code == 200, response.text
    result = httpclient.InferResult.from_response_body(
        response.content, header_length=int(response.headers["inference-header-content-length"])
    )
    for name, array in want.items():
        got = result.as_numpy(name)
        assert got.dtype == NUMPY_DTYPES["FP32"]
        np.testing.assert_allclose(got, array, rtol=1e-5, atol=1e-6)


def test_a_text_pipeline_reads_binary_bytes_elements_as_utf8_texts() -> None:
    from inference.pipeline.oip import raw_oip_items

    texts = ["héllo", "", "a\x00b"]  # an empty text and an inner NUL are texts like any other
    binary = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = orjson.dumps(
        {
            "id": "t",
            "inputs": [
                {"name": "text", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(binary)}}
            ],
        }
    )
    raw = raw_oip_items(header + binary, "text", str(len(header)))
    assert raw is not None and (raw.items, raw.id) == (texts, "t")
    bad = struct.pack("<I", 2) + b"\xff\xfe"
    header = orjson.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(bad)}}]}
    )
    with pytest.raises(BadRequestError, match="element 0 of 'text' is not UTF-8 text"):
        raw_oip_items(header + bad, "text", str(len(header)))


def test_a_pipeline_request_with_the_binary_header_may_still_carry_its_items_as_json() -> None:
    """Triton's clients send the header whenever a request is built for binary data, even when no input uses it."""
    from inference.pipeline.oip import raw_oip_items

    header = orjson.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]})
    raw = raw_oip_items(header, "text", str(len(header)))
    assert raw is not None and (raw.items, raw.id) == (["a", "b"], None)
    with pytest.raises(BadRequestError, match="bytes after the binary data of every input"):
        raw_oip_items(header + b"junk", "text", str(len(header)))
