"""User code (``code/inference.py``) is admitted like the built-in path: queue bound, deadline, readiness.

A real ``model-serve`` process serving a real PyTorch package whose ``predict_fn`` takes 4 s, with a
1 s deadline and room for 4 waiting requests, under concurrent load.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.inference.server_fixtures import start_server

pytestmark = pytest.mark.torch


def test_slow_user_code_gets_503_past_the_queue_bound_and_504_at_the_deadline(
    slow_user_code_package: Path, tmp_path: Path
) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_user_code_package)],
        env={
            "MODEL_SERVER_REQUEST_TIMEOUT_S": "1",
            "MODEL_SERVER_MAX_QUEUE": "4",
            "MODEL_SERVER_COMPUTE_THREADS": "1",
        },
    )
    clients = 24
    responses: list[tuple[httpx.Response, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def call() -> None:
        start.wait()
        began = time.monotonic()
        response = httpx.post(server.url + "/invocations", json={"instances": [[0.5] * 5]}, timeout=30)
        with lock:
            responses.append((response, time.monotonic() - began))

    try:
        threads = [threading.Thread(target=call) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ping = httpx.get(server.url + "/ping", timeout=5)
    finally:
        server.terminate()
    statuses = Counter(response.status_code for response, _ in responses)
    assert set(statuses) <= {503, 504}, statuses
    # One runs, four wait: everyone else is turned away at once.
    assert statuses[503] >= clients - 5, statuses
    assert statuses[504] >= 1, statuses
    for response, seconds in responses:
        assert response.headers["content-type"] == "application/json"
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"
            assert "queue is full" in response.json()["error"]
        else:
            assert "deadline" in response.json()["error"]
        # Nobody waits for the 4 s hook: answers come at the 1 s deadline at the latest.
        assert seconds < 3.0, (response.status_code, seconds)
    assert ping.status_code == 200, "a slow hook must not make the server unhealthy"
    assert "Traceback" not in server.log()


def test_health_checks_fail_while_every_thread_is_held_by_a_call_ten_deadlines_old(
    slow_user_code_package: Path, tmp_path: Path
) -> None:
    """A hook that never returns held its thread, and every request was a 504 while /ping said ready:
    the platform never replaced the instance. One thread, a 0.2 s deadline, a 4 s hook: /ping fails
    once the call is 2 s old and recovers when it returns."""
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_user_code_package)],
        env={"MODEL_SERVER_REQUEST_TIMEOUT_S": "0.2", "MODEL_SERVER_COMPUTE_THREADS": "1"},
    )
    try:
        started = time.monotonic()
        late = httpx.post(server.url + "/invocations", json={"instances": [[0.5] * 5]}, timeout=30)
        assert late.status_code == 504, late.text
        assert httpx.get(server.url + "/ping", timeout=5).status_code == 200  # slow, not yet stuck
        time.sleep(max(0.0, started + 3.0 - time.monotonic()))
        wedged = httpx.get(server.url + "/ping", timeout=5)
        time.sleep(max(0.0, started + 5.5 - time.monotonic()))
        recovered = httpx.get(server.url + "/ping", timeout=5)
    finally:
        server.terminate()
    assert wedged.status_code == 503, wedged.text
    assert recovered.status_code == 200, recovered.text
    assert "health checks fail until one returns" in server.log()
