"""One ``write`` per small response: a response's head waits for its body, so both leave together.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
then its body when the app sends ``http.response.body`` (``RequestResponseCycle.send`` in
``uvicorn/protocols/http/httptools_impl.py``, one ``transport.write`` each): two write system calls
per response, two TCP segments (counted by ``tests/inference/test_coalesced_writes.py``). For a
small model's answer the second call is a measurable part of the request (README, Serving).

:class:`CoalescingTransport` wraps a connection's transport: a write that starts a response (it
begins with ``HTTP/1.1 ``) is held until the next write, which takes it along in one
``writelines`` call, or until the current event-loop step ends, whichever comes first; ``close``
and ``abort`` send what is held first. Everything else is the wrapped transport's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

_RESPONSE_HEAD = b"HTTP/1.1 "


class CoalescingTransport:
    """``transport``, with a response head held until its body (or the end of the loop step)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._ended = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._ended:
            return  # asyncio would raise; the client has its answer and the connection is ending
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif bytes(data[:9]) == _RESPONSE_HEAD:
            self._held = bytes(data)
            self._loop.call_soon(self._release)
        else:
            self._transport.write(data)

    def _release(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self._release()
        self._transport.close()

    def abort(self) -> None:
        self._release()
        self._transport.abort()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._release()  # the held response head goes before the end of the stream
        self._transport.write_eof()
        self._ended = True

    def is_closing(self) -> bool:
        # After the end of the stream nothing more can be written: to uvicorn (which checks this
        # before an interim "100 Continue" or the next pipelined request) the connection is closing.
        return self._ended or self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, set_protocol, write_eof, ...: the wrapped transport's own.
        return getattr(self._transport, name)
