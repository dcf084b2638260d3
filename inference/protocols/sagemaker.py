"""SageMaker's container contract: GET /ping, POST /invocations, GET /execution-parameters.

/ping is 200 only once the model is loaded and warmed up, and 503 while the
server drains; /invocations accepts any supported media type (or the package's
own ``input_fn``/``output_fn``), with ``X-Amzn-SageMaker-Custom-Attributes``
passed to user code and echoed when user code sets it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.codecs import (
    RESPONSE_MEDIA_TYPES,
    decode_request,
    parse_media_type,
    response_media_type,
)
from inference.codecs.jsonlines_codec import JSON_LINES_MEDIA_TYPES
from inference.config import MIB, ServerConfig
from inference.service import ModelService

CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
JSON = "application/json"
_READY = b'{"status":"ready"}'
_NOT_READY = b'{"status":"not ready"}'
#: Media types with one record per line, answered line for line when the client names no response type.
LINE_MEDIA_TYPES = ("text/csv", *JSON_LINES_MEDIA_TYPES)


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
        if service.pipeline is not None:
            from inference.pipeline import answer_raw_request

            answered = await answer_raw_request(service, body, content_type, accept)
            if answered is not None:
                return answered
        default = default_response_type(content_type, config.default_accept)
        # Negotiate before computing: a 406 should not cost a model call.
        response_media_type(accept, service.signature, default=default)
        inputs = await service.offload.run(
            len(body),
            lambda: decode_request(
                body, content_type, service.signature, allow_non_finite=config.allow_non_finite, limits=service.limits
            ),
        )
        outputs = await service.predict(inputs)
        payload, media_type = await service.offload.run(
            _nbytes(outputs), lambda: service.encode(outputs, accept, default=default)
        )
        return Response(payload, media_type=media_type)

    async def execution_parameters(_: Request) -> Response:
        import orjson

        return Response(orjson.dumps(execution_parameters_payload(config)), media_type=JSON)

    return [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
    ]


def default_response_type(content_type: str | None, configured: str = JSON) -> str:
    """The response type when ``Accept`` is absent or ``*/*``.

    ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (``configured``) when it names a type we write; else CSV
    and JSON Lines requests are answered in kind, and everything else in JSON.

    A Batch Transform job whose ``TransformOutput.Accept`` is unset sends no Accept header, and with
    ``AssembleWith=Line`` it joins our answers line by line ("Use batch transform to run inference",
    https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html; TransformOutput API
    reference). A single JSON document for N input lines would be one output line: answering a line
    format in kind keeps one output line per input record.
    """
    if configured != JSON and configured in RESPONSE_MEDIA_TYPES:
        return configured
    media_type, _ = parse_media_type(content_type)
    return media_type if media_type in LINE_MEDIA_TYPES else JSON


def execution_parameters_payload(config: ServerConfig) -> dict[str, object]:
    """What batch transform should send us: several records per request, never more than our body limit.

    ``MaxPayloadInMB`` is a whole number of MB that transform jobs cap at 100 across concurrent
    transforms, and 0 means "unlimited, chunked" (CreateTransformJob API reference, MaxPayloadInMB).
    It is rounded down, so it never claims more than the limit allows; a limit under 1 MiB cannot
    be expressed, so the key is left out and records are sent one per request (SINGLE_RECORD).
    """
    concurrency = max(1, config.compute_threads)
    megabytes = min(config.max_request_bytes // MIB, 100 // concurrency)
    if megabytes < 1:
        return {"MaxConcurrentTransforms": concurrency, "BatchStrategy": "SINGLE_RECORD"}
    return {"MaxConcurrentTransforms": concurrency, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": megabytes}


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


def _nbytes(outputs: Mapping[str, np.ndarray]) -> int:
    """Roughly what encoding ``outputs`` costs (text encodings write several bytes per value)."""
    return sum(int(array.nbytes) for array in outputs.values())
