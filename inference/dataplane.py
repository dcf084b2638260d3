"""The data plane: one entry point from any protocol's request to its answer.

Every predict route (SageMaker's ``/invocations``, Vertex AI's predict route, KServe V1's
``:predict``, the Open Inference Protocol's ``infer``) reads its body and headers, pairs them with
its :class:`Exchange` (how that protocol's bodies become tensors and tensors become bodies) and
calls :meth:`DataPlane.infer`, which owns everything else, in this order:

1. the request's deadline starts (decoding, queueing and computing all count against it);
2. the path: the package's own hooks (user code), its declared pipeline (raw images or texts),
   or the built-in path;
3. what the headers alone decide, before any decode: the request type (415) and the response
   type (406), so a refusal never costs a model call;
4. decode, off the event loop for large bodies, and validation against the signature (400, 413);
5. admission and compute: readiness (503), the bounded queue (503 with ``Retry-After``), the
   deadline (504), batching with other requests;
6. encode within the platform's response limit (413 or a logged 500), off the loop for large answers;
   an answer that cannot fit in any encoding is refused before step 5.

Nothing here writes HTTP: errors are raised and mapped to statuses in one place
(``inference.errors.http_error``, answered by ``inference.app``); protocols turn an :class:`Answer`
into their response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from inference.codecs.media_types import accept_header
from inference.errors import DeadlineExceededError

if TYPE_CHECKING:
    from inference.service import ModelService
    from model_package.pipeline.runner import RawItem

Tensors = dict[str, np.ndarray]


@dataclass(slots=True)
class Answer:
    """A protocol-neutral answer: the body, its media type, and headers for the response."""

    body: bytes
    media_type: str
    headers: dict[str, str] | None = None


class Exchange(Protocol):
    """How one protocol's request becomes tensors and its answer a body, for one request.

    Implementations live with their protocol (``inference.protocols``) and call the codecs
    (``inference.codecs``); they hold the request's headers and whatever decoding learnt that
    encoding needs (the Open Inference Protocol's request id and requested outputs).
    """

    tensors_for_hooks: ClassVar[bool]
    """True when user code gets this protocol's decoded tensors, False when it gets the whole body (``input_fn``)."""

    def check(self, body: bytes, service: ModelService) -> None:
        """Refuse what the headers and the body's framing decide alone (415, 406, 400), before any decode."""

    def pipeline_items(self, body: bytes, kind: str, *, id_depth: int) -> list[RawItem] | None:
        """The raw items (images, texts, ids) for a package's pipeline, or ``None`` when the body holds tensors.

        ``id_depth``: how deep an instance of ids may nest lists (``PipelineService.id_depth``).
        """

    def pipeline_answer(self, answers: list[dict[str, Any]]) -> Answer:
        """The pipeline's answers in this protocol's shape."""

    def decode(self, body: bytes, service: ModelService) -> Tensors:
        """The request's named input tensors (not yet validated against the signature); settles the response type."""

    def encode(self, outputs: Mapping[str, np.ndarray], service: ModelService) -> Answer:
        """The answer to ``outputs``, within the service's response limit."""


@dataclass(slots=True)
class InferenceRequest:
    """What a protocol read from HTTP: the body, the lower-cased headers, and how to read and answer it."""

    body: bytes
    headers: Mapping[str, str]
    exchange: Exchange


class DataPlane:
    """Runs requests of every protocol through one path over a loaded :class:`ModelService`."""

    def __init__(self, service: ModelService, *, whole_body_routes: str) -> None:
        """``whole_body_routes`` names the routes a request can use when its protocol cannot reach the hooks."""
        self.service = service
        self._whole_body_routes = whole_body_routes

    async def infer(self, request: InferenceRequest) -> Answer:
        """Answer one request, or raise the error that says why not (see the module docstring)."""
        service, exchange, body = self.service, request.exchange, request.body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + service.request_timeout
        user_code = service.user_code
        if user_code is not None and not exchange.tensors_for_hooks:
            return await self._hooks_on_body(request, deadline)
        if user_code is not None and "transform_fn" in user_code.hooks:
            from inference.user_code.invocation import NotImplementedForHooksError

            raise NotImplementedForHooksError(
                f"model {service.name!r} runs through its package's transform_fn, which takes a whole request "
                f"body, not this protocol's tensors; use {self._whole_body_routes} instead"
            )
        exchange.check(body, service)
        if service.pipeline is not None:
            kind, depth = service.pipeline.kind, service.pipeline.id_depth
            items = await service.offload.run(len(body), lambda: exchange.pipeline_items(body, kind, id_depth=depth))
            if items is not None:
                # No preprocessing or model call for an answer that cannot be sent.
                service.pipeline.check_answer_fits(
                    len(items), lambda some: exchange.pipeline_answer(some).body, service.response_limit
                )
                timeout = time_left(deadline, loop, service)
                answers = await service.pipeline.answer(items, service.predict, timeout=timeout)
                return exchange.pipeline_answer(answers)
        inputs = await service.offload.run(len(body), lambda: exchange.decode(body, service))
        timeout = time_left(deadline, loop, service)
        if user_code is None:
            service.check_answer_fits(inputs)  # no compute for an answer no encoding could send
            outputs = await service.predict(inputs, timeout=timeout)
            return await service.offload.run(nbytes(outputs), lambda: exchange.encode(outputs, service))
        from inference.user_code import RequestContext

        context = RequestContext.from_headers(request.headers)
        outputs = await service.predict_with_hooks(inputs, context, timeout=timeout)
        answer = await service.offload.run(nbytes(outputs), lambda: exchange.encode(outputs, service))
        if context.response_headers:  # what the hooks set, never over the protocol's own headers
            owned = {name.lower() for name in answer.headers or ()}
            hooks = {name: value for name, value in context.response_headers.items() if name.lower() not in owned}
            answer.headers = {**hooks, **(answer.headers or {})}
        return answer

    async def _hooks_on_body(self, request: InferenceRequest, deadline: float) -> Answer:
        """The whole body through the package's hooks (``input_fn`` -> prediction -> ``output_fn``)."""
        from inference.user_code import RequestContext

        service = self.service
        context = RequestContext.from_headers(request.headers)
        payload, media_type = await service.invoke_user_code(
            request.body,
            request.headers.get("content-type", JSON),
            accept_header(request.headers) or JSON,
            context,
            timeout=time_left(deadline, asyncio.get_running_loop(), service),
        )
        return Answer(payload, media_type, context.response_headers or None)


JSON = "application/json"


def time_left(deadline: float, loop: asyncio.AbstractEventLoop, service: ModelService) -> float:
    """What is left of the request's deadline; 504 when decoding or preprocessing used it all."""
    remaining = deadline - loop.time()
    if remaining <= 0:
        raise DeadlineExceededError(
            f"the request did not complete within its {service.request_timeout:g} s deadline "
            "(reading and decoding it took it all) and was dropped"
        )
    return remaining


def nbytes(outputs: Mapping[str, np.ndarray]) -> int:
    """Roughly what encoding ``outputs`` costs (text encodings write several bytes per value)."""
    return sum(int(array.nbytes) for array in outputs.values())
