"""The ASGI application: every protocol's routes over one model service, plus /metrics.

Cross-cutting concerns live in one pure-ASGI middleware (cheap on the hot
path): a request id on every response, the request-size limit, metrics, and
errors turned into ``{"error": ...}`` JSON bodies that never carry a traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.client_left import ClientLeftNotice, notice_of, watch_receive
from inference.config import MIB, ServerConfig
from inference.dataplane import DataPlane
from inference.errors import (
    ApiError,
    ClientClosedRequestError,
    NotReadyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    http_error,
    is_server_fault,
)
from inference.fast_lane import JsonBatchLane, Lane
from inference.metrics import ServerMetrics
from inference.protocols import oip, sagemaker, vertex
from inference.response_limits import ResponseLimit, request_rows
from inference.service import ModelService
from model_package.errors import ModelPackageError

_log = logging.getLogger(__name__)
_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
JSON = "application/json"
#: After the drain, how long shutdown waits for model calls and hooks of requests already answered.
STOP_GRACE_S = 1.0


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (NumPy-aware)."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON)


def error_response(exc: BaseException, request_id: str | None = None) -> Response:
    """The status and ``{"error": ...}`` body for an exception raised while handling a request.

    Failures of ours are logged here, once, with the request id and the stack trace; their body
    carries the request id instead of any detail.
    """
    error = http_error(exc)
    # Messages quoting library errors can carry object reprs ("<ast.BinOp object at 0x7f...>"):
    # memory addresses help an attacker defeat ASLR and tell the client nothing.
    payload: dict[str, str] = {"error": _ADDRESS.sub("", error.message)}
    if is_server_fault(error):
        _log.error("request failed: %s", _describe(exc), extra={"request_id": request_id}, exc_info=exc)
        payload["error"] = f"{error.message}; the server log has the details under request id {request_id}"
    elif isinstance(error, ClientClosedRequestError):
        _log.info("the client disconnected before its request was complete", extra={"request_id": request_id})
    elif error.status < 500:
        # A batch job's error accounting reads the log too: the refused record (its line or instance
        # index is in the message) must be findable there, not only in the body the job discards.
        _log.info("request refused: %s", payload["error"], extra={"status": error.status, "request_id": request_id})
    if error.status >= 500 and request_id is not None:
        payload["request_id"] = request_id
    return json_response(payload, error.status, error.headers)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def create_app(service: ModelService, config: ServerConfig, metrics: ServerMetrics) -> ASGIApp:
    """Assemble the routes of every protocol and wrap them in the API middleware."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await service.start()
        _log.info("ready", extra={"model": service.name, "port": config.port, "platform": config.platform})
        try:
            yield
        finally:
            # uvicorn has already waited for requests up to the drain deadline and cut the rest: work
            # still running belongs to answered requests, and the platform's kill timer is close.
            await service.stop(grace=STOP_GRACE_S)
            _log.info("stopped")

    async def metrics_endpoint(_: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    plane = data_plane(service, config)
    routes: list[BaseRoute] = [
        *sagemaker.routes(plane, config),
        *vertex.routes(plane, config),
        *oip.routes(plane, config),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]

    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(exc, request.scope.get("state", {}).get("request_id"))

    # ApiError and ModelPackageError are answered by Starlette's inner exception middleware (no re-raise);
    # anything else by its outer one, which re-raises to ApiMiddleware after the response is sent.
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: handle, ModelPackageError: handle, HTTPException: handle, Exception: handle},
    )
    # Starlette answers POST /invocations/ with a 307 to the path without the slash, its Location built
    # from the request's Host header; an API client is better served by the 404 JSON every unknown path gets.
    app.router.redirect_slashes = False
    metrics.load_seconds.set(service.load_seconds)
    metrics.warmup_seconds.set(service.warmup_seconds)
    if service.batcher is not None:
        metrics.max_batch_size.set(service.batcher.max_batch_size)
    metrics.model_info.labels(service.name, service.manifest.version, service.manifest.format).set(1)
    return ApiMiddleware(
        app,
        max_request_bytes=config.max_request_bytes,
        platform=config.platform,
        metrics=metrics,
        direct_routes=direct_routes(routes, {"name": service.name, "version": service.manifest.version}),
        response_limit=service.response_limit,
        fast_lanes=fast_lanes(service, config, routes),
    )


