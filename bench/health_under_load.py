"""Health-check latency while the server is flooded with large bodies (issue 12, defect 5).

    .venv/bin/python -m bench.health_under_load                  # 10 s of load, 16 clients, 5 MB CSV bodies
    .venv/bin/python -m bench.health_under_load --seconds 5 --clients 8 --format json

Starts our server (``python -m inference serve``, cwd = this checkout) on the tiny MLP of
``bench.serve_throughput``, then ``--clients`` threads each POST the same ~5 MB body (``--format``:
CSV, a JSON ``{"instances": [...]}`` document of rows or of one object per row, or JSON Lines) to
``/invocations`` in a loop for ``--seconds`` seconds, while the main thread sends ``GET /ping`` every
20 ms on its own connection. Prints the ping latency percentiles and the invocation count; the
target is p99 < 100 ms on these 2-core machines. Everything runs on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import argparse
import threading
import time

import httpx
import numpy as np
import orjson

from bench.tiny_server import tiny_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rows", type=int, default=9_000, help="rows per body (9,000 x 64 values: about 5 MB)")
    parser.add_argument("--format", choices=tuple(MEDIA_TYPES), default="csv", help="the bodies' format (default: csv)")
    args = parser.parse_args()
    rows = np.random.default_rng(0).standard_normal((args.rows, 64)).round(6)
    body = request_body(rows, args.format)
    with tiny_server() as server:
        run(server.url, body, args.seconds, args.clients, MEDIA_TYPES[args.format])


MEDIA_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "json-objects": "application/json",
    "jsonlines": "application/jsonlines",
}


def request_body(rows: np.ndarray, body_format: str) -> bytes:
    """``rows`` as one request body in ``body_format`` (a key of ``MEDIA_TYPES``)."""
    if body_format == "csv":
        return "".join(",".join(map(str, row)) + "\n" for row in rows.tolist()).encode()
    if body_format == "json":
        return orjson.dumps({"instances": rows.tolist()})
    if body_format == "json-objects":  # one object per row, keyed by the input's name (Vertex AI's other form)
        return orjson.dumps({"instances": [{"input": row} for row in rows.tolist()]})  # the tiny MLP's input
    return b"".join(orjson.dumps(row) + b"\n" for row in rows.tolist())


def run(url: str, body: bytes, seconds: float, clients: int, media_type: str = "text/csv") -> None:
    stop = threading.Event()
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def flood() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while not stop.is_set():
                status = client.post("/invocations", content=body, headers={"Content-Type": media_type}).status_code
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # let the load build up
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            assert client.get("/ping").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(120)
    ms = np.array(latencies) * 1000
    print(
        f"{media_type} body {len(body) / 1e6:.1f} MB x {clients} clients for {seconds:g} s; "
        f"invocations by status {statuses}"
    )
    print(
        f"/ping latency over {len(ms)} checks: p50 {np.percentile(ms, 50):.1f} ms, "
        f"p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms"
    )


if __name__ == "__main__":
    main()
