"""The adaptive batcher, driven directly on an event loop with a real (NumPy) model function."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping

import numpy as np
import pytest

from inference.batching import Batcher
from inference.errors import DeadlineExceededError, OverloadedError, http_error
from model_package.errors import ModelExecutionError


class Recorder:
    """y = 2x, recording the batch sizes it was called with; optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.release.wait(10)
        time.sleep(self.delay)
        x = inputs["x"]
        self.calls.append(int(x.shape[0]))
        return {"y": x * 2}


def rows(n: int, start: float = 0.0, width: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + n * width, dtype=np.float32).reshape(n, width)}


async def _with_batcher(batcher: Batcher, body):  # type: ignore[no-untyped-def]
    await batcher.start()
    try:
        return await body()
    finally:
        await batcher.stop()


def test_concurrent_requests_are_merged_and_split_back() -> None:
    model = Recorder()
    model.release.clear()  # hold the first call so the others queue up behind it
    batcher = Batcher(model, max_batch_size=64)

    async def body() -> list[dict[str, np.ndarray]]:
        first = asyncio.ensure_future(batcher.submit(rows(1, 1000), timeout=10))
        await asyncio.sleep(0.05)
        others = [asyncio.ensure_future(batcher.submit(rows(i + 1, i * 100), timeout=10)) for i in range(10)]
        await asyncio.sleep(0.05)
        model.release.set()
        return await asyncio.gather(first, *others)

    results = asyncio.run(_with_batcher(batcher, body))
    assert model.calls == [1, sum(range(1, 11))], "the ten queued requests must run as one batch"
    for i, result in enumerate(results[1:]):
        np.testing.assert_array_equal(result["y"], rows(i + 1, i * 100)["x"] * 2)


def test_max_batch_size_and_shapes_bound_a_batch() -> None:
    model = Recorder()
    model.release.clear()
    batcher = Batcher(model, max_batch_size=4)

    async def body() -> None:
        blocker = asyncio.ensure_future(batcher.submit(rows(1), timeout=10))
        await asyncio.sleep(0.05)
        jobs = [asyncio.ensure_future(batcher.submit(rows(1), timeout=10)) for _ in range(6)]
        wide = asyncio.ensure_future(batcher.submit(rows(2, width=5), timeout=10))
        await asyncio.sleep(0.05)
        model.release.set()
        await asyncio.gather(blocker, *jobs, wide)

    asyncio.run(_with_batcher(batcher, body))
    assert model.calls == [1, 4, 2, 2], "4-row cap, then the rest; the wider input is never mixed in"


def test_a_full_queue_answers_503_with_retry_after() -> None:
    model = Recorder()
    model.release.clear()
    batcher = Batcher(model, max_queue=2)

    async def body() -> None:
        running = asyncio.ensure_future(batcher.submit(rows(1), timeout=10))
        await asyncio.sleep(0.05)  # taken by the worker: the queue is empty again
        queued = [asyncio.ensure_future(batcher.submit(rows(1), timeout=10)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError) as caught:
            await batcher.submit(rows(1), timeout=10)
        assert caught.value.headers["Retry-After"] == "1"
        assert "queue is full" in caught.value.message
        model.release.set()
        await asyncio.gather(running, *queued)

    asyncio.run(_with_batcher(batcher, body))


def test_expired_requests_are_dropped_without_being_computed() -> None:
    model = Recorder(delay=0.3)
    batcher = Batcher(model, max_batch_size=1)

    async def body() -> None:
        slow = asyncio.ensure_future(batcher.submit(rows(1), timeout=5))
        await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExceededError, match="deadline"):
            await batcher.submit(rows(7), timeout=0.1)
        await slow

    asyncio.run(_with_batcher(batcher, body))
    assert model.calls == [1], "the expired 7-row request must never reach the model"


