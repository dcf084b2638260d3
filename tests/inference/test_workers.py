"""Multi-process mode (MODEL_SERVER_WORKERS): real server processes, real workers, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference.config import available_cpus, load_config
from model_package.errors import UsageError
from tests.inference.server_fixtures import ServerProcess, free_port, start_server
from tests.inference.test_sagemaker_server import reference, rows

WORKERS = {"MODEL_SERVER_WORKERS": "2"}


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc: no extra dependency)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def wait_for_children(
    server: ServerProcess, count: int, *, exclude: frozenset[int] = frozenset(), timeout: float = 60.0
) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = children(server.process.pid)
        if len(pids) == count and not pids & exclude:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers, have {children(server.process.pid)}:\n{server.log()}")


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (one per bound worker: SO_REUSEPORT), from /proc/net/tcp."""
    wanted = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == wanted and line.split()[3] == "0A")


def wait_for_listeners(server: ServerProcess, count: int, timeout: float = 60.0) -> None:
    """Until ``count`` workers have warmed up and bound the port."""
    deadline = time.monotonic() + timeout
    while listening_sockets(server.port) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} workers never all listened on {server.port}:\n{server.log()}")
        time.sleep(0.05)


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))
    return float(line.split()[-1])


@pytest.fixture
def two_workers(torch_package: Path, tmp_path: Path) -> ServerProcess:
    server = start_server(tmp_path, args=["serve", "--model-dir", str(torch_package)], env=WORKERS)
    wait_for_children(server, 2)
    wait_for_listeners(server, 2)
    return server


def test_workers_share_the_port_and_report_metrics_for_all_of_them(
    torch_package: Path, two_workers: ServerProcess
) -> None:
    server = two_workers
    x = rows(40, seed=5)
    want = reference(torch_package, x)
    prefixes: set[str] = set()
    try:
        for i in range(40):
            # A new connection per request: the kernel spreads connections over the workers.
            with httpx.Client(base_url=server.url, timeout=30) as client:
                response = client.post("/invocations", json=x[i : i + 1].tolist())
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["predictions"][0], want[i], rtol=1e-5, atol=1e-6)
            prefixes.add(response.headers["x-request-id"][:16])  # request ids carry a per-process prefix
        assert len(prefixes) == 2, "both workers should have answered some of 40 connections"
        for _ in range(5):  # whichever worker answers /metrics reports every worker's requests
            text = httpx.get(server.url + "/metrics", timeout=5).text
            assert metric(text, 'model_server_requests_total{route="/invocations",status="200"}') == 40
            assert metric(text, "model_server_batch_rows_sum") == 40
    finally:
        assert server.terminate() == 0
    assert children(server.process.pid) == set()


def test_a_worker_that_dies_is_replaced_without_reloading(two_workers: ServerProcess) -> None:
    server = two_workers
    try:
        before = wait_for_children(server, 2)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        after = wait_for_children(server, 2, exclude=frozenset({victim}))
        assert len(after & before) == 1
        wait_for_listeners(server, 2)  # the replacement warms up, then takes its share of connections
        for _ in range(10):
            with httpx.Client(base_url=server.url, timeout=30) as client:
                assert client.post("/invocations", json=rows(1).tolist()).status_code == 200
        log = server.log()
        assert "starting a new one" in log
        assert log.count('"model loaded"') == 1, "a replacement is forked from the loaded parent, not reloaded"
    finally:
        assert server.terminate() == 0


def test_workers_that_cannot_start_stop_the_server_with_an_error(torch_package: Path, tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as squatter:  # another program holds the port (without SO_REUSEPORT)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        server = start_server(
            tmp_path, args=["--model-dir", str(torch_package)], env=WORKERS, port=port, wait_ready=False
        )
        assert server.process.wait(120) == 3
    entries = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert any("stopping the server" in entry["message"] and entry["level"] == "error" for entry in entries)
    assert any(
        "cannot listen on 127.0.0.1" in entry["message"] and "Address already in use" in entry["message"]
        for entry in entries
    )
    assert not any("exception" in entry for entry in entries), "an expected failure logs one line, no traceback"
    assert children(server.process.pid) == set()


def test_a_broken_package_fails_before_any_worker_starts(torch_package: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(torch_package, broken)
    (broken / "model.pt2").write_bytes(b"not the weights")
    server = start_server(tmp_path, args=["--model-dir", str(broken)], env=WORKERS, wait_ready=False)
    assert server.process.wait(60) == 3
    assert "workers started" not in server.log()


def test_worker_count_and_threads_come_from_the_cpu_quota() -> None:
    cpus = available_cpus()
    auto = load_config({"MODEL_SERVER_WORKERS": "auto"})
    assert (auto.workers, auto.compute_threads) == (cpus, 1)
    default = load_config({})
    assert (default.workers, default.compute_threads) == (1, cpus)
    assert load_config({"MODEL_SERVER_WORKERS": "2", "MODEL_SERVER_COMPUTE_THREADS": "3"}).compute_threads == 3
    with pytest.raises(UsageError, match="MODEL_SERVER_WORKERS=0 is out of range"):
        load_config({"MODEL_SERVER_WORKERS": "0"})
    with pytest.raises(UsageError, match="MODEL_SERVER_WORKERS='many' must be auto or a whole number"):
        load_config({"MODEL_SERVER_WORKERS": "many"})
