"""Prometheus metrics, in a registry of the server's own (no process-global state).

With several workers (``inference.workers``) prometheus_client's multiprocess
mode is on: every worker records into memory-mapped files in a shared
directory, and ``/metrics`` on any worker reports the sum over all workers
(gauges: the queue depth summed over live workers, load times the maximum).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from inference.workers import METRICS_DIR_VARIABLE

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    """Request, queue, batch and model-lifecycle metrics; also the batcher's observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        shared = os.environ.get(METRICS_DIR_VARIABLE)
        self.shared_dir = Path(shared) if shared else None
        #: What /metrics renders: our registry, or (multiprocess) a collector over every worker's files.
        self.exposition = self.registry
        if self.shared_dir is not None:
            self.exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposition, path=str(self.shared_dir))  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "model_server_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "model_server_request_duration_seconds",
            "Time from request start to response end, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "model_server_queue_depth",
            "Requests waiting for the model",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.batch_rows = Histogram(
            "model_server_batch_rows", "Rows per model call", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.batch_requests = Histogram(
            "model_server_batch_requests",
            "Requests merged per model call",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "model_server_batch_duration_seconds", "Model call time", buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.max_batch_size = Gauge(
            "model_server_max_batch_size",
            "Rows per model call at most (MODEL_SERVER_MAX_BATCH_SIZE, the package's, or tuned at start-up)",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.load_seconds = Gauge(
            "model_server_model_load_seconds",
            "Time to verify and load the package",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.warmup_seconds = Gauge(
            "model_server_model_warmup_seconds",
            "Time to run the bundled example",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.model_info = Gauge(
            "model_server_model_info",
            "The served package",
            ["name", "version", "format"],
            registry=self.registry,
            multiprocess_mode="max",
        )

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        # labels() hashes and locks on every call; the (route, status) pairs are few, so keep the children.
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def batch_done(self, rows: int, requests: int, seconds: float) -> None:
        """Batcher callback: one model call finished."""
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def queue_changed(self, depth: int) -> None:
        """Batcher callback: the queue length changed."""
        self.queue_depth.set(depth)

    def render(self) -> tuple[bytes, str]:
        """The exposition-format body and its content type."""
        return generate_latest(self.exposition), CONTENT_TYPE_LATEST

    def worker_exited(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its counters stay in the totals)."""
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(pid, str(self.shared_dir))  # type: ignore[no-untyped-call]
