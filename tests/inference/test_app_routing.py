"""The middleware's direct dispatch of fixed-path routes behaves exactly like Starlette's routing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.routing import Match, Route, Router

from inference.app import data_plane, direct_routes
from inference.config import load_config
from inference.protocols import oip, sagemaker, vertex
from inference.service import ModelService, load_service
from tests.inference.in_process import run


def test_fixed_paths_and_the_served_models_own_paths_are_dispatched_as_starlette_routes_them(
    torch_package: Path,
) -> None:
    config = load_config({}, model_dir=torch_package)
    service = load_service(config)
    plane = data_plane(service, config)
    routes = [*sagemaker.routes(plane, config), *vertex.routes(plane, config), *oip.routes(plane, config)]
    table = direct_routes(routes, {"name": "mlp", "version": "1.0.0"})
    assert {("POST", "/invocations"), ("GET", "/ping"), ("HEAD", "/ping"), ("POST", "/predict")} <= set(table)
    # The Open Inference Protocol's paths of the model served (the commonest: infer) skip Starlette's router too.
    assert {
        ("POST", "/v2/models/mlp/infer"),
        ("POST", "/v2/models/mlp/versions/1.0.0/infer"),
        ("GET", "/v2/models/mlp/ready"),
        ("POST", "/v1/models/mlp:predict"),
    } <= set(table)
    assert all("{" not in path for _, path in table)
    router = Router(routes)
    for (method, path), (route, params) in table.items():
        for candidate in router.routes:
            match, child = candidate.matches({"type": "http", "method": method, "path": path, "root_path": ""})
            if match is Match.FULL:
                assert (candidate, child["path_params"]) == (route, params), (method, path)
                break
    # A name or version the model does not have, or a parameter value no path can hold, is Starlette's to route.
    assert ("POST", "/v2/models/other/infer") not in table
    assert not any("/" in params.get("name", "") for _, params in direct_routes(routes, {"name": "a/b"}).values())
    # A route whose parameter cannot hold the served name (AIP_PREDICT_ROUTE='/m/{name:int}') is left to
    # Starlette; it used to stop the server at start-up (int('mlp')).
    typed = Route("/m/{name:int}", routes[0].endpoint, methods=["POST"])  # type: ignore[attr-defined]
    assert ("POST", "/m/mlp") not in direct_routes([typed, *routes], {"name": "mlp", "version": "1.0.0"})


def test_another_models_name_or_version_is_still_a_404_naming_the_served_one(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        tensor = {"name": service.signature.inputs[0].name, "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}
        served = await client.post("/v2/models/mlp/infer", json={"inputs": [tensor]})
        assert served.status_code == 200, served.text
        versioned = await client.post("/v2/models/mlp/versions/1.0.0/infer", json={"inputs": [tensor]})
        assert versioned.status_code == 200 and versioned.json()["outputs"] == served.json()["outputs"]
        other = await client.post("/v2/models/other/infer", json={"inputs": [tensor]})
        assert other.status_code == 404 and "'mlp'" in other.json()["error"]
        old = await client.post("/v2/models/mlp/versions/0.9/infer", json={"inputs": [tensor]})
        assert old.status_code == 404 and "1.0.0" in old.json()["error"]
        text = (await client.get("/metrics")).text
        assert 'model_server_requests_total{route="/v2/models/{name}/infer",status="200"} 1.0' in text
        # Accept on two lines is one list (RFC 9110, 5.3): only the first line was read, a 406 here.
        two_lines = [("content-type", "application/json"), ("accept", "image/png"), ("accept", "text/csv")]
        csv = await client.post("/invocations", content=b"[[" + b",".join([b"0"] * 64) + b"]]", headers=two_lines)
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv"), csv.text
        # A trailing slash is another path: a 404 in JSON, not a 307 to a Location built from the Host header.
        slashed = await client.post("/invocations/", json=[[0.0] * 64], headers={"host": "elsewhere.example"})
        assert slashed.status_code == 404 and "error" in slashed.json() and "location" not in slashed.headers

    run(torch_package, scenario)


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
