"""Progress reporting for long work: a bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from model_package.hashing import ProgressCallback

_log = logging.getLogger("model_package.progress")
#: Seconds between progress log lines when not attached to a terminal.
LOG_INTERVAL = 5.0


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield a callback taking byte counts; show a tqdm bar on a TTY, else log every few seconds."""
    start = time.monotonic()
    done = 0
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=False) as bar:
            yield bar.update
        _finish(description, bar.n, start)
        return

    last_log = start

    def update(count: int) -> None:
        nonlocal done, last_log
        done += count
        now = time.monotonic()
        if enabled and now - last_log >= LOG_INTERVAL:
            last_log = now
            percent = f"{100 * done / total:.0f}%" if total else "?"
            _log.info(f"{description}: {percent}", extra={"bytes_done": done, "bytes_total": total})

    yield update
    _finish(description, done, start)


def _finish(description: str, done: int, start: float) -> None:
    seconds = time.monotonic() - start
    rate = done / seconds / 2**20 if seconds > 0 else 0.0
    _log.debug(f"{description}: done", extra={"bytes": done, "seconds": round(seconds, 3), "mib_per_s": round(rate, 1)})
