"""Ids outside an embedding table are a 400 on every format, including ONNX, whose Gather wraps negatives."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from inference.app import create_app
from inference.config import load_config
from inference.metrics import ServerMetrics
from inference.service import load_service
from model_package.export import export_model
from model_package.manifest import read_manifest
from tests.model_package import torch_models

pytestmark = pytest.mark.torch


def _serve(package: Path, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING"}, model_dir=package)
    metrics = ServerMetrics()
    service = load_service(config, observer=metrics)
    app = create_app(service, config, metrics)

    async def scenario() -> list[httpx.Response]:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return [await client.post(path, json=body) for path, body in requests]
        finally:
            await service.stop()

    return asyncio.run(scenario())


def _oip(user_id: int) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "user_id", "datatype": "INT64", "shape": [1], "data": [user_id]},
            {"name": "candidates", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 3]},
        ]
    }


@pytest.mark.parametrize("fmt", ["torch_export", "onnx"])
def test_an_id_outside_the_embedding_table_is_a_400_naming_the_valid_range(fmt: str, tmp_path: Path) -> None:
    package = tmp_path / "rec"
    export_model(
        torch_models.make_candidate_scorer(),
        torch_models.candidate_inputs(3, 5),
        package,
        name="rec",
        version="1",
        format=fmt,
        dynamic_axes={"candidates": [1]},
    )
    inputs = {spec.name: spec.valid_range for spec in read_manifest(package).signature.inputs}
    assert inputs == {"user_id": (0, 9), "candidates": (0, 39)}

    ok, negative, too_big, bad_item, oip_negative = _serve(
        package,
        [
            ("/invocations", {"inputs": {"user_id": [9], "candidates": [[0, 39]]}}),
            ("/invocations", {"inputs": {"user_id": [-1], "candidates": [[0, 1]]}}),
            ("/invocations", {"inputs": {"user_id": [10], "candidates": [[0, 1]]}}),
            ("/invocations", {"inputs": {"user_id": [1], "candidates": [[0, -40]]}}),
            ("/v2/models/rec/infer", _oip(-1)),
        ],
    )
    assert ok.status_code == 200, ok.text
    for response, text in (
        (negative, "input 'user_id' holds -1 at [0]; valid values are 0 to 9"),
        (too_big, "input 'user_id' holds 10 at [0]; valid values are 0 to 9"),
        (bad_item, "input 'candidates' holds -40 at [0, 1]; valid values are 0 to 39"),
        (oip_negative, "input 'user_id' holds -1 at [0]; valid values are 0 to 9"),
    ):
        assert response.status_code == 400, response.text
        assert text in response.text
