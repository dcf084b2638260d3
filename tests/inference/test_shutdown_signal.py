"""A shutdown signal is never lost, whatever the main thread was doing when it arrived.

Python runs a signal handler between two bytecodes of the main thread. Under load that is often in
the middle of writing a log line to stderr (a client leaving is logged at INFO), and the handler
used to log too: writing to the same buffered stream from inside a write raises "reentrant call",
logging's own error report writes to stderr again and raises again, and the exception left the
handler before it had marked the server as exiting. The server went on serving after SIGTERM, as
1 of 5 benchmark runs showed, until the platform's SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import uvicorn

from inference.server import DrainingServer


class _BufferedStderr:
    """Like ``sys.stderr``'s ``BufferedWriter``: a write that starts inside another write raises."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.during_write: list[Callable[[], None]] = []
        self._writing = False

    def write(self, text: str) -> int:
        if self._writing:
            raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")
        self._writing = True
        try:
            while self.during_write:
                self.during_write.pop()()  # the signal arrives in the middle of this write
            self.lines.append(text)
        finally:
            self._writing = False
        return len(text)

    def flush(self) -> None:
        pass


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on ``sys.stderr``: logging reports its own errors to ``sys.stderr``, the same stream."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.stream.write("--- Logging error ---\n")  # what Handler.handleError writes first


def _log_into(stderr: _BufferedStderr, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("inference")
    monkeypatch.setattr(logger, "handlers", [_StderrHandler(stderr)])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)


def test_a_sigterm_arriving_while_a_log_line_is_written_still_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = _BufferedStderr()
    _log_into(stderr, monkeypatch)
    service = SimpleNamespace(draining=False)

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    server = DrainingServer(uvicorn.Config(app), service)  # type: ignore[arg-type]

    async def scenario() -> None:
        stderr.during_write.append(lambda: server.handle_exit(signal.SIGTERM, None))
        logging.getLogger("inference.app").info("the client left before its answer; its work was dropped")
        await asyncio.sleep(0)  # the loop turn after the handler: its own line is written then

    asyncio.run(scenario())
    assert server.should_exit, "the SIGTERM was lost: the server would go on serving"
    assert service.draining
    assert any("shutdown signal received" in line for line in stderr.lines), stderr.lines
    assert not any("Logging error" in line for line in stderr.lines), stderr.lines


def test_the_workers_supervisor_forwards_a_sigterm_that_arrives_while_a_log_line_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inference import workers

    stderr = _BufferedStderr()
    _log_into(stderr, monkeypatch)
    supervisor = workers.Supervisor(count=2, work=lambda slot: 0, drain_timeout=1.0)
    signalled: list[int] = []
    monkeypatch.setattr(supervisor, "_signal_all", signalled.append)

    stderr.during_write.append(lambda: supervisor._on_signal(signal.SIGTERM, None))
    logging.getLogger("inference.workers").info("a worker exited; starting a new one")
    assert supervisor._stopping == signal.SIGTERM and signalled == [signal.SIGTERM]
