"""A package with a dynamic sequence axis, served: requests of different lengths on every protocol.

The package is exported from a real tiny transformer-shaped model (token and
position embeddings, masked attention); requests go through the real ASGI app.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from inference.app import create_app
from inference.config import load_config
from inference.metrics import ServerMetrics
from inference.service import load_service
from model_package.export import export_model
from tests.model_package import torch_models

pytestmark = pytest.mark.torch

ATOL = 1e-5


def _live(inputs: dict[str, np.ndarray]) -> np.ndarray:
    model = torch_models.make_tiny_encoder()
    with torch.inference_mode():
        out: torch.Tensor = model(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]))
    return out.numpy()


@pytest.mark.parametrize("fmt", ["torch_export", "onnx"])
def test_requests_of_two_sequence_lengths_are_answered_on_every_protocol(fmt: str, tmp_path: Path) -> None:
    package = tmp_path / "enc"
    export_model(
        torch_models.make_tiny_encoder(), torch_models.token_inputs(3, 6), package, name="enc", version="1", format=fmt
    )
    short, long = torch_models.token_inputs(2, 4, seed=1), torch_models.token_inputs(3, 13, seed=2)

    config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING"}, model_dir=package)
    metrics = ServerMetrics()
    service = load_service(config, observer=metrics)
    app = create_app(service, config, metrics)

    async def scenario() -> list[tuple[np.ndarray, np.ndarray]]:
        await service.start()
        results = []
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                for inputs in (short, long):
                    columns = {name: array.tolist() for name, array in inputs.items()}
                    response = await client.post("/invocations", json={"inputs": columns})
                    assert response.status_code == 200, response.text
                    results.append((np.asarray(response.json()["predictions"]), _live(inputs)))
                    tensors = [
                        {"name": name, "datatype": "INT64", "shape": list(array.shape), "data": array.ravel().tolist()}
                        for name, array in inputs.items()
                    ]
                    response = await client.post("/v2/models/enc/infer", json={"inputs": tensors})
                    assert response.status_code == 200, response.text
                    (output,) = response.json()["outputs"]
                    results.append((np.asarray(output["data"]).reshape(output["shape"]), _live(inputs)))
                # The rank is still checked: a flat list of ids is not a batch of sequences.
                response = await client.post(
                    "/invocations", json={"inputs": {"input_ids": [1, 2], "attention_mask": [1, 1]}}
                )
                assert response.status_code == 400
                assert "input_ids" in response.json()["error"]
                # A row of no tokens: a 400 naming the axis on every protocol, not NaN answered as null
                # with a 200 (torch_export, ONNX: the masked mean of nothing) or a framework's 500.
                empty = {"input_ids": [[]], "attention_mask": [[]]}
                response = await client.post("/invocations", json={"inputs": empty})
                assert response.status_code == 400, response.text
                assert "nothing on axis 1" in response.json()["error"]
                empty_tensors = [
                    {"name": name, "datatype": "INT64", "shape": [1, 0], "data": []} for name in sorted(empty)
                ]
                response = await client.post("/v2/models/enc/infer", json={"inputs": empty_tensors})
                assert response.status_code == 400, response.text
                assert "nothing on axis 1" in response.json()["error"]
                # A mask shorter than its ids: the program's guard (torch_export) or ONNX Runtime's broadcast
                # failed inside the model, a 500; both formats tie the axes, so it is the client's 400.
                mismatched = {"input_ids": [[5, 6, 7]], "attention_mask": [[1, 1]]}
                response = await client.post("/invocations", json={"inputs": mismatched})
                assert response.status_code == 400, response.text
                assert "'input_ids' (axis 1) and 'attention_mask' (axis 1) must have the same size" in response.text
                # A mask of all 0s is the empty row by another name: NaN answered as null with a 200.
                masked = {"input_ids": [[5, 6, 7]], "attention_mask": [[0, 0, 0]]}
                response = await client.post("/invocations", json={"inputs": masked})
                assert response.status_code == 400, response.text
                assert "row 0 of input 'attention_mask' is all 0" in response.json()["error"]
                masked_tensors = [
                    {"name": name, "datatype": "INT64", "shape": [1, 3], "data": values[0]}
                    for name, values in masked.items()
                ]
                response = await client.post("/v2/models/enc/infer", json={"inputs": masked_tensors})
                assert response.status_code == 400, response.text
                # One token past the model's 32 learned positions: ids past the position table failed inside
                # the model (torch's "index out of range", ONNX Runtime's Gather bounds), a 500 that alarms
                # and automatic rollback count. The table's size is read from the graph: a 400 naming it.
                too_long = torch_models.token_inputs(1, 33, seed=3)
                response = await client.post(
                    "/invocations", json={"inputs": {name: array.tolist() for name, array in too_long.items()}}
                )
                assert response.status_code == 400, response.text
                assert "has size 33 on axis 1; this model takes at most 32 there" in response.json()["error"]
                longest = torch_models.token_inputs(1, 32, seed=3)
                response = await client.post(
                    "/invocations", json={"inputs": {name: array.tolist() for name, array in longest.items()}}
                )
                assert response.status_code == 200, response.text
                results.append((np.asarray(response.json()["predictions"]), _live(longest)))
        finally:
            await service.stop()
        return results

    for got, want in asyncio.run(scenario()):
        np.testing.assert_allclose(got, want, atol=ATOL)
