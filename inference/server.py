"""Run the ASGI app under uvicorn with graceful shutdown.

On SIGTERM (or SIGINT) the health routes turn 503 at once, uvicorn stops
accepting connections, in-flight requests finish within the drain deadline
(shorter than the platform's kill timer), queued batches complete, and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        # Python runs a signal handler between two bytecodes of whatever the main thread was doing:
        # under load, often in the middle of writing a log line to stderr. Logging here then raised
        # "reentrant call inside <_io.BufferedWriter name='<stderr>'>" (twice: logging's own error
        # report writes to stderr too) out of the handler before the flags below were set, and the
        # SIGTERM was lost: the server kept serving until SIGKILL. So: state first, no I/O here;
        # the line is written from the event loop once the handler has returned.
        first = not self._service.draining
        self._service.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutting down, so the process would die "by
        # SIGTERM" (exit -15) after a clean drain. A drained shutdown is a success: exit 0.
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)
        if first:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to log from
                asyncio.get_running_loop().call_soon(_log_draining, sig)


def _log_draining(sig: int) -> None:
    _log.info("shutdown signal received: draining", extra={"signal": sig})


class _DrainCutsAreWarnings(logging.Filter):
    """uvicorn logs the requests it cancels at the drain deadline as an ERROR; they are a warning.

    Cutting in-flight work at the deadline is the drain working as configured, and each cut request
    is already logged (a warning with its request id) and answered with a retryable 503
    (``inference.app``). An ERROR on every rollout with a long request in flight would page whoever
    alarms on error logs. uvicorn's message (``uvicorn/server.py``, ``Server.shutdown``):
    "Cancel %s running task(s), timeout graceful shutdown exceeded". An answer already being sent
    (its client reading slowly or not at all) cannot get the 503: uvicorn logs its cancellation as
    "Exception in ASGI application" with the traceback (``RequestResponseCycle.run_asgi``); it
    becomes one warning line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""  # a log call may pass any object
        if record.levelno != logging.ERROR:
            return True
        if message.startswith("Cancel %s running task(s)"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif message.startswith("Exception in ASGI application") and _cancelled(record):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "a request cut by the drain deadline after its answer had started", None
            record.exc_info, record.exc_text = None, None
        return True


def _cancelled(record: logging.LogRecord) -> bool:
    return record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)


_DRAIN_CUTS_ARE_WARNINGS = _DrainCutsAreWarnings()


def _http_protocol(config: ServerConfig) -> type[asyncio.Protocol] | str:
    """httptools (several times h11's throughput) with the limits it lacks; h11 when it is missing."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from inference.connection_limits import guarded_protocol

    return guarded_protocol(config.header_timeout, config.body_timeout, config.send_timeout)


def run(app: ASGIApp, service: ModelService, config: ServerConfig, sockets: list[socket.socket] | None = None) -> None:
    """Serve ``app`` on ``config.host:config.port`` (or on ``sockets``) until a shutdown signal, then drain."""
    logging.getLogger("uvicorn.error").addFilter(_DRAIN_CUTS_ARE_WARNINGS)  # once: the same filter is not re-added
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
        # We serve no WebSockets. With the websockets library installed, uvicorn's default ("auto") left
        # an "Upgrade: websocket" request to a WebSocket protocol our HTTP protocol never starts: it was
        # never answered and its connection held open without a timer. It is served as plain HTTP.
        # (``--ws``, default "auto": https://www.uvicorn.org/settings/#implementation)
        ws="none",
    )
    DrainingServer(uv_config, service).run(sockets=sockets)
