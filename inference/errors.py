"""Errors the server turns into HTTP responses: ``{"error": message}`` with a status, never a traceback."""

from __future__ import annotations

from collections.abc import Mapping


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
