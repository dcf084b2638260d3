"""Responses are bounded like requests: a real ``model-serve`` refuses answers over the platform's limit.

Several rows over the limit: 413 naming the sizes and how many rows fit (the client's choice, so not a
5xx); one row over it: a logged 500 (no request can get that answer). Checked on every route, before
the body is built where the size can be predicted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference.config import load_config
from tests.inference.server_fixtures import ServerProcess, start_server

pytestmark = pytest.mark.torch
LIMIT = 20_000


@pytest.fixture(scope="module")
def limited_server(torch_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The 64 -> 10 MLP with a 20,000-byte response limit."""
    server = start_server(
        tmp_path_factory.mktemp("limited"),
        args=["--model-dir", str(torch_package)],
        env={"MODEL_SERVER_MAX_RESPONSE_BYTES": str(LIMIT)},
    )
    yield server
    server.terminate()


def _rows(count: int) -> list[list[float]]:
    rows: list[list[float]] = np.random.default_rng(count).standard_normal((count, 64)).round(3).tolist()
    return rows


def _statuses(server: ServerProcess) -> str:
    metrics = httpx.get(server.url + "/metrics").text
    return "\n".join(line for line in metrics.splitlines() if line.startswith("model_server_requests_total"))


def test_a_large_answer_is_a_413_that_says_how_many_rows_fit(limited_server: ServerProcess) -> None:
    with limited_server.client() as client:
        # 400 rows of 10 float32 outputs: 16,000 raw bytes would fit; their JSON (~50 KB) does not.
        response = client.post("/invocations", json={"instances": _rows(400)})
        assert response.status_code == 413, response.text
        message = response.json()["error"]
        # Refused on the estimate, before the body was built.
        assert message.startswith("the answer to this request would be about ")
        assert f"above this endpoint's response limit of {LIMIT} bytes" in message
        advice = re.search(r"send at most (\d+) rows per request \(this one held 400\)", message)
        assert advice is not None, message
        fits = int(advice.group(1))
        assert 50 < fits < 400
        # The advice holds: that many rows are answered.
        assert client.post("/invocations", json={"instances": _rows(fits)}).status_code == 200
    log = limited_server.log()
    assert '"response_bytes"' in log and f'"max_response_bytes": {LIMIT}' in log
    statuses = _statuses(limited_server)
    assert 'status="413"' in statuses and 'status="5' not in statuses, statuses


def _model_calls(server: ServerProcess) -> float:
    metrics = httpx.get(server.url + "/metrics").text
    match = re.search(r"^model_server_batch_rows_count (\S+)$", metrics, re.MULTILINE)
    assert match is not None, metrics
    return float(match.group(1))


def test_an_answer_no_encoding_could_send_is_refused_before_the_model_runs(limited_server: ServerProcess) -> None:
    import io

    # 5,000 rows in a ~1.3 MB .npy body; their answer is at least 5,000 x 10 values x 2 bytes
    # (a digit and a separator, the fewest any encoding writes a float32 in) = 100,000 bytes.
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((5000, 64), dtype=np.float32))
    before = _model_calls(limited_server)
    with limited_server.client() as client:
        response = client.post("/invocations", content=buffer.getvalue(), headers={"content-type": "application/x-npy"})
        assert response.status_code == 413, response.text
        message = response.json()["error"]
        assert message.startswith("the answer to this request would be at least 100000 bytes"), message
        assert "send at most" in message and "(this one held 5000)" in message
        oip = client.post(
            "/v2/models/mlp/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [5000, 64], "data": [0.0] * 320_000}]},
        )
        assert oip.status_code == 413, oip.text
    assert _model_calls(limited_server) == before, "the model never ran for them"


def test_every_route_checks_the_answer_size(limited_server: ServerProcess) -> None:
    rows = _rows(400)
    oip = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [400, 64], "data": np.ravel(rows).tolist()}]}
    with limited_server.client() as client:
        answers = {
            "sagemaker": client.post("/invocations", json={"instances": rows}),
            "csv accept": client.post("/invocations", json={"instances": rows}, headers={"Accept": "text/csv"}),
            "vertex": client.post("/predict", json={"instances": rows}),
            "kserve v1": client.post("/v1/models/mlp:predict", json={"instances": rows}),
            "oip": client.post("/v2/models/mlp/infer", json=oip),
        }
    for route, response in answers.items():
        assert response.status_code == 413, (route, response.text)
        assert "rows per request (this one held 400)" in response.json()["error"], route


