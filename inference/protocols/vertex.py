"""Vertex AI and Cloud Run: the health and predict routes from AIP_HEALTH_ROUTE / AIP_PREDICT_ROUTE.

``{"instances": [...], "parameters": {...}}`` in, ``{"predictions": [...]}``
out; the health route is 200 only when the model is loaded and not draining.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.codecs import check_json_exchange, decode_request
from inference.config import ServerConfig
from inference.errors import BadRequestError
from inference.protocols.sagemaker import invoke_user_code
from inference.service import ModelService

JSON = "application/json"


def routes(service: ModelService, config: ServerConfig) -> list[BaseRoute]:
    """The Vertex AI routes bound to ``service`` (skipped where they would shadow SageMaker's)."""

    async def health(_: Request) -> Response:
        healthy = service.healthy
        return Response(b"{}" if healthy else b'{"status":"not ready"}', 200 if healthy else 503, media_type=JSON)

    async def predict(request: Request) -> Response:
        body = await request.body()
        if service.user_code is not None:
            return await invoke_user_code(service, request, body)
        check_json_exchange(request.headers.get("content-type"), request.headers.get("accept"))
        if not body.lstrip().startswith(b"{"):
            raise BadRequestError('the body must be a JSON object {"instances": [...], "parameters": {...}}')
        if service.pipeline is not None:
            from inference.pipeline import answer_raw_request

            answered = await answer_raw_request(service, body, JSON, JSON, json_only=True)
            assert answered is not None
            return answered
        inputs = await service.offload.run(
            len(body),
            lambda: decode_request(
                body, JSON, service.signature, allow_non_finite=config.allow_non_finite, limits=service.limits
            ),
        )
        outputs = await service.predict(inputs)
        payload, media_type = service.encode(outputs, JSON, default=JSON)
        return Response(payload, media_type=media_type)

    taken = {"/ping", "/invocations", "/execution-parameters", "/metrics"}
    result: list[BaseRoute] = []
    if config.health_route not in taken:
        result.append(Route(config.health_route, health, methods=["GET"]))
    if config.predict_route not in taken:
        result.append(Route(config.predict_route, predict, methods=["POST"]))
    return result
