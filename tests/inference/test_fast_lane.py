"""The fast lane answers what the general path answers, byte for byte, and takes the requests it is for."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inference.app import create_app
from inference.config import load_config
from inference.dataplane import DataPlane
from inference.metrics import ServerMetrics
from inference.service import load_service
from tests.inference.server_fixtures import counters

pytestmark = pytest.mark.torch

ROWS = np.random.default_rng(4).standard_normal((3, 64)).round(5).tolist()
JSON = {"content-type": "application/json"}
REQUESTS: dict[str, tuple[dict[str, str], bytes]] = {
    "bare list": (JSON, json.dumps(ROWS).encode()),
    "instances": (JSON, json.dumps({"instances": ROWS}).encode()),
    "instances, accept anything": ({**JSON, "accept": "*/*"}, json.dumps({"instances": ROWS}).encode()),
    "instances, no accept": (JSON, json.dumps({"instances": ROWS}).encode()),
    "instances too narrow": (JSON, json.dumps({"instances": [[1.0, 2.0]]}).encode()),
    "instances, a string": (JSON, json.dumps({"instances": [["1"] * 64]}).encode()),
    "one row": (JSON, json.dumps(ROWS[:1]).encode()),
    "integers": (JSON, json.dumps([[1] * 64, [2] * 64]).encode()),
    "accept json": ({**JSON, "accept": "application/json"}, json.dumps(ROWS).encode()),
    "accept anything": ({**JSON, "accept": "*/*"}, json.dumps(ROWS).encode()),
    "accept csv": ({**JSON, "accept": "text/csv"}, json.dumps(ROWS).encode()),
    "accept nothing we write": ({**JSON, "accept": "image/png"}, json.dumps(ROWS).encode()),
    "charset": ({"content-type": "application/json; charset=utf-8"}, json.dumps(ROWS).encode()),
    "parameters": (JSON, json.dumps({"instances": ROWS, "parameters": {"a": 1}}).encode()),
    "a flat row": (JSON, json.dumps(ROWS[0]).encode()),
    "too narrow": (JSON, json.dumps([[1.0, 2.0]]).encode()),
    "three axes": (JSON, json.dumps([ROWS]).encode()),
    "empty batch": (JSON, b"[]"),
    "ragged": (JSON, json.dumps([ROWS[0], ROWS[1][:3]]).encode()),
    "a string": (JSON, json.dumps([["1"] * 64]).encode()),
    "booleans": (JSON, json.dumps([[True] * 64]).encode()),
    "a null": (JSON, json.dumps([[None] * 64]).encode()),
    "NaN": (JSON, json.dumps([[float("nan")] * 64]).encode()),
    "too large for float32": (JSON, json.dumps([[1e300] * 64]).encode()),
    "an integer of 5000 digits": (JSON, b"[[" + b"9" * 5000 + b"]]"),
    "not JSON": (JSON, b"{nope"),
    "a number": (JSON, b"3"),
    "other keys": (JSON, json.dumps({"instance": ROWS}).encode()),
    "csv": ({"content-type": "text/csv"}, b"\n".join(b",".join(b"1" for _ in range(64)) for _ in range(2))),
}


def serve_both(package: Path, env: dict[str, str], scenario: Any) -> None:
    """Run ``scenario(lane_client, plain_client, calls)`` over one service: with the fast lane, and without."""
    config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING", **env}, model_dir=package)
    metrics = ServerMetrics()
    service = load_service(config, observer=metrics)
    with_lane = create_app(service, config, metrics)
    plain = create_app(service, config, metrics)
    plain.fast_lanes = {}  # type: ignore[attr-defined]
    assert with_lane.fast_lanes  # type: ignore[attr-defined]
    calls: list[int] = []
    infer = DataPlane.infer

    async def counting(self: DataPlane, request: Any) -> Any:
        calls.append(1)
        return await infer(self, request)

    async def main() -> None:
        await service.start()
        try:
            lane_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=with_lane), base_url="http://test")
            plain_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://test")
            async with lane_client, plain_client:
                await scenario(lane_client, plain_client, calls)
        finally:
            await service.stop()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DataPlane, "infer", counting)
        asyncio.run(main())


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.items()), response.content


# SageMaker's, Vertex AI's (AIP_PREDICT_ROUTE's default), KServe V1's (for the package's model name).
ROUTES = ["/invocations", "/predict", "/v1/models/{model}:predict"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("env", [{}, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}], ids=["default", "csv"])
def test_every_request_gets_the_general_paths_answer(torch_package: Path, env: dict[str, str], route: str) -> None:
    async def scenario(lane: httpx.AsyncClient, plain: httpx.AsyncClient, calls: list[int]) -> None:
        for name, (sent, body) in REQUESTS.items():
            headers = {**sent, "x-request-id": "same-id"}
            got = await lane.post(route.format(model="mlp"), content=body, headers=headers)
            want = await plain.post(route.format(model="mlp"), content=body, headers=headers)
            assert answer(got) == answer(want), name

    serve_both(torch_package, env, scenario)


TAKEN = {
    "/invocations": {"bare list", "one row", "integers", "accept json", "accept anything", "too narrow"},
    "/predict": set(),  # Vertex AI's route wants an object: bare lists are its general path's 400
    "/v1/models/{model}:predict": set(),  # as does KServe V1's
}
INSTANCES_TAKEN = {"instances", "instances, accept anything", "instances, no accept", "instances too narrow"}


@pytest.mark.parametrize("route", ROUTES)
def test_the_common_requests_take_the_lane_and_the_others_the_general_path(torch_package: Path, route: str) -> None:
    taken = TAKEN[route] | INSTANCES_TAKEN
    if route == "/invocations":
        taken.add("too large for float32")  # refused by the same check, inside the lane

    async def scenario(lane: httpx.AsyncClient, plain: httpx.AsyncClient, calls: list[int]) -> None:
        for name, (headers, body) in REQUESTS.items():
            calls.clear()
            await lane.post(route.format(model="mlp"), content=body, headers=headers)
            assert bool(calls) == (name not in taken), f"{name}: {'general path' if calls else 'lane'}"
        # Answered by the lane or not, a request is counted under its route, as Starlette names it.
        metrics = (await lane.get("/metrics")).text
        template = route.replace("{model}", "{name}")
        label = f'model_server_requests_total{{route="{template}",'
        counted = sum(value for name, value in counters(metrics).items() if name.startswith(label))
        assert counted == len(REQUESTS), metrics

    serve_both(torch_package, {}, scenario)


def test_a_request_the_lane_refuses_is_refused_as_the_general_path_refuses_it_once(torch_package: Path) -> None:
    # Validation's 400 (a row of the wrong width) raised inside the lane: one answer, one 4xx counted.
    async def scenario(lane: httpx.AsyncClient, plain: httpx.AsyncClient, calls: list[int]) -> None:
        response = await lane.post("/invocations", content=json.dumps([[1.0] * 63]).encode(), headers=JSON)
        assert response.status_code == 400 and "x" in response.json()["error"]
        metrics = (await lane.get("/metrics")).text
        assert 'model_server_requests_total{route="/invocations",status="400"} 1.0' in metrics

    serve_both(torch_package, {}, scenario)


def test_a_model_with_one_axis_gets_the_general_paths_answers_too(tmp_path: Path) -> None:
    # With a rank-1 input an empty list fits the signature's rank, so the lane took it and answered
    # validation's "empty batch" message where decoding's own check answers first.
    import torch

    from model_package.export import export_model

    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    package = tmp_path / "double"
    export_model(Double(), {"x": np.arange(4, dtype=np.float32)}, package, name="double", version="1")
    requests = [b"[]", b'{"instances": []}', b"[1.5, 2.5]", b'{"instances": [1, 2]}', b"[[1.5]]"]

    async def scenario(lane: httpx.AsyncClient, plain: httpx.AsyncClient, calls: list[int]) -> None:
        for route in ROUTES:
            for body in requests:
                headers = {**JSON, "x-request-id": "same-id"}
                got = await lane.post(route.format(model="double"), content=body, headers=headers)
                want = await plain.post(route.format(model="double"), content=body, headers=headers)
                assert answer(got) == answer(want), (route, body)

    serve_both(package, {}, scenario)


@pytest.mark.parametrize(
    "headers",
    [
        [("content-type", "text/csv"), ("content-type", "application/json")],
        [("content-type", "application/json"), ("accept", "text/csv"), ("accept", "application/json")],
    ],
    ids=["two content types", "two accepts"],
)
def test_repeated_headers_are_read_as_the_general_path_reads_them(
    torch_package: Path, headers: list[tuple[str, str]]
) -> None:
    # The lane read the last of repeated headers and Starlette the first: a 200 from the lane where
    # the general path answers 415 or 406 (review finding).
    async def scenario(lane: httpx.AsyncClient, plain: httpx.AsyncClient, calls: list[int]) -> None:
        for route in ROUTES:
            sent = [*headers, ("x-request-id", "same-id")]
            body = json.dumps({"instances": ROWS}).encode()
            calls.clear()
            got = await lane.post(route.format(model="mlp"), content=body, headers=sent)
            assert calls, f"{route}: the lane took it"
            want = await plain.post(route.format(model="mlp"), content=body, headers=sent)
            assert answer(got) == answer(want), route

    serve_both(torch_package, {}, scenario)


def test_a_predict_route_set_to_v1s_path_is_counted_under_vertexs_route_as_routing_does(torch_package: Path) -> None:
    # With AIP_PREDICT_ROUTE on V1's path, Starlette routes it to Vertex AI's route (registered first);
    # the lane counted it under V1's template (review finding).
    route = "/v1/models/mlp:predict"

    async def scenario(lane: httpx.AsyncClient, plain: httpx.AsyncClient, calls: list[int]) -> None:
        body = json.dumps({"instances": ROWS}).encode()
        for client in (lane, plain):
            assert (await client.post(route, content=body, headers=JSON)).status_code == 200
        metrics = (await lane.get("/metrics")).text
        assert f'model_server_requests_total{{route="{route}",status="200"}} 2.0' in metrics, metrics

    serve_both(torch_package, {"AIP_PREDICT_ROUTE": route}, scenario)
