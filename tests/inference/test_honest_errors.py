"""What counts as a 5xx: only failures of ours, since the 5xx metric drives alarms and auto-rollback.

Real ``model-serve`` processes: a client's oversized number is a 400, a client that leaves mid-body is
no error at all (status 499 in the metrics, no traceback), and a request cut by the drain deadline
gets a JSON 503 with ``Retry-After`` and its request id instead of uvicorn's bare text 500.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.inference.server_fixtures import ServerProcess, start_server

pytestmark = pytest.mark.torch


def _requests_by_status(server: ServerProcess) -> str:
    metrics = httpx.get(server.url + "/metrics", timeout=5).text
    return "\n".join(line for line in metrics.splitlines() if line.startswith("model_server_requests_total"))


def test_an_integer_of_5000_digits_is_a_400(sagemaker_server: ServerProcess) -> None:
    body = "[[" + "1" * 5000 + ",0" * 63 + "]]"
    response = httpx.post(
        sagemaker_server.url + "/invocations",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert "too long" in response.json()["error"]
    assert "Traceback" not in sagemaker_server.log()


def test_a_client_leaving_mid_body_is_not_a_server_error(sagemaker_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", sagemaker_server.port)) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n[[1.0, 2.0"
        )
        time.sleep(0.2)
    time.sleep(0.5)
    statuses = _requests_by_status(sagemaker_server)
    assert 'status="5' not in statuses, statuses
    assert 'status="499"' in statuses, statuses
    log = sagemaker_server.log()
    assert "Traceback" not in log and '"level": "error"' not in log, log[-2000:]


def test_a_request_cut_by_the_drain_deadline_is_a_json_503_with_retry_after(
    slow_user_code_package: Path, tmp_path: Path
) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_user_code_package)],
        env={"MODEL_SERVER_DRAIN_TIMEOUT_S": "1"},
    )
    result: list[httpx.Response] = []

    def call() -> None:
        result.append(
            httpx.post(
                server.url + "/invocations",
                json={"instances": [[0.5] * 5]},
                headers={"X-Request-ID": "cut-1"},
                timeout=30,
            )
        )

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)  # the 4 s predict_fn is running
    server.terminate()
    thread.join()
    response = result[0]
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"] == "cut-1"
    assert response.json()["request_id"] == "cut-1"
    log = server.log()
    assert "Traceback" not in log
    # The drain working as configured is not an error: uvicorn's "Cancel 1 running task(s)" is a warning.
    errors = [line for line in log.splitlines() if '"level": "error"' in line]
    assert errors == [], errors
    assert "timeout graceful shutdown exceeded" in log


def test_an_answer_cut_by_the_drain_deadline_while_its_client_reads_nothing_is_a_warning(
    torch_package: Path, tmp_path: Path
) -> None:
    """Answers waiting for a client that reads nothing (behind the send timeout, 60 s, longer than
    every drain) are cut at the drain deadline: uvicorn logged each as an ERROR with a traceback."""
    server = start_server(tmp_path, args=["--model-dir", str(torch_package)], env={"MODEL_SERVER_DRAIN_TIMEOUT_S": "1"})
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n" * 1_500)  # megabytes of answers, never read
        time.sleep(1)
        assert server.terminate(timeout=30) == 0, server.log()[-2000:]
    log = server.log()
    errors = [line for line in log.splitlines() if '"level": "error"' in line]
    assert errors == [], errors[0][:3000]
    assert "cut by the drain deadline after its answer had started" in log


def test_shutdown_does_not_wait_past_the_drain_for_hooks_of_requests_already_cut(
    slow_user_code_package: Path, tmp_path: Path
) -> None:
    """The platform's kill timer follows the drain deadline closely: a 30 s hook must not hold the exit."""
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_user_code_package)],
        env={"MODEL_SERVER_DRAIN_TIMEOUT_S": "1", "SLOW_PREDICT_SECONDS": "30"},
    )
    result: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: result.append(
            httpx.post(server.url + "/invocations", json={"instances": [[0.5] * 5]}, timeout=60)
        )
    )
    thread.start()
    time.sleep(0.5)  # the 30 s predict_fn is running
    started = time.monotonic()
    assert server.terminate(timeout=60) == 0, server.log()[-2000:]
    stopped_after = time.monotonic() - started
    thread.join()
    assert result[0].status_code == 503
    # Drain (1 s) plus the stop grace (1 s) and the process's own exit; the hook alone would take 30 s.
    assert stopped_after < 15, f"the exit waited {stopped_after:.1f} s for a hook whose request was already cut"
    assert "hooks still running at shutdown were not waited for" in server.log()
