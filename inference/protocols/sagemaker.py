"""SageMaker's container contract: GET /ping, POST /invocations, GET /execution-parameters.

/ping is 200 only once the model is loaded and warmed up, and 503 while the
server drains; /invocations accepts any supported media type (or the package's
own ``input_fn``/``output_fn``), with ``X-Amzn-SageMaker-Custom-Attributes``
passed to user code and echoed when user code sets it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.codecs import RESPONSE_MEDIA_TYPES, decode_request, encode_response, negotiate
from inference.config import MIB, ServerConfig
from inference.service import ModelService

CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
JSON = "application/json"
_READY = b'{"status":"ready"}'
_NOT_READY = b'{"status":"not ready"}'


def routes(service: ModelService, config: ServerConfig) -> list[BaseRoute]:
    """The SageMaker routes bound to ``service``."""

    async def ping(_: Request) -> Response:
        healthy = service.healthy
        return Response(_READY if healthy else _NOT_READY, 200 if healthy else 503, media_type=JSON)

    async def invocations(request: Request) -> Response:
        body = await request.body()
        content_type = request.headers.get("content-type")
        accept = request.headers.get("accept")
        if service.user_code is not None:
            return await invoke_user_code(service, request, body)
        # Negotiate before computing: a 406 should not cost a model call.
        negotiate(accept, RESPONSE_MEDIA_TYPES, JSON)
        inputs = decode_request(
            body, content_type, service.signature, allow_non_finite=config.allow_non_finite, limits=service.limits
        )
        outputs = await service.predict(inputs)
        payload, media_type = encode_response(outputs, accept, service.signature, default=JSON)
        return Response(payload, media_type=media_type)

    async def execution_parameters(_: Request) -> Response:
        # Batch transform asks how to drive us: several records per request, within our body limit.
        import orjson

        return Response(
            orjson.dumps(
                {
                    "MaxConcurrentTransforms": max(1, config.compute_threads),
                    "BatchStrategy": "MULTI_RECORD",
                    "MaxPayloadInMB": max(1, config.max_request_bytes // MIB),
                }
            ),
            media_type=JSON,
        )

    return [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
    ]


async def invoke_user_code(service: ModelService, request: Request, body: bytes) -> Response:
    """Run the package's SageMaker-style hooks through the service's admission control."""
    from inference.user_code import RequestContext

    headers = {name.lower(): value for name, value in request.headers.items()}
    context = RequestContext(
        custom_attributes=headers.get(CUSTOM_ATTRIBUTES), request_headers=headers, response_headers={}
    )
    payload, media_type = await service.invoke_user_code(
        body, headers.get("content-type", JSON), headers.get("accept", JSON), context
    )
    return Response(payload, media_type=media_type, headers=context.response_headers)
