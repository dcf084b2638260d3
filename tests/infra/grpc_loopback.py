"""Start a real gRPC server on a free loopback port: what the fake Google Cloud services run on."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures

import grpc


def serve_on_loopback(handlers: Sequence[grpc.GenericRpcHandler], *, threads: int = 4) -> tuple[grpc.Server, str]:
    """A started server answering ``handlers`` on ``127.0.0.1:<free port>``, and that address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers(tuple(handlers))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"
