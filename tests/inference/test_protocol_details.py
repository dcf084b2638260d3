"""Smaller contract details: JSON-only routes honour Content-Type and Accept, error bodies hold no memory
addresses, batch transform is never told more than the body limit, packages hold only regular files."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from inference.config import load_config
from inference.protocols.sagemaker import execution_parameters_payload
from inference.service import ModelService
from model_package.errors import IntegrityError
from model_package.verify import verify_integrity
from tests.inference.test_app_routing import run

JSON_ROUTES = ["/v1/models/mlp:predict", "/predict"]
ROW = np.zeros((1, 64)).tolist()


@pytest.mark.torch
def test_json_only_routes_refuse_other_content_types_and_accept_q0(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        v2 = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}
        cases = [(path, {"instances": ROW}) for path in JSON_ROUTES] + [("/v2/models/mlp/infer", v2)]
        for path, payload in cases:
            ok = await client.post(path, json=payload)
            assert ok.status_code == 200, (path, ok.text)
            csv = await client.post(path, json=payload, headers={"Content-Type": "text/csv"})
            assert csv.status_code == 415, (path, csv.text)
            assert "application/json" in csv.json()["error"]
            refused = await client.post(path, json=payload, headers={"Accept": "application/json;q=0, text/csv"})
            assert refused.status_code == 406, (path, refused.text)

    run(torch_package, scenario)


@pytest.mark.torch
def test_error_bodies_never_carry_memory_addresses(torch_package: Path) -> None:
    header = b"{'descr': 'x' * 3, 'fortran_order': False, 'shape': (1,), }"
    padding = 64 - (10 + len(header) + 1) % 64
    npy = b"\x93NUMPY\x01\x00" + (len(header) + padding + 1).to_bytes(2, "little") + header + b" " * padding + b"\n"

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.post("/invocations", content=npy, headers={"Content-Type": "application/x-npy"})
        assert response.status_code == 400
        assert "not a valid .npy" in response.json()["error"]
        assert "0x" not in response.text, response.text

    run(torch_package, scenario)


def test_execution_parameters_never_claim_more_than_the_body_limit() -> None:
    config = load_config({"SAGEMAKER_BIND_TO_PORT": "8080"})
    small = execution_parameters_payload(replace(config, max_request_bytes=100_000, compute_threads=2))
    assert "MaxPayloadInMB" not in small, "a limit under 1 MB cannot be expressed; 0 would mean unlimited"
    assert small["BatchStrategy"] == "SINGLE_RECORD"
    six = execution_parameters_payload(replace(config, max_request_bytes=6 * 1024 * 1024, compute_threads=2))
    assert six["MaxPayloadInMB"] == 6
    # Transform jobs refuse MaxConcurrentTransforms x MaxPayloadInMB over 100.
    big = execution_parameters_payload(replace(config, max_request_bytes=32 * 1024 * 1024, compute_threads=8))
    assert big["MaxPayloadInMB"] * big["MaxConcurrentTransforms"] <= 100  # type: ignore[operator]


@pytest.mark.torch
def test_a_fifo_or_an_empty_directory_fails_package_verification(torch_package: Path, tmp_path: Path) -> None:
    with_fifo = tmp_path / "fifo"
    shutil.copytree(torch_package, with_fifo)
    os.mkfifo(with_fifo / "pipe")
    with pytest.raises(IntegrityError, match="pipe is not a regular file"):
        verify_integrity(with_fifo)
    with_dir = tmp_path / "empty"
    shutil.copytree(torch_package, with_dir)
    (with_dir / "nothing").mkdir()
    with pytest.raises(IntegrityError, match="nothing is an empty directory"):
        verify_integrity(with_dir)


@pytest.mark.torch
def test_every_route_settles_its_response_type_before_the_model_runs(torch_package: Path) -> None:
    async def model_calls(client: httpx.AsyncClient) -> float:
        text = (await client.get("/metrics")).text
        return float(
            next(line for line in text.splitlines() if line.startswith("model_server_batch_rows_count")).split()[-1]
        )

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        tensor = {"name": "x", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}}
        header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
        binary = {
            "content": header + np.zeros(64, np.float32).tobytes(),
            "headers": {"Inference-Header-Content-Length": str(len(header))},
        }
        v2 = {"json": {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}}
        cases: list[tuple[str, dict[str, object], str]] = [
            ("/invocations", {"json": ROW}, "text/html"),
            ("/predict", {"json": {"instances": ROW}}, "text/html"),
            ("/v1/models/mlp:predict", {"json": {"instances": ROW}}, "text/html"),
            ("/v2/models/mlp/infer", v2, "application/octet-stream"),
            ("/v2/models/mlp/infer", binary, "application/json"),  # binary outputs asked for: not JSON
        ]
        for path, request, accept in cases:
            before = await model_calls(client)
            headers = {**request.get("headers", {}), "Accept": accept}  # type: ignore[dict-item]
            refused = await client.post(path, **{**request, "headers": headers})  # type: ignore[arg-type]
            assert refused.status_code == 406, (path, refused.text)
            assert await model_calls(client) == before, f"{path}: the model ran before the 406"
            ok = await client.post(path, **request)  # type: ignore[arg-type]
            assert ok.status_code == 200, (path, ok.text)
            assert await model_calls(client) == before + 1

    run(torch_package, scenario)
