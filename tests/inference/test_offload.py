"""Large decodes leave the event loop's thread; small ones stay inline (a thread hop would cost more)."""

from __future__ import annotations

import asyncio
import threading

from inference.offload import OFF_LOOP_BYTES, Offloader


def test_large_work_runs_off_the_event_loop_thread_and_small_work_inline() -> None:
    offload = Offloader()

    async def main() -> tuple[str, str]:
        loop_thread = threading.current_thread().name
        small = await offload.run(100, lambda: threading.current_thread().name)
        large = await offload.run(OFF_LOOP_BYTES, lambda: threading.current_thread().name)
        assert small == loop_thread
        return small, large

    try:
        small, large = asyncio.run(main())
    finally:
        offload.shutdown()
    assert large != small and large.startswith("codec")
