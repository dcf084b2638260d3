"""The Open Inference Protocol (V2) and KServe V1 routes.

The tensor conversions are tested directly for every datatype; the routes are
tested on real ``model-serve`` processes serving real packages (an MLP, a
two-input / two-output model, a TensorFlow model on strings, and a package whose
user code replaces the model), compared with the package's model loaded by its
own format loader.
"""

from __future__ import annotations

import importlib.util
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from inference.codecs.oip_json import (
    DATATYPES,
    NUMPY_DTYPES,
    decode_tensor,
    encode_tensor,
    infer_response,
    parse_infer_request,
)
from inference.errors import BadRequestError, ModelError
from inference.protocols.oip import PLATFORMS, model_metadata_payload
from model_package import __version__
from model_package.formats import get_format
from model_package.manifest import MODEL_FORMATS, Signature, TensorSpec, read_manifest
from tests.inference.server_fixtures import ServerProcess, start_server

# -- tensor conversion, every datatype -----------------------------------------------------------------------------

# The served packages are PyTorch models; the conversion tests need no framework and always run.
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")


def _values(datatype: str) -> np.ndarray:
    """Six values of ``datatype`` that stress its range (shape [2, 3])."""
    dtype = NUMPY_DTYPES[datatype]
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [7, info.max - 1, info.max]], dtype=dtype)
    info_f = np.finfo(dtype)
    return np.array([[-1.5, 0.0, 0.1], [float(info_f.max), float(info_f.tiny), 3.0]], dtype=dtype)