def fast_lanes(
    service: ModelService, config: ServerConfig, routes: list[BaseRoute]
) -> dict[tuple[str, str], tuple[Lane, BaseRoute]]:
    """The data plane's shortcuts for this package, by ``(method, path)``, each with the route it
    answers for (see ``inference.fast_lane``)."""
    default = sagemaker.default_response_type(JSON, config.default_accept)
    invocations = JsonBatchLane.for_service(service, config, default_response_type=default, bare_list=True)
    if invocations is None:
        return {}
    # Vertex AI's predict route and KServe V1's :predict read the same {"instances": [...]} object
    # (``vertex.InstancesExchange``), JSON both ways whatever MODEL_SERVER_DEFAULT_ACCEPT says.
    instances = JsonBatchLane(service, config, default_response_type=JSON, bare_list=False)
    by_path = {route.path: route for route in routes if isinstance(route, Route) and "POST" in (route.methods or ())}
    # Where two share a path, the later entry wins, as the earlier route wins in Starlette's routing:
    # the order is the reverse of the routes' (SageMaker's, then Vertex AI's, then KServe's).
    wanted = [
        # V1's route has the model's name as a parameter; any other name is its general path's 404.
        (f"/v1/models/{service.name}:predict", instances, "/v1/models/{name}:predict"),
        (config.predict_route, instances, config.predict_route),
        ("/invocations", invocations, "/invocations"),
    ]
    return {("POST", path): (lane, by_path[template]) for path, lane, template in wanted if template in by_path}


def data_plane(service: ModelService, config: ServerConfig) -> DataPlane:
    """The one data plane every protocol's predict route hands its requests to."""
    return DataPlane(
        service,
        whole_body_routes=f"POST /v1/models/{service.name}:predict, /invocations or {config.predict_route}",
    )


#: A route the middleware calls itself, and the path parameters Starlette would have given it.
DirectRoute = tuple[Route, dict[str, str]]


def direct_routes(
    routes: list[BaseRoute], served: Mapping[str, str] | None = None
) -> dict[tuple[str, str], DirectRoute]:
    """``(method, path) -> (route, path parameters)`` for the paths the middleware routes itself.

    The middleware calls these endpoints itself: for an exact path, Starlette's router (a regular
    expression per route, in order), exception middlewares and per-layer ``send`` wrappers do
    nothing ours does not already do, and on a small model they cost a tenth of a request. The
    paths are the fixed ones, and those with parameters filled with ``served`` (the model's name
    and version: ``/v2/models/{name}/infer`` becomes the served model's own infer path). Each is
    routed as Starlette routes it, to the first route that fully matches, so another model's name,
    another version or another method still goes through Starlette (and its 404 or 405).
    """
    candidates: list[tuple[str, str]] = []
    for route in routes:
        if not isinstance(route, Route) or not set(route.param_convertors) <= set(served or {}):
            continue
        params = {name: (served or {})[name] for name in route.param_convertors}
        try:
            path = route.url_path_for(route.name, **params) if params else route.path
        except Exception:  # a value the route's convertors refuse: "/" in a str, "mlp" for an int
            continue
        candidates += [(method, path) for method in route.methods or ()]
    table: dict[tuple[str, str], DirectRoute] = {}
    for method, path in candidates:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                if isinstance(route, Route) and inspect.iscoroutinefunction(route.endpoint):
                    table.setdefault((method, path), (route, child.get("path_params", {})))
                break
    return table


