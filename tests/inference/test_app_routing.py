"""The middleware's direct dispatch of fixed-path routes behaves exactly like Starlette's routing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inference.app import data_plane, direct_routes
from inference.config import load_config
from inference.protocols import oip, sagemaker, vertex
from inference.service import ModelService, load_service
from tests.inference.in_process import run


def test_only_fixed_paths_are_dispatched_directly(torch_package: Path) -> None:
    config = load_config({}, model_dir=torch_package)
    service = load_service(config)
    plane = data_plane(service, config)
    table = direct_routes([*sagemaker.routes(plane, config), *vertex.routes(plane, config), *oip.routes(plane, config)])
    assert {("POST", "/invocations"), ("GET", "/ping"), ("HEAD", "/ping"), ("POST", "/predict")} <= set(table)
    assert all("{" not in path for _, path in table)


def test_unexpected_model_failure_is_a_500_without_traceback(
    torch_package: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        assert service.batcher is not None

        def broken(inputs: Any) -> Any:
            raise RuntimeError("CUDA error: device-side assert triggered at /secret/path.py:12")

        service.batcher._predict = broken
        response = await client.post("/invocations", json=np.zeros((1, 64)).tolist())
        assert response.status_code == 500
        assert "error" in response.json() and "Traceback" not in response.text
        assert "secret" not in response.text and "CUDA" not in response.text, "details stay in the log"
        assert response.json()["request_id"] == response.headers["x-request-id"]
        request_ids.append(response.headers["x-request-id"])
        assert (await client.get("/ping")).status_code == 200, "a failed request leaves the server healthy"

    request_ids: list[str] = []
    with caplog.at_level(logging.ERROR):
        run(torch_package, scenario)
    failures = [record for record in caplog.records if "CUDA error" in record.getMessage()]
    assert len(failures) == 1, "logged once"
    assert failures[0].exc_info and getattr(failures[0], "request_id", None) == request_ids[0]


def test_bad_input_on_a_direct_route_is_the_same_4xx_as_through_starlette(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        direct = await client.post("/invocations", content=b"[[1, 2", headers={"content-type": "application/json"})
        routed = await client.post(
            "/v1/models/mlp:predict", content=b"[[1, 2", headers={"content-type": "application/json"}
        )
        assert direct.status_code == routed.status_code == 400
        assert "JSON" in direct.json()["error"] and "JSON" in routed.json()["error"]
        unsupported = await client.post("/invocations", content=b"x", headers={"content-type": "image/png"})
        assert unsupported.status_code == 415 and "application/json" in unsupported.json()["error"]

    run(torch_package, scenario)


def test_wrong_method_on_a_direct_path_is_405_with_allow(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.get("/invocations")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert "error" in response.json()
        head = await client.head("/ping")
        assert head.status_code == 200 and head.content == b""

    run(torch_package, scenario)


def test_direct_routes_are_counted_under_their_path(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        for _ in range(3):
            assert (await client.post("/invocations", json=np.zeros((1, 64)).tolist())).status_code == 200
        text = (await client.get("/metrics")).text
        assert 'model_server_requests_total{route="/invocations",status="200"} 3.0' in text

    run(torch_package, scenario)
