"""Lone requests to a fast model run on the event loop; anything else still goes to the compute thread.

A thread hand-off costs two wake-ups (about 160 µs on the benchmark VMs), more than a small
model's call; but blocking the loop on a slow call, or calling the model once per request under
load instead of batching, would be worse. These tests pin both sides of that trade.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from inference.batching import Batcher

#: Milliseconds decide these tests: run alone (`./dev.sh test`), and again when a VM's pause (a 0.16 ms
#: sleep seen taking 5-29 ms, 1 to 5 times in 100) fails one; a defect fails every run.
pytestmark = [pytest.mark.timing, pytest.mark.flaky(reruns=2)]


class ThreadRecorder:
    """y = 2x, recording each call's rows and the thread it ran on; ``delay`` seconds per row."""

    def __init__(self, delay_per_row: float = 0.0, fail_on: float | None = None) -> None:
        self.calls: list[tuple[int, str]] = []
        self.delay_per_row = delay_per_row
        self.fail_on = fail_on

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append((int(x.shape[0]), threading.current_thread().name))
        if self.delay_per_row:
            time.sleep(self.delay_per_row * x.shape[0])
        if self.fail_on is not None and (x == self.fail_on).any():
            raise RuntimeError("the model failed on this input")
        return {"y": x * 2}

    @property
    def threads(self) -> list[str]:
        return [thread for _, thread in self.calls]


def rows(n: int, start: float = 0.0) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + n * 3, dtype=np.float32).reshape(n, 3)}


def serve(batcher: Batcher, body):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        await batcher.start()
        try:
            return await body()
        finally:
            await batcher.stop(grace=2)  # bounded: a leaked model slot fails the test instead of hanging it

    return asyncio.run(run())


LOOP = threading.main_thread().name


@pytest.fixture(autouse=True)
def no_collections_during_measured_calls() -> Iterator[None]:
    """A collection of the whole suite's heap (tens of ms) inside a measured call would look like a slow model."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_lone_requests_to_a_fast_model_run_on_the_event_loop_once_measured() -> None:
    model = ThreadRecorder()
    batcher = Batcher(model, max_batch_size=8, inline_below=0.001)

    async def body() -> list[dict[str, np.ndarray]]:
        return [await batcher.submit(rows(1, 10.0 * i), timeout=5) for i in range(4)]

    results = serve(batcher, body)
    assert model.threads[0] != LOOP, "the first call is measured on the compute thread"
    assert model.threads[1:] == [LOOP] * 3
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], rows(1, 10.0 * i)["x"] * 2)


def test_a_slow_model_never_blocks_the_loop() -> None:
    model = ThreadRecorder(delay_per_row=0.01)
    batcher = Batcher(model, max_batch_size=8, inline_below=0.001)

    async def body() -> None:
        for _ in range(3):
            await batcher.submit(rows(1), timeout=5)

    serve(batcher, body)
    assert LOOP not in model.threads


def test_a_large_request_to_a_fast_model_goes_to_the_compute_thread() -> None:
    # 0.3 ms a row: one row fits under 1 ms, ten rows (estimated from one-row calls) do not.
    model = ThreadRecorder(delay_per_row=0.0003)
    batcher = Batcher(model, max_batch_size=16, inline_below=0.001)

    async def body() -> None:
        await batcher.submit(rows(1), timeout=5)
        await batcher.submit(rows(1), timeout=5)
        await batcher.submit(rows(10), timeout=5)

    serve(batcher, body)
    assert [(n, thread == LOOP) for n, thread in model.calls] == [(1, False), (1, True), (10, False)]


class SequenceModel:
    """Cost follows the input's size, not its rows (a dynamic sequence axis); records threads and lengths."""

    def __init__(self, seconds_per_value: float) -> None:
        self.seconds_per_value = seconds_per_value
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tokens = inputs["tokens"]
        self.calls.append((int(tokens.shape[1]), threading.current_thread().name == LOOP))
        time.sleep(self.seconds_per_value * tokens.size)
        return {"y": tokens.sum(axis=1, keepdims=True)}


def test_a_long_sequence_of_one_row_goes_to_the_compute_thread() -> None:
    # Short one-row sequences take 0.16 ms and run inline once measured; a one-row sequence 50 times
    # longer would hold the event loop for 8 ms: the estimate must follow the input's size, not rows.
    model = SequenceModel(seconds_per_value=0.00001)
    batcher = Batcher(model, max_batch_size=16, inline_below=0.001)

    def sequence(length: int) -> dict[str, np.ndarray]:
        return {"tokens": np.ones((1, length), dtype=np.int64)}

    async def body() -> None:
        for length in (16, 16, 800, *[16] * 10):
            await batcher.submit(sequence(length), timeout=5)

    serve(batcher, body)
    assert model.calls[:3] == [(16, False), (16, True), (800, False)]
    # Right after the long call the estimate is cautious; it settles back as short calls are measured.
    assert model.calls[-1] == (16, True)


