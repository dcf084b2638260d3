"""A connection closed while its client reads nothing is cut at the send timeout, not held forever.

asyncio's ``close`` waits for buffered output to reach the client before it closes the socket.
uvicorn closes that way after a ``connection: close`` answer and at its keep-alive timeout; a client
that reads nothing then held the connection (its socket and buffered answers) until the process
exited. A real loopback connection under uvloop, the server's event loop: the kernel's buffers are
pinned small (an explicit ``SO_SNDBUF``/``SO_RCVBUF`` turns off their autotuning), so some output
stays in the transport's own buffer, below the high-water mark that pauses writes.
"""

from __future__ import annotations

import asyncio
import socket
import time

import uvloop

from inference.connection_limits import SendBoundedTransport

SEND_TIMEOUT = 0.5


class _Answering(asyncio.Protocol):
    """Writes ``size`` bytes to its client and closes, as uvicorn does after a ``connection: close`` answer."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop, lost: asyncio.Future[float]) -> None:
        self.size = size
        self.loop = loop
        self.lost = lost
        self.buffered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = SendBoundedTransport(transport, self.loop, SEND_TIMEOUT)  # type: ignore[arg-type]
        self.transport.write(b"x" * self.size)
        self.buffered = self.transport.get_write_buffer_size()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport.connection_closed()
        self.lost.set_result(time.monotonic())


async def _serve_to_a_client_that_never_reads(size: int) -> tuple[int, float | None]:
    """(bytes left in the transport's buffer at close, seconds from then until the connection was closed)."""
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[float] = loop.create_future()
    protocol = _Answering(size, loop, lost)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # accepted sockets inherit it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = await loop.create_server(lambda: protocol, sock=listener)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    try:
        await loop.sock_connect(client, listener.getsockname())
        closed_at = time.monotonic()
        try:
            closed = await asyncio.wait_for(asyncio.shield(lost), SEND_TIMEOUT * 6)
        except TimeoutError:
            return protocol.buffered, None
        return protocol.buffered, closed - closed_at
    finally:
        client.close()
        server.close()


def test_a_close_waiting_on_a_client_that_reads_nothing_ends_at_the_send_timeout() -> None:
    # 40 KB: more than the pinned kernel buffers hold, less than the 64 KiB that would pause writes.
    buffered, took = uvloop.run(_serve_to_a_client_that_never_reads(40_000))
    assert buffered > 0, "the kernel took everything: this test no longer reaches the transport's buffer"
    assert took is not None, "the connection was still open three send timeouts later"
    assert took < SEND_TIMEOUT * 3


def test_a_close_with_nothing_buffered_is_immediate() -> None:
    buffered, took = uvloop.run(_serve_to_a_client_that_never_reads(100))
    assert buffered == 0
    assert took is not None and took < SEND_TIMEOUT
