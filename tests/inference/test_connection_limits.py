"""Connections cannot make the server buffer unbounded headers or hold them open forever.

A real ``model-serve`` process (uvicorn with httptools) on raw sockets: oversized and too many
headers are refused with 431, a connection that never finishes its headers gets 408 and is closed
at the header timeout, and ordinary requests (also several on one kept-alive connection) still work.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inference.server_fixtures import ServerProcess, start_server

pytestmark = pytest.mark.torch
PING = b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"


def _serving(package: Path, logs: Path, **env: str) -> Iterator[ServerProcess]:
    """A server for ``package`` whose headers and bodies may each take 1 s, plus ``env``."""
    process = start_server(
        logs,
        args=["--model-dir", str(package)],
        env={"MODEL_SERVER_HEADER_TIMEOUT_S": "1", "MODEL_SERVER_BODY_TIMEOUT_S": "1", **env},
    )
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def server(torch_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Clients may also take none of their answers for 1 s."""
    yield from _serving(torch_package, tmp_path_factory.mktemp("conn"), MODEL_SERVER_SEND_TIMEOUT_S="1")


def _exchange(server: ServerProcess, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_a_one_megabyte_header_is_a_431(server: ServerProcess) -> None:
    answer = _exchange(server, b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_ten_thousand_headers_are_a_431(server: ServerProcess) -> None:
    headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(10_000))
    answer = _exchange(server, b"GET /ping HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_connection_that_never_finishes_its_headers_is_closed_at_the_timeout(server: ServerProcess) -> None:
    start = time.monotonic()
    answer = _exchange(server, b"GET /ping HTTP/1.1\r\nHost: te", wait=10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - start < 5


def test_the_header_timeout_of_a_kept_alive_connections_next_request_counts_from_its_first_byte(
    server: ServerProcess,
) -> None:
    # The limits share one timer per connection, set for the first request's headers: the next
    # request's headers get their whole timeout (1 s here), neither cut at the old timer nor left unbounded.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(PING)
        answer = b""
        while not answer.endswith(b'{"status":"ready"}'):
            answer += sock.recv(65536)
        time.sleep(0.6)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: te")
        started = time.monotonic()
        refused = sock.recv(65536)
        waited = time.monotonic() - started
    assert refused.startswith(b"HTTP/1.1 408"), refused[:200]
    assert 0.8 < waited < 5, waited


def test_an_idle_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    assert _exchange(server, b"", wait=10).startswith(b"HTTP/1.1 408")


def test_requests_on_a_kept_alive_connection_still_work(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(PING)
            answer = b""
            while not answer.endswith(b'{"status":"ready"}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(0.5)  # idle between requests: the header timer starts at the next request


def test_a_whole_request_larger_than_the_header_limit_in_one_packet_is_served(server: ServerProcess) -> None:
    body = b"[" + b",".join([b"[" + b",".join([b"0.5"] * 64) + b"]"] * 200) + b"]"  # about 50 KB
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    assert _exchange(server, request).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("request_bytes", "problem"),
    [
        (b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Request-ID: abc\x01def\r\n\r\n", "header value"),
        (b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Length: -5\r\n\r\n", "Content-Length"),
        (
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding",
        ),
    ],
    ids=["control character in a header", "negative length", "length and chunked"],
)
def test_a_request_that_is_not_valid_http_is_a_json_400_naming_the_problem(
    server: ServerProcess, request_bytes: bytes, problem: str
) -> None:
    # Every other refusal is a JSON {"error": ...}; clients and log pipelines parse it the same way.
    answer = _exchange(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"content-type: application/json" in head.lower()
    assert problem in json.loads(body)["error"]


# ----------------------------------------------------------------------------- pipelined requests
# A client may send its next requests before the answers (HTTP/1.1 pipelining); the answers go back
# in request order (RFC 9112, section 9.3.2), and a limit tripped by a later request must not cut the
# earlier ones (they were counted as clients that left, status 499, and never answered).


def _answers(sock: socket.socket) -> list[bytes]:
    """Each response's status code, read until the server closes the connection (these bodies are JSON)."""
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", received)


def _first_answers(sock: socket.socket, count: int) -> list[bytes]:
    """The status codes of the first ``count`` responses on a connection that stays open (JSON bodies)."""
    received = b""
    while len(re.findall(rb"HTTP/1\.1 \d{3} ", received)) < count or not received.endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {received!r}"
        received += chunk
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", received)


def test_a_refused_pipelined_request_is_answered_after_the_requests_before_it(server: ServerProcess) -> None:
    too_big = b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(PING + PING + too_big)
        answers = _answers(sock)
    assert answers == [b"200", b"200", b"431"], answers


@pytest.fixture(scope="module")
def slow_server(slow_user_code_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Each answer takes 1.5 s."""
    yield from _serving(slow_user_code_package, tmp_path_factory.mktemp("slow-conn"), SLOW_PREDICT_SECONDS="1.5")


def _slow_request() -> bytes:
    from tests.model_package import torch_models

    body = json.dumps(torch_models.dict_head_inputs(1)["x"].tolist()).encode()
    head = b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_a_pipelined_body_waiting_behind_a_slow_answer_is_not_timed_out(slow_server: ServerProcess) -> None:
    """uvicorn reads nothing more until the answers before a pipelined request are sent, so its body
    timeout starts when its turn comes: it used to start at its headers and close the connection."""
    first, second = _slow_request(), _slow_request()
    split = second.index(b"\r\n\r\n") + 6
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as sock:
        sock.sendall(first + second[:split])  # the second's headers and the start of its body
        time.sleep(1.2)  # past the body timeout, while the first is being answered
        sock.sendall(second[split:])
        assert _first_answers(sock, 2) == [b"200", b"200"]


def test_a_pipelined_request_whose_headers_time_out_is_refused_after_the_answer_before_it(
    slow_server: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as sock:
        sock.sendall(_slow_request() + b"POST /invocations HTTP/1.1\r\nHost: te")  # the next headers stall
        answers = _answers(sock)
    assert answers == [b"200", b"408"], answers


def test_a_pipelined_request_with_a_broken_body_is_a_400_after_the_answer_before_it(server: ServerProcess) -> None:
    # Its headers were read (it became a request), its chunked body is not valid: it is answered by
    # the 400 itself, after the request before it, and never started.
    broken = b"POST /invocations HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(PING + broken)
        answers = _answers(sock)
    assert answers == [b"200", b"400"], answers


def test_pipelined_headers_split_across_reads_behind_a_slow_answer_are_not_timed_out(
    slow_server: ServerProcess,
) -> None:
    """uvicorn stops reading behind a pipelined request: headers begun in that read can only be
    finished once it reads again, so their timeout starts then (it started at their first byte)."""
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as sock:
        sock.sendall(_slow_request())
        time.sleep(0.3)  # its body read, it is being answered
        sock.sendall(PING + b"GET /pi")  # reading stops after the ping: the rest waits in the kernel
        time.sleep(0.05)
        sock.sendall(b"ng HTTP/1.1\r\nHost: test\r\n\r\n")
        assert _first_answers(sock, 3) == [b"200", b"200", b"200"]


def test_a_broken_body_read_with_its_headers_is_a_400_and_no_error_in_the_log(server: ServerProcess) -> None:
    # The request's task starts with its headers; the refusal is its answer, and it writes nothing more
    # (it wrote after the connection's end: "Cannot call write() after write_eof()", logged as ERRORs).
    logged = len(server.log())
    for request in (
        b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            assert _answers(sock) == [b"400"]
    time.sleep(0.3)
    log = server.log()[logged:]
    assert "Traceback" not in log and '"level": "error"' not in log, log


@pytest.mark.parametrize("protocol", [b"websocket", b"h2c"])
def test_an_upgrade_request_is_answered_as_plain_http_and_the_connection_closes(
    server: ServerProcess, protocol: bytes
) -> None:
    # We serve no upgrades. A WebSocket upgrade was never answered (uvicorn left it to a WebSocket
    # protocol we never start) and an h2c one lost the requests pipelined behind it: both connections
    # then stayed open with no timer.
    upgrade = (
        b"GET /ping HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" % protocol
    )
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade + PING)
        answers = _answers(sock)
    assert answers == [b"200"], answers
    assert time.monotonic() - started < 5, "the connection was held open"


# A client that never reads its answers: without a send timeout its connection (and the request
# answering it, and the answers' memory) was held until the process exited.


def _reader_that_stalls(server: ServerProcess) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def test_a_client_that_stops_reading_its_answers_is_cut_at_the_send_timeout(server: ServerProcess) -> None:
    requests = 1_500
    metrics = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n"
    with _reader_that_stalls(server) as sock:
        sock.sendall(metrics * requests)  # 6-12 MB of answers: several times what the kernel's buffers hold
        time.sleep(3)  # reads nothing for three send timeouts
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    answered = len(re.findall(rb"HTTP/1\.1 200 ", received))
    assert answered < requests, "the server waited for a client that read nothing"
    assert "took none of its answers for 1 s" in server.log_path.read_text()
    assert _exchange(server, PING).startswith(b"HTTP/1.1 200")