def test_requests_arriving_together_are_still_batched_not_run_inline_one_by_one() -> None:
    model = ThreadRecorder()
    batcher = Batcher(model, max_batch_size=64, inline_below=0.001)

    async def body() -> list[dict[str, np.ndarray]]:
        await batcher.submit(rows(1), timeout=5)  # measured
        await batcher.submit(rows(1), timeout=5)  # inline
        # Eight requests read in one loop turn, as uvicorn creates their tasks before running any.
        return await asyncio.gather(*(batcher.submit(rows(1, 100.0 * i), timeout=5) for i in range(8)))

    results = serve(batcher, body)
    burst = model.calls[2:]
    assert len(burst) == 2 and sum(n for n, _ in burst) == 8, f"expected a lone call and one batch: {burst}"
    assert LOOP not in [thread for _, thread in burst]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], rows(1, 100.0 * i)["x"] * 2)


def test_an_inline_model_failure_fails_that_request_only_and_frees_the_model() -> None:
    model = ThreadRecorder(fail_on=-1.0)
    batcher = Batcher(model, max_batch_size=8, inline_below=0.001)

    async def body() -> dict[str, np.ndarray]:
        await batcher.submit(rows(1), timeout=5)
        with pytest.raises(RuntimeError, match="the model failed"):
            await batcher.submit({"x": np.full((1, 3), -1.0, dtype=np.float32)}, timeout=5)
        return await batcher.submit(rows(1, 5.0), timeout=1)

    result = serve(batcher, body)
    assert model.threads[1] == LOOP, "the failing call ran inline"
    np.testing.assert_array_equal(result["y"], rows(1, 5.0)["x"] * 2)


def test_a_request_cancelled_before_its_inline_call_frees_the_model() -> None:
    model = ThreadRecorder()
    batcher = Batcher(model, max_batch_size=8, inline_below=0.001)

    async def body() -> dict[str, np.ndarray]:
        await batcher.submit(rows(1), timeout=5)
        gone = asyncio.ensure_future(batcher.submit(rows(1, 50.0), timeout=5))
        await asyncio.sleep(0)  # it takes the model and yields once to let others queue
        gone.cancel()  # the client left in that turn
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await batcher.submit(rows(1, 7.0), timeout=1)

    result = serve(batcher, body)
    assert [n for n, _ in model.calls] == [1, 1], "the cancelled request was never computed"
    np.testing.assert_array_equal(result["y"], rows(1, 7.0)["x"] * 2)


