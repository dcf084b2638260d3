"""Vertex AI and Cloud Run: the health and predict routes from AIP_HEALTH_ROUTE / AIP_PREDICT_ROUTE.

``{"instances": [...], "parameters": {...}}`` in, ``{"predictions": [...]}``
out; the health route is 200 only when the model is loaded and not draining.
KServe V1's ``:predict`` speaks the same JSON (:class:`InstancesExchange`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.codecs import check_json_exchange, decode_request
from inference.codecs.media_types import accept_header
from inference.config import ServerConfig
from inference.dataplane import Answer, DataPlane, InferenceRequest, Tensors
from inference.errors import BadRequestError

if TYPE_CHECKING:
    from inference.service import ModelService
    from model_package.pipeline.runner import RawItem

JSON = "application/json"
_OBJECT = re.compile(rb"\s*\{")


@dataclass(slots=True)
class InstancesExchange:
    """A JSON object with ``instances`` (and optional ``parameters``) in, ``{"predictions": [...]}`` out."""

    content_type: str | None
    accept: str | None
    allow_non_finite: bool
    shape: str = '{"instances": [...], "parameters": {...}}'
    """The body's shape, as the route's documentation writes it (for the 400 when it is not an object)."""
    tensors_for_hooks: ClassVar[bool] = False

    def check(self, body: bytes, service: ModelService) -> None:
        """JSON both ways (415/406) and a JSON object, before any decode."""
        check_json_exchange(self.content_type, self.accept)
        if _OBJECT.match(body) is None:
            raise BadRequestError(f"the body must be a JSON object {self.shape}")

    def pipeline_items(self, body: bytes, kind: str, *, id_depth: int) -> list[RawItem]:
        """The instances as raw items: texts as strings, images as ``{"b64": ...}``."""
        from inference.pipeline.requests import json_items

        return json_items(body, kind, id_depth=id_depth)

    def pipeline_answer(self, answers: list[dict[str, Any]]) -> Answer:
        """``{"predictions": [...]}``."""
        from inference.pipeline import answers_body

        return Answer(answers_body(answers), JSON)

    def decode(self, body: bytes, service: ModelService) -> Tensors:
        """The instances as the signature's tensors."""
        return decode_request(
            body, JSON, service.signature, allow_non_finite=self.allow_non_finite, limits=service.limits
        )

    def encode(self, outputs: Mapping[str, np.ndarray], service: ModelService) -> Answer:
        """``{"predictions": [...]}``."""
        payload, media_type = service.encode(outputs, JSON, default=JSON)
        return Answer(payload, media_type)


def routes(plane: DataPlane, config: ServerConfig) -> list[BaseRoute]:
    """The Vertex AI routes over ``plane`` (skipped where they would shadow SageMaker's)."""
    service = plane.service

    async def health(_: Request) -> Response:
        healthy = service.healthy
        return Response(b"{}" if healthy else b'{"status":"not ready"}', 200 if healthy else 503, media_type=JSON)

    async def predict(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        exchange = InstancesExchange(headers.get("content-type"), accept_header(headers), config.allow_non_finite)
        answer = await plane.infer(InferenceRequest(body, headers, exchange))
        return Response(answer.body, media_type=answer.media_type, headers=answer.headers)

    taken = {"/ping", "/invocations", "/execution-parameters", "/metrics"}
    result: list[BaseRoute] = []
    if config.health_route not in taken:
        result.append(Route(config.health_route, health, methods=["GET"]))
    if config.predict_route not in taken:
        result.append(Route(config.predict_route, predict, methods=["POST"]))
    return result
