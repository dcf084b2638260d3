"""Chunks of records -> one answer line per record, through the server's own ``ModelService``.

A chunk is scored as one request of the input's media type (decode, validation, the batcher, the
model, encode: what ``/invocations`` does for a ``SplitType=Line``/``MultiRecord`` request), then
split back into one line per record. When the request fails because of its input (a 4xx) or the
model fails on it, every record of the chunk is scored alone, so one bad record fails alone and
the others keep their own predictions: nothing shifts. Failures of ours (not ready, deadline,
internal errors) stop the run, which can then be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from inference.batch.sources import CSV, JSON_LINES, NPY, Chunk
from inference.codecs import decode_json_lines, decode_request, encode_response
from inference.errors import ApiError, ModelError, http_error
from inference.service import ModelService

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """Why one record failed: the HTTP status the server would have answered, and its message."""

    status: int
    error: str


@dataclass
class Answers:
    """A chunk's answers: one output line per record (``b""`` where it failed), and the failures by index.

    Plain lists, not an object per record: at a million rows a second, per-record objects cost more
    than the model.
    """

    lines: list[bytes]
    failures: dict[int, Failure]

    def __len__(self) -> int:
        return len(self.lines)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, Kubernetes, systemd) received: stopped as Ctrl-C stops a run, resumable."""


def raise_terminated(_signum: int, _frame: object) -> None:
    """The SIGTERM handler of a local run (outside a chunk; inside, see ``_interrupt_after_the_chunk``)."""
    raise Terminated


class RecordFailed(Exception):
    """A failure of one record (kept apart from failures of ours, which stop the run)."""


@contextlib.contextmanager
def _interrupt_after_the_chunk() -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM) until the chunk's loop run has finished, then raise ``KeyboardInterrupt``.

    A ``KeyboardInterrupt`` raised inside a task leaves the loop's "stop when this future is done"
    callback scheduled (asyncio's ``Task.__step`` sets the exception, which schedules it, then
    re-raises), so the next ``run_until_complete`` (the service's shutdown) stops at once with
    "Event loop stopped before Future completed". Between chunks nothing is half-done: the
    checkpoint names only finished parts, so the rerun continues from there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda number, _frame: received.append(number))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signal.SIGTERM in received:
        raise Terminated
    if received:
        raise KeyboardInterrupt


class Scorer:
    """Scores chunks with a loaded ``ModelService`` on a private event loop."""

    def __init__(self, service: ModelService, *, output_format: str) -> None:
        self.service = service
        self.output_format = output_format
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(service.start())

    def close(self) -> None:
        """Finish queued work and release the service's threads."""
        self._loop.run_until_complete(self.service.stop())
        self._loop.close()

    def score(self, chunk: Chunk, media_type: str) -> Answers:
        """One answer per record of ``chunk``, in order."""
        answers = Answers([], {})
        if len(chunk):
            with _interrupt_after_the_chunk():
                self._loop.run_until_complete(self._score(chunk, media_type, range(len(chunk)), answers))
        return answers

    async def _score(self, chunk: Chunk, media_type: str, which: range, answers: Answers) -> None:
        """Score ``which`` records of ``chunk`` as one request; on a record's fault, halve and retry.

        Halving finds k bad records among n in about k * log2(n) requests instead of n, and also
        splits a chunk that decodes to more than the server's per-request limit (413).
        """
        try:
            lines = await self._request(chunk, media_type, which)
        except Exception as exc:  # sorted into the record's fault or ours just below
            _record_fault(exc)
            if len(which) == 1:
                answers.failures[which.start] = _failed(exc)
                answers.lines.append(b"")
                return
            _log.debug("a request failed; splitting it", extra={"first_record": chunk.first + which.start})
            middle = which.start + len(which) // 2
            await self._score(chunk, media_type, range(which.start, middle), answers)
            await self._score(chunk, media_type, range(middle, which.stop), answers)
            return
        answers.lines.extend(lines)

    async def _request(self, chunk: Chunk, media_type: str, which: range) -> list[bytes]:
        service = self.service
        if service.user_code is not None:
            return [await self._user_code(chunk, media_type, index) for index in which]
        if service.pipeline is not None and media_type == JSON_LINES:
            return await self._pipeline(chunk, which)
        if chunk.array is not None:
            # One input only: check_fit refused .npy files for other models before the run began.
            inputs = {service.signature.inputs[0].name: chunk.array[which.start : which.stop]}
        elif media_type == JSON_LINES:
            assert chunk.records is not None
            records = chunk.records[which.start : which.stop]
            line_numbers = chunk.lines[which.start : which.stop]  # messages name the file's lines
            groups = _same_lengths(records) if service.varying_axes else None
            if groups is None or len(groups) == 1:
                return await self._json_lines_answers(records, line_numbers)
            lines: list[bytes] = [b""] * len(records)
            for group in groups:
                # One request per length: a request's rows share one (see _same_lengths).
                answers = await self._json_lines_answers(
                    [records[index] for index in group], [line_numbers[index] for index in group]
                )
                for index, line in zip(group, answers, strict=True):
                    lines[index] = line
            return lines
        else:
            assert chunk.records is not None
            body = b"\n".join(chunk.records[which.start : which.stop])
            inputs = decode_request(
                body,
                media_type,
                service.signature,
                allow_non_finite=service.allow_non_finite,
                limits=service.limits,
            )
        outputs = await service.predict(inputs)
        accept = response_type(media_type, self.output_format)
        payload, _ = encode_response(outputs, accept, service.signature, default=JSON_LINES)
        return _split(payload, len(which))

    async def _json_lines_answers(self, records: list[bytes], line_numbers: list[int]) -> list[bytes]:
        """JSON Lines records as one request: one answer line per record (JSON Lines in, JSON Lines out)."""
        service = self.service
        # The records are a chunk's non-blank lines already: no body to join and split again.
        inputs = decode_json_lines(
            records,
            service.signature,
            allow_non_finite=service.allow_non_finite,
            limits=service.limits,
            line_numbers=line_numbers,
        )
        outputs = await service.predict(inputs)
        payload, _ = encode_response(outputs, JSON_LINES, service.signature, default=JSON_LINES)
        return _split(payload, len(records))

    async def _pipeline(self, chunk: Chunk, which: range) -> list[bytes]:
        from inference.pipeline.requests import json_items

        assert chunk.records is not None and self.service.pipeline is not None
        body = b'{"instances":[' + b",".join(chunk.records[which.start : which.stop]) + b"]}"
        items = json_items(body, self.service.pipeline.kind, id_depth=self.service.pipeline.id_depth)
        answers = await self.service.pipeline.answer(items, self.service.predict, timeout=self.service.request_timeout)
        return [orjson.dumps(answer) for answer in answers]

    async def _user_code(self, chunk: Chunk, media_type: str, index: int) -> bytes:
        """User code sees one record per request: its hooks decide the answer's shape (SingleRecord)."""
        from inference.user_code import RequestContext

        if chunk.records is not None:
            body = chunk.records[index]
        else:
            assert chunk.array is not None
            body = orjson.dumps(chunk.array[index], option=orjson.OPT_SERIALIZE_NUMPY)
            media_type = "application/json"
        accept = response_type(media_type, self.output_format)
        context = RequestContext(request_headers={"content-type": media_type, "accept": accept})
        payload, _ = await self.service.invoke_user_code(body, media_type, accept, context)
        line = payload.rstrip(b"\r\n")
        if b"\n" in line:
            raise RecordFailed("user code answered one record with several lines; batch output needs one line")
        return line


