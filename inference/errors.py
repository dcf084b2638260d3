"""Errors the server turns into HTTP responses: ``{"error": message}`` with a status, never a traceback.

:func:`http_error` is the one place where an exception becomes a status: a bad input is a 4xx whose
message goes to the client; a failure of ours (the model, the framework, a bug) is a 5xx whose details
go to the log, under the request id, and never into the body.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from model_package.errors import InputTooLargeError, InvalidInputError, PredictionError


class ApiError(Exception):
    """An expected failure with the HTTP status and message the client should see."""

    status: int = 500

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequestError(ApiError):
    """Malformed body, wrong shape/dtype for the signature, empty batch, NaN where not allowed."""

    status = 400


class NotFoundError(ApiError):
    """Unknown route or model name."""

    status = 404


class NotAcceptableError(ApiError):
    """No response media type in ``Accept`` that the server can produce (lists the supported ones)."""

    status = 406


class PayloadTooLargeError(ApiError):
    """The body exceeds the platform's limit (names the limit and points to asynchronous inference)."""

    status = 413


class UnsupportedMediaTypeError(ApiError):
    """A ``Content-Type`` the server cannot decode (lists the supported ones)."""

    status = 415


class ModelError(ApiError):
    """The model or user code failed on valid input: a server-side failure."""

    status = 500


class OverloadedError(ApiError):
    """The request queue is full; the client should retry after ``Retry-After`` seconds."""

    status = 503


class NotReadyError(ApiError):
    """The model is not loaded yet, or the server is draining for shutdown."""

    status = 503


class DeadlineExceededError(ApiError):
    """The request waited past its deadline and was dropped instead of computed."""

    status = 504


class ClientClosedRequestError(ApiError):
    """The client went away before its request was read or answered: nobody's failure, never a 5xx.

    Counted under nginx's 499 (client closed request) in the metrics; no response reaches anyone.
    """

    status = 499


class InternalError(ApiError):
    """A failure of ours with no more specific class (a bug, or a framework failing outside the model call)."""

    status = 500


def http_error(exc: BaseException) -> ApiError:
    """The HTTP error the client sees for ``exc``, raised anywhere while a request was handled.

    ``ApiError`` is kept as it is; a model package's :class:`InvalidInputError` (inputs that do not
    fit the signature) is a 400 with its message; Starlette's ``HTTPException`` keeps its status and
    headers (a 405's ``Allow``). Everything else, including a model package's
    ``ModelExecutionError``, is a failure of ours: a 500 whose message names no detail of the
    exception, which may hold framework internals, memory addresses or other clients' shapes.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ClientDisconnect):
        return ClientClosedRequestError("the client disconnected before its request was complete")
    if isinstance(exc, InputTooLargeError):  # an image over the pixel cap: valid, but more than we decode
        return PayloadTooLargeError(str(exc))
    if isinstance(exc, InvalidInputError):
        return BadRequestError(str(exc))
    if isinstance(exc, HTTPException):
        error = ApiError(str(exc.detail), headers=exc.headers)
        error.status = exc.status_code
        return error
    if isinstance(exc, PredictionError):
        return ModelError("the model failed to run on this request")
    return InternalError("internal server error")


def is_server_fault(error: ApiError) -> bool:
    """Whether ``error`` is a failure of ours to log with its traceback (not overload, deadline or draining)."""
    return error.status >= 500 and not isinstance(error, OverloadedError | NotReadyError | DeadlineExceededError)


class _JsonRepr(reprlib.Repr):
    """``repr``, but ``null``, ``true`` and ``false`` as the client wrote them (not ``None``, ``True``, ``False``)."""

    # reprlib calls repr_<type name> for a value of that type.
    def repr_NoneType(self, value: None, level: int) -> str:
        return "null"

    def repr_bool(self, value: bool, level: int) -> str:
        return "true" if value else "false"


#: How a client's value is quoted in an error: a few levels and items of it. ``repr`` of a value
#: nested 1,000 deep (JSON allows 1,024) raised RecursionError, and the client got a 500.
_QUOTED = _JsonRepr()
_QUOTED.maxlevel, _QUOTED.maxlist, _QUOTED.maxdict, _QUOTED.maxstring, _QUOTED.maxother = 3, 8, 4, 80, 80


def shown(value: object) -> str:
    """A client's value quoted in an error message (``repr``, cut to a few levels and items)."""
    return _QUOTED.repr(value)
