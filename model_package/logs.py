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
_SHORTENING_PASSES = 3
#: Fields shorter than this (encoded) are never shortened: time, level, ids, statuses.
_SHORT_FIELD = 256
#: Room left for the cut markers and the separators between fields.
_MARGIN = 512
_MARK = " [... {} characters cut ...] "


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
            payload[key] = _shorten(value, limit)  # cheap first: the measuring below encodes every field
    for _ in range(_SHORTENING_PASSES):
        line = json.dumps(payload, default=str)
        if len(line) <= limit:
            return line
        sizes = {key: len(json.dumps(value, default=str)) for key, value in payload.items()}
        long = {key: size for key, size in sizes.items() if size > _SHORT_FIELD}
        budget = limit - (len(line) - sum(long.values())) - _MARGIN  # what the long fields may take together
        if budget <= 0:
            break
        for key, size in long.items():
            value = payload[key]
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            # Escapes make a character cost up to 12 (a surrogate pair as two \uXXXX): keep in proportion.
            per_char = size / max(1, len(text))
            payload[key] = _shorten(text, int(budget * size / sum(long.values()) / per_char) - len(_MARK))
    # Too many fields to shorten: keep the line's identity and what it says, name what was dropped.
    kept = {key: payload[key] for key in ("time", "level", "logger")}
    message = _shorten(str(payload["message"]), limit // 16)
    dropped = sorted(set(payload) - set(kept) - {"message"})
    return json.dumps({**kept, "message": message, "fields_dropped": dropped})


def _shorten(text: str, keep: int) -> str:
    """The first three quarters and the last quarter of ``keep`` characters of ``text``, the cut marked.

    The end of a traceback is the exception itself: it stays.
    """
    keep = max(0, keep)
    if keep >= len(text):
        return text
    head = keep * 3 // 4
    tail = text[len(text) - (keep - head) :] if keep > head else ""
    return f"{text[:head]}{_MARK.format(len(text) - keep)}{tail}"


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
