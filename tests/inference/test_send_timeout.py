"""A client that takes none of its answers is cut at the send timeout; one that reads slowly is not.

uvicorn with the server's own protocol (``inference.connection_limits``) in this process, over real
loopback connections, with the kernel's socket buffers pinned small (an explicit ``SO_SNDBUF`` on
the listening socket, inherited by accepted ones, and ``SO_RCVBUF`` on the client's: both turn off
autotuning), so that the sizes below decide where an answer waits: in the kernel, or in the
transport's own buffer, under or over the 64 KiB high-water mark that pauses writes. The app
answers ``GET /?bytes=N`` with N bytes.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
import uvloop

from inference.connection_limits import SendBoundedTransport, guarded_protocol

SEND_TIMEOUT = 0.5
#: struct tcp_info's first byte is the connection's state (include/uapi/linux/tcp.h); TCP_CLOSE = 7.
TCP_CLOSE = 7


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    size = int(scope["query_string"].decode().partition("=")[2] or 0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
    await send({"type": "http.response.body", "body": b"x" * size})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # accepted sockets inherit it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(
        _answer,
        loop="uvloop",
        http=guarded_protocol(30.0, 30.0, SEND_TIMEOUT),
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield listener.getsockname()[1]
    server.should_exit = True
    thread.join(10)


def _client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def _ask(sock: socket.socket, size: int) -> None:
    sock.sendall(b"GET /?bytes=%d HTTP/1.1\r\nHost: test\r\n\r\n" % size)


def _state(sock: socket.socket) -> int:
    return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]


def test_a_client_that_reads_slowly_but_steadily_gets_its_whole_answer(port: int) -> None:
    # 512 KB at ~160 KB/s: the buffer takes 3 s to drain, six send timeouts, but shrinks in each.
    size = 512 * 1024
    with _client(port) as sock:
        _ask(sock, size)
        received = b""
        while len(received.partition(b"\r\n\r\n")[2]) < size:
            chunk = sock.recv(8192)
            assert chunk, f"cut after {len(received):,} bytes"
            received += chunk
            time.sleep(0.05)
    assert received.partition(b"\r\n\r\n")[2] == b"x" * size


def test_a_client_that_stops_reading_is_cut(port: int) -> None:
    with _client(port) as sock:
        _ask(sock, 1024 * 1024)  # over the high-water mark: writes pause
        time.sleep(SEND_TIMEOUT * 4)
        assert _state(sock) == TCP_CLOSE, "the connection was not cut (no reset reached the client)"


def test_a_client_that_half_closes_and_reads_nothing_is_cut(port: int) -> None:
    # Under the high-water mark (writes never pause), more than the pinned kernel buffers hold: the
    # rest waits in the transport. A half-close made asyncio close the transport past our close(),
    # and that output held the connection forever.
    with _client(port) as sock:
        _ask(sock, 48 * 1024)
        time.sleep(0.2)
        sock.shutdown(socket.SHUT_WR)
        time.sleep(SEND_TIMEOUT * 4)
        assert _state(sock) == TCP_CLOSE, "the connection was not cut (no reset reached the client)"


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


async def _close_to_a_client_that_never_reads(size: int) -> tuple[int, float | None]:
    """(bytes left in the transport's buffer at close, seconds from then until the connection was closed)."""
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[float] = loop.create_future()
    protocol = _Answering(size, loop, lost)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
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
    buffered, took = uvloop.run(_close_to_a_client_that_never_reads(40_000))
    assert buffered > 0, "the kernel took everything: this test no longer reaches the transport's buffer"
    assert took is not None, "the connection was still open three send timeouts later"
    assert took < SEND_TIMEOUT * 3


def test_a_close_with_nothing_buffered_is_immediate() -> None:
    buffered, took = uvloop.run(_close_to_a_client_that_never_reads(100))
    assert buffered == 0
    assert took is not None and took < SEND_TIMEOUT
