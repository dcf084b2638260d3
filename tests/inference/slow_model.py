"""A model slow enough to queue requests behind it, and many concurrent requests to a server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from torch import nn

from model_package.export import export_model
from tests.inference.server_fixtures import ServerProcess


class SlowModel(nn.Module):
    """20 ms (two fast cores) to a quarter of a second (one slow core) per call, whatever the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(384, 384) / 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.weight
        for _ in range(60):
            state = torch.tanh(state @ self.weight)
        return x @ state[:8, :2]


@pytest.fixture(scope="module")
def slow_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("slow") / "slow"
    inputs = {"x": np.ones((2, 8), dtype=np.float32)}
    export_model(SlowModel().eval(), inputs, out, name="slow", version="1", rtol=1e-3, atol=1e-4)
    return out


def post_many(server: ServerProcess, count: int, stagger: float = 0.01) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post("/invocations", json=[[1.0] * 8])
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join()
    return responses