def _json_roundtrip(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


@pytest.mark.parametrize("datatype", [d for d in NUMPY_DTYPES if d != "BYTES"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_decode_tensor_every_numeric_datatype(datatype: str, nested: bool) -> None:
    want = _values(datatype)
    data = want.tolist() if nested else want.reshape(-1).tolist()
    got = decode_tensor("x", datatype, [2, 3], _json_roundtrip(data))
    assert got.dtype == NUMPY_DTYPES[datatype]
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("datatype", list(NUMPY_DTYPES))
def test_encode_then_decode_is_lossless_for_every_datatype(datatype: str) -> None:
    want = np.array([["a", "ü", ""], ["xyz", "🙂", "b c"]], dtype=np.str_) if datatype == "BYTES" else None
    array = np.char.encode(want, "utf-8") if want is not None else _values(datatype)
    tensor = _json_roundtrip(encode_tensor("y", array))
    assert tensor["name"] == "y"
    assert tensor["datatype"] == datatype
    assert tensor["shape"] == [2, 3]
    assert len(tensor["data"]) == 6  # flat, row-major
    back = decode_tensor("y", tensor["datatype"], tensor["shape"], tensor["data"])
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_bytes_tensors_are_fixed_width_utf8_not_objects() -> None:
    got = decode_tensor("text", "BYTES", [3], ["abc", "üb", ""])
    assert got.dtype.kind == "S"
    assert got.tolist() == [b"abc", "üb".encode(), b""]
    assert decode_tensor("text", "BYTES", [2, 1], [["a"], ["b"]]).shape == (2, 1)
    assert encode_tensor("t", np.array([b"ok", "é".encode()]))["data"] == ["ok", "é"]


def test_bytes_outputs_that_are_not_text_are_a_server_error() -> None:
    with pytest.raises(ModelError, match=r"'t'.*not UTF-8"):
        encode_tensor("t", np.array([b"\xff\xfe"]))


def test_output_data_is_row_major_even_for_transposed_arrays() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3).T  # a Fortran-ordered view
    tensor = _json_roundtrip(encode_tensor("y", array))
    assert tensor["shape"] == [3, 2]
    assert tensor["data"] == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP32", [2, 3], [1.0, 2.0], r"'x' has 2 values in 'data' but its shape \[2, 3\] needs 6"),
        ("FP32", [2, -1], [1.0, 2.0], r"'x' has shape \[2, -1\]; expected a non-empty list of sizes >= 0"),
        ("FP32", [True, 2], [1.0, 2.0], r"'x' has shape"),
        ("FP32", "2", [1.0, 2.0], r"'x' has shape '2'"),
        ("FP32", [], [1.0], r"'x' has shape \[\]"),
        ("FP32", [1] * 65, [1.0], r"'x' has a shape of 65 axes; at most 32 are allowed"),  # NumPy's 500 before
        ("FP32", [2, 2], [[1.0, 2.0], [3.0]], r"'x' has 'data' of uneven nesting"),
        ("FP32", [2], ["1.0", "2.0"], r"'x' is FP32: its data must be JSON numbers"),
        ("FP32", [2], [1.0, None], r"'x' is FP32: its data must be JSON numbers"),
        ("FP32", [2], [True, False], r"'x' is FP32: its data must be JSON numbers"),
        # NumPy reads a boolean among numbers as 1 or 0: it reached the model with a 200.
        ("FP32", [2], [True, 0.5], r"'x' is FP32: its data must be JSON numbers"),
        ("UINT64", [2], [[True], [1]], r"'x' is UINT64: its data must be JSON numbers"),
        ("FP32", [1], [1e39], r"'x' is FP32: values must lie within \+-3\.40282e\+38"),
        ("FP16", [1], [70000.0], r"'x' is FP16: values must lie within \+-65504"),
        ("INT64", [2], [1.0, 2.5], r"'x' is INT64: its data must be whole numbers"),
        ("UINT8", [2], [255, 256], r"'x' is UINT8: values must lie in \[0, 255\], got 255 to 256"),
        ("UINT64", [1], [-1], r"'x' is UINT64: values must lie in \[0, 18446744073709551615\]"),
        ("INT8", [2], [-129, 0], r"'x' is INT8: values must lie in \[-128, 127\]"),
        ("BOOL", [2], [1, 0], r"'x' is BOOL: its data must be JSON true/false values"),
        ("BYTES", [2], ["a", 1], r"'x' is BYTES: its data must be JSON strings"),
        # As in binary data: NumPy's fixed-width bytes would drop the NUL, passing "ab" on silently.
        ("BYTES", [2], ["a", "ab\u0000"], r"'x' has a BYTES element ending in a NUL byte"),
        ("BYTES", [2], [["a"], ["b", "c"]], r"'x' is BYTES: its data must be JSON strings"),
        ("BF16", [1], [1.0], r"'x' has unknown datatype 'BF16'; supported: BOOL, UINT8"),
    ],
)
def test_decode_tensor_rejects(datatype: str, shape: Any, data: Any, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        decode_tensor("x", datatype, shape, data)


def test_integral_floats_are_accepted_for_integer_tensors() -> None:
    got = decode_tensor("ids", "INT64", [2], [1.0, 2.0])
    assert got.dtype == np.int64
    assert got.tolist() == [1, 2]


def test_empty_tensors_keep_their_datatype() -> None:
    assert decode_tensor("x", "INT32", [0, 4], []).dtype == np.int32
    assert decode_tensor("x", "BYTES", [0], []).dtype.kind == "S"


SIGNATURE = Signature(
    inputs=(
        TensorSpec(name="features", dtype="float32", shape=(-1, 2)),
        TensorSpec(name="ids", dtype="int64", shape=(-1,)),
    ),
    outputs=(
        TensorSpec(name="logits", dtype="float32", shape=(-1, 3)),
        TensorSpec(name="label", dtype="int64", shape=(-1,)),
    ),
)


def _request(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "42",
        "inputs": [
            {"name": "ids", "shape": [2], "datatype": "INT64", "data": [3, 4]},
            {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
        ],
    }
    body.update(overrides)
    return orjson.dumps(body)


def test_parse_infer_request() -> None:
    parsed = parse_infer_request(_request(outputs=[{"name": "label"}]), SIGNATURE)
    assert parsed.id == "42"
    assert list(parsed.inputs) == ["ids", "features"]
    np.testing.assert_array_equal(parsed.inputs["features"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert parsed.inputs["ids"].dtype == np.int64
    assert parsed.outputs == ("label",)
    assert parse_infer_request(_request(id=None), SIGNATURE).outputs is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", r"the body is not valid JSON"),
        (b"[1, 2]", r"the body must be a JSON object"),
        (_request(id=42), r"'id' must be a string, got int"),
        (_request(inputs=[]), r"'inputs' must be a non-empty list of tensors; this model takes \['features', 'ids'\]"),
        (_request(inputs="x"), r"'inputs' must be a non-empty list"),
        (_request(inputs=[1]), r"inputs\[0\] must be an object"),
        (
            _request(inputs=[{"name": "idz", "shape": [1], "datatype": "INT64", "data": [1]}]),
            r"inputs\[0\] has name 'idz'; this model's inputs are \['features', 'ids'\]",
        ),
        (
            _request(inputs=[{"name": "ids", "shape": [1], "datatype": "INT32", "data": [1]}]),
            r"input 'ids' has datatype 'INT32'; this model expects INT64 for it",
        ),
        (
            _request(inputs=[{"name": "ids", "shape": [1], "datatype": "INT64"}]),
            r"input 'ids' has no 'data'",
        ),
        (
            _request(inputs=[{"name": "ids", "shape": [1], "datatype": "INT64", "data": [1]}]),
            r"missing inputs \['features'\]",
        ),
        (
            _request(inputs=[{"name": "ids", "shape": [1], "datatype": "INT64", "data": [1]}] * 2),
            r"input 'ids' is given more than once",
        ),
        (
            _request(
                inputs=[
                    {
                        "name": "ids",
                        "shape": [1],
                        "datatype": "INT64",
                        "parameters": {"binary_data_size": 8},
                        "data": [],
                    }
                ]
            ),
            r"input 'ids' has a binary_data_size but the request has no Inference-Header-Content-Length",
        ),
        (_request(outputs=[{"name": "probs"}]), r"outputs\[0\] requests 'probs'; this model's outputs are"),
        (_request(outputs={"name": "label"}), r"'outputs' must be a list"),
    ],
)
def test_parse_infer_request_rejects(body: bytes, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        parse_infer_request(body, SIGNATURE)


def test_every_manifest_dtype_and_format_has_an_oip_name() -> None:
    from model_package.manifest import DTYPES

    assert set(DATATYPES) == set(DTYPES)
    assert set(PLATFORMS) == set(MODEL_FORMATS)


@needs_torch
def test_infer_response_honours_requested_outputs(torch_package: Path) -> None:
    manifest = read_manifest(torch_package)
    name = manifest.signature.outputs[0].name
    outputs = {name: np.ones((1, 10), np.float32)}
    payload, json_length = infer_response(manifest, outputs, (name,), "abc")
    assert json_length is None  # no binary outputs asked for: plain JSON
    body = orjson.loads(payload)
    assert body["model_name"] == "mlp"
    assert body["model_version"] == "1.0.0"
    assert body["id"] == "abc"
    assert body["outputs"] == [{"name": name, "datatype": "FP32", "shape": [1, 10], "data": [1.0] * 10}]
    assert "id" not in orjson.loads(infer_response(manifest, outputs, None, None)[0])


# -- real servers --------------------------------------------------------------------------------------------------


def _serve(package: Path, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 90.0) -> ServerProcess:
    return start_server(
        tmp_path, args=["--model-dir", str(package)], env=env, health_path="/v2/health/ready", timeout=timeout
    )


def _stop(server: ServerProcess) -> None:
    server.terminate()


def _reference(package: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The package's outputs from its own format loader, outside the server."""
    manifest = read_manifest(package)
    return get_format(manifest.format).load(package, manifest).predict(inputs)


def _tensor(name: str, array: np.ndarray, *, nested: bool = False) -> dict[str, Any]:
    datatype = DATATYPES[str(array.dtype)]
    data = array.tolist() if nested else array.reshape(-1).tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def _outputs(body: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        out["name"]: np.asarray(out["data"], dtype=NUMPY_DTYPES[out["datatype"]]).reshape(out["shape"])
        for out in body["outputs"]
    }


@pytest.fixture(scope="module")
def mlp_server(sagemaker_server: ServerProcess) -> ServerProcess:
    """The session's shared server of the torch package: every platform serves these routes."""
    return sagemaker_server


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
    server = _serve(two_io_package, tmp_path_factory.mktemp("two-server"))
    yield server
    _stop(server)


@needs_torch
def test_health_and_server_metadata(mlp_server: ServerProcess) -> None:
    with mlp_server.client() as client:
        live = client.get("/v2/health/live")
        assert live.status_code == 200
        assert live.json() == {"live": True}
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True}
        meta = client.get("/v2")
        assert meta.status_code == 200
        assert meta.json() == {"name": "model-deploy", "version": __version__, "extensions": ["binary_tensor_data"]}


@needs_torch
def test_model_metadata_and_readiness(mlp_server: ServerProcess, torch_package: Path) -> None:
    manifest = read_manifest(torch_package)
    out = manifest.signature.outputs[0].name
    want = {
        "name": "mlp",
        "versions": ["1.0.0"],
        "platform": "pytorch_exportedprogram",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": out, "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert model_metadata_payload(manifest) == want
    with mlp_server.client() as client:
        for path in ("/v2/models/mlp", "/v2/models/mlp/versions/1.0.0"):
            response = client.get(path)
            assert response.status_code == 200, response.text
            assert response.json() == want
        for path in ("/v2/models/mlp/ready", "/v2/models/mlp/versions/1.0.0/ready"):
            response = client.get(path)
            assert response.status_code == 200
            assert response.json() == {"name": "mlp", "ready": True}


@needs_torch
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("path", ["/v2/models/mlp/infer", "/v2/models/mlp/versions/1.0.0/infer"])
def test_infer_matches_the_packaged_model(
    mlp_server: ServerProcess,
    torch_package: Path,
    path: str,
    nested: bool,
) -> None:
    x = np.random.default_rng(7).standard_normal((5, 64), dtype=np.float32)
    want = _reference(torch_package, {"x": x})
    with mlp_server.client() as client:
        response = client.post(path, json={"id": "req-1", "inputs": [_tensor("x", x, nested=nested)]})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_name"] == "mlp"
    assert body["model_version"] == "1.0.0"
    assert body["id"] == "req-1"
    [out] = body["outputs"]
    assert out["datatype"] == "FP32"
    assert out["shape"] == [5, 10]
    got = _outputs(body)
    assert set(got) == set(want)
    for name, array in want.items():
        np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6)


@needs_torch
def test_infer_without_an_id_answers_with_the_request_id(mlp_server: ServerProcess) -> None:
    x = np.zeros((1, 64), np.float32)
    with mlp_server.client() as client:
        response = client.post("/v2/models/mlp/infer", json={"inputs": [_tensor("x", x)]})
        assert response.status_code == 200
        assert response.json()["id"] == response.headers["x-request-id"]
        traced = client.post(
            "/v2/models/mlp/infer", json={"inputs": [_tensor("x", x)]}, headers={"X-Request-ID": "trace-7"}
        )
        assert traced.json()["id"] == "trace-7"


@needs_torch
def test_concurrent_infer_requests_each_get_their_own_rows(mlp_server: ServerProcess, torch_package: Path) -> None:
    batches = [np.random.default_rng(seed).standard_normal((seed % 3 + 1, 64), dtype=np.float32) for seed in range(16)]

    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        with mlp_server.client() as client:
            response = client.post("/v2/models/mlp/infer", json={"inputs": [_tensor("x", x)]})
        assert response.status_code == 200, response.text
        return _outputs(response.json())

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(infer, batches))
    for x, got in zip(batches, results, strict=True):
        for name, array in _reference(torch_package, {"x": x}).items():
            np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6)


def _x(rows: int = 2, cols: int = 64) -> dict[str, Any]:
    return {"name": "x", "shape": [rows, cols], "datatype": "FP32", "data": [0.5] * (rows * cols)}


BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("wrong input name", {"inputs": [{**_x(), "name": "y"}]}, 400, "has name 'y'; this model's inputs are ['x']"),
    ("wrong datatype", {"inputs": [{**_x(), "datatype": "FP64"}]}, 400, "input 'x' has datatype 'FP64'"),
    ("too few values", {"inputs": [{**_x(), "shape": [3, 64]}]}, 400, "has 128 values in 'data' but its shape"),
    ("wrong feature size", {"inputs": [{**_x(), "shape": [4, 32]}]}, 400, "'x' has size 32 on axis 1; expected 64"),
    ("wrong rank", {"inputs": [{**_x(), "shape": [128]}]}, 400, "'x' has shape [128]; expected rank 2"),
    ("strings", {"inputs": [{**_x(1, 2), "data": ["a", "b"]}]}, 400, "'x' is FP32: its data must be JSON numbers"),
    ("uneven nesting", {"inputs": [{**_x(), "data": [[1.0], [1.0, 2.0]]}]}, 400, "'x' has 'data' of uneven nesting"),
    ("empty batch", {"inputs": [{**_x(), "shape": [0, 64], "data": []}]}, 400, "empty batch"),
    ("unknown output", {"inputs": [_x()], "outputs": [{"name": "nope"}]}, 400, "requests 'nope'"),
    ("no inputs", {"id": "1"}, 400, "'inputs' must be a non-empty list of tensors; this model takes ['x']"),
    ("numeric id", {"id": 1, "inputs": [_x()]}, 400, "'id' must be a string"),
    ("not an object", [1, 2], 400, "the body must be a JSON object"),
    ("invalid json", b"{", 400, "not valid JSON"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
@needs_torch
def test_bad_infer_requests_are_4xx_and_leave_the_server_healthy(
    mlp_server: ServerProcess, case: str, body: Any, status: int, message: str
) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with mlp_server.client() as client:
        response = client.post("/v2/models/mlp/infer", content=content, headers={"content-type": "application/json"})
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/v2/models/resnet", "unknown model 'resnet'; this server serves the model 'mlp'"),
        ("GET", "/v2/models/resnet/ready", "unknown model 'resnet'"),
        ("POST", "/v2/models/resnet/infer", "unknown model 'resnet'; this server serves the model 'mlp'"),
        ("GET", "/v2/models/mlp/versions/2.0.0", "has no version '2.0.0'; this server serves version '1.0.0'"),
        ("POST", "/v2/models/mlp/versions/2.0.0/infer", "has no version '2.0.0'"),
        ("GET", "/v1/models/resnet", "unknown model 'resnet'"),
        ("POST", "/v1/models/resnet:predict", "this server serves the model 'mlp'"),
    ],
)
@needs_torch
def test_unknown_models_are_404(mlp_server: ServerProcess, method: str, path: str, message: str) -> None:
    with mlp_server.client() as client:
        response = client.request(method, path, json={"inputs": [_x()], "instances": [[0.0] * 64]})
        assert response.status_code == 404, response.text
        assert message in response.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200


