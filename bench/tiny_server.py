"""Our server on the benchmark's tiny MLP, started for a load script and stopped after it (127.0.0.1 only)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.serve_throughput import base_env, build_tiny, free_port

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int


@contextmanager
def tiny_server(env: Mapping[str, str] | None = None) -> Iterator[RunningServer]:
    """``model-serve`` on a fresh tiny package, ready (``/ping`` 200) when entered, SIGTERMed on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "tiny"
        build_tiny(package)
        port = free_port()
        server_env = base_env()
        server_env.update({"SAGEMAKER_BIND_TO_PORT": str(port), "MODEL_SERVER_HOST": "127.0.0.1"})
        server_env.update({"PYTHONPATH": str(REPO), **(env or {})})
        with (Path(tmp) / "server.log").open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "inference", "serve", "--model-dir", str(package)],
                env=server_env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url)
            yield RunningServer(url, process.pid)
        finally:
            process.terminate()
            process.wait(30)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ping", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not become ready within 60 s")
