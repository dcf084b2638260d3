"""Bound the size of a response like the size of a request: the platforms cap both.

A body over the platform's response limit never reaches the client: the platform's front end turns
it into an error of its own that names neither the cause nor the remedy. So the server refuses it
first, with an answer that says what happened and what the client can do:

* The request held several rows: **413** (the request asks for more than one response can carry),
  naming the answer's size, the limit and how many rows per request would fit. The client's own
  choice, so a 4xx, outside the 5xx rate that alarms and automatic rollbacks watch.
* The answer to a single row is over the limit: **500**, logged. No request can get it: the model's
  output is too big for this platform's real-time responses, a deployment problem of ours. Unless an
  output's rows vary in size with the request (a score per candidate sent, a vector per token): then
  a smaller request fits, and it is the client's **413** as well (700,000 candidates in one row were
  a logged 500, counted against the endpoint's alarms).

An answer that cannot fit whatever the encoding (rows x the smallest output row: its raw bytes, at most two a value)
is refused before the model runs, so a small compressed body of a million rows costs no compute.
Where the size can be predicted, it is checked before the body is built (:func:`encode_within`
encodes a sample of rows and extrapolates), so a 47 MB JSON body is never built for a 6 MB limit;
every other response is checked by its ``Content-Length`` in the server's middleware.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from inference.errors import ApiError, ModelError, PayloadTooLargeError
from model_package.manifest import TensorSpec

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
MIB = 1024 * 1024

#: Rows encoded to estimate a large response's size before encoding all of it.
SAMPLE_ROWS = 16
#: Refuse on the estimate only when it is this far over the limit; closer calls are encoded and measured.
ESTIMATE_MARGIN = 1.5
#: The fewest bytes a text encoding writes per value: one digit and a separator ("0," in JSON and CSV).
_SMALLEST_TEXT_VALUE = 2

#: Rows of the current request, set where they are known (the service, the hooks), read by the middleware.
request_rows: ContextVar[int | None] = ContextVar("request_rows", default=None)


class ResponseTooLargeError(PayloadTooLargeError):
    """The answer to a request of several rows exceeds the platform's response limit (the client may split it)."""


class ResponseTooLargeForPlatformError(ModelError):
    """The answer to a single row exceeds the platform's response limit: no request can get it."""


@dataclass(frozen=True)
class ResponseLimit:
    """The largest response body this server sends, and the platform it comes from (for messages)."""

    max_bytes: int
    platform: str
    varying_outputs: tuple[str, ...] = ()
    """Outputs whose rows vary in size with the request (an axis past the batch is ``-1``)."""

    def check(self, size: int, rows: int | None) -> None:
        """Raise the error for a ``size``-byte answer to ``rows`` rows if it exceeds the limit."""
        if size > self.max_bytes:
            raise self.error(size, rows)

    def check_before_computing(self, rows: int, smallest_row_bytes: int) -> None:
        """Refuse a request whose answer cannot fit, before the model spends any time on it.

        ``smallest_row_bytes`` is a lower bound of one row's answer in any encoding (see
        :func:`smallest_answer_row_bytes`): a small compressed body of many rows is refused here
        instead of after seconds of compute.
        """
        if rows * smallest_row_bytes > self.max_bytes:
            raise self.error(rows * smallest_row_bytes, rows, at_least=True)

    def error(self, size: int, rows: int | None, *, estimated: bool = False, at_least: bool = False) -> ApiError:
        """The error for a ``size``-byte answer to ``rows`` rows (``None``: unknown), logged with the sizes."""
        limit = self.max_bytes
        answer = f"at least {size} bytes" if at_least else f"about {size} bytes" if estimated else f"{size} bytes"
        where = f"this endpoint's response limit of {limit} bytes ({limit / MIB:.1f} MiB on {self.platform})"
        extra = {"response_bytes": size, "max_response_bytes": limit, "rows": rows, "estimated": estimated}
        if rows == 1 and self.varying_outputs:
            _log.warning("the answer to one row exceeds the response limit; refused with 413", extra=extra)
            names = " and ".join(repr(name) for name in self.varying_outputs)
            return ResponseTooLargeError(
                f"the answer to this one-row request is {answer}, above {where}; the size of {names} follows "
                "the request's: send a smaller one (fewer candidates, a shorter sequence), or use asynchronous "
                "inference (SageMaker asynchronous endpoints or batch transform, Vertex AI batch prediction)"
            )
        if rows == 1:
            _log.error("the answer to one row exceeds the response limit", extra=extra)
            return ResponseTooLargeForPlatformError(
                f"the answer to this one-row request is {answer}, above {where}: this model's output is too large "
                "for real-time responses here; raise MODEL_SERVER_MAX_RESPONSE_BYTES up to the platform's own limit, "
                "or serve it with asynchronous inference or batch prediction"
            )
        _log.warning("a response exceeds the response limit; refused with 413", extra=extra)
        if rows is None:
            advice = "send fewer instances per request"
        else:
            # 10 % below the proportional count: rows differ in encoded length, and the advice must hold.
            fits = max(1, int(rows * limit / size * 0.9))
            advice = f"send at most {fits} rows per request (this one held {rows})"
        return ResponseTooLargeError(
            f"the answer to this request would be {answer}, above {where}; {advice}, or use asynchronous "
            "inference (SageMaker asynchronous endpoints or batch transform, Vertex AI batch prediction)"
        )


