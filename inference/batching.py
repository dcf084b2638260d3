"""Adaptive batching: merge concurrent requests into one model call, split the results back.

Requests wait in a bounded queue. Whenever a compute worker is free, the
dispatcher takes every queued request with the same input shapes (up to
``max_batch_size`` rows) and runs them as one batch in a worker thread, so the
event loop never blocks on the model. With ``max_delay`` 0 (the default) the
batcher adds no latency at low load and batches more as load grows: requests
that arrive while the model is busy form the next batch. A positive
``max_delay`` waits that long for a batch to fill (more throughput, more latency).

A request that waits past its deadline is answered with 504 and dropped from
the queue without being computed; a full queue answers 503 with Retry-After.
A single request with more rows than ``max_batch_size`` runs alone, as
consecutive model calls of at most that many rows (stopping early if its
deadline passes), so no model call exceeds the cap.

A lone request on an idle batcher whose model calls have been fast (``inline_below``, measured on
the recent lone calls) runs on the event loop itself: handing a call to a thread and its answer
back costs two thread wake-ups, about 160 µs on the 2-core VMs ``bench/`` runs on (a bare
round trip between two threads through a queue: 97 µs), more than a small model's whole call. Before that,
the request yields once, so requests read in the same loop turn queue behind it and are batched
on the compute thread as before: under load nothing runs inline, and the loop is not blocked
for longer than about ``inline_below``. The one exception cannot be foreseen: a call whose cost the
input's size does not predict (a loop count read from the data). After an inline call over
``_OVERSHOOT`` times the limit, inline calls pause for a minute, twice as long after each such
call (at most an hour): a client alternating cheap and costly inputs blocks the loop a few times,
not once a minute; a pause of the machine itself (a VM's steal, seen lasting 5-29 ms on the
benchmark VMs) costs a minute of thread hand-offs, not the rest of the process's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from inference.errors import DeadlineExceededError, NotReadyError, OverloadedError

_log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
PredictFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
_T = TypeVar("_T")
_A = TypeVar("_A")
_ShapeKey = tuple[tuple[str, str, tuple[int, ...]], ...]
#: The server's ``inline_below``: a lone call expected to take under 1 ms runs on the event loop. Long
#: enough for small models (the benchmark's MLP: 90-150 µs), short enough that health checks
#: and other connections wait at most about that long (the health target is 100 ms at p99).
INLINE_BELOW_S = 0.001
#: How much the newest lone model call weighs in the estimate that decides inline calls.
_ESTIMATE_WEIGHT = 0.3
#: An inline call taking this many times ``inline_below`` shows a cost the input's size does not
#: predict (a loop count or an early exit read from the data), or a pause of the machine: inline calls pause.
_OVERSHOOT = 10
#: How long inline calls pause after the first overshoot; each later one doubles it, up to the last.
_FIRST_INLINE_PAUSE_S = 60.0
_LONGEST_INLINE_PAUSE_S = 3600.0
#: Input dtypes whose cost the value count predicts (bool, integers, floats, complex); a string's
#: cost follows its length, which ``size`` does not count, so string inputs never run inline.
_NUMERIC_KINDS = frozenset("biufc")


class BatchObserver(Protocol):
    """Receives batching events (implemented by the metrics module)."""

    def batch_done(self, rows: int, requests: int, seconds: float) -> None: ...

    def queue_changed(self, depth: int) -> None: ...


class _NoObserver:
    def batch_done(self, rows: int, requests: int, seconds: float) -> None:
        return None

    def queue_changed(self, depth: int) -> None:
        return None


@dataclass(eq=False)
class _Job:
    inputs: Mapping[str, np.ndarray]
    rows: int
    key: _ShapeKey
    enqueued: float
    deadline: float
    future: asyncio.Future[Tensors] = field(repr=False)


class Batcher:
    """Runs ``predict`` on batches of queued requests in a thread pool."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int = 64,
        max_delay: float = 0.0,
        max_queue: int = 512,
        workers: int = 1,
        observer: BatchObserver | None = None,
        inline_below: float = 0.0,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or workers < 1 or max_delay < 0 or inline_below < 0:
            raise ValueError("max_batch_size, max_queue and workers must be >= 1; max_delay, inline_below >= 0")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay
        self.max_queue = max_queue
        self._workers = workers
        self._observer: BatchObserver = observer or _NoObserver()
        self._pending: deque[_Job] = deque()
        # The same threads run warm-up and requests: frameworks keep one OpenMP pool per calling
        # thread, and a second pool would compete with the first.
        self._compute = ComputeThreads(workers, "model-compute")
        self._dispatcher: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._alone: set[asyncio.Future[Any]] = set()
        """Model calls of requests started alone (``submit`` on an idle batcher)."""
        self._closed = False
        self.inline_below = inline_below
        """Run a lone request on the event loop when its call is expected to take less (seconds; 0: never)."""
        self._busy_slots = 0
        self._lone_seconds = 0.0
        """Recent lone model calls' duration (a moving average; 0 until one was measured) ..."""
        self._lone_values = 1.0
        """... and their inputs' values (elements), to scale the estimate to a request's size."""
        self._inline_resumes_at = 0.0
        """``time.perf_counter()`` before which no call runs inline (after an overshoot; 0: none yet)."""
        self._inline_pause = _FIRST_INLINE_PAUSE_S

    async def start(self) -> None:
        """Start the dispatcher on the running event loop."""
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self._workers)
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="batch-dispatcher")

    async def stop(self, *, grace: float | None = None) -> None:
        """Finish queued and running batches, then stop (used during graceful shutdown).

        With ``grace``, wait at most that long: what still runs then belongs to requests that were
        already answered (cut by the drain deadline), and its threads are left to die with the process.
        """
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        # Model calls of requests started alone count as running batches.
        pending: list[asyncio.Future[Any]] = [
            task for task in (self._dispatcher, *self._running, *self._alone) if task is not None
        ]
        finished = await _wait_at_most(pending, grace)
        if not finished:
            _log.warning("model calls still running at shutdown were not waited for", extra={"grace_s": grace})
        self._compute.shutdown(wait=finished)

    def run_on_compute_thread(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` synchronously on a compute worker (before the server starts: warm-up)."""
        return self._compute.call(fn)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a compute worker."""
        return len(self._pending)

    @property
    def stuck_for(self) -> float:
        """Seconds every compute thread has been on its current model call (0 while one is free)."""
        return self._compute.all_busy_for()

    async def submit(self, inputs: Mapping[str, np.ndarray], *, timeout: float) -> Tensors:
        """Queue one validated request and wait at most ``timeout`` seconds for its outputs."""
        if self._closed or self._wakeup is None:
            raise NotReadyError("the server is shutting down; retry on another instance")
        if len(self._pending) >= self.max_queue:
            raise OverloadedError(
                f"the request queue is full ({self.max_queue} requests waiting); retry shortly",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        rows, key = self._describe(inputs)
        now = loop.time()
        job = _Job(inputs=inputs, rows=rows, key=key, enqueued=now, deadline=now + timeout, future=loop.create_future())
        assert self._slots is not None
        if not self._pending and not self.max_delay and rows <= self.max_batch_size and not self._slots.locked():
            # Idle: the dispatcher would take this request alone at once. Starting it here saves waking
            # the dispatcher and a task per batch (two event-loop turns: a tenth of a lone small request).
            await self._take_slot()  # free, so it does not suspend
            if self._inline_fits(inputs):
                await self._run_inline_if_alone(job, loop)
            else:
                self._start_alone(job, loop)
        else:
            self._pending.append(job)
            self._observer.queue_changed(len(self._pending))
            self._wakeup.set()
        if job.future.done():
            return job.future.result()  # computed inline: no deadline left to watch
        # One timer per request (cheaper than wait_for + shield, which create two tasks each): at the
        # deadline the caller gets a 504 and the job, still queued or not, is ignored by the batcher.
        timer = loop.call_at(job.deadline, _expire, job.future, timeout)
        try:
            return await job.future
        finally:
            timer.cancel()

    def _inline_fits(self, inputs: Mapping[str, np.ndarray]) -> bool:
        """Whether a lone call on ``inputs`` is expected to end within ``inline_below``.

        The estimate scales the recent lone calls' duration linearly with the inputs' size, not
        their rows: one row of a long sequence (a dynamic axis) costs as much as many short rows.
        Linear scaling overestimates larger calls (a call's fixed cost is counted again per value),
        and a smaller call is estimated at no less than the recent ones, so an uncertain call goes to
        the compute thread rather than block the loop. Only when all slots are free (this call's own
        taken), so nothing else computes meanwhile.
        """
        if not self.inline_below or not self._lone_seconds or self._busy_slots != 1:
            return False
        if self._inline_resumes_at and time.perf_counter() < self._inline_resumes_at:
            return False
        values = _values(inputs)
        return values is not None and self._lone_seconds * max(1.0, values / self._lone_values) <= self.inline_below

    async def _run_inline_if_alone(self, job: _Job, loop: asyncio.AbstractEventLoop) -> None:
        """Yield once, then call the model on the loop if nothing queued or started meanwhile, else on a thread.

        Holds the slot taken by ``submit`` throughout, so requests that arrive meanwhile queue (and
        are batched together after this call) instead of starting alone themselves; with several
        compute workers one may take another slot during the yield, and then this call goes to a
        thread too, never computing on the loop beside a thread.
        """
        try:
            await asyncio.sleep(0)
        except BaseException:  # cancelled (the client left) before its call began
            self._give_slot()
            raise
        busy = self._pending or self._busy_slots != 1
        if busy and not self._closed:  # once closed, the compute threads may be gone: finish here
            self._start_alone(job, loop)
            return
        start = time.perf_counter()
        try:
            outputs = self._predict(self._merge([job]))
        except Exception as exc:
            _fail(job, exc)
            return
        finally:
            elapsed = time.perf_counter() - start
            self._note_lone_call(_values(job.inputs), elapsed)
            self._give_slot()
            if elapsed > _OVERSHOOT * self.inline_below > 0:
                self._pause_inline_calls(elapsed)
        self._observer.batch_done(job.rows, 1, elapsed)
        self._deliver([job], outputs)

    def _timed_predict(self, inputs: Any) -> Any:
        """``predict`` on a compute thread, its duration noted for the inline estimate (lone calls)."""
        start = time.perf_counter()
        try:
            return self._predict(inputs)
        finally:
            self._note_lone_call(_values(inputs), time.perf_counter() - start)

    def _pause_inline_calls(self, elapsed: float) -> None:
        """After an inline call far over its estimate: every call goes to the compute thread for a while.

        The moving average would forget the slow call after a few fast ones, and a client that
        alternates cheap and costly inputs would then hold the loop again and again; the first
        such call cannot be foreseen, and each later one doubles the pause. Stopping for good
        after one (as before) also stopped them after any pause of the machine.
        """
        pause = self._inline_pause
        self._inline_resumes_at = time.perf_counter() + pause
        self._inline_pause = min(2 * pause, _LONGEST_INLINE_PAUSE_S)
        _log.warning(
            "a model call on the event loop took %.1f ms, over %d times the inline limit (a cost its input's "
            "size does not predict, or a pause of the machine): calls run on the compute thread for %g s",
            elapsed * 1000,
            _OVERSHOOT,
            pause,
        )

    def _note_lone_call(self, values: int | None, seconds: float) -> None:
        # Plain float writes from the compute thread; a torn estimate cannot happen under the GIL.
        if values is None:  # string inputs: not estimated (they never run inline)
            return
        if not self._lone_seconds:
            self._lone_seconds, self._lone_values = seconds, float(max(values, 1))
            return
        self._lone_seconds += _ESTIMATE_WEIGHT * (seconds - self._lone_seconds)
        self._lone_values += _ESTIMATE_WEIGHT * (max(values, 1) - self._lone_values)

    async def _take_slot(self) -> None:
        assert self._slots is not None
        await self._slots.acquire()
        self._busy_slots += 1

    def _give_slot(self) -> None:
        assert self._slots is not None
        self._busy_slots -= 1
        self._slots.release()

    def _start_alone(self, job: _Job, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``job`` as a batch of its own, holding a slot until the model call ends (as ``_execute`` does)."""
        predict = self._timed_predict if self.inline_below else self._predict
        computing = self._compute.start(predict, self._merge([job]))
        self._alone.add(computing)
        computing.add_done_callback(functools.partial(self._alone_done, job, loop.time()))

    def _alone_done(self, job: _Job, start: float, computing: asyncio.Future[Any]) -> None:
        self._alone.discard(computing)
        self._give_slot()
        if computing.cancelled():  # not by us: nothing awaits it but this callback
            return
        error = computing.exception()
        if error is not None:
            _fail(job, cast(Exception, error))
            return
        self._observer.batch_done(job.rows, 1, asyncio.get_running_loop().time() - start)
        self._deliver([job], computing.result())

    async def _dispatch(self) -> None:
        assert self._wakeup is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._take_slot()
            if self.max_delay > 0:
                await self._wait_to_fill(loop)
            batch = self._take_batch(loop.time())
            self._observer.queue_changed(len(self._pending))
            if not batch:
                self._give_slot()
                continue
            task = loop.create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _wait_to_fill(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._wakeup is not None
        until = self._pending[0].enqueued + self.max_delay
        while sum(job.rows for job in self._pending) < self.max_batch_size and not self._closed:
            remaining = until - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self, now: float) -> list[_Job]:
        """Pop the oldest live job and every queued job with its shapes, up to max_batch_size rows."""
        batch: list[_Job] = []
        rows = 0
        key: _ShapeKey | None = None
        kept: deque[_Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.future.done():  # the caller gave up (deadline): drop without computing
                continue
            if job.deadline <= now:
                job.future.set_exception(DeadlineExceededError("the request expired in the queue and was dropped"))
                continue
            fits = key is None or (job.key == key and rows + job.rows <= self.max_batch_size)
            if fits:
                key = job.key
                batch.append(job)
                rows += job.rows
                if rows >= self.max_batch_size:
                    break
            else:
                kept.append(job)
        # Jobs with other shapes keep their place at the front of the queue.
        self._pending.extendleft(reversed(kept))
        return batch

    async def _execute(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        if len(batch) == 1 and batch[0].rows > self.max_batch_size:
            try:
                await self._run_in_chunks(batch[0])
            finally:
                self._give_slot()
            return
        try:
            try:
                outputs = await self._compute.run(self._predict, self._merge(batch))
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                else:
                    await self._isolate(batch, exc)
                return
        finally:
            self._give_slot()
        self._observer.batch_done(sum(job.rows for job in batch), len(batch), loop.time() - start)
        self._deliver(batch, outputs)

    # How requests merge into one model call and its outputs split back: tensors here (rows concatenated,
    # outputs sliced); ItemBatcher overrides these three for requests that are arbitrary Python objects.

    def _describe(self, inputs: Any) -> tuple[int, _ShapeKey]:
        """A request's rows and the key of the requests it may share a model call with (same shapes)."""
        first = next(iter(inputs.values()))
        key = tuple((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items())
        return (int(first.shape[0]) if first.ndim else 1), key

    def _merge(self, batch: list[_Job]) -> Any:
        return batch[0].inputs if len(batch) == 1 else _concatenate([job.inputs for job in batch])

    def _deliver(self, batch: list[_Job], outputs: Any) -> None:
        offset = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result({name: array[offset : offset + job.rows] for name, array in outputs.items()})
            offset += job.rows

    async def _run_in_chunks(self, job: _Job) -> None:
        """Run a request larger than ``max_batch_size`` as consecutive model calls of at most that many rows.

        Bounds the memory of one model call (activations grow with the batch); a request whose
        deadline passes or whose client leaves stops between chunks instead of running to the end.
        """
        loop = asyncio.get_running_loop()
        parts: list[Mapping[str, np.ndarray]] = []
        for begin in range(0, job.rows, self.max_batch_size):
            if job.future.done():
                return
            chunk = {name: array[begin : begin + self.max_batch_size] for name, array in job.inputs.items()}
            start = loop.time()
            try:
                parts.append(await self._compute.run(self._predict, chunk))
            except Exception as exc:
                _fail(job, exc)
                return
            self._observer.batch_done(int(next(iter(chunk.values())).shape[0]), 1, loop.time() - start)
        if not job.future.done():
            job.future.set_result(_concatenate(parts))

    async def _isolate(self, batch: list[_Job], error: Exception) -> None:
        """Re-run a failed batch's requests one by one, so only the requests that fail alone fail.

        Costs one model call per request of the batch on top of the failed one; requests whose
        client has gone or whose deadline passed meanwhile are skipped.
        """
        _log.warning("a batch of %d requests failed (%s); re-running them one by one", len(batch), type(error).__name__)
        for job in batch:
            if job.future.done():
                continue
            try:
                outputs = await self._compute.run(self._predict, self._merge([job]))
            except Exception as exc:
                _fail(job, exc)
            else:
                self._deliver([job], outputs)


def _values(inputs: Mapping[str, np.ndarray]) -> int | None:
    """How many values a tensor request holds, over all its inputs: what a model call's cost follows.

    ``None`` when an input is not numeric (strings, objects): their cost follows their lengths.
    """
    if any(array.dtype.kind not in _NUMERIC_KINDS for array in inputs.values()):
        return None
    return sum(int(array.size) for array in inputs.values())


class ItemBatcher(Batcher):
    """A batcher over requests that are arbitrary objects (a package's ``predict_batch_fn``), not tensors.

    ``predict`` takes a list of requests and returns one outcome per request, in order: its result,
    or the exception that request alone failed with. Each request counts as one row of
    ``max_batch_size``, and any requests may share a call. An exception raised by ``predict`` itself
    fails the batch, whose requests are then re-run one by one (``Batcher._isolate``).
    """

    def __init__(self, predict: Callable[[list[Any]], list[Any]], **options: Any) -> None:
        super().__init__(cast(PredictFn, predict), **options)

    async def submit_item(self, item: Any, *, timeout: float) -> Any:
        """Queue one request and wait at most ``timeout`` seconds for its outcome (raised if an exception)."""
        return await self.submit(item, timeout=timeout)

    def _describe(self, inputs: Any) -> tuple[int, _ShapeKey]:
        return 1, ()

    def _merge(self, batch: list[_Job]) -> Any:
        return [job.inputs for job in batch]

    def _deliver(self, batch: list[_Job], outputs: Any) -> None:
        for job, outcome in zip(batch, outputs, strict=True):
            if isinstance(outcome, Exception):
                _fail(job, outcome)
            elif not job.future.done():
                job.future.set_result(outcome)


def _fail(job: _Job, error: Exception) -> None:
    # The exception reaches the request's handler unchanged; the server's one error mapping turns
    # it into a status and logs it there, under that request's id.
    if not job.future.done():
        job.future.set_exception(error)


class ComputeThreads:
    """The threads that run the model: one job queue, ``count`` threads started on first use.

    Leaner than ``loop.run_in_executor`` on a ``ThreadPoolExecutor``: a job is one queue put, and
    its result one ``call_soon_threadsafe``, with no concurrent Future, executor locks or chained
    asyncio future in between (measured: ~10 µs less per in-process request of ``bench.request_overhead``
    than ``run_in_executor``, an A/B on the tiny model). Threads start
    on first use, never at construction, so a process can be forked after loading
    (``inference.workers``) with no thread to lose.
    """

    def __init__(self, count: int, name: str) -> None:
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # When each busy thread began its current job (thread ident -> time.monotonic()).
        self._busy_since: dict[int, float] = {}

    async def run(self, fn: Callable[[_A], _T], arg: _A) -> _T:
        """``fn(arg)`` on a compute thread, awaited on the running event loop."""
        return await self.start(fn, arg)

    def start(self, fn: Callable[[_A], _T], arg: _A) -> asyncio.Future[_T]:
        """``fn(arg)`` on a compute thread; the future (of the running loop) settles with its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()

        def job() -> None:
            try:
                result = fn(arg)
            except BaseException as exc:
                _post(loop, future, None, exc)
            else:
                _post(loop, future, result, None)

        self._submit(job)
        return future

    def call(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` on a compute thread, waited for synchronously (warm-up, before serving)."""
        done = threading.Event()
        outcome: list[Any] = [None, None]

        def job() -> None:
            try:
                outcome[0] = fn()
            except BaseException as exc:
                outcome[1] = exc
            finally:
                done.set()

        self._submit(job)
        done.wait()
        if outcome[1] is not None:
            raise outcome[1]
        result: _T = outcome[0]
        return result

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the threads once their running jobs finish; ``wait`` for that (else they die with the process)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _submit(self, job: Callable[[], None]) -> None:
        if len(self._threads) < self._count:
            with self._lock:
                while len(self._threads) < self._count:
                    thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
        self._jobs.put(job)

    def all_busy_for(self) -> float:
        """Seconds every thread has been on its current job: 0 while one is idle (or none started)."""
        starts = list(self._busy_since.values())  # a copy: the threads change the dict meanwhile
        if len(starts) < self._count:
            return 0.0
        return time.monotonic() - max(starts)

    def _work(self) -> None:
        ident = threading.get_ident()
        while (job := self._jobs.get()) is not None:
            self._busy_since[ident] = time.monotonic()
            try:
                job()
            finally:
                del self._busy_since[ident]


async def _wait_at_most(tasks: list[asyncio.Future[Any]], seconds: float | None) -> bool:
    """Wait for ``tasks`` (at most ``seconds`` when given); whether they all finished."""
    if not tasks:
        return True
    _, running = await asyncio.wait(tasks, timeout=seconds)
    return not running


def _post(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    """Hand a compute thread's outcome to the event loop; dropped once the loop has closed.

    A model call still running at the drain deadline ends after the server stopped waiting for it
    (and may end after the loop closed): nobody waits for its answer, and it is not an error.
    """
    with contextlib.suppress(RuntimeError):  # "Event loop is closed"
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting request was cancelled (client gone)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _expire(future: asyncio.Future[Tensors], timeout: float) -> None:
    if not future.done():
        future.set_exception(
            DeadlineExceededError(
                f"the request did not complete within its {timeout:g} s deadline and was dropped; "
                "the server is overloaded or the batch too large for one call"
            )
        )


def _concatenate(parts: list[Mapping[str, np.ndarray]]) -> Tensors:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
