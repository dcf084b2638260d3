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
        return json.dumps(payload, default=str)


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
