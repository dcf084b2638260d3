"""Server configuration, read once from the environment and flags at start-up.

Each platform sets its own variables (SageMaker ``SAGEMAKER_*``, Vertex AI
``AIP_*``, Cloud Run ``PORT``/``K_SERVICE``); our own knobs are
``MODEL_SERVER_*``, whose types and bounds are :class:`inference.settings.ServerSettings` (the
contract ``infra`` builds container environments from). Nothing else in the server reads ``os.environ``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from inference.settings import ServerSettings
from model_package.errors import UsageError

_T = TypeVar("_T")
Platform = Literal["sagemaker", "vertex", "cloudrun", "local"]

DEFAULT_PORT = 8080
DEFAULT_MODEL_DIR = Path("/opt/ml/model")
MIB = 1024 * 1024

#: Request-body limits of the platforms' front ends: beyond these the platform rejects the request
#: anyway, so we answer with a 413 that names the limit instead of a confusing proxy error.
BODY_LIMITS: dict[Platform, int] = {
    "sagemaker": 6 * MIB,  # real-time endpoints (serverless endpoints: 4 MB, set MODEL_SERVER_MAX_REQUEST_BYTES)
    "vertex": 3 * MIB // 2,  # online prediction: 1.5 MB
    "cloudrun": 32 * MIB,  # HTTP/1 request limit
    "local": 6 * MIB,
}
#: Response-body limits of the platforms' front ends; a larger body would be replaced by the platform's
#: own error, so the server refuses it first with one that says what to do (``inference.response_limits``).
RESPONSE_LIMITS: dict[Platform, int] = {
    # Real-time InvokeEndpoint payloads are at most 6 MB ("Amazon SageMaker endpoints and quotas":
    # InvokeEndpoint payload size 6 MB); a larger container response fails the call ("Received client
    # error (413) from primary and could not load the entire response body", AWS re:Post). Serverless
    # endpoints: "The maximum request and response payload size for serverless invocations is 4 MB"
    # (Invoke a serverless endpoint); asynchronous endpoints write the answer to S3 and take payloads up to
    # 1 GB. infra/aws/endpoint.py sets MODEL_SERVER_MAX_RESPONSE_BYTES for those two modes.
    "sagemaker": 6 * MIB,
    # Vertex AI documents a 1.5 MB request limit for online prediction but no response limit (searched
    # the custom container requirements and the quotas pages): our own bound, the same as Cloud Run's
    # HTTP/1 cap, keeps one answer's memory in check; set MODEL_SERVER_MAX_RESPONSE_BYTES to change it.
    "vertex": 32 * MIB,
    # Cloud Run quotas: responses over HTTP/1 are at most 32 MiB unless streamed (Transfer-Encoding:
    # chunked) or served over end-to-end HTTP/2; this server sends one body with a Content-Length.
    "cloudrun": 32 * MIB,
    "local": 6 * MIB,
}
#: Per-request deadlines just under each platform's invocation timeout (SageMaker 60 s, Vertex 60 s,
#: Cloud Run's default 300 s), so we drop stale work before the platform gives up on it.
REQUEST_TIMEOUTS: dict[Platform, float] = {"sagemaker": 55.0, "vertex": 55.0, "cloudrun": 290.0, "local": 55.0}
#: Drain deadlines just under the platforms' SIGTERM-to-SIGKILL grace (SageMaker 30 s, Cloud Run 10 s).
DRAIN_TIMEOUTS: dict[Platform, float] = {"sagemaker": 25.0, "vertex": 25.0, "cloudrun": 8.0, "local": 10.0}


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to know about its environment."""

    platform: Platform
    host: str
    port: int
    model_dir: Path | None
    """Explicit model directory (flag), or ``None`` to use /opt/ml/model or AIP_STORAGE_URI."""
    storage_uri: str | None
    health_route: str
    predict_route: str
    max_request_bytes: int
    max_response_bytes: int
    """Response bodies above this are refused (``inference.response_limits``)."""
    request_timeout: float
    drain_timeout: float
    header_timeout: float
    """Seconds from a connection opening (or its next request starting) to the end of the headers."""
    body_timeout: float
    """Seconds from the end of the headers to the end of the body."""
    send_timeout: float
    """Seconds a client may take none of its answers (``inference.connection_limits``)."""
    max_batch_size: int | Literal["auto"] | None
    """``None``: take the package's ``serving.max_batch_size`` metadata, else the default; ``auto``: measure
    sizes up to that cap at start-up (``batch_tuning``)."""
    max_batch_delay_ms: float | None
    max_queue: int
    compute_threads: int
    """Framework intra-op threads per worker (the container's CPU quota shared by the workers)."""
    workers: int
    """Worker processes sharing one loaded model (``inference.workers``); 1 serves in this process."""
    log_level: str
    install_requirements: bool
    allow_non_finite: bool
    default_accept: str
    """Response type when a request sends no (or a wildcard) Accept header."""
    expected_digest: str | None
    """MODEL_PACKAGE_DIGEST: the digest the deployment pins, checked when the package is downloaded."""


