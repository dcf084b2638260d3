"""Multi-process mode (``MODEL_SERVER_WORKERS``): one loaded model, several event loops.

One Python process handles HTTP on one core at a time (the GIL), so a small, fast
model leaves the other cores idle. With ``MODEL_SERVER_WORKERS=N`` (or ``auto``:
one per CPU of the container's quota) the process verifies, loads and checks the
package once, then forks ``N`` workers. Each inherits the loaded weights
copy-on-write — nobody writes them, so the pages stay shared and the model is in
memory once, however many workers run — starts its own compute thread, warms it
up with the bundled example, and only then binds its own ``SO_REUSEPORT``
listening socket on the port: the kernel spreads new connections over the
workers that are ready, and a worker never takes traffic cold.

The parent only supervises: a worker that dies is forked again from the loaded
parent (no reload, no download); workers that keep dying right after start make
the parent stop them all and exit non-zero, so the platform sees a failed
container rather than a port that flickers. SIGTERM (or SIGINT) is forwarded to
every worker; each drains like a single-process server, and the parent exits 0
once all have. Metrics are aggregated across workers by prometheus_client's
multiprocess mode (:func:`enable_shared_metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

_log = logging.getLogger(__name__)

#: prometheus_client reads this once, at import: set it before anything imports the library.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: A worker that exits within this many seconds of its start counts as failing to start.
EARLY_EXIT_SECONDS = 10.0
#: Consecutive early exits after which the parent gives up on the container.
MAX_EARLY_EXITS = 3
#: Exit status when the workers cannot be kept running (same as a model that fails to load).
EXIT_WORKERS_FAILED = 3
_POLL_SECONDS = 0.1


def enable_shared_metrics() -> Path:
    """Point prometheus_client at a fresh directory shared by the workers; call before importing it.

    Each worker writes its counters to memory-mapped files there and ``/metrics``
    on any worker reports the sum over all of them (see ``inference.metrics``).
    """
    directory = Path(tempfile.mkdtemp(prefix="model-serve-metrics-"))
    os.environ[METRICS_DIR_VARIABLE] = str(directory)
    return directory


def listening_socket(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound with ``SO_REUSEPORT`` on ``host:port``: one per worker, the kernel balances them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Worker:
    slot: int
    pid: int
    started: float


@dataclass
class Supervisor:
    """Forks ``count`` workers running ``work(slot)`` and keeps them running until a shutdown signal."""

    count: int
    work: Callable[[int], int]
    """Runs in the forked child; its return value is the child's exit status."""
    drain_timeout: float
    on_worker_exit: Callable[[int], None] = lambda pid: None
    """Called with the pid of every worker that exited (metrics bookkeeping)."""
    _workers: dict[int, _Worker] = field(default_factory=dict)
    _stopping: int | None = None
    _early_exits: int = 0

    def run(self) -> int:
        """Supervise until every worker has exited; the parent's exit status."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.count):
                self._spawn(slot)
            _log.info("workers started", extra={"workers": self.count, "pids": sorted(self._workers)})
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            status = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                status = self.work(slot)
            except BaseException as exc:
                _log.error("worker failed", extra={"worker": slot}, exc_info=exc)
            finally:
                logging.shutdown()
                os._exit(status)
        self._workers[pid] = _Worker(slot, pid, time.monotonic())

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # No I/O here: a signal handler runs between two bytecodes of the main thread, maybe inside a
        # log write, where another write raises "reentrant call" and the signal would be lost (see
        # ``inference.server.DrainingServer.handle_exit``). ``_supervise`` logs the drain.
        if self._stopping is None:
            self._stopping = sig
        self._signal_all(sig)

    def _signal_all(self, sig: int) -> None:
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _supervise(self) -> int:
        status = 0
        deadline: float | None = None
        while self._workers:
            if self._stopping is not None and deadline is None:
                _log.info("draining the workers", extra={"signal": self._stopping})
                # Each worker drains within drain_timeout; allow it that plus its own exit.
                deadline = time.monotonic() + self.drain_timeout + 5.0
            if deadline is not None and time.monotonic() > deadline:
                _log.error("workers did not drain in time: killing them", extra={"pids": sorted(self._workers)})
                self._signal_all(signal.SIGKILL)
                deadline = float("inf")
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(_POLL_SECONDS)
                continue
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            self.on_worker_exit(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if self._stopping is not None:
                status = status or (0 if code == 0 else 1)
                continue
            status = self._replace(worker, code)
            if status:
                self._stopping = signal.SIGTERM
                self._signal_all(signal.SIGTERM)
        return status

    def _replace(self, worker: _Worker, code: int) -> int:
        """Fork a new worker for ``worker``'s slot; non-zero when the workers keep failing to start."""
        lived = time.monotonic() - worker.started
        how = f"signal {-code}" if code < 0 else f"status {code}"
        early = lived < EARLY_EXIT_SECONDS
        self._early_exits = self._early_exits + 1 if early else 0
        if self._early_exits >= MAX_EARLY_EXITS:
            _log.error(
                f"worker {worker.slot} exited with {how} {lived:.1f} s after it started, "
                f"{self._early_exits} times in a row: stopping the server"
            )
            return EXIT_WORKERS_FAILED
        _log.warning(
            f"worker {worker.slot} (pid {worker.pid}) exited with {how} after {lived:.1f} s: starting a new one",
        )
        self._spawn(worker.slot)
        return 0
