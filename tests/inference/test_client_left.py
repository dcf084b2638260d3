"""The notice that tells a request its client left: it cancels the work only while the answer has not started.

End to end (a real server dropping the queued work of clients that left, status 499) is
``test_abandoned_requests.py``; these pin the contract the protocol and the middleware share.
"""

from __future__ import annotations

import asyncio

import pytest

from inference.client_left import ClientLeftNotice, attach, notice_of


async def _waiting_task() -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    return task


def test_a_client_leaving_while_its_request_is_watched_cancels_the_work() -> None:
    async def scenario() -> None:
        notice = ClientLeftNotice()
        task = await _waiting_task()
        notice.watch(task)
        notice.connection_lost()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert notice.left

    asyncio.run(scenario())


def test_a_client_leaving_once_the_answer_started_changes_nothing() -> None:
    async def scenario() -> None:
        notice = ClientLeftNotice()
        task = await _waiting_task()
        notice.watch(task)
        notice.unwatch()  # the answer started
        notice.connection_lost()
        await asyncio.sleep(0)
        assert not task.cancelled() and not notice.left
        task.cancel()

    asyncio.run(scenario())


def test_a_finished_request_is_not_counted_as_left() -> None:
    async def scenario() -> None:
        notice = ClientLeftNotice()
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await task
        notice.watch(task)
        notice.connection_lost()
        assert not notice.left

    asyncio.run(scenario())


def test_each_request_gets_its_own_notice_and_other_servers_none() -> None:
    first: dict[str, object] = {"type": "http"}
    second: dict[str, object] = {"type": "http"}
    attach(first)
    attach(second)
    assert isinstance(notice_of(first), ClientLeftNotice)
    assert notice_of(first) is not notice_of(second)
    assert notice_of({"type": "http"}) is None
    assert notice_of({"type": "http", "extensions": {"http.response.trailers": {}}}) is None