def load_config(
    env: Mapping[str, str] | None = None,
    *,
    model_dir: Path | None = None,
    port: int | None = None,
    log_level: str | None = None,
) -> ServerConfig:
    """Build the configuration from ``env`` (default ``os.environ``) and command-line overrides."""
    env = os.environ if env is None else env
    settings = ServerSettings.from_env(env)
    platform = detect_platform(env)
    cpus = available_cpus()
    workers = cpus if settings.workers == "auto" else settings.workers or 1

    def _or(value: _T | None, default: _T) -> _T:
        return default if value is None else value

    return ServerConfig(
        platform=platform,
        # Containers must listen on all interfaces: the platform's proxy connects from outside.
        host=env.get("MODEL_SERVER_HOST", "0.0.0.0"),
        port=port if port is not None else resolve_port(env),
        model_dir=model_dir,
        storage_uri=env.get("AIP_STORAGE_URI") or None,
        health_route=_route(env, "AIP_HEALTH_ROUTE", "/health"),
        predict_route=_route(env, "AIP_PREDICT_ROUTE", "/predict"),
        max_request_bytes=_or(settings.max_request_bytes, BODY_LIMITS[platform]),
        max_response_bytes=_or(settings.max_response_bytes, RESPONSE_LIMITS[platform]),
        request_timeout=_or(settings.request_timeout_s, REQUEST_TIMEOUTS[platform]),
        drain_timeout=_or(settings.drain_timeout_s, DRAIN_TIMEOUTS[platform]),
        header_timeout=_or(settings.header_timeout_s, 30.0),
        body_timeout=_or(settings.body_timeout_s, 60.0),
        # nginx's send_timeout default (https://nginx.org/en/docs/http/ngx_http_core_module.html#send_timeout).
        send_timeout=_or(settings.send_timeout_s, 60.0),
        max_batch_size=settings.max_batch_size,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        max_queue=_or(settings.max_queue, 512),
        compute_threads=_or(settings.compute_threads, max(1, cpus // workers)),
        workers=workers,
        log_level=_log_level(log_level)
        if log_level
        else settings.log_level or _log_level(env.get("SAGEMAKER_CONTAINER_LOG_LEVEL")),
        install_requirements=_or(settings.install_requirements, False),
        allow_non_finite=_or(settings.allow_non_finite, False),
        # The SageMaker inference toolkit's variable, so existing deployments keep their behaviour.
        default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json",
        expected_digest=env.get("MODEL_PACKAGE_DIGEST") or None,
    )


def detect_platform(env: Mapping[str, str]) -> Platform:
    """Which platform runs us, from the variables each one sets."""
    if any(name.startswith("SAGEMAKER_") for name in env):
        return "sagemaker"
    if any(name.startswith("AIP_") for name in env):
        return "vertex"
    if "K_SERVICE" in env:
        return "cloudrun"
    return "local"


def resolve_port(env: Mapping[str, str]) -> int:
    """``SAGEMAKER_BIND_TO_PORT``, else ``AIP_HTTP_PORT``, else ``PORT``, else 8080."""
    for name in ("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT", "PORT"):
        if env.get(name):
            return _int(env, name, DEFAULT_PORT, minimum=1, maximum=65535)
    return DEFAULT_PORT


def available_cpus() -> int:
    """CPUs this container may use: the cgroup CPU quota if one is set, else the CPU affinity.

    ``os.cpu_count()`` reports the host's cores; a container limited to 2 CPUs
    on a 64-core host would otherwise start 64 threads per framework pool.
    """
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    return max(1, min(affinity, quota)) if quota is not None else max(1, affinity)


def _cgroup_cpu_quota() -> int | None:
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else math.ceil(int(quota) / int(period))
        v1_quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        v1_period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if v1_quota.is_file() and v1_period.is_file():
            quota_us = int(v1_quota.read_text())
            return None if quota_us <= 0 else math.ceil(quota_us / int(v1_period.read_text()))
    except (OSError, ValueError):
        return None
    return None


def _route(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    if not value.startswith("/"):
        raise UsageError(f"{name}={value!r} must be a path starting with '/'")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} must be a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise UsageError(f"{name}={value} is out of range; allowed: {allowed}")
    return value


_LEVELS = {"10": "DEBUG", "20": "INFO", "30": "WARNING", "40": "ERROR", "50": "CRITICAL"}


def _log_level(raw: str | None) -> str:
    # SageMaker passes SAGEMAKER_CONTAINER_LOG_LEVEL as a number (Python logging levels).
    if raw is None or raw == "":
        return "INFO"
    level = _LEVELS.get(raw.strip(), raw.strip().upper())
    if level not in _LEVELS.values():
        raise UsageError(f"log level {raw!r} is not one of {', '.join(_LEVELS.values())} (or 10..50)")
    return level
