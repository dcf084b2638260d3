"""Cloud stores on loopback: moto's S3/KMS server and a GCS emulator, started once per session.

The servers are real HTTP servers on 127.0.0.1 with free ports; tests talk to
them with the real boto3 and google-cloud-storage clients. Endpoint and fake
credential environment variables are set per test (``aws_env``, ``gcs_env``)
and restored afterwards, so nothing can reach a real cloud and no test leaks
its environment into another.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Everything that could point an SDK at real credentials or a real endpoint.
_CLOUD_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_KMS",
    "STORAGE_EMULATOR_HOST",
    "API_ENDPOINT_OVERRIDE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the GCS emulator received (to assert on what the client actually sent)."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""


@dataclass
class GcsEmulator:
    """A running GCS emulator and the requests it has seen."""

    endpoint: str
    requests: list[RecordedRequest] = field(default_factory=list)


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """Logging as it was before the test: a CLI under test points the root logger at the stderr
    pytest captured for that test, and a later test's background thread (moto's HTTP server logs
    every request) would write to that closed stream and print "Logging error" into whatever
    the later test captures."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and name in levels:
            logger.setLevel(levels[name])


@pytest.fixture
def isolated_cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No cloud credentials or endpoints at all: no env vars, no config files, no metadata servers."""
    for name in _CLOUD_ENV:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("no-cloud-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(empty / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto in server mode (S3, KMS, …) on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, isolated_cloud_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake credentials and ``AWS_ENDPOINT_URL`` pointing at moto, for this test only."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


@pytest.fixture
def s3_client(aws_env: str) -> Any:
    """A plain boto3 S3 client on moto, for arranging and inspecting test state."""
    import boto3

    return boto3.client("s3")


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A fresh, empty bucket (moto's state lives for the whole session)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def kms_key_arn(aws_env: str) -> str:
    """A customer-managed KMS key created in moto."""
    import boto3

    return str(boto3.client("kms").create_key(Description="model-package tests")["KeyMetadata"]["Arn"])


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """gcp-storage-emulator's request handling and in-memory storage on a free loopback port.

    The emulator's own ``create_server`` cannot bind port 0 and report it, so
    the same handler is served here, with a hook recording every request.
    """
    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    emulator = GcsEmulator(endpoint="")

    class RecordingHandler(RequestHandler):  # type: ignore[misc]
        def parse_request(self) -> bool:
            ok = bool(super().parse_request())
            if ok:
                emulator.requests.append(
                    RecordedRequest(
                        self.command, self.path, {name.lower(): value for name, value in self.headers.items()}
                    )
                )
            return ok

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RecordingHandler, Storage(use_memory_fs=True)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="gcs-emulator", daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    emulator.endpoint = f"http://{host!s}:{port}"
    try:
        yield emulator
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def gcs_env(gcs_emulator: GcsEmulator, isolated_cloud_env: None, monkeypatch: pytest.MonkeyPatch) -> GcsEmulator:
    """``STORAGE_EMULATOR_HOST`` pointing at the emulator for this test; its request log starts empty."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    gcs_emulator.requests.clear()
    return gcs_emulator


@pytest.fixture
def gcs_client(gcs_env: GcsEmulator) -> Iterator[Any]:
    """A plain google-cloud-storage client on the emulator, for arranging and inspecting test state."""
    from google.cloud import storage

    client = storage.Client(project="test-project")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def gcs_bucket(gcs_client: Any) -> str:
    """A fresh, empty bucket in the emulator."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    gcs_client.create_bucket(name)
    return name


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def scratch_file(tmp_path: Path) -> Any:
    """Write ``size`` random bytes to a new file and return its path."""
    import os

    def make(size: int, name: str = "blob.bin") -> Path:
        path = tmp_path / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        return path

    return make
