"""``--workers N``: each file's records split into N contiguous spans, scored by N processes, joined in order.

Where reading, validating and encoding each record costs more than the model (small models), one
process keeps one core busy whatever the model's threads do; N processes keep N. Each worker loads
the package once (as the server does) and scores whole spans; a span starts where a single
reader's chunk would (spans are multiples of the batch size), so every model call sees the same
rows and the joined output is the same bytes as one worker's.

Resuming: a file's span plan (``plan.json``) and each span's own checkpoint and parts live under
``<output>/.batch-state/file-NNNNN/``; the run's ``progress.json`` moves on only once a file's
spans are joined into its output. A killed run (the main process, a worker, or both) redoes at
most each span's records since its last checkpoint. Workers die with the main process (Linux:
``PR_SET_PDEATHSIG``; elsewhere they notice between chunks), so an orphan never writes beside a rerun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from inference.batch.parts import score_chunks
from inference.batch.sinks import (
    Checkpoint,
    Layout,
    Progress,
    assemble_parts,
    drop_stale_parts,
    load_progress,
    part_paths,
    save_progress,
)
from inference.batch.sources import NPY, InputFile, Span, bytes_read, read_chunks, split_records
from model_package.errors import ModelPackageError

_log = logging.getLogger("inference.batch.local")
#: How long the run waits for every worker to load before one measures the model anyway.
READY_WAIT_S = 300.0


class WorkerDied(ModelPackageError):
    """A worker process ended without finishing its span (killed, out of memory, crashed)."""

    exit_code = 70


@dataclass(frozen=True)
class SpanJob:
    """What a worker needs to score one span (pickled to it)."""

    file: InputFile
    span: Span
    directory: Path
    batch_size: int
    checkpoint_seconds: float
    output_format: str
    model_call_rows: int
    """The run's rows per model call (``inference.batch.model_calls``): the same in every worker."""


def score_files(
    files: list[InputFile],
    *,
    workers: int,
    checkpoint: Checkpoint,
    model_call_rows: Callable[..., int],
    measurable: bool,
    layout: Layout,
    setup: WorkerSetup,
    checkpoint_seconds: float,
    advance: Callable[[int], None],
) -> float:
    """Score ``files`` from the checkpoint on, each split across ``workers`` processes.

    ``model_call_rows(measure=...)`` settles the run's rows per model call, calling ``measure`` (one
    worker measuring the model) when they are neither configured nor recorded; ``measurable`` says
    whether the service sizes the model's calls at all (not with user code).

    Returns the seconds spent scoring: from when the last worker had loaded the package to the last
    file joined (rates exclude loading and the workers' exit, as with one process).
    """
    context = multiprocessing.get_context("spawn")  # not fork: the parent may hold framework threads
    events: Any = context.Queue()
    stop = context.Event()
    clock = _Clock(advance)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(events, stop, setup)
    ) as pool:
        try:
            # One trivial task per worker starts them all now (the pool starts a process per task while
            # none is idle): they load the package while this process plans the first file's spans.
            with _this_code_first():
                for _ in range(workers):
                    pool.submit(_nothing)

            def measure() -> int:
                clock.wait_until_ready(events, workers)  # a worker still loading would skew the measurement
                measured = pool.submit(measure_model_calls, setup.batch_size).result()
                clock.started = time.perf_counter()  # measuring is start-up, as loading is (and as with one process)
                return measured

            rows = model_call_rows(measure=measure if measurable else None)
            for index in range(checkpoint.progress.file, len(files)):
                jobs = _plan(
                    index,
                    files[index],
                    workers=workers,
                    checkpoint=checkpoint,
                    batch_size=setup.batch_size,
                    model_call_rows=rows,
                    checkpoint_seconds=checkpoint_seconds,
                    layout=layout,
                )
                _run_jobs(pool, jobs, events, clock)
                _join(index, files[index], jobs, checkpoint, layout)
            finished = time.perf_counter()
        except BaseException:
            # Ctrl-C or a failure: workers finish their chunk, checkpoint it and stop.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            clock.drain(events)
        shutdown = time.perf_counter()
    # Workers exit only now; stopping their services and frameworks takes seconds, as loading did.
    _log.debug("workers stopped", extra={"seconds": round(time.perf_counter() - shutdown, 3)})
    return finished - clock.started


