"""Serve a package in-process (no sockets) for tests: the real app over ``httpx.ASGITransport``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from inference.app import create_app
from inference.config import load_config
from inference.metrics import ServerMetrics
from inference.service import ModelService, load_service

Scenario = Callable[[httpx.AsyncClient, ModelService], Coroutine[Any, Any, None]]


def run(package: Path, scenario: Scenario, env: dict[str, str] | None = None) -> None:
    """Serve ``package`` with ``env`` (``MODEL_SERVER_*``) and run ``scenario`` against it."""
    config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING", **(env or {})}, model_dir=package)
    metrics = ServerMetrics()
    service = load_service(config, observer=metrics)
    app = create_app(service, config, metrics)

    async def main() -> None:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await scenario(client, service)
        finally:
            await service.stop()

    asyncio.run(main())


def mlp_with_code(root: Path, code: str) -> Path:
    """The 64 -> 10 MLP package ``mlp`` with ``code`` as its ``code/inference.py``, built under ``root``."""
    from model_package.export import export_model
    from tests.model_package import torch_models

    code_dir = root / "code"
    code_dir.mkdir()
    (code_dir / "inference.py").write_text(code)
    package = root / "mlp"
    export_model(
        torch_models.make_mlp(), torch_models.mlp_inputs(2), package, name="mlp", version="1", code_dir=code_dir
    )
    return package
