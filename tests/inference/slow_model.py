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
    """A fixed cost per call whatever the batch size: ``products`` products of two ``size`` x ``size``
    matrices (a few large ones export much faster than many small ones of the same cost)."""

    def __init__(self, size: int, products: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size, size) / (size**0.5))
        self.products = products

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.weight
        for _ in range(self.products):
            state = torch.tanh(state @ self.weight)
        return x @ state[:8, :2]


def export_slow_model(out: Path, *, size: int, products: int) -> Path:
    """``SlowModel(size, products)`` (seeded) exported as package ``out`` (8 inputs -> 2 outputs)."""
    torch.manual_seed(0)
    inputs = {"x": np.ones((2, 8), dtype=np.float32)}
    export_model(SlowModel(size, products).eval(), inputs, out, name=out.name, version="1", rtol=1e-3, atol=1e-4)
    return out


@pytest.fixture(scope="module")
def slow_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 ms (two fast cores) to a quarter of a second (one slow core) per call."""
    return export_slow_model(tmp_path_factory.mktemp("slow") / "slow", size=384, products=60)


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
