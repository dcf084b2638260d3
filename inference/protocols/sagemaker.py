"""SageMaker's container contract: GET /ping, POST /invocations, GET /execution-parameters.

/ping is 200 only once the model is loaded and warmed up, and 503 while the
server drains; /invocations accepts any supported media type (or the package's
own ``input_fn``/``output_fn``), with ``X-Amzn-SageMaker-Custom-Attributes``
passed to user code and echoed when user code sets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.codecs import (
    RESPONSE_MEDIA_TYPES,
    decode_request,
    negotiate,
    parse_media_type,
    response_media_type,
)
from inference.codecs.jsonlines_codec import JSON_LINES_MEDIA_TYPES
from inference.codecs.media_types import accept_header
from inference.config import MIB, ServerConfig
from inference.dataplane import Answer, DataPlane, InferenceRequest, Tensors

if TYPE_CHECKING:
    from inference.service import ModelService
    from model_package.pipeline.runner import RawItem

JSON = "application/json"
_READY = b'{"status":"ready"}'
_NOT_READY = b'{"status":"not ready"}'
#: Media types with one record per line, answered line for line when the client names no response type.
LINE_MEDIA_TYPES = ("text/csv", *JSON_LINES_MEDIA_TYPES)


def routes(plane: DataPlane, config: ServerConfig) -> list[BaseRoute]:
    """The SageMaker routes over ``plane``'s model service."""
    service = plane.service

    async def ping(_: Request) -> Response:
        healthy = service.healthy
        return Response(_READY if healthy else _NOT_READY, 200 if healthy else 503, media_type=JSON)

    async def invocations(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        exchange = MediaTypeExchange(
            headers.get("content-type"),
            accept_header(headers),
            default_response_type(headers.get("content-type"), config.default_accept),
            config.allow_non_finite,
        )
        answer = await plane.infer(InferenceRequest(body, headers, exchange))
        return Response(answer.body, media_type=answer.media_type, headers=answer.headers)

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


@dataclass(slots=True)
class MediaTypeExchange:
    """``/invocations``: any supported media type in (``Content-Type``), the best one ``Accept`` allows out."""

    content_type: str | None
    accept: str | None
    default: str
    """The response type when ``Accept`` is absent or ``*/*`` (see :func:`default_response_type`)."""
    allow_non_finite: bool
    tensors_for_hooks: ClassVar[bool] = False

    def check(self, body: bytes, service: ModelService) -> None:
        """Settle the response type before any decode: a 406 costs no model call."""
        if service.pipeline is None:
            response_media_type(self.accept, service.signature, default=self.default)

    def pipeline_items(self, body: bytes, kind: str, *, id_depth: int) -> list[RawItem] | None:
        """Images or texts in their own media types (or JSON); ``None`` for the tensor media types."""
        from inference.pipeline.requests import parse_items

        items = parse_items(body, self.content_type, kind, id_depth=id_depth)
        if items is not None:
            negotiate(self.accept, (JSON,), JSON)  # a pipeline answers in JSON: refuse with 406 before any work
        return items

    def pipeline_answer(self, answers: list[dict[str, Any]]) -> Answer:
        """``{"predictions": [...]}``."""
        from inference.pipeline import answers_body

        return Answer(answers_body(answers), JSON)

    def decode(self, body: bytes, service: ModelService) -> Tensors:
        """The body in its ``Content-Type`` (415 for one we cannot read)."""
        if service.pipeline is not None:  # the response type was not settled by check(): a tensor request after all
            response_media_type(self.accept, service.signature, default=self.default)
        return decode_request(
            body, self.content_type, service.signature, allow_non_finite=self.allow_non_finite, limits=service.limits
        )

    def encode(self, outputs: Mapping[str, np.ndarray], service: ModelService) -> Answer:
        """The outputs in the negotiated media type."""
        payload, media_type = service.encode(outputs, self.accept, default=self.default)
        return Answer(payload, media_type)
