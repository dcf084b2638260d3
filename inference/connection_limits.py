"""Limits on what one connection may cost before a request reaches the app: header size and count, time.

uvicorn's httptools protocol (the fast one we run) has no header limits and no header or body
timeouts: a 1 MB header, 10,000 headers or 256 MB of unterminated headers are buffered whole, and
a connection that sends nothing, or a byte a minute, is held until the process exits. This
subclass of uvicorn's protocol adds, at the socket level:

* at most :data:`MAX_HEADER_BYTES` of request line and headers (counted per received chunk, so the
  bound is that plus one read) and :data:`MAX_HEADERS` header fields: 431 otherwise;
* a header timeout, from the connection opening (or a kept-alive connection's next byte) to the
  end of the headers: 408 and close (this also closes connections that never send a request);
* a body timeout, from the end of the headers to the end of the body: the connection is closed,
  and the app sees the client leave (status 499);
* a send timeout: a connection whose client takes none of its buffered answers for that long is cut
  (the request answering it sees its client leave), as nginx's ``send_timeout`` does "if the client
  does not receive anything within this time"
  (https://nginx.org/en/docs/http/ngx_http_core_module.html#send_timeout). Watched while writes are
  paused (the output buffer over asyncio's high-water mark) and while a close waits for buffered
  output (:class:`SendBoundedTransport`); a client that takes some of it in each period is not cut;
* when the connection is lost, the request being answered is told so, and its queued work is
  dropped (``inference.client_left``), pipelined requests included;
* a request the parser rejects (a control character in a header, a negative ``Content-Length``,
  both ``Content-Length`` and chunked) is a JSON 400 naming the problem, like every other refusal;
* pipelined requests (sent before the answers to earlier ones): a refusal is sent after the
  answers to the requests before it, in order, a queued request's body timeout starts when its
  turn comes, and a refused connection is drained before it closes (lingering close).

Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``. The limits follow
common front ends (nginx ``large_client_header_buffers`` 4 x 8 KiB, Node.js 16 KiB and 100-ish
headers); the platforms' proxies in front of us impose theirs first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections import deque
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from inference.client_left import attach, notice_of
from inference.coalesced_writes import CoalescingTransport

# Our own logger: uvicorn's ("uvicorn.error", self.logger) shows warnings only (model_package.logs).
_log = logging.getLogger(__name__)

#: Request line plus header fields, in bytes.
MAX_HEADER_BYTES = 32 * 1024
#: Header fields per request.
MAX_HEADERS = 100
#: How long a refused connection's further input is read and dropped before the connection closes.
LINGER_S = 2.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request we refuse."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header limits and header/body timeouts."""

    header_timeout: float = 30.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True
        self._header_bytes = 0
        self._header_count = 0
        self._headers_completed = 0
        self._refusal: tuple[int, str] | None = None
        # A refusal written once the requests before it are answered (responses go in request order).
        self._pending_refusal: bytes | None = None
        # A request begun while reading was paused: its header timeout starts when reading resumes.
        self._headers_wait_for_reading = False
        self._timer: asyncio.TimerHandle | None = None
        self._guarded: SendBoundedTransport | None = None
        # This connection's requests not yet answered, oldest first: the one being answered and any
        # pipelined behind it (uvicorn's ``self.cycle`` is the newest, not the one running).
        self._unanswered: deque[RequestResponseCycle] = deque()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._guarded = SendBoundedTransport(transport, self.loop, self.send_timeout)
        super().connection_made(self._guarded)  # type: ignore[arg-type]
        self._arm(self.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        if self._guarded is not None:
            self._guarded.connection_closed()  # after uvicorn's, which may close the transport once more
        while self._unanswered:
            cycle = self._unanswered.popleft()
            if not cycle.response_complete:
                # What uvicorn does for its newest request only: the running one, when requests were
                # pipelined, would otherwise be answered with a 500 written to the closed connection.
                self._disconnect(cycle)

    @staticmethod
    def _disconnect(cycle: RequestResponseCycle) -> None:
        """Tell ``cycle``'s app that its client is gone: its queued work is dropped, its writes are not made."""
        cycle.disconnected = True
        cycle.message_event.set()
        notice = notice_of(cast(dict[str, Any], cycle.scope))
        if notice is not None:
            notice.connection_lost()  # pipelined ones have no task yet

    def on_response_complete(self) -> None:
        if self._unanswered:
            self._unanswered.popleft()  # responses complete in request order
        super().on_response_complete()
        if self._pending_refusal is not None:
            if not self._answering():
                self._send(self._pending_refusal)
        elif self.transport.is_closing() or self.flow.read_paused:
            pass
        elif self._unanswered and self._unanswered[0].more_body:
            # A pipelined request whose turn has come, its body still arriving: reading resumes now,
            # and its body timeout starts now (it did not while reading was paused behind the others).
            self._arm(self.body_timeout, self._body_timed_out)
        elif self._headers_wait_for_reading and self._in_headers:
            self._headers_wait_for_reading = False
            self._arm(self.header_timeout, self._header_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._in_headers and self._timer is None:
            self._arm(self.header_timeout, self._header_timed_out)  # the next request on a kept-alive connection
        was_in_headers = self._in_headers
        completed_before = self._headers_completed
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Same as uvicorn: we serve no upgrades; the request runs as plain HTTP. The parser reads
            # nothing after an upgrade request (requests pipelined behind it were lost and the
            # connection then hung), so the connection closes once this request is answered.
            self.logger.warning("An Upgrade request is answered as plain HTTP, then the connection closes")
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserError as exc:
            if self._refusal is None:
                # uvicorn answers a bare text/plain "Invalid HTTP request received."; every other refusal
                # is JSON naming the problem (llhttp's reason, e.g. "Invalid character in Content-Length").
                self.logger.warning("Invalid HTTP request received: %s", exc)
                self._refuse(400, f"the request is not valid HTTP/1.1: {exc}")
                return
        if was_in_headers and self._headers_completed == completed_before and self._refusal is None:
            # Every byte of this chunk belonged to the still-unfinished header section.
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refusal = (431, f"request headers exceed {MAX_HEADER_BYTES} bytes")
        if self._refusal is not None:
            self._refuse(*self._refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        attach(cast(dict[str, Any], self.scope))
        self._in_headers = True
        self._header_bytes = 0
        self._header_count = 0
        if self._timer is None:
            # The next request's first byte, in the same read as the end of the one before (which
            # disarmed the timer): its headers get their timeout from here, as on a fresh read; or,
            # when uvicorn has stopped reading (a pipelined request waits for its turn) and the rest
            # of these headers cannot arrive yet, from when reading resumes (on_response_complete).
            if self.flow.read_paused:
                self._headers_wait_for_reading = True
            else:
                self._arm(self.header_timeout, self._header_timed_out)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refusal = (431, f"a request may carry at most {MAX_HEADERS} header fields")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._headers_wait_for_reading = False
        self._headers_completed += 1
        self._arm(self.body_timeout, self._body_timed_out)
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:
            self._unanswered.append(self.cycle)
            if previous is not None and not previous.response_complete:
                # Pipelined: uvicorn stops reading until the requests before it are answered, so its body
                # cannot arrive meanwhile; its body timeout starts when its turn comes (on_response_complete).
                self._disarm()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_headers = True  # whatever arrives next starts the next request's headers
        self._header_bytes = 0
        super().on_message_complete()

    def _refuse(self, status: int, message: str) -> None:
        """Answer the request being read with ``status`` and close the connection once it is sent.

        Requests before it on this connection (pipelined, already read whole) are answered first, in
        order (RFC 9112, section 9.3.2): closing at once would cut them, and count them as clients
        that left. Nothing more is read from the connection.
        """
        self._disarm()
        self._refusal = (status, message)
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = json.dumps({"error": message}).encode()
        response = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body))
            + body
        )
        # The refused request itself, when its headers were read (a malformed body, the newest request:
        # the parser reads requests one after the other): the refusal is its answer. Pipelined, it must
        # never start; running, it must write nothing more (and its queued work is dropped).
        if self._unanswered and self._unanswered[-1].more_body:
            refused = self._unanswered.pop()
            self.pipeline = deque(entry for entry in self.pipeline if entry[0] is not refused)
            self._disconnect(refused)
        if self._answering():
            self._pending_refusal = response
            self.transport.pause_reading()
            return
        self._send(response)

    def _answering(self) -> bool:
        """Whether a request before the refused one is still being (or waiting to be) answered."""
        return any(not cycle.response_complete for cycle in self._unanswered)

    def _send(self, response: bytes) -> None:
        """Write the refusal, then close without resetting the connection.

        Closing a socket with unread input makes the kernel reset the connection, and a reset makes
        the client's kernel discard what it has not yet read: the answers just sent, the refusal
        among them. So the connection is half-closed and what the client still sends is read and
        dropped until it closes its side, or for at most ``LINGER_S``: the staged close of RFC 9112,
        section 9.6 (https://www.rfc-editor.org/rfc/rfc9112#section-9.6), as nginx's
        ``lingering_close`` does.
        """
        self._pending_refusal = None
        self.transport.write(response)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.transport.resume_reading()
        self._arm(LINGER_S, self.transport.close)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._guarded is not None:
            self._guarded.watch()

    def resume_writing(self) -> None:
        if self._guarded is not None:
            self._guarded.writes_resumed()
        super().resume_writing()

    def eof_received(self) -> None:
        # The client closed its side (a half-close). uvicorn returns None here, so asyncio closes the
        # transport itself, past SendBoundedTransport.close: output the client never takes held the
        # connection forever. Closing through it watches that output (nothing else changes).
        self.transport.close()

    def _header_timed_out(self) -> None:
        self._timer = None
        if self._in_headers and not self.transport.is_closing():
            self._refusal = (408, f"the request headers did not arrive within {self.header_timeout:g} s")
            self._refuse(*self._refusal)

    def _body_timed_out(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            _log.info("closing a connection whose body did not arrive within %g s", self.body_timeout)
            self.transport.close()

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class SendBoundedTransport(CoalescingTransport):
    """A connection's transport, cut when its client takes none of its buffered output for ``send_timeout``.

    Watched while writes are paused (:meth:`watch`, from the protocol's ``pause_writing``) and while
    a close waits for buffered output: asyncio's ``close`` sends what is buffered before it closes
    the socket, so for a client that reads nothing (output below the high-water mark, writes never
    paused) it waited forever. uvicorn closes this way at its keep-alive timeout and after a
    ``connection: close`` answer. Each period in which the buffer shrinks starts a new one, so a slow
    but steady reader is not cut; the buffer shrinks when the kernel takes more, after the client has
    read about a third of the kernel's send buffer (as nginx, whose timer restarts on each write).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, send_timeout: float) -> None:
        super().__init__(transport, loop)
        self._send_timeout = send_timeout
        self._watch: asyncio.TimerHandle | None = None
        self._left = 0
        self._lost = False

    def watch(self) -> None:
        """Cut the connection if its buffered output does not shrink within the send timeout (repeatedly)."""
        if self._watch is None and not self._lost and (left := self._transport.get_write_buffer_size()):
            self._left = left
            self._watch = self._loop.call_later(self._send_timeout, self._check)

    def writes_resumed(self) -> None:
        """The buffer drained to the low-water mark: the app writes again, the client is reading."""
        if not self._transport.is_closing():  # a closing connection's last output is still watched
            self._stop_watching()

    def close(self) -> None:
        super().close()
        self.watch()

    def connection_closed(self) -> None:
        """The socket is closed: nothing left to watch."""
        self._lost = True
        self._stop_watching()

    def _check(self) -> None:
        self._watch = None
        left = self._transport.get_write_buffer_size()
        if not left or self._lost:
            return
        if left < self._left:
            self.watch()  # the client took some: a new period from here
            return
        _log.info("cutting a connection whose client took none of its answers for %g s", self._send_timeout)
        # A reset, not a close: a closed socket keeps what the kernel holds of its output (megabytes)
        # until the client reads it, for minutes. nginx's reset_timedout_connection: "the SO_LINGER option
        # is set on it with a timeout value of 0. When the socket is closed, TCP RST is sent to the client,
        # and all memory occupied by this socket is released"
        # (https://nginx.org/en/docs/http/ngx_http_core_module.html#reset_timedout_connection).
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._transport.abort()  # close() would wait for the buffered answers to be sent: forever

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None


def guarded_protocol(header_timeout: float, body_timeout: float, send_timeout: float) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with these timeouts (uvicorn instantiates the class itself)."""
    return type(
        "ConfiguredGuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout, "send_timeout": send_timeout},
    )
