"""Requests a hostile client sends, through real ``model-serve`` processes: each is the client's 4xx, never our 5xx.

Found by re-probing issue 12's data plane as a client trying to knock it over: every case here was a
500 with an ERROR traceback in the log, counted in the 5xx metric that alarms and auto-rollback read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.inference.server_fixtures import ServerProcess, counters, start_server

torch = pytest.importorskip("torch")

from tests.model_package.torch_models import dict_head_inputs, make_dict_head  # noqa: E402

pytestmark = pytest.mark.torch

FIXTURES = Path(__file__).parent / "user_code_fixtures"
#: Sizes whose product overflows a 64-bit element count, next to a 0 that makes the tensor empty.
OVERFLOWING_SHAPE = [2**62, 2**62, 0]


def _server_errors(server: ServerProcess) -> float:
    """The 5xx count in the server's own metrics (what alarms and auto-rollback read)."""
    samples = counters(httpx.get(server.url + "/metrics", timeout=5).text)
    requests = {name: value for name, value in samples.items() if name.startswith("model_server_requests_total{")}
    return sum(value for name, value in requests.items() if 'status="5' in name)


def _assert_client_fault(server: ServerProcess, response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    assert _server_errors(server) == 0
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def mlp_server(sagemaker_server: ServerProcess) -> ServerProcess:
    """The session's shared server of the torch package (no test here may cause it a 5xx)."""
    return sagemaker_server


#: A package whose input_fn hands the parsed JSON on as it is, and predict_batch_fn answers every request.
PARSED_JSON_CODE = """
import json


def input_fn(request_body, request_content_type):
    return json.loads(request_body)


def predict_batch_fn(inputs, model):
    return [{"received": True} for _ in inputs]


def output_fn(prediction, accept):
    return prediction
"""


def _code_server(
    tmp_path_factory: pytest.TempPathFactory, fixture: str, code_dir: Path | None = None
) -> Iterator[ServerProcess]:
    from model_package.export import export_model

    package = tmp_path_factory.mktemp(fixture) / fixture
    code = code_dir or FIXTURES / fixture
    export_model(make_dict_head(), dict_head_inputs(3), package, name=fixture, version="1", code_dir=code)
    server = start_server(tmp_path_factory.mktemp(f"{fixture}-server"), args=["--model-dir", str(package)])
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture(scope="module")
def predict_fn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A package whose predict_fn runs on the server's own decoding (no input_fn)."""
    yield from _code_server(tmp_path_factory, "predict_only")


@pytest.fixture(scope="module")
def input_fn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A package whose input_fn parses JSON with the standard library, as most packages' do."""
    yield from _code_server(tmp_path_factory, "batched")


@pytest.fixture(scope="module")
def parsed_json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    code = tmp_path_factory.mktemp("parsed-json-code")
    (code / "inference.py").write_text(PARSED_JSON_CODE)
    yield from _code_server(tmp_path_factory, "parsed_json", code)


# ---------------------------------------------------------------------------------------------------------------------
# Open Inference Protocol: a shape NumPy cannot address


def test_an_oip_json_tensor_whose_shape_overflows_is_a_400(mlp_server: ServerProcess) -> None:
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": OVERFLOWING_SHAPE, "data": []}]}
    response = httpx.post(mlp_server.url + "/v2/models/mlp/infer", json=request, timeout=30)
    _assert_client_fault(mlp_server, response, "'x'", str(OVERFLOWING_SHAPE))


def test_an_oip_binary_tensor_whose_shape_overflows_is_a_400(mlp_server: ServerProcess) -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": OVERFLOWING_SHAPE, "parameters": {"binary_data_size": 0}}
    header = json.dumps({"inputs": [tensor]}).encode()
    response = httpx.post(
        mlp_server.url + "/v2/models/mlp/infer",
        content=header,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    _assert_client_fault(mlp_server, response, "'x'", str(OVERFLOWING_SHAPE))


def _nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


def test_an_oip_request_with_a_deeply_nested_extra_field_is_answered(mlp_server: ServerProcess) -> None:
    # orjson accepts 1,024 levels, deeper than Python's recursion limit: a walk over the parsed body must not recurse.
    tensor = '{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [' + ", ".join(["0.5"] * 64) + "]}"
    body = '{"inputs": [' + tensor + '], "parameters": {"trace": ' + _nested(1000, '"a"') + "}}"
    response = httpx.post(
        mlp_server.url + "/v2/models/mlp/infer",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert _server_errors(mlp_server) == 0


_ROW = "[" + ", ".join(["0.5"] * 64) + "]"


@pytest.mark.parametrize(
    ("tensor", "outputs", "words"),
    [
        (
            '{"name": "x", "datatype": "FP32", "shape": ' + _nested(1000, "1") + ', "data": ' + _ROW + "}",
            "",
            ("shape",),
        ),
        (
            '{"name": ' + _nested(1000, '"x"') + ', "datatype": "FP32", "shape": [1, 64], "data": ' + _ROW + "}",
            "",
            ("name",),
        ),
        (
            '{"name": "x", "datatype": ' + _nested(1000, '"F"') + ', "shape": [1, 64], "data": ' + _ROW + "}",
            "",
            ("datatype",),
        ),
        (
            '{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": ' + _ROW + "}",
            ', "outputs": [{"name": ' + _nested(1000, '"y"') + "}]",
            ("outputs[0]",),
        ),
        (
            '{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": ' + _ROW + "}",
            ', "outputs": [{"name": "output", "parameters": {"binary_data": ' + _nested(1000, "true") + "}}]",
            ("binary_data", "true or false"),
        ),
        (
            '{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": ' + _ROW + "}",
            ', "parameters": {"binary_data_output": ' + _nested(1000, "true") + "}",
            ("binary_data_output", "true or false"),
        ),
    ],
    ids=["shape", "name", "datatype", "requested output", "binary_data", "binary_data_output"],
)
def test_a_deeply_nested_value_quoted_in_an_oip_error_is_a_400(
    mlp_server: ServerProcess, tensor: str, outputs: str, words: tuple[str, ...]
) -> None:
    # The error message quoted the client's value with repr(), which raised RecursionError for a
    # value 1,000 levels deep (JSON allows 1,024): the client got a 500 and the log a traceback.
    body = '{"inputs": [' + tensor + "]" + outputs + "}"
    response = httpx.post(
        mlp_server.url + "/v2/models/mlp/infer", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    _assert_client_fault(mlp_server, response, *words)


def test_a_text_tensor_nested_deeply_is_answered(text_server: ServerProcess) -> None:
    body = '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ' + _nested(1010, '"fine"') + "}]}"
    response = httpx.post(
        text_server.url + "/v2/models/tiny-text/infer",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"][0] == 1
    assert _server_errors(text_server) == 0


# ---------------------------------------------------------------------------------------------------------------------
# CSV: a quoted field longer than Python's csv module takes


def test_a_csv_field_longer_than_the_csv_reader_takes_is_a_400(mlp_server: ServerProcess) -> None:
    body = b'"' + b"1" * 200_000 + b'"' + b",0" * 63 + b"\n"
    response = httpx.post(
        mlp_server.url + "/invocations", content=body, headers={"Content-Type": "text/csv"}, timeout=30
    )
    _assert_client_fault(mlp_server, response, "line 1")


# ---------------------------------------------------------------------------------------------------------------------
# User code


def test_rows_of_the_wrong_width_for_a_predict_fn_are_a_400(predict_fn_server: ServerProcess) -> None:
    # The server's own codecs decode the body for predict_fn: what they decode is checked against the
    # signature before the hook sees it, as on the Open Inference Protocol and the built-in path.
    response = httpx.post(
        predict_fn_server.url + "/invocations",
        content=b"[1, 2, 3]\n[4, 5, 6]\n",
        headers={"Content-Type": "application/jsonlines"},
        timeout=30,
    )
    _assert_client_fault(predict_fn_server, response, "'x'", "axis 1", "expected 5")


def test_a_body_nested_too_deeply_for_input_fn_is_a_400(input_fn_server: ServerProcess) -> None:
    # The standard library's json.loads raises RecursionError, not ValueError, on deep nesting.
    body = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = httpx.post(
        input_fn_server.url + "/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    _assert_client_fault(input_fn_server, response, "input_fn", "nest")


def test_deeply_nested_json_that_input_fn_passes_on_is_answered(parsed_json_server: ServerProcess) -> None:
    # The server counts the rows of what input_fn returned (for the response-size check's advice).
    body = '{"a": ' * 900 + "1" + "}" * 900
    response = httpx.post(
        parsed_json_server.url + "/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True}
    assert _server_errors(parsed_json_server) == 0


def test_a_compressed_body_is_refused_naming_content_encoding(mlp_server: ServerProcess) -> None:
    # Triton's clients compress requests when asked to (request_compression_algorithm="gzip"); the body
    # was then parsed as it came, and the client told its gzip bytes were "not valid JSON".
    import gzip

    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}
    response = httpx.post(
        mlp_server.url + "/v2/models/mlp/infer",
        content=gzip.compress(json.dumps({"inputs": [tensor]}).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert response.status_code == 415, response.text
    assert "Content-Encoding" in response.json()["error"]
