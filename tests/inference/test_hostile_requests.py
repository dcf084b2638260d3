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

from tests.inference.server_fixtures import ServerProcess, start_server

pytest.importorskip("torch")

pytestmark = pytest.mark.torch

#: Sizes whose product overflows a 64-bit element count, next to a 0 that makes the tensor empty.
OVERFLOWING_SHAPE = [2**62, 2**62, 0]


def _server_errors(server: ServerProcess) -> float:
    """The 5xx count in the server's own metrics (what alarms and auto-rollback read)."""
    total = 0.0
    for line in httpx.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("model_server_requests_total{") and 'status="5' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _assert_client_fault(server: ServerProcess, response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    assert _server_errors(server) == 0
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def mlp_server(torch_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("mlp-server"), args=["serve", "--model-dir", str(torch_package)])
    try:
        yield server
    finally:
        server.terminate()


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


# ---------------------------------------------------------------------------------------------------------------------
# CSV: a quoted field longer than Python's csv module takes


def test_a_csv_field_longer_than_the_csv_reader_takes_is_a_400(mlp_server: ServerProcess) -> None:
    body = b'"' + b"1" * 200_000 + b'"' + b",0" * 63 + b"\n"
    response = httpx.post(
        mlp_server.url + "/invocations", content=body, headers={"Content-Type": "text/csv"}, timeout=30
    )
    _assert_client_fault(mlp_server, response, "line 1")
