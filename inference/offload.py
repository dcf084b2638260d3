"""Keep the event loop free of large decodes: big bodies are parsed on a thread of their own.

Parsing a 6 MB CSV or JSON body takes tens to hundreds of milliseconds of CPU; on the event loop that
time delays every health check and every other request. Bodies above :data:`OFF_LOOP_BYTES` are
decoded (and large responses encoded) on one dedicated thread instead; small ones stay inline,
where a thread hop would cost more than the work. One thread, not a pool: parsers hold the GIL, so
more threads would only take more turns from the event loop (CPython switches threads every 5 ms),
and decodes beyond the first simply wait, without blocking the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from inference.batching import ComputeThreads

_T = TypeVar("_T")

#: Bodies at least this large are decoded off the event loop (about a millisecond of parsing).
OFF_LOOP_BYTES = 64 * 1024


class Offloader:
    """Runs large decode/encode work on one thread; threads start on first use (fork-safe)."""

    def __init__(self) -> None:
        self._thread = ComputeThreads(1, "codec")

    async def run(self, size: int, fn: Callable[[], _T]) -> _T:
        """``fn()`` inline when ``size`` bytes are few, else on the codec thread."""
        if size < OFF_LOOP_BYTES:
            return fn()
        return await self._thread.run(_call, fn)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the thread (graceful shutdown); ``wait`` for its running job to finish."""
        self._thread.shutdown(wait=wait)


def _call(fn: Callable[[], _T]) -> _T:
    return fn()