def _same_lengths(records: list[bytes]) -> list[list[int]] | None:
    """The records' indices grouped by the lengths of their nested lists, in order of first appearance.

    A request's rows must have one length (the server does not pad): a chunk of sequences of 3 to
    19 tokens failed as a whole, and halving it down to runs of one length scored 4,107 records/s
    where one request per length scores 48,307. Any group failing fails the request, which the
    caller then halves as before, so a bad record still fails alone.

    ``None`` when a record does not parse (the one request then fails and is halved, which words
    the error). The lengths are read along each list's first elements, as NumPy reads a shape.
    """
    groups: dict[object, list[int]] = {}
    for index, record in enumerate(records):
        try:
            value = orjson.loads(record)
        except orjson.JSONDecodeError:
            return None
        key = (
            tuple((name, _lengths(item)) for name, item in value.items())
            if isinstance(value, dict)
            else _lengths(value)
        )
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def _lengths(value: object) -> tuple[int, ...]:
    lengths: list[int] = []
    while isinstance(value, list):
        lengths.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(lengths)


def _split(payload: bytes, expected: int) -> list[bytes]:
    lines = payload.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != expected:
        # e.g. a CSV string output holding a line break: the answer cannot be lined up with the records.
        raise RecordFailed(f"the answer has {len(lines)} lines for {expected} records; it cannot be lined up")
    return lines


def _record_fault(exc: Exception) -> None:
    """Re-raise failures of ours; return for failures of the record (bad input, the model failing on it)."""
    if isinstance(exc, RecordFailed):
        return
    error = http_error(exc)
    if error.status < 500 or isinstance(error, ModelError):
        return
    raise exc


def _failed(exc: Exception) -> Failure:
    if isinstance(exc, RecordFailed):
        return Failure(400, str(exc))
    error: ApiError = http_error(exc)
    return Failure(error.status, error.message)


def instance_json(chunk: Chunk, index: int, *, media_type: str) -> bytes:
    """The record as Vertex AI writes it back in ``"instance"``: JSON Lines as is, CSV and rows as lists."""
    if chunk.array is not None:
        return orjson.dumps(chunk.array[index], option=orjson.OPT_SERIALIZE_NUMPY)
    assert chunk.records is not None
    record = chunk.records[index]
    if media_type == CSV:
        text = record.decode("utf-8", "replace")
        try:
            cells = next(csv.reader([text]))
        except csv.Error:  # e.g. a field over the csv module's 128 KiB limit: the record as text
            return orjson.dumps(text)
        return orjson.dumps([_cell(cell) for cell in cells])
    try:
        orjson.loads(record)
    except orjson.JSONDecodeError:
        return orjson.dumps(record.decode("utf-8", "replace"))  # keep the errors file valid JSON
    return record


def _cell(cell: str) -> Any:
    try:
        return float(cell) if any(c in cell for c in ".eEn") else int(cell)
    except ValueError:
        return cell


def response_type(input_type: str, output_format: str) -> str:
    """What each record's answer is encoded as: Vertex AI writes JSON; SageMaker answers in kind."""
    if output_format == "vertex" or input_type in (JSON_LINES, NPY):
        return JSON_LINES
    return CSV