@needs_torch
def test_kserve_v1_routes(mlp_server: ServerProcess, torch_package: Path) -> None:
    x = np.random.default_rng(3).standard_normal((3, 64), dtype=np.float32)
    [want] = _reference(torch_package, {"x": x}).values()
    with mlp_server.client() as client:
        assert client.get("/v1/models").json() == {"models": ["mlp"]}
        status = client.get("/v1/models/mlp")
        assert status.status_code == 200
        assert status.json() == {"name": "mlp", "ready": True}
        response = client.post("/v1/models/mlp:predict", json={"instances": x.tolist()})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.asarray(response.json()["predictions"]), want, rtol=1e-5, atol=1e-6)
        bad = client.post("/v1/models/mlp:predict", json={"instances": [[1.0, 2.0]]})
        assert bad.status_code == 400
        assert "error" in bad.json()
        assert client.post("/v1/models/mlp:predict", content=b"[1]").status_code == 400
        wrong_method = client.get("/v1/models/mlp:predict")
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
        assert "POST" in wrong_method.json()["error"]


@needs_torch
def test_two_inputs_two_outputs(two_io_server: ServerProcess, two_io_package: Path) -> None:
    manifest = read_manifest(two_io_package)
    assert [(t.name, t.dtype) for t in manifest.signature.inputs] == [("features", "float32"), ("ids", "int64")]
    first, second = (spec.name for spec in manifest.signature.outputs)
    from tests.model_package import torch_models

    inputs = torch_models.two_in_two_out_inputs(6, seed=5)
    want = _reference(two_io_package, inputs)
    request = {"inputs": [_tensor("ids", inputs["ids"]), _tensor("features", inputs["features"], nested=True)]}
    with two_io_server.client() as client:
        meta = client.get("/v2/models/two").json()
        assert meta["inputs"] == [
            {"name": "features", "datatype": "FP32", "shape": [-1, 8]},
            {"name": "ids", "datatype": "INT64", "shape": [-1, 4]},
        ]
        assert meta["versions"] == ["2.1"]

        everything = client.post("/v2/models/two/versions/2.1/infer", json=request)
        assert everything.status_code == 200, everything.text
        assert [out["name"] for out in everything.json()["outputs"]] == [first, second]
        got = _outputs(everything.json())
        for name, array in want.items():
            np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6)

        # A requested subset comes back alone, in the order asked for.
        subset = client.post("/v2/models/two/infer", json={**request, "outputs": [{"name": second}]})
        assert subset.status_code == 200, subset.text
        assert [out["name"] for out in subset.json()["outputs"]] == [second]
        np.testing.assert_allclose(_outputs(subset.json())[second], want[second], rtol=1e-5, atol=1e-6)
        reordered = client.post(
            "/v2/models/two/infer", json={**request, "outputs": [{"name": second}, {"name": first}]}
        )
        assert [out["name"] for out in reordered.json()["outputs"]] == [second, first]

        # Integer ids sent as FP32, mismatched batch sizes, an out-of-range id type: each names the problem.
        as_float = {"inputs": [{**_tensor("ids", inputs["ids"]), "datatype": "FP32"}, request["inputs"][1]]}
        response = client.post("/v2/models/two/infer", json=as_float)
        assert response.status_code == 400
        assert "input 'ids' has datatype 'FP32'; this model expects INT64" in response.json()["error"]
        short = {"inputs": [_tensor("ids", inputs["ids"][:2]), request["inputs"][1]]}
        response = client.post("/v2/models/two/infer", json=short)
        assert response.status_code == 400
        assert "batch size" in response.json()["error"]
        missing = {"inputs": [request["inputs"][1]]}
        response = client.post("/v2/models/two/infer", json=missing)
        assert response.status_code == 400
        assert "missing inputs ['ids']" in response.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200


