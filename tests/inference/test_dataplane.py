"""Every predict route goes through one data plane: the same refusals, faults, deadlines and hooks on each.

The four routes (SageMaker ``/invocations``, Vertex AI's predict route, KServe V1 ``:predict``, the
Open Inference Protocol's ``infer``) differ only in how their bodies carry tensors; a client must
get the same behaviour from each for the same situation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inference.service import ModelService
from tests.inference.in_process import mlp_with_code, run


def _rows(count: int) -> list[list[float]]:
    return np.zeros((count, 64), dtype=np.float32).tolist()


#: route name -> (path, the request's keyword arguments for one or more rows of the MLP's 64 features)
ROUTES: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {
    "sagemaker": ("/invocations", lambda n: {"json": _rows(n)}),
    "vertex": ("/predict", lambda n: {"json": {"instances": _rows(n)}}),
    "kserve-v1": ("/v1/models/mlp:predict", lambda n: {"json": {"instances": _rows(n)}}),
    "oip": (
        "/v2/models/mlp/infer",
        lambda n: {"json": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [n, 64], "data": [0.0] * (n * 64)}]}},
    ),
}


def _slow_down(service: ModelService, seconds: float) -> None:
    """Make every model call of ``service`` take ``seconds`` longer."""
    assert service.batcher is not None
    predict = service.batcher._predict

    def slow(inputs: Any) -> Any:
        time.sleep(seconds)
        return predict(inputs)

    service.batcher._predict = slow


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_an_unanswerable_accept_is_a_406_before_the_model_runs(torch_package: Path, route: str) -> None:
    path, body = ROUTES[route]
    calls: list[int] = []

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        assert service.batcher is not None
        predict = service.batcher._predict

        def counted(inputs: Any) -> Any:
            calls.append(1)
            return predict(inputs)

        service.batcher._predict = counted
        response = await client.post(path, headers={"accept": "image/png"}, **body(1))
        assert response.status_code == 406, response.text
        assert "application/json" in response.json()["error"], "the refusal names what the route can answer"
        assert (await client.post(path, **body(1))).status_code == 200

    run(torch_package, scenario)
    assert calls == [1], "only the acceptable request reached the model"


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_model_failure_is_a_logged_500_naming_the_request_on_every_route(
    torch_package: Path, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, body = ROUTES[route]
    request_ids: list[str] = []

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        assert service.batcher is not None

        def broken(inputs: Any) -> Any:
            raise RuntimeError("kernel failed at /secret/model.py:12")

        service.batcher._predict = broken
        response = await client.post(path, **body(2))
        assert response.status_code == 500, response.text
        assert "secret" not in response.text, "the cause stays in the log"
        assert response.json()["request_id"] == response.headers["x-request-id"]
        request_ids.append(response.headers["x-request-id"])

    with caplog.at_level(logging.ERROR):
        run(torch_package, scenario)
    logged = [record for record in caplog.records if "kernel failed" in record.getMessage()]
    assert len(logged) == 1 and getattr(logged[0], "request_id", None) == request_ids[0]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_request_past_its_deadline_is_a_504_on_every_route(torch_package: Path, route: str) -> None:
    path, body = ROUTES[route]

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        _slow_down(service, 0.5)
        first, second = await asyncio.gather(client.post(path, **body(1)), client.post(path, **body(1)))
        statuses = sorted([first.status_code, second.status_code])
        # The first request holds the model for 0.5 s; the second waits past its 0.2 s deadline.
        assert statuses[-1] == 504, [first.text, second.text]
        late = first if first.status_code == 504 else second
        assert "deadline" in late.json()["error"]

    run(torch_package, scenario, {"MODEL_SERVER_REQUEST_TIMEOUT_S": "0.2", "MODEL_SERVER_MAX_BATCH_SIZE": "1"})


HEADER_HOOK = """
def predict_fn(data, model, context):
    context.set_response_header(0, "X-Model-Trace", "predict_fn saw " + ",".join(sorted(data)))
    return model.predict(data)
"""


@pytest.fixture(scope="module")
def header_hook_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MLP with a predict_fn that sets a response header through its context."""
    package = mlp_with_code(tmp_path_factory.mktemp("header-hook"), HEADER_HOOK)
    return package


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_headers_user_code_sets_reach_the_client_on_every_route(header_hook_package: Path, route: str) -> None:
    path, body = ROUTES[route]

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.post(path, **body(2))
        assert response.status_code == 200, response.text
        assert response.headers.get("x-model-trace") == "predict_fn saw x"

    run(header_hook_package, scenario)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_full_queue_is_a_503_with_retry_after_on_every_route(torch_package: Path, route: str) -> None:
    path, body = ROUTES[route]

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        _slow_down(service, 0.3)
        responses = await asyncio.gather(*(client.post(path, **body(1)) for _ in range(6)))
        statuses = [response.status_code for response in responses]
        assert 200 in statuses and 503 in statuses, statuses
        refused = next(response for response in responses if response.status_code == 503)
        assert refused.headers["retry-after"] and "queue" in refused.json()["error"]

    run(torch_package, scenario, {"MODEL_SERVER_MAX_QUEUE": "1", "MODEL_SERVER_MAX_BATCH_SIZE": "1"})


SERVER_HEADER_HOOK = """
def predict_fn(data, model, context):
    context.set_response_header(0, "Content-Length", "1")
    context.set_response_header(0, "X-Model-Trace", "kept")
    return model.predict(data)
"""


def test_headers_the_server_owns_cannot_be_set_by_user_code_on_any_route(tmp_path: Path) -> None:
    package = mlp_with_code(tmp_path, SERVER_HEADER_HOOK)

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        for route, (path, body) in sorted(ROUTES.items()):
            response = await client.post(path, **body(2))
            assert response.status_code == 200, (route, response.text)
            assert response.headers["content-length"] == str(len(response.content)), route
            assert response.json(), route
            assert response.headers["x-model-trace"] == "kept", route

    run(package, scenario)
