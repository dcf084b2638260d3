"""Structured logging for the CLI: JSON lines off a terminal, short text on one.

Library code logs through ``logging.getLogger(__name__)`` with ``extra=`` fields;
only the CLI configures handlers, once, at the edge.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["auto", "json", "text"]
#: Top-level loggers of this project, which log at the level the user chose.
OUR_LOGGERS = ("model_package", "inference", "infra", "examples", "bench")

# Attributes every LogRecord has; anything else came in through ``extra=`` and is a structured field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
#: The longest JSON log line written, in characters (= bytes: ``json.dumps`` escapes all non-ASCII).
#: Log services keep a bounded entry: Cloud Logging's LogEntry is at most 256 KiB
#: (https://cloud.google.com/logging/quotas), a CloudWatch Logs event 256 KB, 1 MB in the newer API
#: reference (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html).
#: A longer line is cut or lost there, and with it the record of a failure: an exception whose
#: message quotes a whole request body (20 MB) was one line. Longer fields are shortened in the middle.
MAX_LINE_CHARS = 64 * 1024
#: Fields shorter than this (encoded) are never shortened: time, level, ids, statuses.
_SHORT_FIELD = 256
#: Room left for the separators between fields.
_MARGIN = 512
_MARK = " [... {} characters cut ...] "
#: What a line keeps when nothing else fits, and how many dropped fields it names.
_IDENTITY = ("time", "level", "logger", "request_id")
_NAMED_WHEN_DROPPED = 20


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            # Server-side only: the traceback of an unexpected error, for whoever reads the logs.
            payload["exception"] = self.formatException(record.exc_info)
        return _bounded_line(payload, MAX_LINE_CHARS)


def _bounded_line(payload: dict[str, object], limit: int) -> str:
    """``payload`` as one JSON line of at most ``limit`` characters: long fields shortened in proportion."""
    for key, value in payload.items():
        if isinstance(value, str) and len(value) > limit:
            # Longer than the whole line whatever its encoding: cut first, so 20 MB is never encoded.
            keep = limit // 2
            payload[key] = f"{value[: keep * 3 // 4]}{_MARK.format(len(value) - keep)}{value[len(value) - keep // 4 :]}"
    line = json.dumps(payload, default=str)
    if len(line) <= limit:
        return line
    encoded = {key: json.dumps(value, default=str) for key, value in payload.items()}
    long = {key: len(text) for key, text in encoded.items() if len(text) > _SHORT_FIELD}
    # What the long fields may take together, as encoded: the line, less the short fields and the separators.
    budget = limit - (len(line) - sum(long.values())) - _MARGIN
    if budget > _SHORT_FIELD * len(long):
        shortened = dict(payload)
        for key, size in long.items():
            value = payload[key]
            text = value if isinstance(value, str) else encoded[key]
            shortened[key] = _shorten(text, budget * size // sum(long.values()))
        line = json.dumps(shortened, default=str)
        if len(line) <= limit:
            return line
    # Too many fields (or keys) to shorten: keep the line's identity and what it says, name what was dropped.
    dropped = sorted(key[:64] for key in payload if key not in _IDENTITY)[:_NAMED_WHEN_DROPPED]
    kept = {key: payload[key] for key in _IDENTITY if key in payload}
    return json.dumps({**kept, "message": _shorten(str(payload["message"]), limit // 4), "fields_dropped": dropped})


def _shorten(text: str, budget: int) -> str:
    """``text`` in at most about ``budget`` characters of JSON: its start and its end, the cut marked.

    Three quarters of the budget go to the start, a quarter to the end (the end of a traceback
    is the exception itself). Measured as JSON (a character may take up to 6): non-ASCII text
    costs more characters per kept character, and must not push the line over the limit.
    """
    if len(json.dumps(text)) - 2 <= budget:
        return text
    budget = max(0, budget - len(_MARK) - 12)
    head = _fitting(text, budget * 3 // 4, from_end=False)
    tail = _fitting(text[head:], budget - budget * 3 // 4, from_end=True)
    return f"{text[:head]}{_MARK.format(len(text) - head - tail)}{text[len(text) - tail :] if tail else ''}"


def _fitting(text: str, budget: int, *, from_end: bool) -> int:
    """How many characters from the start (or the end) of ``text`` take at most ``budget`` characters of JSON."""
    low, high = 0, min(len(text), budget)  # a character takes at least one
    while low < high:
        middle = (low + high + 1) // 2
        part = text[len(text) - middle :] if from_end else text[:middle]
        if len(json.dumps(part)) - 2 <= budget:
            low = middle
        else:
            high = middle - 1
    return low


class TextFormatter(logging.Formatter):
    """``message key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD_ATTRS)
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{prefix}{record.getMessage()}{' ' + fields if fields else ''}"


def configure_logging(fmt: LogFormat = "auto", level: int = logging.INFO) -> None:
    """Send logs to stderr in the chosen format (``auto``: text on a terminal, JSON otherwise)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Frameworks and SDKs log pages at INFO (exporter passes, HTTP retries): only their warnings
    # reach the user; our own loggers speak at the chosen level.
    root.setLevel(max(level, logging.WARNING))
    for ours in OUR_LOGGERS:
        logging.getLogger(ours).setLevel(level)
