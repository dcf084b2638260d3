"""``model-serve [serve]``: the serving container's entrypoint (exec-form PID 1).

SageMaker starts the image with the literal argument ``serve``; Vertex AI and
Cloud Run start it with no arguments. Configuration comes from the platform's
environment (see ``inference.config``); a package that fails verification,
loading or warm-up makes the process exit non-zero after one log line, before
the port opens.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from model_package.errors import ModelPackageError
from model_package.logs import configure_logging

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from inference.config import ServerConfig
    from inference.metrics import ServerMetrics
    from inference.service import ModelService

_log = logging.getLogger("inference.entrypoint")
#: Exit code when the model cannot be served (the platform then reports the container as failed).
EXIT_MODEL_FAILED = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Load the package, then serve it until a shutdown signal."""
    parser = argparse.ArgumentParser(prog="model-serve", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve"], help="SageMaker passes 'serve'; optional elsewhere")
    parser.add_argument("--model-dir", type=Path, help="package directory (default: /opt/ml/model or AIP_STORAGE_URI)")
    parser.add_argument("--port", type=int, help="port (default: SAGEMAKER_BIND_TO_PORT, AIP_HTTP_PORT, PORT or 8080)")
    parser.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING, ERROR (default: SAGEMAKER_CONTAINER_LOG_LEVEL or INFO)"
    )
    args = parser.parse_args(argv)
    configure_logging("json")
    try:
        from inference.config import load_config

        config = load_config(model_dir=args.model_dir, port=args.port, log_level=args.log_level)
        configure_logging("json", logging.getLevelName(config.log_level))
        _limit_framework_threads(config.compute_threads)
        _share_the_interpreter()
        metrics_dir = None
        if config.workers > 1:
            from inference.workers import enable_shared_metrics

            metrics_dir = enable_shared_metrics()  # before prometheus_client is first imported

        from inference.app import create_app
        from inference.metrics import ServerMetrics
        from inference.server import run
        from inference.service import load_service

        metrics = ServerMetrics()
        service = load_service(config, observer=metrics)
        _log.info(
            "model loaded",
            extra={
                "model": service.name,
                "version": service.manifest.version,
                "format": service.manifest.format,
                "load_seconds": round(service.load_seconds, 3),
                "warmup_seconds": round(service.warmup_seconds, 3),
            },
        )
        app = create_app(service, config, metrics)
    except ModelPackageError as exc:
        _log.error(f"cannot serve the model: {exc}")
        return EXIT_MODEL_FAILED
    # Everything loaded so far (framework modules, weights) lives as long as the process: move it out
    # of the collector's sight, or each full collection walks ~10^5 objects and stalls requests
    # (measured: a 190 ms p99 at 64 concurrent requests, 13 ms with the heap frozen).
    gc.collect()
    gc.freeze()
    _return_free_heap_to_the_os()
    if metrics_dir is None:
        run(app, service, config)
        return 0
    return _serve_workers(app, service, config, metrics, metrics_dir)


def _serve_workers(
    app: ASGIApp, service: ModelService, config: ServerConfig, metrics: ServerMetrics, metrics_dir: Path
) -> int:
    """Fork ``config.workers`` workers over the loaded model and supervise them (``inference.workers``)."""
    from inference.server import run
    from inference.workers import Supervisor, listening_socket

    def work(slot: int) -> int:
        service.warm_up()  # this worker's own compute thread
        _return_free_heap_to_the_os()
        try:
            sock = listening_socket(config.host, config.port)
        except OSError as exc:
            _log.error(f"worker {slot} cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")
            return 1
        run(app, service, config, sockets=[sock])
        return 0

    try:
        return Supervisor(config.workers, work, config.drain_timeout, on_worker_exit=metrics.worker_exited).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _return_free_heap_to_the_os() -> None:
    """Give back the heap that loading and warm-up freed (glibc keeps it otherwise).

    Warm-up and batch tuning run large batches whose activations are freed but stay in the
    allocator's arenas; with several workers every one of them would carry that dead memory.
    A no-op where the C library has no ``malloc_trim`` (musl, macOS).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _limit_framework_threads(threads: int) -> None:
    # OpenMP/MKL pools read these once, when the framework loads: set them before any import,
    # sized from the container's CPU quota rather than the host's core count.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    # NumPy's BLAS only touches request-sized arrays on the event loop (decoding, finiteness
    # checks); more than one thread there costs far more than it saves and competes with the model.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # PyTorch's OpenMP (libgomp) workers otherwise busy-wait 300,000 spins after every parallel
    # region ("If undefined, 0 is used when OMP_WAIT_POLICY is PASSIVE, 300,000 is used when
    # OMP_WAIT_POLICY is undefined": https://gcc.gnu.org/onlinedocs/libgomp/GOMP_005fSPINCOUNT.html).
    # Here the event loop needs a core between model calls: on 2 cores the spinning worker cut in
    # front of it, and the tiny benchmark model's p99 at one connection fell from 6.2 to 0.57 ms
    # with PASSIVE (the CNN's throughput did not drop: 660 -> 703 images/s at 64 connections).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: How long a thread may keep the interpreter while another waits for it (Python's default: 5 ms).
SWITCH_INTERVAL_S = 0.001


def _share_the_interpreter() -> None:
    # The event loop shares the GIL with the codec thread (large decodes) and the compute threads.
    # A thread that wants the GIL waits up to the switch interval before the holder is asked to let
    # go ("the ideal duration of the timeslices allocated to concurrently running Python threads",
    # https://docs.python.org/3/library/sys.html#sys.setswitchinterval), and the loop needs it
    # back many times per request. With 16 clients posting 5 MB CSV bodies, /ping's p99 was
    # 208-229 ms at 5 ms and 20-45 ms at 1 ms (bench.health_under_load, 2-core VM).
    sys.setswitchinterval(SWITCH_INTERVAL_S)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