def test_a_model_failure_is_a_500_without_its_details_and_the_batcher_keeps_serving() -> None:
    calls = 0

    def flaky(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("CUDA out of memory at 0x7f3a2c001234")
        return {"y": inputs["x"]}

    batcher = Batcher(flaky)

    async def body() -> tuple[BaseException, dict[str, np.ndarray]]:
        with pytest.raises(RuntimeError, match="CUDA out of memory") as failure:
            await batcher.submit(rows(1), timeout=5)
        return failure.value, await batcher.submit(rows(2), timeout=5)

    error, after = asyncio.run(_with_batcher(batcher, body))
    assert after["y"].shape == (2, 3)
    answer = http_error(error)
    assert answer.status == 500
    assert "0x7f" not in answer.message and "CUDA" not in answer.message


class Poisoned:
    """y = 2x, but any batch holding a row that starts with 13 fails, as a real forward() error would."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.release.wait(10)
        x = inputs["x"]
        self.calls.append(int(x.shape[0]))
        if (x[:, 0] == 13).any():
            raise ModelExecutionError(f"index out of range in self (batch shape {list(x.shape)})")
        return {"y": x * 2}


def test_one_failing_request_never_fails_the_others_in_its_batch() -> None:
    model = Poisoned()
    batcher = Batcher(model, max_batch_size=64)

    async def body() -> list[dict[str, np.ndarray] | BaseException]:
        first = asyncio.ensure_future(batcher.submit(rows(1, 100), timeout=10))
        await asyncio.sleep(0.05)  # the first call holds the model while the others queue into one batch
        good = [asyncio.ensure_future(batcher.submit(rows(2, 200 + i * 10), timeout=10)) for i in range(3)]
        bad = asyncio.ensure_future(batcher.submit({"x": np.full((1, 3), 13, dtype=np.float32)}, timeout=10))
        await asyncio.sleep(0.05)
        model.release.set()
        return await asyncio.gather(first, *good, bad, return_exceptions=True)

    _first, *good, bad = asyncio.run(_with_batcher(batcher, body))
    assert model.calls[:2] == [1, 7], "the four queued requests must first run as one batch"
    for index, result in enumerate(good):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], rows(2, 200 + index * 10)["x"] * 2)
    assert isinstance(bad, ModelExecutionError)
    assert "[1, 3]" in str(bad), "the failing request's error must be its own, not the batch's"
    assert http_error(bad).status == 500


def test_stop_finishes_queued_work() -> None:
    model = Recorder(delay=0.05)
    batcher = Batcher(model, max_batch_size=1)

    async def body() -> list[dict[str, np.ndarray]]:
        await batcher.start()
        jobs = [asyncio.ensure_future(batcher.submit(rows(1, i), timeout=10)) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.stop()
        return await asyncio.gather(*jobs)

    assert len(asyncio.run(body())) == 3
    assert model.calls == [1, 1, 1]


def test_max_delay_waits_for_a_batch_to_fill() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch_size=8, max_delay=0.2)

    async def body() -> None:
        jobs = []
        for _ in range(8):
            jobs.append(asyncio.ensure_future(batcher.submit(rows(1), timeout=10)))
            await asyncio.sleep(0.01)
        await asyncio.gather(*jobs)

    asyncio.run(_with_batcher(batcher, body))
    assert model.calls == [8]


def test_a_request_larger_than_the_batch_cap_runs_in_capped_chunks() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch_size=64)

    async def body() -> dict[str, np.ndarray]:
        return await batcher.submit(rows(150), timeout=10)

    result = asyncio.run(_with_batcher(batcher, body))
    assert model.calls == [64, 64, 22], "no model call may exceed max_batch_size rows"
    np.testing.assert_array_equal(result["y"], rows(150)["x"] * 2)


def test_a_chunked_request_stops_computing_at_its_deadline() -> None:
    model = Recorder(delay=0.1)
    batcher = Batcher(model, max_batch_size=10)

    async def body() -> None:
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(1000), timeout=0.25)
        await asyncio.sleep(0.3)

    asyncio.run(_with_batcher(batcher, body))
    assert len(model.calls) <= 4, f"the 100 chunks must not all run after the deadline: {model.calls}"


class Overlap(Recorder):
    """A gated model that also records how many of its calls ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().__call__(inputs)
        finally:
            with self.lock:
                self.running -= 1


def test_a_lone_request_whose_client_left_keeps_the_model_busy_until_its_call_ends() -> None:
    """An idle batcher starts a lone request at once; the next request still waits for that model call."""
    model = Overlap()
    model.release.clear()
    batcher = Batcher(model, max_batch_size=8, workers=1)

    async def body() -> dict[str, np.ndarray]:
        gone = asyncio.ensure_future(batcher.submit(rows(1), timeout=10))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client left while its model call runs
        await asyncio.sleep(0.01)
        nxt = asyncio.ensure_future(batcher.submit(rows(2, 100), timeout=10))
        await asyncio.sleep(0.05)
        assert not nxt.done() and model.calls == [], "the second request waits for the first call"
        assert batcher.queue_depth == 1, "and waits in the queue (bounded, counted), not behind the compute thread"
        model.release.set()
        return await nxt

    result = asyncio.run(_with_batcher(batcher, body))
    np.testing.assert_array_equal(result["y"], rows(2, 100)["x"] * 2)
    assert model.calls == [1, 2] and model.most == 1


def test_stop_waits_for_a_lone_request_already_in_the_model_within_its_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """And a model call that ends after the event loop closed is dropped quietly, not a thread's traceback."""
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    model = Recorder(delay=0.3)
    batcher = Batcher(model, max_batch_size=8)

    async def body() -> None:
        await batcher.start()
        lone = asyncio.ensure_future(batcher.submit(rows(1), timeout=10))
        await asyncio.sleep(0.01)
        await batcher.stop()
        assert model.calls == [1], "stop returned before the model call ended"
        np.testing.assert_array_equal((await lone)["y"], rows(1)["x"] * 2)

        cut = Batcher(Recorder(delay=1.0), max_batch_size=8)
        await cut.start()
        running = asyncio.ensure_future(cut.submit(rows(1), timeout=10))
        await asyncio.sleep(0.01)
        began = time.perf_counter()
        await cut.stop(grace=0.05)
        assert time.perf_counter() - began < 0.5, "the drain deadline bounds the wait for a running model call"
        running.cancel()  # its answer would come after the drain deadline: the server has stopped waiting

    asyncio.run(body())
    compute = [thread for thread in threading.enumerate() if thread.name.startswith("model-compute")]
    for thread in compute:
        thread.join(5)
    assert errors == [], "the compute thread failed handing its late answer to a closed event loop"


def test_compute_threads_report_how_long_all_of_them_have_been_busy() -> None:
    """What health checks read (``ModelService.healthy``): 0 while a thread is free, else the youngest call's age."""
    from inference.batching import ComputeThreads

    threads = ComputeThreads(2, "test-busy")
    release = threading.Event()

    async def scenario() -> tuple[float, float, float]:
        first = threads.start(lambda _: release.wait(), None)
        await asyncio.sleep(0.2)
        one_busy = threads.all_busy_for()
        second = threads.start(lambda _: release.wait(), None)
        await asyncio.sleep(0.3)
        both_busy = threads.all_busy_for()
        release.set()
        await first
        await second
        # The outcome reaches the loop just before the thread marks itself free: give it a moment.
        for _ in range(100):
            if not threads.all_busy_for():
                break
            await asyncio.sleep(0.01)
        return one_busy, both_busy, threads.all_busy_for()

    try:
        one_busy, both_busy, after = asyncio.run(scenario())
    finally:
        threads.shutdown()
    assert one_busy == 0.0
    assert 0.2 <= both_busy < 2.0
    assert after == 0.0