@contextlib.contextmanager
def _this_code_first() -> Iterator[None]:
    """Workers start with this process's ``sys.path``: put the directory this code came from first.

    Something earlier in the path could shadow it (a caller's own ``inference`` folder or module, first
    on ``sys.path`` or ``PYTHONPATH``, would be imported as ``inference``); a worker must run the code
    this process runs.
    """
    saved = list(sys.path)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    try:
        yield
    finally:
        sys.path[:] = saved


class _Clock:
    """Workers' events in the parent: bytes for the progress bar, and when the last worker was ready."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance
        self.started = time.perf_counter()
        self.ready = 0

    def drain(self, events: Any) -> None:
        while True:
            try:
                kind, value = events.get_nowait()
            except queue.Empty:
                return
            if kind == "bytes":
                self.advance(value)
            else:  # when that worker was ready, not when this process noticed
                self.ready += 1
                self.started = max(self.started, time.perf_counter() - (time.time() - value))

    def wait_until_ready(self, events: Any, workers: int, *, seconds: float = READY_WAIT_S) -> None:
        """Until every worker has loaded the package (at most ``seconds``: a worker that died is reported later)."""
        deadline = time.monotonic() + seconds
        while self.ready < workers and time.monotonic() < deadline:
            self.drain(events)
            time.sleep(0.02)


def _plan(
    index: int,
    file: InputFile,
    *,
    workers: int,
    checkpoint: Checkpoint,
    batch_size: int,
    model_call_rows: int,
    checkpoint_seconds: float,
    layout: Layout,
) -> list[SpanJob]:
    """The file's spans: those saved when it was first started, else a new split."""
    directory = checkpoint.parts(index)
    plan = directory / "plan.json"
    if plan.is_file():
        saved = orjson.loads(plan.read_bytes())
        spans, batch_size = [Span(**span) for span in saved["spans"]], saved["batch_size"]
    else:
        spans = split_records(file, workers, batch_size)
        directory.mkdir(parents=True, exist_ok=True)
        save = {"batch_size": batch_size, "spans": [dataclasses.asdict(span) for span in spans]}
        tmp = plan.with_name(".plan.json.tmp")
        tmp.write_bytes(orjson.dumps(save))
        os.replace(tmp, plan)
    return [
        SpanJob(file, span, directory / f"span-{i:03d}", batch_size, checkpoint_seconds, layout.format, model_call_rows)
        for i, span in enumerate(spans)
    ]


def _finished(job: SpanJob) -> bool:
    progress = load_progress(job.directory / "progress.json")
    return progress is not None and progress.offset >= job.span.end


def _run_jobs(pool: ProcessPoolExecutor, jobs: list[SpanJob], events: Any, clock: _Clock) -> None:
    for job in jobs:  # what a resumed run's spans had scored: the progress bar starts there
        progress = load_progress(job.directory / "progress.json")
        if progress is not None:
            clock.advance(bytes_read(job.file, job.span.start, progress.offset))
    pending: set[Future[bool]] = {pool.submit(score_span, job) for job in jobs if not _finished(job)}
    try:
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            clock.drain(events)
            for future in done:
                if not future.result():
                    raise KeyboardInterrupt  # a worker was interrupted (Ctrl-C on the terminal reaches it too)
    except BrokenProcessPool:
        raise WorkerDied(
            "a scoring worker process died (killed, or out of memory?); "
            "rerun the same command to continue where it stopped"
        ) from None


