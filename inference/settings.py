"""The ``MODEL_SERVER_*`` contract: one typed model of the server's own settings, with one set of bounds.

The server reads it from its environment (:meth:`ServerSettings.from_env`, used by
``inference.config``); ``infra`` builds container environments from it
(:meth:`ServerSettings.environment`, through ``infra/config/serving_settings.py``), so a value a
stack accepts is one the server accepts, and the reverse. Each field ``name`` is the variable
``MODEL_SERVER_<NAME>``; ``None`` means unset, the server's default (which may depend on the
platform, see ``inference.config``). This module imports only pydantic: ``infra`` imports it and
must never pull in a ML framework or the server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Literal, NoReturn

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from model_package.errors import UsageError

PREFIX = "MODEL_SERVER_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Python logging's numeric levels, which SageMaker passes in SAGEMAKER_CONTAINER_LOG_LEVEL.
_NUMERIC_LEVELS = {"10": "DEBUG", "20": "INFO", "30": "WARNING", "40": "ERROR", "50": "CRITICAL"}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _fail(message: str) -> NoReturn:
    # The kind infra's config loader reports verbatim (infra.config.problems); the message goes
    # through the context so braces in it are not taken for a template.
    raise PydanticCustomError("model_deploy", "{message}", {"message": message})


def _whole(minimum: int, maximum: int, what: str, *, auto: bool = False) -> BeforeValidator:
    """A whole number in ``minimum..maximum`` (from YAML or an environment string), or ``auto``."""
    choices = f"auto or {minimum}-{maximum}" if auto else f"{minimum}-{maximum}"

    def check(value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if auto and text.lower() == "auto":
                return "auto"
            if text.lstrip("-").isdigit():
                value = int(text)
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(f"must be {'auto or ' if auto else ''}a whole number {minimum}-{maximum} ({what})")
        if not minimum <= value <= maximum:
            _fail(f"is out of range: {what} must be {choices}")
        return value

    return BeforeValidator(check)


def _seconds(maximum: float, what: str, *, zero: bool = False) -> BeforeValidator:
    """A finite number of seconds (or milliseconds) in ``(0, maximum]``, or ``[0, maximum]`` with ``zero``."""
    lower = ">= 0" if zero else "> 0"

    def check(value: object) -> float:
        number: float | None = None
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        if number is None or not math.isfinite(number):
            _fail(f"must be a number {lower} and <= {maximum:g} ({what})")
        if number > maximum or number < 0 or (number == 0 and not zero):
            _fail(f"is out of range: {what} must be {lower} and <= {maximum:g}")
        return number

    return BeforeValidator(check)


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    _fail("must be true or false")


def _level(value: object) -> str:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    level = _NUMERIC_LEVELS.get(text, text.upper())
    if level not in LOG_LEVELS:
        _fail(f"is not a log level: one of {', '.join(LOG_LEVELS)} (or 10-50)")
    return level


Workers = Annotated[int | Literal["auto"], _whole(1, 256, "a worker count", auto=True)]
BatchSize = Annotated[int | Literal["auto"], _whole(1, 4096, "a batch size", auto=True)]
QueueLength = Annotated[int, _whole(1, 100_000, "a queue length")]
ThreadCount = Annotated[int, _whole(1, 256, "a thread count")]
#: Up to 1 GiB: above every platform's own body limit (Cloud Run's HTTP/1 limit is 32 MiB).
RequestBytes = Annotated[int, _whole(1, 1 << 30, "a request size in bytes")]
#: Up to 1 GiB, the largest payload any platform takes (SageMaker asynchronous inference: 1 GB).
ResponseBytes = Annotated[int, _whole(1, 1 << 30, "a response size in bytes")]
#: Up to 5 s: a longer wait for a fuller batch would eat most of any platform's request deadline.
BatchDelayMs = Annotated[float, _seconds(5000, "a batching delay in ms", zero=True)]
#: An hour: above every platform's invocation timeout (Cloud Run's maximum request timeout is 60 minutes).
Timeout = Annotated[float, _seconds(3600, "a timeout in seconds")]
DrainTimeout = Annotated[float, _seconds(3600, "a drain deadline in seconds", zero=True)]
Flag = Annotated[bool, BeforeValidator(_flag)]
LogLevel = Annotated[str, BeforeValidator(_level)]


class ServerSettings(BaseModel):
    """The server's own settings (``MODEL_SERVER_<FIELD>``); ``None``: unset, the server's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: Workers | None = None
    """Worker processes over one loaded model; ``auto``: one per CPU of the quota."""
    max_batch_size: BatchSize | None = None
    """Rows per model call at most; ``auto``: measured at start-up."""
    max_batch_delay_ms: BatchDelayMs | None = None
    """Wait this long for a batch to fill (0: never wait)."""
    max_queue: QueueLength | None = None
    """Queued requests before 503."""
    compute_threads: ThreadCount | None = None
    """Framework threads per worker (default: the CPU quota / workers)."""
    max_request_bytes: RequestBytes | None = None
    """Request bodies above this are a 413 (default: the platform's own limit)."""
    max_response_bytes: ResponseBytes | None = None
    """Responses above this are refused: 413 for several rows, 500 for one (default: the platform's limit)."""
    request_timeout_s: Timeout | None = None
    """Per-request deadline (default: just under the platform's invocation timeout)."""
    drain_timeout_s: DrainTimeout | None = None
    """SIGTERM drain deadline (default: just under the platform's kill timer)."""
    header_timeout_s: Timeout | None = None
    """A connection must finish its headers within this."""
    body_timeout_s: Timeout | None = None
    """Then its body within this."""
    send_timeout_s: Timeout | None = None
    """A client that takes none of its answers for this long is cut off."""
    log_level: LogLevel | None = None
    install_requirements: Flag | None = None
    """``pip install -r code/requirements.txt`` at start-up."""
    allow_non_finite: Flag | None = None
    """Accept NaN and infinity in float inputs."""

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of ``field``."""
        return PREFIX + field.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        """The settings in ``env``; an empty variable counts as unset. A bad value is a :class:`UsageError`."""
        raw = {name: env[cls.variable(name)] for name in cls.model_fields if env.get(cls.variable(name), "").strip()}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0])
            value = raw[name]
            # Numbers as they are (MODEL_SERVER_MAX_QUEUE=0), words quoted (MODEL_SERVER_WORKERS='many').
            shown = value if _is_number(value) else repr(value)
            raise UsageError(f"{cls.variable(name)}={shown} {error['msg']}") from None

    def environment(self) -> dict[str, str]:
        """The ``MODEL_SERVER_*`` variables of the settings that are set, as the server reads them."""
        return {
            self.variable(name): _text(value)
            for name in type(self).model_fields
            if (value := getattr(self, name)) is not None
        }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if value == int(value) else repr(value)
    return str(value)