def test_one_row_over_the_limit_is_a_500_the_client_cannot_fix(torch_package: Path, tmp_path: Path) -> None:
    server = start_server(
        tmp_path, args=["--model-dir", str(torch_package)], env={"MODEL_SERVER_MAX_RESPONSE_BYTES": "40"}
    )
    try:
        response = httpx.post(server.url + "/invocations", json={"instances": _rows(1)}, timeout=30)
    finally:
        server.terminate()
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["error"].startswith("the answer to this one-row request is ")
    assert "raise MODEL_SERVER_MAX_RESPONSE_BYTES" in body["error"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-request-id"] in server.log()


def test_user_code_answers_are_checked_after_output_fn(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The hooks' body is built by user code; the middleware checks it by its Content-Length."""
    from model_package.export import export_model
    from tests.model_package.torch_models import dict_head_inputs, make_dict_head

    package = tmp_path_factory.mktemp("predict-only") / "predict_only"
    code = Path(__file__).parent / "user_code_fixtures" / "predict_only"
    export_model(make_dict_head(), dict_head_inputs(3), package, name="predict_only", version="1", code_dir=code)
    server = start_server(tmp_path, args=["--model-dir", str(package)], env={"MODEL_SERVER_MAX_RESPONSE_BYTES": "2000"})
    try:
        rows = dict_head_inputs(200)["x"].tolist()
        big = httpx.post(server.url + "/invocations", json={"instances": rows}, timeout=30)
        small = httpx.post(server.url + "/invocations", json={"instances": rows[:2]}, timeout=30)
    finally:
        server.terminate()
    assert big.status_code == 413, big.text
    assert "send at most" in big.json()["error"] and "(this one held 200)" in big.json()["error"]
    assert big.headers["x-request-id"]
    assert "x-predicted-by" not in big.headers  # the hook's response was replaced, headers and all
    assert small.status_code == 200 and small.headers["x-predicted-by"] == "predict_fn"


def test_each_platform_has_its_documented_default() -> None:
    mib = 1024 * 1024
    assert load_config({"SAGEMAKER_BIND_TO_PORT": "8080"}).max_response_bytes == 6 * mib
    assert load_config({"K_SERVICE": "svc"}).max_response_bytes == 32 * mib
    assert load_config({"AIP_HTTP_PORT": "8080"}).max_response_bytes == 32 * mib
    assert load_config({"MODEL_SERVER_MAX_RESPONSE_BYTES": "1000"}).max_response_bytes == 1000


def test_one_row_whose_answer_grows_with_the_request_is_the_clients_413(tmp_path: Path) -> None:
    """A score per candidate: 700,000 candidates in one row were a logged 500 ("no request can get
    this answer", raise the limit), counted against the endpoint's alarms, though fewer candidates fit."""
    import asyncio

    from inference.app import create_app
    from inference.metrics import ServerMetrics
    from inference.service import load_service
    from model_package.export import export_model
    from tests.model_package import torch_models

    package = tmp_path / "scorer"
    export_model(
        torch_models.make_candidate_scorer(),
        torch_models.candidate_inputs(2, 5),
        package,
        name="scorer",
        version="1",
        dynamic_axes={"candidates": [1]},
    )
    config = load_config(
        {"MODEL_SERVER_LOG_LEVEL": "WARNING", "MODEL_SERVER_MAX_RESPONSE_BYTES": str(LIMIT)}, model_dir=package
    )
    metrics = ServerMetrics()
    service = load_service(config, observer=metrics)
    app = create_app(service, config, metrics)

    async def ask(candidates: int) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            inputs = {"user_id": [1], "candidates": [[3] * candidates]}
            return await client.post("/invocations", json={"inputs": inputs})

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        await service.start()
        try:
            return await ask(20_000), await ask(100)
        finally:
            await service.stop()

    refused, answered = asyncio.run(scenario())
    assert refused.status_code == 413, refused.text
    message = refused.json()["error"]
    assert f"above this endpoint's response limit of {LIMIT} bytes" in message
    assert "the size of 'output' follows the request's: send a smaller one (fewer candidates" in message
    assert answered.status_code == 200, answered.text


@pytest.fixture(scope="module")
def text_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.pipeline_models import package_text_classifier

    return package_text_classifier(tmp_path_factory.mktemp("text") / "pkg")


@pytest.mark.parametrize("route", ["/invocations", "/v2/models/tiny-text/infer"])
def test_a_pipeline_answer_that_cannot_fit_is_refused_before_any_text_is_read(
    text_package: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """300,000 texts were tokenized and scored for 6 s before their answer was refused as too large."""
    import asyncio

    from inference.app import create_app
    from inference.metrics import ServerMetrics
    from inference.service import load_service

    package = text_package
    config = load_config(
        {"MODEL_SERVER_LOG_LEVEL": "WARNING", "MODEL_SERVER_MAX_RESPONSE_BYTES": str(LIMIT)}, model_dir=package
    )
    service = load_service(config)
    assert service.pipeline is not None
    monkeypatch.setattr(service.pipeline.runner, "preprocess", lambda _: pytest.fail("texts read for a 413"))
    app = create_app(service, config, ServerMetrics())
    texts = ["a"] * 4_000  # each answer at least "" and 0.0 on V2 (7 bytes: 28 KB), 31 bytes of JSON elsewhere
    body = (
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
        if route.startswith("/v2")
        else {"instances": texts}
    )

    async def ask() -> httpx.Response:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post(route, json=body)
        finally:
            await service.stop()

    response = asyncio.run(ask())
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert message.startswith("the answer to this request would be at least "), message
    assert "(this one held 4000)" in message
