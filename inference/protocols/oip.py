"""Open Inference Protocol (V2) and KServe V1 REST routes (to be filled in)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from inference.config import ServerConfig
from inference.service import ModelService


def routes(service: ModelService, config: ServerConfig) -> list[BaseRoute]:
    """The OIP/KServe routes bound to ``service``."""
    return []
