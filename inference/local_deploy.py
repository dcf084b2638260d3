"""Deploy a published package on this machine exactly as SageMaker runs it.

The package is pulled from its store (digest-verified) and unpacked into a
model directory, then the real serving entrypoint starts as a separate process
with the platform's environment (``serve`` argument, ``SAGEMAKER_BIND_TO_PORT``)
and we wait for ``/ping``. The deployment's state lives in a small JSON file in
its working directory, so ``status`` and ``down`` work from another process.
Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from model_package.errors import ModelPackageError
from model_package.publish import pull

STATE_FILE = "deployment.json"


class DeploymentError(ModelPackageError):
    """The local endpoint failed to start or to stop."""

    exit_code = 10


@dataclass(frozen=True)
class LocalDeployment:
    """A running local endpoint."""

    workdir: Path
    package_uri: str
    model_dir: Path
    port: int
    pid: int
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        return f"http://127.0.0.1:{self.port}"


def deploy(
    package_uri: str, workdir: Path, *, port: int | None = None, ready_timeout: float = 120.0
) -> LocalDeployment:
    """Pull ``package_uri`` into ``workdir`` and start the serving entrypoint on it; wait until ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    if status(workdir) is not None:
        down(workdir)
    model_dir = workdir / "opt" / "ml" / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    pull(package_uri, model_dir)
    port = port or _free_port()
    log_path = workdir / "server.log"
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env.update(
        {
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            # SageMaker binds every interface inside its container; on a laptop, loopback only.
            "MODEL_SERVER_HOST": "127.0.0.1",
        }
    )
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference", "serve", "--model-dir", str(model_dir)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the deploying process when kept serving
        )
    deployment = LocalDeployment(workdir, package_uri, model_dir, port, process.pid, log_path)
    (workdir / STATE_FILE).write_text(json.dumps({k: str(v) for k, v in asdict(deployment).items()}, indent=2))
    _wait_ready(deployment, process, ready_timeout)
    return deployment


def status(workdir: Path) -> LocalDeployment | None:
    """The deployment recorded in ``workdir`` if its process is still alive."""
    state_path = workdir / STATE_FILE
    if not state_path.is_file():
        return None
    raw = json.loads(state_path.read_text())
    deployment = LocalDeployment(
        workdir=Path(raw["workdir"]),
        package_uri=raw["package_uri"],
        model_dir=Path(raw["model_dir"]),
        port=int(raw["port"]),
        pid=int(raw["pid"]),
        log_path=Path(raw["log_path"]),
    )
    return deployment if _alive(deployment.pid) else None


def is_ready(deployment: LocalDeployment) -> bool:
    """Whether the endpoint answers ``/ping`` with 200."""
    try:
        return httpx.get(deployment.url + "/ping", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def down(workdir: Path, *, timeout: float = 30.0) -> int | None:
    """SIGTERM the endpoint (it drains in-flight requests) and return its exit code; ``None`` if not running."""
    deployment = status(workdir)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    if deployment is None:
        return None
    os.kill(deployment.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = _reap(deployment.pid)
        if code is not None:
            return code
        time.sleep(0.05)
    os.kill(deployment.pid, signal.SIGKILL)
    raise DeploymentError(f"the endpoint (pid {deployment.pid}) did not stop within {timeout:g} s and was killed")


def _wait_ready(deployment: LocalDeployment, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            (deployment.workdir / STATE_FILE).unlink(missing_ok=True)
            lines = deployment.log_path.read_text().strip().splitlines()
            raise DeploymentError(
                f"the endpoint exited with code {code} before becoming ready: {lines[-1] if lines else 'no output'}"
            )
        if is_ready(deployment):
            return
        time.sleep(0.1)
    process.terminate()
    raise DeploymentError(f"the endpoint was not ready within {timeout:g} s; see {deployment.log_path}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _reap(pid) is None


def _reap(pid: int) -> int | None:
    """The exit code if ``pid`` (our child) has exited, else ``None``; for non-children, liveness only."""
    try:
        waited, status_code = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Started by another process (e.g. `demo --keep-serving`, then `demo down`): poll for liveness.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        return None
    if waited == 0:
        return None
    return os.waitstatus_to_exitcode(status_code)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
