"""CPU one request costs the server: hostile bodies against a valid body of the same size.

    .venv/bin/python -m bench.hostile_bodies          # ~15 s

A body is bounded by the request limit (6 MB here, SageMaker's), but what parsing it costs depends
on its structure: millions of empty rows or short lines cost more than the numbers they hold. One
process, the benchmark's tiny MLP (64 inputs), each body sent once through the whole ASGI app (the
same path as ``bench.request_overhead``), its large-body work run inline so that ``process_time``
sees all of it; prints the CPU milliseconds and the answer's status per body, and each hostile
body's cost as a multiple of the valid JSON body's (model call included).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

LIMIT = 6_000_000


def bodies() -> dict[str, tuple[str, str, bytes]]:
    """Name -> (path, content type, body), each just under :data:`LIMIT`."""
    zero_row = b"[" + b",".join([b"0"] * 64) + b"]"
    zero_line = b",".join([b"0"] * 64)
    rows = LIMIT // (len(zero_row) + 1) - 1
    empty = (LIMIT - 100) // 3  # "[]," each, under the limit with any envelope
    return {
        "valid JSON rows of 64 zeros": ("/invocations", "application/json", b"[" + b",".join([zero_row] * rows) + b"]"),
        "valid CSV lines of 64 zeros": ("/invocations", "text/csv", b"\n".join([zero_line] * rows)),
        "valid JSON Lines of 64 zeros": ("/invocations", "application/jsonlines", b"\n".join([zero_row] * rows)),
        "JSON empty rows [[],[],...]": ("/invocations", "application/json", b"[" + b",".join([b"[]"] * empty) + b"]"),
        "KServe V1 empty instances": (
            "/v1/models/{name}:predict",
            "application/json",
            b'{"instances":[' + b",".join([b"[]"] * empty) + b"]}",
        ),
        "OIP JSON empty rows": (
            "/v2/models/{name}/infer",
            "application/json",
            b'{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":['
            + b",".join([b"[]"] * empty)
            + b"]}]}",
        ),
        'CSV short lines ",\\n"': ("/invocations", "text/csv", b",\n" * (LIMIT // 2)),
        'CSV short lines ",\\r"': ("/invocations", "text/csv", b",\r" * (LIMIT // 2)),
        "JSON one row of empty strings": ("/invocations", "application/json", b"[[" + b'"",' * empty + b'""]]'),
        "CSV blank lines": ("/invocations", "text/csv", b"\n" * LIMIT),
        "JSON Lines empty records": ("/invocations", "application/jsonlines", b"[]\n" * (LIMIT // 3)),
    }


def main(argv: list[str] | None = None) -> int:
    """Build the tiny package, send each body once, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)

    import uvloop

    import inference.offload
    from bench.asgi_scope import post_scope
    from bench.serve_throughput import build_tiny
    from inference.app import create_app
    from inference.config import load_config
    from inference.metrics import ServerMetrics
    from inference.service import load_service

    async def inline(_: object, size: int, fn: Callable[[], Any]) -> Any:
        return fn()

    # The codec thread's work counts in this thread's process_time only when it runs here.
    inference.offload.Offloader.run = inline  # type: ignore[assignment, method-assign]

    with tempfile.TemporaryDirectory(prefix="hostile-bodies-") as tmp:
        package = Path(tmp) / "tiny"
        build_tiny(package)
        env = {"MODEL_SERVER_LOG_LEVEL": "ERROR", "MODEL_SERVER_MAX_REQUEST_BYTES": str(LIMIT)}
        config = load_config(env, model_dir=package)
        metrics = ServerMetrics()
        service = load_service(config, observer=metrics)
        app = create_app(service, config, metrics)

        async def send_once(path: str, content_type: str, body: bytes) -> tuple[float, int]:
            scope = post_scope(path.format(name=service.name), content_type, len(body))
            status = 0

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: MutableMapping[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]

            started = time.process_time()
            await app(scope, receive, send)
            return (time.process_time() - started) * 1000, status

        async def run_all() -> dict[str, tuple[float, int, int]]:
            await service.start()
            try:
                results = {}
                for name, (path, content_type, body) in bodies().items():
                    cpu_ms, status = await send_once(path, content_type, body)
                    results[name] = (cpu_ms, status, len(body))
                return results
            finally:
                await service.stop()

        results = uvloop.run(run_all())

    baseline = results["valid JSON rows of 64 zeros"][0]
    width = max(len(name) for name in results)
    print(f"{'body':<{width}}  {'MB':>5}  {'status':>6}  {'CPU ms':>8}  {'x valid JSON':>12}")
    for name, (cpu_ms, status, size) in results.items():
        print(f"{name:<{width}}  {size / 1e6:5.2f}  {status:>6}  {cpu_ms:8.1f}  {cpu_ms / baseline:12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
