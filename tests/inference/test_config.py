"""Server configuration from each platform's environment."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from inference.config import available_cpus, load_config
from model_package.errors import UsageError


@pytest.mark.parametrize(
    ("env", "port"),
    [
        ({}, 8080),
        ({"PORT": "9000"}, 9000),
        ({"AIP_HTTP_PORT": "7080", "PORT": "9000"}, 7080),
        ({"SAGEMAKER_BIND_TO_PORT": "8081", "AIP_HTTP_PORT": "7080", "PORT": "9000"}, 8081),
    ],
)
def test_port_precedence(env: dict[str, str], port: int) -> None:
    assert load_config(env).port == port


def test_each_platform_gets_its_limits_and_routes() -> None:
    sagemaker = load_config({"SAGEMAKER_BIND_TO_PORT": "8080"})
    assert (sagemaker.platform, sagemaker.max_request_bytes, sagemaker.request_timeout) == ("sagemaker", 6 << 20, 55)
    vertex = load_config({"AIP_HTTP_PORT": "8080", "AIP_HEALTH_ROUTE": "/v1/h", "AIP_PREDICT_ROUTE": "/v1/p"})
    assert vertex.platform == "vertex"
    assert vertex.max_request_bytes == 1_572_864
    assert (vertex.health_route, vertex.predict_route) == ("/v1/h", "/v1/p")
    cloudrun = load_config({"K_SERVICE": "svc", "PORT": "8080"})
    assert (cloudrun.platform, cloudrun.drain_timeout) == ("cloudrun", 8.0)
    assert load_config({}).host == "0.0.0.0"


def test_sagemaker_numeric_log_levels_are_understood() -> None:
    assert load_config({"SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}).log_level == "INFO"
    assert load_config({"SAGEMAKER_CONTAINER_LOG_LEVEL": "40"}).log_level == "ERROR"
    assert load_config({}, log_level="debug").log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT='http' must be a whole number"),
        ({"PORT": "70000"}, "PORT=70000 is out of range"),
        ({"MODEL_SERVER_MAX_BATCH_SIZE": "0"}, "MODEL_SERVER_MAX_BATCH_SIZE=0 is out of range"),
        ({"MODEL_SERVER_REQUEST_TIMEOUT_S": "-1"}, "MODEL_SERVER_REQUEST_TIMEOUT_S=-1 is out of range: a timeout"),
        ({"MODEL_SERVER_INSTALL_REQUIREMENTS": "maybe"}, "must be true or false"),
        ({"AIP_PREDICT_ROUTE": "predict"}, "must be a path starting with '/'"),
        ({"SAGEMAKER_CONTAINER_LOG_LEVEL": "LOUD"}, "log level 'LOUD'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(env)


def test_cpu_count_respects_the_affinity_mask() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_framework_threads_wait_passively_unless_the_deployment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy-waiting OpenMP workers take the core the event loop needs between model calls (p99 spikes)."""
    import subprocess
    import sys

    from inference.entrypoint import _limit_framework_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    _limit_framework_threads(2)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["OMP_NUM_THREADS"] == "3", "what the deployment set wins"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _limit_framework_threads(2)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    # OpenMP reads its environment once, when the framework loads: the entrypoint must not load it first.
    probe = "import sys, inference.entrypoint; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"


def test_the_server_lets_waiting_threads_take_the_interpreter_within_a_millisecond(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """At Python's default 5 ms, the event loop waited up to 5 ms for each of its turns behind a decoding
    thread: /ping's p99 was over 200 ms while 16 clients posted 5 MB CSV bodies (20-45 ms at 1 ms)."""
    import sys

    import inference.service
    from inference import entrypoint
    from model_package.errors import ModelPackageError

    def refuse(*args: object, **kwargs: object) -> None:
        raise ModelPackageError("stop after configuring the process")

    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # restored after the test
    monkeypatch.setattr(inference.service, "load_service", refuse)
    before = sys.getswitchinterval()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = entrypoint.main(["serve", "--model-dir", str(tmp_path)])
        assert code == entrypoint.EXIT_MODEL_FAILED
        assert sys.getswitchinterval() == pytest.approx(0.001)
    finally:
        sys.setswitchinterval(before)
        root.handlers[:] = handlers  # the entrypoint configured the process's logging
        root.setLevel(level)
