"""A full queue answers 503 at once while health stays fast, through a real ``model-serve`` process.

Alone in its file: ``./dev.sh test`` runs files with timing tests by themselves, before the rest.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.inference.server_fixtures import start_server
from tests.inference.slow_model import post_many, slow_package

pytestmark = pytest.mark.torch
__all__ = ["slow_package"]  # the fixture, imported for pytest


# Health answered within 0.5 s while the model is busy: a bound on wall clock, which a clean-clone run
# with mypy beside the suite on a VM with CPU steal failed; so it runs alone, and again on failure.
@pytest.mark.timing
@pytest.mark.flaky(reruns=2)
def test_full_queue_answers_503_with_retry_after_and_health_stays_fast(slow_package: Path, tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        args=["--model-dir", str(slow_package)],
        env={"MODEL_SERVER_MAX_QUEUE": "1", "MODEL_SERVER_MAX_BATCH_SIZE": "1", "MODEL_SERVER_COMPUTE_THREADS": "1"},
    )
    try:
        pings: list[float] = []

        def ping_while_loaded() -> None:
            for _ in range(5):
                start = time.perf_counter()
                assert httpx.get(server.url + "/ping", timeout=2).status_code == 200
                pings.append(time.perf_counter() - start)
                time.sleep(0.05)

        pinger = threading.Thread(target=ping_while_loaded)
        pinger.start()
        responses = post_many(server, 6)
        pinger.join()
        statuses = sorted(response.status_code for response in responses)
        assert 503 in statuses and 200 in statuses, statuses
        rejected = next(response for response in responses if response.status_code == 503)
        assert rejected.headers["retry-after"] == "1"
        assert "queue is full" in rejected.json()["error"]
        assert max(pings) < 0.5, f"health checks must not wait for the model: {pings}"
    finally:
        assert server.terminate() == 0
