"""Work for clients who left is dropped, not computed, and counted apart (status 499) from successes.

A real ``model-serve`` process with a model that takes several tenths of a second per call and runs one
request per call: ten clients that give up after 0.3 s must not cost ten model calls.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.inference.server_fixtures import start_server

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")


class SlowerModel(torch.nn.Module):  # type: ignore[misc]
    """Several tenths of a second per call on one core, whatever the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(384, 384) / 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.weight
        for _ in range(400):
            state = torch.tanh(state @ self.weight)
        return x @ state[:8, :2]


@pytest.fixture(scope="module")
def slow_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_package.export import export_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("slower") / "slower"
    inputs = {"x": np.ones((2, 8), dtype=np.float32)}
    export_model(SlowerModel().eval(), inputs, out, name="slower", version="1", rtol=1e-3, atol=1e-4)
    return out


def _metric(text: str, pattern: str) -> float:
    return sum(float(match) for match in re.findall(pattern, text))


def test_queued_work_of_clients_that_left_is_dropped_and_counted_as_499(slow_package: Path, tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_package)],
        env={"MODEL_SERVER_MAX_BATCH_SIZE": "1", "MODEL_SERVER_COMPUTE_THREADS": "1"},
    )
    clients = 10
    body = b"[" + b",".join([b"[1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0]"]) + b"]"
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    try:
        # Connect first, then send all ten at once, then leave 0.3 s later without reading the answers.
        sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(clients)]
        for sock in sockets:
            sock.sendall(request)
        time.sleep(0.3)
        for sock in sockets:
            sock.close()
        time.sleep(4.0)  # long enough for most of the ten calls, had they been kept
        metrics = httpx.get(server.url + "/metrics", timeout=5).text
    finally:
        server.terminate()
    calls = _metric(metrics, r"model_server_batch_rows_count (\S+)")
    left = _metric(metrics, r'model_server_requests_total\{route="/invocations",status="499"\} (\S+)')
    served = _metric(metrics, r'model_server_requests_total\{route="/invocations",status="200"\} (\S+)')
    assert calls <= 3, f"{calls} model calls for {clients} clients who all left after 0.3 s: {metrics}"
    assert left >= clients - 3 and served <= 2, metrics
    assert "Traceback" not in server.log()


def test_queued_work_of_pipelined_requests_whose_client_left_is_dropped(slow_package: Path, tmp_path: Path) -> None:
    """Each client sends two requests in one write (HTTP/1.1 pipelining), then leaves: the first of each,
    queued behind the others' model calls, must be dropped too. uvicorn's protocol keeps the newest
    request (the second, never started) as its current one, so telling only that one missed them."""
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_package)],
        env={"MODEL_SERVER_MAX_BATCH_SIZE": "1", "MODEL_SERVER_COMPUTE_THREADS": "1"},
    )
    clients = 5
    body = b"[[1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0]]"
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    try:
        # A client that stays gets both answers, in order, and nothing of it counts as left.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request * 2)
            sock.settimeout(30)
            received = b""
            while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, f"the connection closed after {received!r}"
                received += chunk
        served_before = _metric(
            httpx.get(server.url + "/metrics", timeout=5).text,
            r'model_server_requests_total\{route="/invocations",status="200"\} (\S+)',
        )
        assert served_before == 2
        sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(clients)]
        for sock in sockets:
            sock.sendall(request * 2)
        time.sleep(0.3)
        for sock in sockets:
            sock.close()
        time.sleep(3.0)  # long enough for several of the five first requests' calls, had they been kept
        metrics = httpx.get(server.url + "/metrics", timeout=5).text
    finally:
        server.terminate()
    calls = _metric(metrics, r"model_server_batch_rows_count (\S+)") - 2
    left = _metric(metrics, r'model_server_requests_total\{route="/invocations",status="499"\} (\S+)')
    assert calls <= 2, f"{calls} model calls for {clients} clients who all left after 0.3 s: {metrics}"
    assert left >= clients - 2, metrics
    log = server.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 1500 : log.find("Traceback") + 1500]
