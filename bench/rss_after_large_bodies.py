"""Server memory while clients send large bodies, and what is left once they stop.

    .venv/bin/python -m bench.rss_after_large_bodies                      # 3 rounds of 8 s, 16 clients
    .venv/bin/python -m bench.rss_after_large_bodies --env MALLOC_MMAP_THRESHOLD_=65536

Starts our server (``python -m inference serve``) on the tiny MLP of ``bench.serve_throughput``;
each round, ``--clients`` threads POST a ~6 MB body to ``/invocations`` in a loop for ``--seconds``.
The body is refused by the decoder (``--body bad``: an ``application/x-npy`` with a broken header, so
the cost is the HTTP layer alone) or decoded and predicted (``--body csv``). Prints, per round, the
requests by status and the server's RSS (``/proc``) before, at its peak, and 2 s after the round.

Why: 16 clients x 6 MB is ~100 MB of bodies in flight, yet RSS settles far above that (measured
~750-800 MB after 4 rounds of refused bodies) and is returned to the OS only in part: glibc keeps
the freed 64 KB body chunks and, after the first 6 MB buffer is freed, serves later ones from the
heap too (its mmap threshold rises). ``--env`` passes allocator settings to try against it.
Everything runs on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.tiny_server import tiny_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--body", choices=["bad", "csv"], default="bad")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    args = parser.parse_args()
    if args.body == "bad":
        body, content_type = b"\x93NUMPY" + b"x" * 6_000_000, "application/x-npy"
    else:
        rows = np.random.default_rng(0).standard_normal((9_000, 64)).round(6)
        body = "".join(",".join(map(str, row)) + "\n" for row in rows.tolist()).encode()
        content_type = "text/csv"
    with tiny_server(dict(item.split("=", 1) for item in args.env)) as server:
        settings = args.env or "default"
        print(f"body {len(body) / 1e6:.1f} MB ({args.body}) x {args.clients} clients; server env {settings}")
        print(f"idle RSS {_rss_mb(server.pid)} MB")
        for index in range(args.rounds):
            _round(index + 1, server.url, server.pid, (body, content_type), seconds=args.seconds, clients=args.clients)


def _round(index: int, url: str, pid: int, request: tuple[bytes, str], *, seconds: float, clients: int) -> None:
    body, content_type = request
    before = _rss_mb(pid)
    stop = time.monotonic() + seconds
    statuses: dict[int | str, int] = {}
    lock = threading.Lock()

    def flood() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.monotonic() < stop:
                try:
                    status: int | str = client.post(
                        "/invocations", content=body, headers={"Content-Type": content_type}
                    ).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    peak = before
    while time.monotonic() < stop:
        peak = max(peak, _rss_mb(pid))
        time.sleep(0.05)
    for thread in threads:
        thread.join(120)
    time.sleep(2.0)
    print(f"round {index}: requests {statuses}; RSS {before} -> peak {peak} -> {_rss_mb(pid)} MB after 2 s")


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return -1


if __name__ == "__main__":
    if not os.path.exists("/proc/self/status"):
        raise SystemExit("this benchmark reads RSS from /proc (Linux only)")
    main()
