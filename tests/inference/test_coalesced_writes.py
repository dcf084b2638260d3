"""A small answer leaves the server in one write: its head waits for its body.

Unit tests drive :class:`~inference.coalesced_writes.CoalescingTransport` over a recording
transport; the others talk to a real ``model-serve`` process on a raw socket and count the TCP
segments with data that reach the client (the kernel's ``tcpi_data_segs_in``): the server sets
``TCP_NODELAY``, so each of its socket writes leaves as a segment of its own.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest

from inference.coalesced_writes import CoalescingTransport
from tests.inference.server_fixtures import ServerProcess

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    """The calls a transport received, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        self.calls.append(("writelines", b"".join(parts)))

    def close(self) -> None:
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _run(steps: list[str]) -> list[tuple[str, object]]:
    """Apply ``steps`` to a coalescing transport, each on its own event-loop step; the calls that reached the socket."""

    async def drive() -> list[tuple[str, object]]:
        recorded = RecordingTransport()
        transport = CoalescingTransport(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
        for step in steps:
            for action in step.split("+"):
                if action == "head":
                    transport.write(HEAD)
                elif action == "body":
                    transport.write(b"{}")
                else:
                    getattr(transport, action)()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return recorded.calls

    return asyncio.run(drive())


def test_a_head_and_its_body_are_one_write() -> None:
    assert _run(["head+body"]) == [("writelines", HEAD + b"{}")]


def test_a_head_alone_leaves_when_the_loop_step_ends() -> None:
    # A HEAD request's answer, or a streamed body whose first chunk comes later.
    assert _run(["head", "body"]) == [("write", HEAD), ("write", b"{}")]


@pytest.mark.parametrize("ending", ["close", "abort"])
def test_closing_sends_a_held_head_first(ending: str) -> None:
    assert _run([f"head+{ending}"]) == [("write", HEAD), (ending, None)]


def test_bodies_and_other_writes_pass_straight_through() -> None:
    assert _run(["body+body"]) == [("write", b"{}"), ("write", b"{}")]


def test_everything_else_is_the_wrapped_transports() -> None:
    transport = CoalescingTransport(RecordingTransport(), asyncio.new_event_loop())  # type: ignore[arg-type]
    assert transport.get_extra_info("peername") == "info:peername"


def _read_answer(sock: socket.socket) -> tuple[bytes, int]:
    """One HTTP answer (with a Content-Length) and how many ``recv`` calls it took."""
    data, reads = b"", 0
    while True:
        data += sock.recv(65536)
        reads += 1
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.lower().split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:"))
            if len(body) >= length:
                return data, reads


# struct tcp_info (include/uapi/linux/tcp.h, Linux 4.6+): __u32 tcpi_data_segs_in at byte offset 152.
_DATA_SEGS_IN = struct.Struct("152xI")


def _data_segments_received(sock: socket.socket) -> int:
    """TCP segments carrying data that ``sock`` has received so far.

    Counted on the client's socket, not as the server's write system calls (``/proc/PID/io``): those
    also count the wake-ups of the server's event loop by its compute thread, which come and go with
    the machine's load.
    """
    return _DATA_SEGS_IN.unpack(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _DATA_SEGS_IN.size))[0]


@pytest.mark.torch
def test_each_small_answer_is_one_write(sagemaker_server: ServerProcess) -> None:
    body = json.dumps([[0.5] * 64]).encode()
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    with socket.create_connection(("127.0.0.1", sagemaker_server.port), timeout=10) as sock:
        sock.sendall(request)
        _read_answer(sock)  # a first request, so that whatever the first one sets up is done
        before = _data_segments_received(sock)
        for _ in range(20):
            sock.sendall(request)
            answer, _ = _read_answer(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        segments = _data_segments_received(sock) - before
    # One per answer (uvicorn alone makes two: head, then body).
    assert segments == 20, segments


@pytest.mark.torch
def test_a_head_request_and_the_next_request_on_the_connection_are_answered(
    sagemaker_server: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", sagemaker_server.port), timeout=10) as sock:
        sock.sendall(b"HEAD /ping HTTP/1.1\r\nHost: test\r\n\r\n")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n")
        answer, _ = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ready"}')


@pytest.mark.torch
def test_expect_100_continue_gets_its_interim_answer_before_the_body_is_sent(sagemaker_server: ServerProcess) -> None:
    body = json.dumps([[0.5] * 64]).encode()
    with socket.create_connection(("127.0.0.1", sagemaker_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer, _ = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 200")
        assert len(json.loads(answer.partition(b"\r\n\r\n")[2])["predictions"]) == 1
