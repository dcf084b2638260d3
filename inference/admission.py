"""Admission control for work the batcher does not run: a package's own request hooks (user code).

The same rules as the batcher's queue: at most ``concurrency`` calls run at once on their own
threads, at most ``max_queue`` wait for one (the next gets 503 with ``Retry-After``), and a request
that is not answered by its deadline gets 504. A call that has started cannot be stopped (Python
threads cannot be interrupted); its thread keeps its slot until the hook returns, so a slow hook
still limits how much runs at once, and its late result is thrown away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from inference.batching import ComputeThreads
from inference.errors import DeadlineExceededError, NotReadyError, OverloadedError

_T = TypeVar("_T")
_log = logging.getLogger(__name__)


class AdmissionGate:
    """Bounded concurrency, a bounded wait and a deadline around synchronous calls."""

    def __init__(self, *, concurrency: int, max_queue: int, name: str = "user-code") -> None:
        if concurrency < 1 or max_queue < 1:
            raise ValueError("concurrency and max_queue must be >= 1")
        self.concurrency = concurrency
        self.max_queue = max_queue
        self._threads = ComputeThreads(concurrency, name)
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._running = 0
        self._idle: asyncio.Event | None = None
        self._closed = False

    async def start(self) -> None:
        """Bind to the running event loop (call from the server's start-up)."""
        self._slots = asyncio.Semaphore(self.concurrency)
        self._idle = asyncio.Event()
        self._idle.set()

    async def stop(self, *, grace: float | None = None) -> None:
        """Refuse new calls and wait for the running ones to return (graceful shutdown).

        With ``grace``, wait at most that long: a hook still running then belongs to a request
        that was already answered (cut by the drain deadline); its thread dies with the process.
        """
        self._closed = True
        finished = True
        if self._idle is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                finished = False
                _log.warning("hooks still running at shutdown were not waited for", extra={"running": self._running})
        self._threads.shutdown(wait=finished)

    @property
    def queue_depth(self) -> int:
        """Calls waiting for a free thread."""
        return self._waiting

    @property
    def stuck_for(self) -> float:
        """Seconds every thread has been on its current call (0 while one is free)."""
        return self._threads.all_busy_for()

    async def run(self, fn: Callable[[], _T], *, timeout: float) -> _T:
        """``fn()`` on one of the gate's threads, answered within ``timeout`` seconds or not at all.

        Raises :class:`NotReadyError` once stopping, :class:`OverloadedError` (503, ``Retry-After``)
        when ``max_queue`` calls already wait, and :class:`DeadlineExceededError` (504) at the deadline.
        """
        if self._closed or self._slots is None:
            raise NotReadyError("the server is shutting down; retry on another instance")
        if self._waiting >= self.max_queue:
            raise OverloadedError(
                f"the request queue is full ({self.max_queue} requests waiting); retry shortly",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise _deadline(timeout, started=False) from None
        finally:
            self._waiting -= 1
        self._running += 1
        assert self._idle is not None
        self._idle.clear()
        try:
            task = asyncio.ensure_future(self._threads.run(_call, fn))
        except BaseException:
            self._release()
            raise
        # The slot is the thread's until the call returns, whether or not anyone still waits for it.
        task.add_done_callback(lambda _: self._release())
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except TimeoutError:
            raise _deadline(timeout, started=True) from None
        finally:
            if not task.done():  # deadline passed or client gone: nobody reads the late outcome
                task.add_done_callback(_discard_result)

    def _release(self) -> None:
        assert self._slots is not None and self._idle is not None
        self._running -= 1
        self._slots.release()
        if self._running == 0:
            self._idle.set()


def _call(fn: Callable[[], _T]) -> _T:
    return fn()


def _discard_result(task: asyncio.Future[Any]) -> None:
    # Retrieve the late outcome so asyncio does not log "exception was never retrieved" for it.
    if not task.cancelled():
        task.exception()


def _deadline(timeout: float, *, started: bool) -> DeadlineExceededError:
    where = "the model code was still running" if started else "it waited for a free worker"
    return DeadlineExceededError(
        f"the request did not complete within its {timeout:g} s deadline ({where}) and was dropped; "
        "the server is overloaded or the request too large for one call"
    )
