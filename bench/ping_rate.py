"""Sequential request rate on one kept-alive connection, to price per-connection guards.

    .venv/bin/python -m bench.ping_rate [--checkout PATH] [--requests 5000]

Starts ``python -m inference serve`` from ``--checkout`` (default: this one; pass an older checkout to
compare) on the tiny MLP of ``bench.serve_throughput``, then sends ``--requests`` ``GET /ping`` and as
many one-row ``POST /invocations`` over one raw socket, one at a time, and prints requests per
second for each. The client is the same for both checkouts, so the ratio of two runs prices what
changed in the server's per-request path (for example ``inference.connection_limits``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.serve_throughput import build_tiny, free_port

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=REPO)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "tiny"
        build_tiny(package)
        port = free_port()
        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
        env.update({"SAGEMAKER_BIND_TO_PORT": str(port), "MODEL_SERVER_HOST": "127.0.0.1"})
        env["PYTHONPATH"] = str(args.checkout.resolve())
        with (Path(tmp) / "server.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "inference", "serve", "--model-dir", str(package)],
                env=env,
                cwd=args.checkout,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            body = b"[[" + b",".join([b"0.5"] * 64) + b"]]"
            post = (
                b"POST /invocations HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            for name, request in (("GET /ping", b"GET /ping HTTP/1.1\r\nHost: b\r\n\r\n"), ("POST", post)):
                print(f"{name}: {rate(port, request, args.requests):,.0f} requests/s")
        finally:
            process.terminate()
            process.wait(30)


def rate(port: int, request: bytes, count: int) -> float:
    import socket

    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        for _ in range(count):
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(rest) < length:
                rest += sock.recv(65536)
        return count / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