def varying_outputs(outputs: Sequence[TensorSpec]) -> tuple[str, ...]:
    """The outputs whose rows vary in size with the request: a ``-1`` past the batch axis."""
    return tuple(spec.name for spec in outputs if -1 in spec.shape[1:])


def encode_within(
    limit: ResponseLimit,
    outputs: Mapping[str, np.ndarray],
    encode: Callable[[Mapping[str, np.ndarray]], _T],
    size: Callable[[_T], int],
) -> _T:
    """``encode(outputs)``, refused before encoding when a sample of rows predicts a body far over the limit.

    The estimate extrapolates :data:`SAMPLE_ROWS` evenly spaced rows: the size of the first one (the
    envelope, written once, and a row) plus what each further sampled row added, times the rows left,
    so an envelope larger than the rows (the Open Inference Protocol's names, ids and shapes around a
    label a row) is not counted once per row. Only an estimate :data:`ESTIMATE_MARGIN` times over the
    limit is refused without encoding, so rows of unusual length cannot refuse a response that fits.
    The encoded body is then checked exactly.
    """
    rows = _rows(outputs)
    if rows is not None and rows > 2 * SAMPLE_ROWS:
        picks = np.linspace(0, rows - 1, SAMPLE_ROWS).astype(np.intp)
        first_size = size(encode({name: array[picks[:1]] for name, array in outputs.items()}))
        sample_size = size(encode({name: array[picks] for name, array in outputs.items()}))
        per_row = (sample_size - first_size) / (SAMPLE_ROWS - 1)
        estimate = int(first_size + per_row * (rows - 1))
        if estimate > limit.max_bytes * ESTIMATE_MARGIN:
            raise limit.error(estimate, rows, estimated=True)
    result = encode(outputs)
    limit.check(size(result), rows)
    return result


def _rows(outputs: Mapping[str, np.ndarray]) -> int | None:
    """The rows every output shares along its first axis, or ``None`` when they share none."""
    counts = {int(array.shape[0]) if array.ndim else -1 for array in outputs.values()}
    if len(counts) != 1:
        return None
    (count,) = counts
    return count if count >= 0 else None


def smallest_answer_row_bytes(outputs: Sequence[TensorSpec]) -> int:
    """A lower bound of one row's answer in any encoding: the raw size of the smallest output.

    Every answer carries at least one output (the Open Inference Protocol may ask for one). Binary
    encodings (NPY, binary tensors) write a value in the bytes its dtype holds; text encodings (JSON,
    CSV, JSON Lines) in at least two (a digit and a separator), fewer than an int64's or a float64's
    eight: so a value counts the smaller of the two. Outputs with a dynamic dimension or of bytes
    count as 0 (their size is unknown).
    """
    sizes = []
    for spec in outputs:
        dims = spec.shape[1:]
        if spec.dtype == "bytes" or any(dim < 0 for dim in dims):
            return 0
        sizes.append(min(np.dtype(spec.dtype).itemsize, _SMALLEST_TEXT_VALUE) * math.prod(dims))
    return min(sizes, default=0)


def rows_of(data: object) -> int | None:
    """The row count of a request's decoded data (an array, named arrays or a list), if it has one.

    Nested mappings count when all their values agree. A loop, not recursion: ``input_fn`` may
    return a client's JSON as parsed, nested deeper than Python recurses.
    """
    counts: set[int | None] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if not item:
                counts.add(None)
            stack.extend(item.values())
        else:
            counts.add(_own_rows(item))
    return counts.pop() if len(counts) == 1 else None


def _own_rows(data: object) -> int | None:
    shape = getattr(data, "shape", None)
    if isinstance(shape, tuple) and shape:
        return int(shape[0])
    if isinstance(data, list):
        return len(data)
    return None
