"""Real server processes on loopback ports, started the way each platform starts the container."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

SERVE = str(Path(sys.executable).with_name("model-serve"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``model-serve`` process and how to reach it."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as the platforms do, and the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_server(
    tmp_path: Path,
    *,
    args: list[str],
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    wait_ready: bool = True,
    health_path: str = "/ping",
    timeout: float = 60.0,
) -> ServerProcess:
    """Start ``model-serve`` with exactly ``env`` (plus PATH/HOME) and wait for its health route."""
    port = port or free_port()
    log_path = tmp_path / f"server-{port}.log"
    # PYTHONPATH: the server runs the code under test (a checkout on PYTHONPATH), not an installed copy.
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH") if key in os.environ}
    full_env = {**base, "MODEL_SERVER_HOST": "127.0.0.1", **(env or {})}
    if not any(name in full_env for name in ("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT", "PORT")):
        full_env["PORT"] = str(port)
    with log_path.open("w") as log:
        process = subprocess.Popen([SERVE, *args], env=full_env, stdout=log, stderr=subprocess.STDOUT, text=True)
    server = ServerProcess(process, port, log_path)
    if wait_ready:
        wait_for_health(server, health_path, timeout)
    return server


def counters(exposition: str) -> dict[str, float]:
    """Prometheus text exposition as ``{'name{labels}': value}`` (shared servers: compare differences)."""
    samples = (line.rsplit(" ", 1) for line in exposition.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def wait_for_health(server: ServerProcess, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + path, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.process.kill()
    raise AssertionError(f"server not ready after {timeout} s:\n{server.log()}")


@pytest.fixture(scope="session")
def torch_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PyTorch package (64 inputs -> 10 classes) exported as torch_export."""
    from model_package.export import export_model
    from tests.model_package import torch_models

    out = tmp_path_factory.mktemp("packages") / "mlp"
    export_model(torch_models.make_mlp(), torch_models.mlp_inputs(4), out, name="mlp", version="1.0.0")
    return out


@pytest.fixture(scope="session")
def sagemaker_server(torch_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The torch package served the way SageMaker runs a container: `serve`, SAGEMAKER_BIND_TO_PORT.

    One process for the whole session (a start-up is seconds of importing torch): tests that only
    send requests share it, so none may change or stop it, and counters are read as differences.
    A test that needs other settings, a fresh process or its own log starts its own server.
    """
    port = free_port()
    server = start_server(
        tmp_path_factory.mktemp("sagemaker-server"),
        args=["serve", "--model-dir", str(torch_package)],
        env={"SAGEMAKER_BIND_TO_PORT": str(port)},
        port=port,
    )
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(10)


SLOW_PREDICT = """
import os
import time


def predict_fn(data, model):
    time.sleep(float(os.environ.get("SLOW_PREDICT_SECONDS", "4")))
    return model.predict(data)
"""


@pytest.fixture(scope="session")
def slow_user_code_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PyTorch package (5 inputs) whose code/inference.py predict_fn takes 4 s (``SLOW_PREDICT_SECONDS``)."""
    from model_package.export import export_model
    from tests.model_package import torch_models

    code = tmp_path_factory.mktemp("code")
    (code / "inference.py").write_text(SLOW_PREDICT)
    out = tmp_path_factory.mktemp("slow-code") / "slow"
    export_model(
        torch_models.make_dict_head(), torch_models.dict_head_inputs(2), out, name="slow", version="1", code_dir=code
    )
    return out


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The tiny text classifier with its pipeline (tests/pipeline_models.py), served by `serve`; one per module."""
    from tests.pipeline_models import package_text_classifier

    package = package_text_classifier(tmp_path_factory.mktemp("text") / "pkg")
    server = start_server(tmp_path_factory.mktemp("text-server"), args=["serve", "--model-dir", str(package)])
    yield server
    assert server.terminate() == 0
