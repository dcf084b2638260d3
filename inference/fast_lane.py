"""The data plane's shortcut for its commonest request: a small JSON batch to a single-input model.

SageMaker's ``POST /invocations``, Vertex AI's predict route and KServe V1's ``:predict`` for the
served model, with ``Content-Type: application/json``, a JSON answer, a body under the off-loop
threshold holding ``{"instances": [...]}`` of plain numbers (or, on ``/invocations``, a bare list of
rows), to a package without user code or a pipeline whose one input is a float tensor. On a small
model, the general path's per-request machinery (Starlette's ``Request``/``Response``, the
protocol's exchange object, media-type parsing and negotiation, codec dispatch, the offload
decisions) cost as much as the model call: about 85 µs of 450 per request in one process
(``python -m bench.request_overhead``), where bare Starlette takes 220-260.

The lane calls the same steps the general path does, in the same order — ``coerce`` and
``check_decoded`` (decoding's cast and checks), ``ModelService.check_answer_fits``,
``ModelService.predict`` (readiness, validation, batching, the deadline), ``ModelService.encode``
(the response limit) — so an answer, or an error, is the same as the general path's, byte for byte
(``tests/inference/test_fast_lane.py`` compares them). Anything else (another media type or form,
strings, booleans or nulls, parameters, a shape the signature does not have, a large body) is
handed, with the body already read, to the general path unchanged: the lane decides before anything
but parsing has run, and a request it hands over costs one extra ``orjson.loads`` of a small body.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import orjson

from inference.codecs.arrays import coerce
from inference.codecs.dispatch import check_decoded
from inference.dataplane import JSON, nbytes, time_left
from inference.offload import OFF_LOOP_BYTES

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from inference.config import ServerConfig
    from inference.service import ModelService

_ANY: Final = b"*/*"
_JSON_TYPE: Final = JSON.encode()


class Lane(Protocol):
    """A shortcut for one route: which requests it takes (by their headers), and their answers."""

    def takes(self, scope: Scope) -> bool:
        """Whether the headers alone leave the request to the lane (nothing has been read yet)."""

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> Message | None:
        """Answer the request (``None``), or give back the body read so far, as one message, for the general path."""


class JsonBatchLane:
    """A small JSON batch of plain numbers to a model with one float input, on one route."""

    def __init__(
        self, service: ModelService, config: ServerConfig, *, default_response_type: str, bare_list: bool
    ) -> None:
        self.service = service
        self.spec = service.signature.inputs[0]
        self.allow_non_finite = config.allow_non_finite
        self.bare_list = bare_list
        """Whether the route reads a bare list as the batch (SageMaker's does; Vertex AI's wants an object)."""
        # The route answers JSON for these Accept values (absent or */* only when that is its default).
        self.accepts: set[bytes | None] = {_JSON_TYPE}
        if default_response_type == JSON:
            self.accepts |= {None, _ANY}

    @classmethod
    def for_service(
        cls, service: ModelService, config: ServerConfig, *, default_response_type: str, bare_list: bool
    ) -> JsonBatchLane | None:
        """The lane over ``service``, or ``None`` when this package's requests never take it.

        ``default_response_type`` is what the route answers when ``Accept`` is absent or ``*/*``.
        """
        if service.user_code is not None or service.pipeline is not None or service.batcher is None:
            return None
        inputs = service.signature.inputs
        if len(inputs) != 1 or inputs[0].dtype not in ("float16", "float32", "float64"):
            return None
        return cls(service, config, default_response_type=default_response_type, bare_list=bare_list)

    def takes(self, scope: Scope) -> bool:
        content_type = accept = None
        for name, value in scope["headers"]:
            # The first of repeated headers, as Starlette's ``Headers.get`` (the general path) reads them.
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"accept":
                if accept is not None:
                    return False  # several Accept lines: the general path joins them (accept_header)
                accept = value
        return content_type == _JSON_TYPE and accept in self.accepts

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> Message | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client left: the general path says so
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = bool(message.get("more_body", False))
            if size >= OFF_LOOP_BYTES or not more:
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        unread: Message = {"type": "http.request", "body": body, "more_body": more}
        if more or size >= OFF_LOOP_BYTES:
            return unread  # large bodies are decoded off the loop, by the general path
        service, spec = self.service, self.spec
        loop = asyncio.get_running_loop()
        deadline = loop.time() + service.request_timeout
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return unread  # the general path words the error (and reads NaN the standard library's way)
        if type(data) is dict and data.keys() == {"instances"}:
            data = data["instances"]
        elif not self.bare_list:
            return unread
        if type(data) is not list:
            return unread
        try:
            array = np.asarray(data)
        except ValueError:
            return unread  # ragged rows: the general path says which
        if array.dtype.kind not in "fi" or array.ndim != len(spec.shape):
            return unread
        # From here, decoding's own steps and checks, then the data plane's, in their order.
        inputs = {spec.name: coerce(array, spec, allow_non_finite=self.allow_non_finite)}
        check_decoded(inputs, service.signature, service.limits)
        service.check_answer_fits(inputs)
        outputs = await service.predict(inputs, timeout=time_left(deadline, loop, service))
        encode = functools.partial(service.encode, outputs, None, default=JSON)
        payload, media_type = await service.offload.run(nbytes(outputs), encode)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                # What Starlette's Response writes for the general path, in its order.
                "headers": [(b"content-length", str(len(payload)).encode()), (b"content-type", media_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return None
