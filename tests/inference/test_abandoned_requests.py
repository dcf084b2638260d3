"""Work for clients who left is dropped, not computed, and counted apart (status 499) from successes.

A real ``model-serve`` process with a model that takes several tenths of a second per call and runs one
request per call: ten clients that give up after 0.3 s must not cost ten model calls.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.inference.server_fixtures import ServerProcess, start_server

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def slow_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Several tenths of a second per call on one core, whatever the batch size."""
    from tests.inference.slow_model import export_slow_model

    return export_slow_model(tmp_path_factory.mktemp("slower") / "slower", size=1216, products=14)


@pytest.fixture(scope="module")
def server(slow_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One request per model call, one compute thread: shared by the tests, which read counters as differences."""
    server = start_server(
        tmp_path_factory.mktemp("abandoned"),
        args=["--model-dir", str(slow_package)],
        env={"MODEL_SERVER_MAX_BATCH_SIZE": "1", "MODEL_SERVER_COMPUTE_THREADS": "1"},
    )
    yield server
    assert server.terminate() == 0
    log = server.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 1500 : log.find("Traceback") + 1500]


def _metric(text: str, pattern: str) -> float:
    return sum(float(match) for match in re.findall(pattern, text))


CALLS = r"model_server_batch_rows_count (\S+)"
LEFT = r'model_server_requests_total\{route="/invocations",status="499"\} (\S+)'
SERVED = r'model_server_requests_total\{route="/invocations",status="200"\} (\S+)'


def _counts(server: ServerProcess) -> dict[str, float]:
    """Model calls, requests whose client left, and requests answered, so far."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return {name: _metric(text, pattern) for name, pattern in (("calls", CALLS), ("left", LEFT), ("served", SERVED))}


def _since(server: ServerProcess, before: dict[str, float]) -> dict[str, float]:
    return {name: value - before[name] for name, value in _counts(server).items()}


def test_queued_work_of_clients_that_left_is_dropped_and_counted_as_499(server: ServerProcess) -> None:
    clients = 10
    body = b"[" + b",".join([b"[1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0]"]) + b"]"
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    before = _counts(server)
    # Connect first, then send all ten at once, then leave 0.3 s later without reading the answers.
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(clients)]
    for sock in sockets:
        sock.sendall(request)
    time.sleep(0.3)
    for sock in sockets:
        sock.close()
    time.sleep(4.0)  # long enough for most of the ten calls, had they been kept
    counts = _since(server, before)
    assert counts["calls"] <= 3, f"{counts['calls']} model calls for {clients} clients who all left after 0.3 s"
    assert counts["left"] >= clients - 3 and counts["served"] <= 2, counts


def test_queued_work_of_pipelined_requests_whose_client_left_is_dropped(server: ServerProcess) -> None:
    """Each client sends two requests in one write (HTTP/1.1 pipelining), then leaves: the first of each,
    queued behind the others' model calls, must be dropped too. uvicorn's protocol keeps the newest
    request (the second, never started) as its current one, so telling only that one missed them."""
    clients = 5
    body = b"[[1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0]]"
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    # A client that stays gets both answers, in order, and nothing of it counts as left.
    before = _counts(server)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request * 2)
        sock.settimeout(30)
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed after {received!r}"
            received += chunk
    stayed = _since(server, before)
    assert stayed["served"] == 2 and stayed["left"] == 0, stayed

    before = _counts(server)
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(clients)]
    for sock in sockets:
        sock.sendall(request * 2)
    time.sleep(0.3)
    for sock in sockets:
        sock.close()
    time.sleep(3.0)  # long enough for several of the five first requests' calls, had they been kept
    counts = _since(server, before)
    assert counts["calls"] <= 2, f"{counts['calls']} model calls for {clients} clients who all left after 0.3 s"
    assert counts["left"] >= clients - 2, counts
