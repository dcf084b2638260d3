"""Run the ASGI app under uvicorn with graceful shutdown.

On SIGTERM (or SIGINT) the health routes turn 503 at once, uvicorn stops
accepting connections, in-flight requests finish within the drain deadline
(shorter than the platform's kill timer), queued batches complete, and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import socket
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from inference.config import ServerConfig
from inference.service import ModelService

_log = logging.getLogger(__name__)
#: Longer than the platforms' proxies keep idle connections (SageMaker's is 60 s), so the
#: proxy, not us, closes them and never sends a request on a connection we are closing.
KEEP_ALIVE_SECONDS = 75


class DrainingServer(uvicorn.Server):
    """A uvicorn server that marks the service not-ready the moment a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, service: ModelService) -> None:
        super().__init__(config)
        self._service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._service.draining:
            _log.info("shutdown signal received: draining", extra={"signal": sig})
        self._service.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutting down, so the process would die "by
        # SIGTERM" (exit -15) after a clean drain. A drained shutdown is a success: exit 0.
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)


def _http_protocol(config: ServerConfig) -> type[asyncio.Protocol] | str:
    """httptools (several times h11's throughput) with the limits it lacks; h11 when it is missing."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from inference.connection_limits import guarded_protocol

    return guarded_protocol(config.header_timeout, config.body_timeout)


def run(app: ASGIApp, service: ModelService, config: ServerConfig, sockets: list[socket.socket] | None = None) -> None:
    """Serve ``app`` on ``config.host:config.port`` (or on ``sockets``) until a shutdown signal, then drain."""
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        # uvloop and httptools when installed (the serve extra brings both): several times the throughput.
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=_http_protocol(config),
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=int(config.drain_timeout),
        backlog=2048,
        server_header=False,
        # No proxy in front of us rewrites client addresses we use; parsing forwarded headers is pure cost.
        proxy_headers=False,
    )
    DrainingServer(uv_config, service).run(sockets=sockets)
