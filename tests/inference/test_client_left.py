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


def _slow_app_scenario(with_notice: bool) -> tuple[list[dict[str, object]], str, bool]:
    """A request whose app takes a second after reading its body; its client leaves 50 ms in.

    Returns what was sent, the metrics text and whether the app ran to its end.
    """
    from inference.app import ApiMiddleware
    from inference.metrics import ServerMetrics

    finished: list[bool] = []

    async def slow_app(scope: dict[str, object], receive: object, send: object) -> None:
        await receive()  # type: ignore[operator]
        await asyncio.sleep(1)
        finished.append(True)

    metrics = ServerMetrics()
    middleware = ApiMiddleware(slow_app, max_request_bytes=1000, platform="sagemaker", metrics=metrics)
    scope: dict[str, object] = {"type": "http", "method": "POST", "path": "/invocations", "headers": []}
    if with_notice:
        attach(scope)
    sent: list[dict[str, object]] = []
    messages = [{"type": "http.request", "body": b"[[1.0]]", "more_body": False}]

    async def receive() -> dict[str, object]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # our protocol never answers a second receive before the client leaves
        raise AssertionError("unreachable")

    async def leaving_receive() -> dict[str, object]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def scenario() -> None:
        if with_notice:
            task = asyncio.get_running_loop().create_task(middleware(scope, receive, send))  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
            notice = notice_of(scope)
            assert notice is not None
            notice.connection_lost()  # what the protocol does on connection_lost
            await task
        else:
            await middleware(scope, leaving_receive, send)  # type: ignore[arg-type]

    asyncio.run(asyncio.wait_for(scenario(), 5))
    return sent, metrics.render()[0].decode(), bool(finished)


@pytest.mark.parametrize("with_notice", [True, False], ids=["our protocol's notice", "another server"])
def test_the_work_of_a_client_that_left_is_dropped_and_counted_as_499(with_notice: bool) -> None:
    sent, metrics, finished = _slow_app_scenario(with_notice)
    assert not finished and sent == []
    assert 'model_server_requests_total{route="unmatched",status="499"} 1.0' in metrics