class ApiMiddleware:
    """Request id, body-size limits, metrics and last-resort error handling for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_request_bytes: int,
        platform: str,
        metrics: ServerMetrics,
        direct_routes: dict[tuple[str, str], DirectRoute] | None = None,
        response_limit: ResponseLimit | None = None,
        fast_lanes: dict[tuple[str, str], tuple[Lane, BaseRoute]] | None = None,
    ) -> None:
        self.app = app
        self.fast_lanes = fast_lanes or {}
        """Shortcuts tried before the route's endpoint, with that route (see ``inference.fast_lane``)."""
        self.response_limit = response_limit
        self.max_request_bytes = max_request_bytes
        self.platform = platform
        self.metrics = metrics
        self.direct_routes = direct_routes or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id.decode()
        status = 500
        started = False
        replaced = False
        request_rows.set(None)

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, replaced
            if replaced:
                return  # the body of a response too large to send, already answered with an error
            if message["type"] == "http.response.start":
                if notice is not None:
                    notice.unwatch()  # the answer is going out: a client leaving now changes nothing
                oversized = self._oversized(message)
                if oversized is not None:
                    # Every route's answer passes here: user code, pipelines and protocols without a check of their own.
                    await error_response(oversized, request_id.decode())(scope, receive, send_with_id)
                    replaced = True
                    return
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        received = 0
        request_task = asyncio.current_task()
        # Set by the server's protocol (inference.client_left); under other ASGI servers, a watching task.
        notice = notice_of(scope)
        watcher: asyncio.Task[None] | None = None

        async def receive_limited() -> Message:
            nonlocal received, notice, watcher
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_request_bytes:
                    raise self._too_large(received)
                if not message.get("more_body", False) and not started:
                    # Queued work of a client that left is dropped: cancelling the request cancels its
                    # place in the batcher's queue or the admission gate before any model call.
                    if notice is None:
                        notice = ClientLeftNotice()
                        watcher = asyncio.get_running_loop().create_task(watch_receive(receive, notice))
                    notice.watch(request_task)
            return message

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_request_bytes:
                raise self._too_large(declared)
            _check_content_encoding(scope)
            # The tables hold whole paths: an app mounted under a root path is routed by Starlette alone.
            key = (scope["method"], scope["path"]) if not scope.get("root_path") else ("", "")
            shortcut = self.fast_lanes.get(key)
            unread: Message | None = None
            answered = False
            if shortcut is not None and shortcut[0].takes(scope):
                lane, scope["route"] = shortcut
                unread = await lane.answer(scope, receive_limited, send_with_id)
                answered = unread is None
            if not answered:
                # The general path; after a lane that declined, with the body it read.
                receive_rest = receive_limited if unread is None else _replaying(unread, receive_limited)
                direct = self.direct_routes.get(key)
                if direct is None:
                    await self.app(scope, receive_rest, send_with_id)
                else:
                    scope["route"], scope["path_params"] = direct[0], dict(direct[1])
                    await self._call_directly(direct[0], scope, receive_rest, send_with_id)
        except Exception as exc:
            # Starlette has already answered (and logged) unexpected errors and re-raised them; the
            # others (the size check above, a direct route) are answered and logged here.
            if not started:
                await error_response(exc, request_id.decode())(scope, receive, send_with_id)
        except asyncio.CancelledError:
            if started:
                raise
            if request_task is not None:
                request_task.uncancel()
            if notice is not None and notice.left:
                # Counted under 499 (client closed request), apart from successes and failures.
                status = ClientClosedRequestError.status
                _log.info(
                    "the client left before its answer; its work was dropped", extra={"request_id": request_id.decode()}
                )
            else:
                # uvicorn cancels requests still running at the drain deadline and would answer them with
                # a bare text/plain 500 and an ERROR log: answer with a 503 the client can retry elsewhere.
                _log.warning("request cut by the drain deadline", extra={"request_id": request_id.decode()})
                await error_response(_shutdown_error(), request_id.decode())(scope, receive, send_with_id)
        finally:
            if notice is not None:
                notice.unwatch()
            if watcher is not None:
                watcher.cancel()
            route = scope.get("route")
            self.metrics.observe_request(getattr(route, "path", "unmatched"), status, time.perf_counter() - start)

    async def _call_directly(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``route``'s endpoint as Starlette would, with the same error responses."""
        try:
            response = await route.endpoint(Request(scope, receive))
        except Exception as exc:
            response = error_response(exc, scope["state"]["request_id"])
        await response(scope, receive, send)

    def _oversized(self, start: Message) -> ApiError | None:
        """The error replacing a successful response whose ``Content-Length`` exceeds the response limit."""
        if self.response_limit is None or not 200 <= start["status"] < 300:
            return None
        length = _content_length({"headers": start.get("headers", ())})
        if length is None or length <= self.response_limit.max_bytes:
            return None
        return self.response_limit.error(length, request_rows.get())

    def _too_large(self, size: int) -> PayloadTooLargeError:
        limit = self.max_request_bytes
        return PayloadTooLargeError(
            f"the request body ({size} bytes) exceeds this endpoint's limit of {limit} bytes "
            f"({limit / MIB:.1f} MiB on {self.platform}); send larger payloads with asynchronous inference "
            "(SageMaker asynchronous endpoints or batch transform, Vertex AI batch prediction)"
        )


def _replaying(message: Message, receive: Receive) -> Receive:
    """``receive``, after handing out ``message`` (already read by a fast lane that did not take the request)."""
    pending = [message]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _shutdown_error() -> NotReadyError:
    return NotReadyError(
        "the server shut down before this request completed; retry it on another instance",
        headers={"Retry-After": "1"},
    )


class _RequestIds:
    """Unique request ids without a system call each: a random per-process prefix and a counter.

    ``uuid4()`` reads 16 bytes from the kernel per request (measured: 4 % of the server's time on a
    small model); a fresh prefix per process (re-drawn in forked workers) keeps ids unique across
    workers and restarts.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> bytes:
        return f"{self._prefix}{next(self._counter):016x}".encode()


_request_ids = _RequestIds()


def _request_id(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name in (b"x-request-id", b"x-amzn-requestid") and _REQUEST_ID_RE.match(value):
            return bytes(value)
    return _request_ids.next()


def _check_content_encoding(scope: Scope) -> None:
    """Refuse a compressed body (415): parsed as it came, gzip bytes would be reported as bad JSON.

    415 is the status for it: "The format problem might be due to the request's indicated
    Content-Type or Content-Encoding" (RFC 9110, section 15.5.16, 415 Unsupported Media Type).
    Triton's clients compress requests when asked to (``request_compression_algorithm``).
    """
    for name, value in scope["headers"]:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            coding = value.decode("latin-1")
            raise UnsupportedMediaTypeError(
                f"Content-Encoding {coding!r} is not supported: send the body uncompressed (or Content-Encoding: "
                "identity); the request-size limit applies to the body as sent"
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
