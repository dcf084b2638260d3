"""A request learns that its client left from the connection itself, without a task per request.

Queued work of a client that disconnected is dropped (issue 12, "work for clients who left"): the
request's task is cancelled, which removes its place in the batcher's queue or the admission gate.
In ASGI the only way for an app to learn of a disconnect is to call ``receive()`` again once the
body is read, and the only way to wait for that beside the work is a second task per request.
Under load that task cost more than a tiny model's share of a batch (a fifth of the server's
throughput at 64 connections), so the server's own protocol
(:class:`inference.connection_limits.GuardedHttpToolsProtocol`) puts a :class:`ClientLeftNotice`
in each request's scope under :data:`EXTENSION` (ASGI's place for server-specific features:
"extensions" in the HTTP connection scope) and tells it when the connection is lost. The app
(``ApiMiddleware``) registers the request's task once the body is read, and withdraws it when the
answer starts: from then on the answer is sent (or lost) as it is. Under another ASGI server the
middleware falls back to ASGI's way, a task per request (:func:`watch_receive`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

#: The scope's ``extensions`` key of the notice.
EXTENSION: Final = "model_server.client_left"


class ClientLeftNotice:
    """Cancels the registered request task when the connection it came on is lost."""

    __slots__ = ("_task", "left")

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self.left = False
        """Whether the task was cancelled because the client left."""

    def watch(self, task: asyncio.Task[object] | None) -> None:
        """Cancel ``task`` if the client leaves from now on (until :meth:`unwatch`)."""
        self._task = task

    def unwatch(self) -> None:
        """The answer has started (or the request ended): a client leaving now changes nothing."""
        self._task = None

    def connection_lost(self) -> None:
        """Called by the protocol when the request's connection closes before its answer completed."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            self.left = True
            task.cancel()


def attach(scope: MutableMapping[str, Any]) -> None:
    """Give a new request's scope its notice (the protocol, as each request begins)."""
    scope["extensions"] = {EXTENSION: ClientLeftNotice()}


def notice_of(scope: Mapping[str, Any]) -> ClientLeftNotice | None:
    """The request's notice, or ``None`` when another ASGI server runs the app (tests' in-process clients)."""
    notice = scope.get("extensions", {}).get(EXTENSION)
    return notice if isinstance(notice, ClientLeftNotice) else None


async def watch_receive(receive: Callable[[], Awaitable[Mapping[str, Any]]], notice: ClientLeftNotice) -> None:
    """Under a server without notices (h11 when httptools is missing, tests' in-process clients): a task
    per request that tells ``notice``. Once the body is read, the next message is the client leaving."""
    message = await receive()
    if message["type"] == "http.disconnect":
        notice.connection_lost()
