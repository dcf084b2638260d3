"""Health checks are answered while a large answer is being encoded (issue 12, defect 5, on every route).

Encoding a JSON answer of tens of thousands of rows takes 100 ms and more of CPU (measured: 50,000
rows of the dict head, 3.2 MB, 101 ms); done on the event loop, it stalls every health check and
every other request for that long. In-process (no sockets): the service's encoder is wrapped so it
waits for a ``/ping`` answer before it returns. Off the loop, the ping is answered at once; on the
loop, the ping cannot run until the encoder gives up waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inference.app import create_app
from inference.config import load_config
from inference.metrics import ServerMetrics
from inference.offload import OFF_LOOP_BYTES
from inference.service import load_service

pytestmark = pytest.mark.torch

#: How long the wrapped encoder waits for the ping: generous, since a stalled loop never answers at all.
WAIT_S = 5.0
#: Rows whose answer (10 float32 outputs each) is well above the size encoded off the loop.
ROWS = 4 * OFF_LOOP_BYTES // 40


def _ping_answered_while_encoding(
    package: Path, path: str, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch, encoder: str = "service"
) -> bool:
    """Whether ``/ping`` was answered while the answer to ``body`` was being encoded.

    ``encoder``: what the route encodes with, ``service`` (``ModelService.encode``) or ``oip`` (the
    Open Inference Protocol's ``infer_response``, as the protocol module imported it).
    """
    config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING"}, model_dir=package)
    metrics = ServerMetrics()
    service = load_service(config, observer=metrics)
    encoding = threading.Event()
    pinged = threading.Event()
    answered_in_time: list[bool] = []

    def waiting(encode: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            encoding.set()
            answered_in_time.append(pinged.wait(WAIT_S))
            return encode(*args, **kwargs)

        return wrapper

    if encoder == "oip":
        from inference.codecs.oip_json import infer_response

        monkeypatch.setattr("inference.protocols.oip.infer_response", waiting(infer_response))
    else:
        monkeypatch.setattr(service, "encode", waiting(service.encode))
    app = create_app(service, config, metrics)

    async def main() -> None:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                predict = asyncio.create_task(client.post(path, json=body))
                while not encoding.is_set() and not predict.done():
                    await asyncio.sleep(0.005)
                ping = await client.get("/ping")
                pinged.set()
                response = await predict
                assert ping.status_code == 200
                assert response.status_code == 200, response.text
        finally:
            await service.stop()

    asyncio.run(main())
    assert answered_in_time, f"{path} never encoded its answer through the service"
    return answered_in_time[0]


def _rows() -> list[list[float]]:
    return np.full((ROWS, 64), 0.25, dtype=np.float32).tolist()


@pytest.mark.parametrize("path", ["/invocations", "/predict", "/v1/models/mlp:predict"])
def test_health_is_answered_while_a_json_route_encodes_a_large_answer(
    torch_package: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    assert _ping_answered_while_encoding(torch_package, path, {"instances": _rows()}, monkeypatch)


def test_health_is_answered_while_the_oip_route_encodes_a_large_answer(
    torch_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = np.full((ROWS, 64), 0.25, dtype=np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
    assert _ping_answered_while_encoding(
        torch_package, "/v2/models/mlp/infer", {"inputs": [tensor]}, monkeypatch, encoder="oip"
    )


@pytest.fixture(scope="module")
def text_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.pipeline_models import package_text_classifier

    return package_text_classifier(tmp_path_factory.mktemp("text") / "pkg")


def test_health_is_answered_while_a_pipeline_builds_many_answers(
    text_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Building one answer per item is a Python loop (measured: 1.5 s for 200,000 short texts, one 1 MB request).
    config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING"}, model_dir=text_package)
    service = load_service(config)
    assert service.pipeline is not None
    runner = service.pipeline.runner
    building = threading.Event()
    pinged = threading.Event()
    answered_in_time: list[bool] = []
    postprocess = runner.postprocess

    def waiting(*args: Any, **kwargs: Any) -> Any:
        building.set()
        answered_in_time.append(pinged.wait(WAIT_S))
        return postprocess(*args, **kwargs)

    monkeypatch.setattr(runner, "postprocess", waiting)
    app = create_app(service, config, ServerMetrics())

    async def main() -> None:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                predict = asyncio.create_task(client.post("/invocations", json=["a fine day"] * 1000))
                while not building.is_set() and not predict.done():
                    await asyncio.sleep(0.005)
                ping = await client.get("/ping")
                pinged.set()
                response = await predict
                assert ping.status_code == 200
                assert response.status_code == 200, response.text
                assert len(response.json()["predictions"]) == 1000
        finally:
            await service.stop()

    asyncio.run(main())
    assert answered_in_time == [True]