def test_a_model_whose_cost_follows_its_data_stops_running_inline_after_one_slow_call() -> None:
    # The cost follows a value, not the shape (a loop count, an early exit). The first slow call
    # cannot be foreseen; afterwards a client alternating cheap and costly inputs must not get its
    # costly ones on the loop again once the moving average has forgotten the first (0.7**15).
    calls: list[tuple[bool, bool]] = []  # (costly, ran on the loop)

    def model(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        costly = bool(x[0, 0] > 0)
        if costly:
            time.sleep(0.05)
        calls.append((costly, threading.current_thread().name == LOOP))
        return {"y": x * 2}

    batcher = Batcher(model, max_batch_size=8, inline_below=0.001)

    async def body() -> None:
        for _ in range(3):
            for _ in range(15):
                await batcher.submit({"x": np.zeros((1, 3), dtype=np.float32)}, timeout=5)
            await batcher.submit({"x": np.ones((1, 3), dtype=np.float32)}, timeout=5)

    serve(batcher, body)
    assert [inline for costly, inline in calls if costly] == [True, False, False]


def test_one_pause_of_the_machine_pauses_inline_calls_for_a_while_not_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    # A VM's steal or a page-in stretches one fast call past ten times the limit. Inline calls used to
    # stop for the rest of the process's life after it: every later lone request paid a thread hand-off.
    monkeypatch.setattr("inference.batching._FIRST_INLINE_PAUSE_S", 0.3)
    stalls = [0.05]  # the second inline call stalls once
    calls: list[bool] = []  # ran on the loop

    def model(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        on_loop = threading.current_thread().name == LOOP
        if on_loop and len(calls) >= 2 and stalls:
            time.sleep(stalls.pop())
        calls.append(on_loop)
        return {"y": inputs["x"] * 2}

    batcher = Batcher(model, max_batch_size=8, inline_below=0.001)

    async def body() -> tuple[list[bool], list[bool], list[bool]]:
        for _ in range(3):  # measured on the thread, then inline; the third stalls
            await batcher.submit(rows(1), timeout=5)
        paused_from = len(calls)
        for _ in range(12):  # enough for the estimate to forget the stall (0.7**12): the pause holds them
            await batcher.submit(rows(1), timeout=5)
        paused = calls[paused_from:]
        await asyncio.sleep(0.4)  # past the pause
        resumed_from = len(calls)
        for _ in range(3):
            await batcher.submit(rows(1), timeout=5)
        return calls[:paused_from], paused, calls[resumed_from:]

    before, paused, resumed = serve(batcher, body)
    assert before == [False, True, True]
    assert paused == [False] * 12
    assert resumed == [True, True, True]


def test_each_later_overshoot_doubles_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inference.batching._FIRST_INLINE_PAUSE_S", 0.2)
    calls: list[tuple[bool, bool]] = []  # (costly, ran on the loop)

    def model(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        costly = bool(inputs["x"][0, 0] > 0)
        if costly:
            time.sleep(0.03)
        calls.append((costly, threading.current_thread().name == LOOP))
        return {"y": inputs["x"] * 2}

    batcher = Batcher(model, max_batch_size=8, inline_below=0.001)
    cheap, costly = {"x": np.zeros((1, 3), dtype=np.float32)}, {"x": np.ones((1, 3), dtype=np.float32)}

    async def inline_after(seconds: float) -> bool:
        await asyncio.sleep(seconds)
        for _ in range(12):  # the estimate forgets the costly call on the thread (0.7**12)
            await batcher.submit(cheap, timeout=5)
        return calls[-1][1]

    async def body() -> list[bool]:
        for _ in range(2):
            await batcher.submit(cheap, timeout=5)
        await batcher.submit(costly, timeout=5)  # inline, over the limit: a 0.2 s pause
        first = [await inline_after(0.0), await inline_after(0.25)]
        await batcher.submit(costly, timeout=5)  # inline again, over again: 0.4 s
        return [*first, await inline_after(0.25), await inline_after(0.2)]

    assert serve(batcher, body) == [False, True, False, True]


def test_string_inputs_never_run_inline() -> None:
    # A string's cost follows its length, which the value count does not see: one 50 KB text in
    # one row would be estimated like the 16-byte ones before it.
    calls: list[tuple[int, bool]] = []

    def model(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = inputs["text"].tolist()
        calls.append((sum(len(text) for text in texts), threading.current_thread().name == LOOP))
        return {"length": np.array([len(text) for text in texts], dtype=np.int64)}

    batcher = Batcher(model, max_batch_size=16, inline_below=0.001)

    async def body() -> None:
        for text in (b"x" * 16, b"x" * 16, b"x" * 50_000):
            await batcher.submit({"text": np.array([text], dtype=object)}, timeout=5)
            await batcher.submit({"text": np.array([text])}, timeout=5)  # fixed-width bytes (dtype S)

    serve(batcher, body)
    assert [inline for _, inline in calls] == [False] * 6


def test_with_two_workers_an_inline_call_never_runs_beside_a_compute_thread_call() -> None:
    # During the yield before an inline call, a second request can take the other free slot and
    # start on a thread (nothing queues); the first must then go to a thread too.
    spans: list[tuple[str, float, float]] = []

    def model(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        start = time.perf_counter()
        if x[0, 0] == 1:  # long enough to overlap the other call's start on its thread
            time.sleep(0.0005)
        if x[0, 0] == 99:
            time.sleep(0.02)
        spans.append((threading.current_thread().name, start, time.perf_counter()))
        return {"y": x * 2}

    batcher = Batcher(model, max_batch_size=8, inline_below=0.001, workers=2)
    warmed: list[int] = []

    async def body() -> list[dict[str, np.ndarray]]:
        # Until a call runs inline: the first is measured on a thread, and on a busy machine a cold
        # thread's first calls can be slow enough to keep the next few off the loop.
        for _ in range(50):
            await batcher.submit({"x": np.zeros((1, 3), dtype=np.float32)}, timeout=5)
            if spans[-1][0] == LOOP:
                warmed.append(len(spans))
                break
        spans.clear()
        return await asyncio.gather(
            batcher.submit({"x": np.full((1, 3), 1.0, dtype=np.float32)}, timeout=5),
            batcher.submit({"x": np.full((1, 3), 99.0, dtype=np.float32)}, timeout=5),
        )

    results = serve(batcher, body)
    assert warmed, "no call of a model taking microseconds ever ran on the event loop"
    assert results[0]["y"][0, 0] == 2.0 and results[1]["y"][0, 0] == 198.0
    inline = [(start, end) for name, start, end in spans if name == LOOP]
    threaded = [(start, end) for name, start, end in spans if name != LOOP]
    assert not [(i, t) for i in inline for t in threaded if i[0] < t[1] and t[0] < i[1]]
