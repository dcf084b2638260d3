"""One ``MODEL_SERVER_*`` contract: every server setting is settable from stack config, with the same bounds.

``model-deploy:serving`` and the server read the same typed model (``inference/settings.py``). These
tests go through both real paths: a stack value -> ``load_stack_config`` -> the container environment
-> the server's own ``load_config``; and, at each bound, the stack and the server accept and refuse
the same values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from inference.config import load_config
from inference.settings import ServerSettings
from infra.config import ConfigError, load_stack_config
from model_package.errors import UsageError
from tests.infra.aws_stacks import minimal_dev

# Per setting: a stack value other than the server's default, and the ServerConfig attribute and value it gives.
SETTABLE: dict[str, tuple[Any, str, Any]] = {
    "workers": (3, "workers", 3),
    "max_batch_size": ("auto", "max_batch_size", "auto"),
    "max_batch_delay_ms": (2.5, "max_batch_delay_ms", 2.5),
    "max_queue": (64, "max_queue", 64),
    "compute_threads": (1, "compute_threads", 1),
    "max_request_bytes": (1_000_000, "max_request_bytes", 1_000_000),
    "max_response_bytes": (2_000_000, "max_response_bytes", 2_000_000),
    "request_timeout_s": (20, "request_timeout", 20.0),
    "drain_timeout_s": (0, "drain_timeout", 0.0),
    "header_timeout_s": (5, "header_timeout", 5.0),
    "body_timeout_s": (12.5, "body_timeout", 12.5),
    "send_timeout_s": (20, "send_timeout", 20.0),
    "log_level": ("WARNING", "log_level", "WARNING"),
    "install_requirements": (True, "install_requirements", True),
    "allow_non_finite": (True, "allow_non_finite", True),
}

# Per bounded setting: the largest (or smallest) value allowed and the first one past it.
BOUNDS: list[tuple[str, Any, Any]] = [
    ("workers", 256, 257),
    ("workers", 1, 0),
    ("max_batch_size", 4096, 4097),
    ("max_batch_delay_ms", 5000, 5000.5),
    ("max_batch_delay_ms", 0, -1),
    ("max_queue", 100_000, 100_001),
    ("compute_threads", 256, 257),
    ("max_request_bytes", 1 << 30, (1 << 30) + 1),
    ("max_response_bytes", 1 << 30, (1 << 30) + 1),
    ("max_response_bytes", 1, 0),
    ("request_timeout_s", 3600, 3600.5),
    ("request_timeout_s", 0.001, 0),
    ("drain_timeout_s", 3600, 3601),
    ("header_timeout_s", 3600, 3601),
    ("body_timeout_s", 0.5, 0),
    ("send_timeout_s", 3600, 3601),
]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _stack(serving: dict[str, Any]) -> Any:
    values = minimal_dev()
    values["model-deploy:serving"] = serving
    return load_stack_config(values, stack="dev")


def test_every_server_setting_is_settable_from_stack_config() -> None:
    assert set(SETTABLE) == set(ServerSettings.model_fields), "a server setting without a stack-config test"
    config = _stack({_camel(name): value for name, (value, _, _) in SETTABLE.items()})
    environment = config.serving.environment()
    assert set(environment) == {f"MODEL_SERVER_{name.upper()}" for name in SETTABLE}
    server = load_config(environment)
    defaults = load_config({})
    for name, (_, attribute, want) in SETTABLE.items():
        assert getattr(server, attribute) == want, name
        assert getattr(defaults, attribute) != want, f"{name}: the test value must differ from the default"


@pytest.mark.parametrize(("name", "inside", "outside"), BOUNDS, ids=[f"{b[0]}-{b[2]}" for b in BOUNDS])
def test_stack_and_server_share_the_bounds(name: str, inside: Any, outside: Any) -> None:
    key = _camel(name)
    variable = f"MODEL_SERVER_{name.upper()}"
    environment = _stack({key: inside}).serving.environment()
    assert variable in environment
    load_config(environment)  # what the stack accepts, the server accepts
    with pytest.raises(ConfigError) as caught:
        _stack({key: outside})
    assert caught.value.key == f"model-deploy:serving.{key}", str(caught.value)
    assert "out of range" in str(caught.value) or "must be" in str(caught.value)
    with pytest.raises(UsageError, match=f"^{variable}={outside} "):
        load_config({variable: str(outside)})


def test_infra_imports_the_contract_without_a_framework_or_the_server() -> None:
    code = (
        "import json, sys; import infra.config.serving_settings, infra.aws.endpoint; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    roots = {name.split(".")[0] for name in loaded}
    assert not roots & {"torch", "tensorflow", "keras", "onnxruntime", "uvicorn"}
    assert "inference.settings" in loaded
    assert "inference.config" not in loaded  # the contract, not the server's start-up code


def test_serverless_and_async_modes_honour_smaller_stack_limits() -> None:
    from infra.aws.endpoint import container_environment
    from tests.infra.aws_stacks import asynchronous, serverless

    def environment(values: Any, serving: dict[str, Any]) -> dict[str, str]:
        values["model-deploy:serving"] = serving
        return container_environment(load_stack_config(values, stack="dev"))

    # Serverless endpoints take at most 4 MiB: a smaller stack limit is kept, a larger one capped.
    assert environment(serverless(), {"maxRequestBytes": 1_000_000})["MODEL_SERVER_MAX_REQUEST_BYTES"] == "1000000"
    assert environment(serverless(), {"maxRequestBytes": 8 << 20})["MODEL_SERVER_MAX_REQUEST_BYTES"] == str(4 << 20)
    # Their responses too (the same 4 MB): a smaller stack limit is kept, a larger one capped.
    assert environment(serverless(), {})["MODEL_SERVER_MAX_RESPONSE_BYTES"] == str(4 << 20)
    assert environment(serverless(), {"maxResponseBytes": 1 << 20})["MODEL_SERVER_MAX_RESPONSE_BYTES"] == str(1 << 20)
    assert environment(serverless(), {"maxResponseBytes": 8 << 20})["MODEL_SERVER_MAX_RESPONSE_BYTES"] == str(4 << 20)
    assert environment(asynchronous(), {})["MODEL_SERVER_MAX_RESPONSE_BYTES"] == str(1 << 30)
    # Asynchronous endpoints: the stack's own deadline wins over the mode's default.
    env = environment(asynchronous(), {"requestTimeoutS": 600})
    assert env["MODEL_SERVER_REQUEST_TIMEOUT_S"] == "600"
    assert load_config(env).request_timeout == 600.0