USER_CODE = textwrap.dedent(
    """
    def model_fn(model_dir):
        return {"greeting": "hello"}


    def transform_fn(model, input_data, content_type, accept):
        return {"predictions": [model["greeting"]]}
    """
)


@needs_torch
def test_transform_fn_user_code_is_501_on_infer_and_served_on_v1(tmp_path: Path) -> None:
    from model_package.export import export_model
    from tests.model_package import torch_models

    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(USER_CODE)
    package = tmp_path / "custom"
    export_model(
        torch_models.make_mlp(), torch_models.mlp_inputs(2), package, name="custom", version="1", code_dir=code
    )
    server = _serve(package, tmp_path)
    try:
        with server.client() as client:
            assert client.get("/v2/models/custom").json()["inputs"][0]["name"] == "x"
            response = client.post("/v2/models/custom/infer", json={"inputs": [_x()]})
            assert response.status_code == 501, response.text
            assert "POST /v1/models/custom:predict" in response.json()["error"]
            v1 = client.post("/v1/models/custom:predict", json={"instances": [[0.0] * 64]})
            assert v1.status_code == 200, v1.text
            assert v1.json() == {"predictions": ["hello"]}
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        _stop(server)


@pytest.mark.tensorflow
@pytest.mark.slow
def test_bytes_inputs_end_to_end(tmp_path: Path) -> None:
    """JSON strings reach a TensorFlow model as tf.string tensors (UTF-8), and its lengths come back."""
    tf = pytest.importorskip("tensorflow")
    from model_package.builder import PackageSpec, build_package

    # Numeric outputs only: the server's warm-up check cannot compare bytes outputs yet (see the report).
    module = tf.Module()
    module.serve = tf.function(
        lambda text: {"length": tf.strings.length(text), "words": tf.strings.split(text).row_lengths()},
        input_signature=[tf.TensorSpec((None,), tf.string, name="text")],
    )
    source = tmp_path / "strings"
    tf.saved_model.save(module, str(source), signatures={"serving_default": module.serve.get_concrete_function()})
    fmt = get_format("tf_savedmodel")
    example = {"text": np.array([b"a b", b"c"])}
    build_package(
        tmp_path / "package",
        PackageSpec(name="strings", version="1", format="tf_savedmodel", example_inputs=example),
        stage=lambda staging: fmt.import_artifact(source, staging, None),
    )
    server = _serve(tmp_path / "package", tmp_path, timeout=180.0)
    try:
        with server.client(timeout=60.0) as client:
            meta = client.get("/v2/models/strings").json()
            assert meta["platform"] == "tensorflow_savedmodel"
            assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
            data = ["abc", "héllo wörld", "", "a b c"]
            request = {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES", "data": data}]}
            response = client.post("/v2/models/strings/infer", json=request)
            assert response.status_code == 200, response.text
            outputs = {out["name"]: out for out in response.json()["outputs"]}
            assert outputs["length"]["datatype"] == "INT32"
            assert outputs["length"]["data"] == [len(text.encode()) for text in data]  # UTF-8 bytes, not characters
            assert outputs["words"]["data"] == [1, 2, 0, 3]
            wrong = client.post(
                "/v2/models/strings/infer",
                json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", 2]}]},
            )
            assert wrong.status_code == 400
            assert "'text' is BYTES: its data must be JSON strings" in wrong.json()["error"]
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        _stop(server)