def _join(index: int, file: InputFile, jobs: list[SpanJob], checkpoint: Checkpoint, layout: Layout) -> None:
    """All spans done: their parts, in order, become the file's output; the run moves to the next file."""
    progresses = [load_progress(job.directory / "progress.json") or Progress() for job in jobs]
    parts = [
        path for job, done in zip(jobs, progresses, strict=True) for path in part_paths(job.directory, done.chunks)
    ]
    target, errors_target = layout.targets(index, file)
    assemble_parts(parts, target, errors_target, always_errors=layout.format == "vertex")
    state = checkpoint.progress
    state.scored += sum(done.records for done in progresses)
    state.failed += sum(done.failed for done in progresses)
    state.file, state.chunks, state.records, state.offset = index + 1, 0, 0, 0
    checkpoint.save()
    shutil.rmtree(checkpoint.parts(index), ignore_errors=True)


# ----------------------------------------------------------------------------- in the worker processes

#: This worker's state, set once when it starts: events, stop, parent, scorer or load_error.
_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker loads once, when it starts."""

    package_dir: Path
    env: dict[str, str]
    batch_size: int
    output_format: str
    log_format: str
    level: int
    parent: int


def _start_worker(events: Any, stop: Any, setup: WorkerSetup) -> None:
    from model_package.logs import configure_logging

    _WORKER.update(events=events, stop=stop, parent=setup.parent, scorer=None, load_error=None)
    configure_logging(setup.log_format, setup.level)  # type: ignore[arg-type]  # the parser's choices
    # The parent decides when to stop (it sets ``stop``); Ctrl-C on a terminal reaches every process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != setup.parent:  # the parent died before the line above
        os._exit(1)
    try:
        _WORKER["scorer"] = _load(setup)
    except BaseException as exc:  # raised by the first span, where the parent sees it (an initializer's is lost)
        _WORKER["load_error"] = exc
    events.put(("ready", time.time()))


def _load(setup: WorkerSetup) -> Any:
    """The package loaded once, as the server loads it."""
    from multiprocessing.util import Finalize

    from inference.batch.model_calls import scoring_config
    from inference.batch.scoring import Scorer
    from inference.config import load_config
    from inference.service import load_service

    config = load_config(setup.env, model_dir=setup.package_dir)
    scorer = Scorer(load_service(scoring_config(config, setup.batch_size)), output_format=setup.output_format)
    # Stop the service's threads before the worker exits (they would hold the exit).
    Finalize(scorer, scorer.close, exitpriority=10)
    return scorer


def _nothing() -> None:
    """A task that only makes the pool start a worker."""


def measure_model_calls(chunk_rows: int) -> int:
    """The run's rows per model call, measured in this worker (``inference.batch.model_calls``)."""
    from inference.batch.model_calls import measurable, measure_rows

    if _WORKER["load_error"] is not None:
        raise _WORKER["load_error"]
    service = _WORKER["scorer"].service
    return measure_rows(service, chunk_rows) if measurable(service) else chunk_rows


def score_span(job: SpanJob) -> bool:
    """Score one span into its parts (in a worker); False if asked to stop first."""
    if _WORKER["load_error"] is not None:
        raise _WORKER["load_error"]
    events, stop, parent = _WORKER["events"], _WORKER["stop"], _WORKER["parent"]
    batcher = _WORKER["scorer"].service.batcher
    if batcher is not None:
        batcher.max_batch_size = job.model_call_rows
    job.directory.mkdir(parents=True, exist_ok=True)
    progress_path = job.directory / "progress.json"
    state = load_progress(progress_path) or Progress(offset=job.span.start)
    drop_stale_parts(job.directory, state.chunks)
    chunks = read_chunks(
        job.file,
        start=state.offset,
        first_record=job.span.first_record + state.records,
        size=job.batch_size,
        end=job.span.end,
        anchor=(job.span.start, job.span.line) if job.file.media_type != NPY else (0, 0),
    )
    return score_chunks(
        job.file,
        chunks,
        state=state,
        parts=job.directory,
        save_state=lambda: save_progress(progress_path, state),
        scorer=_WORKER["scorer"],
        layout=Layout(job.output_format, job.directory, []),
        checkpoint_seconds=job.checkpoint_seconds,
        advance=lambda nbytes: events.put(("bytes", nbytes)),
        stop=lambda: stop.is_set() or os.getppid() != parent,
    )
