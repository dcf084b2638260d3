"""JSON log lines stay within what log services keep, however large a message or traceback is."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from model_package.logs import MAX_LINE_CHARS, JsonFormatter


def _record(message: str, *, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("inference.app", logging.ERROR, __file__, 1, "%s", (message,), exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError:
        return sys.exc_info()[1]  # type: ignore[return-value]


def test_a_small_record_is_written_whole() -> None:
    line = JsonFormatter().format(_record("request failed: boom", request_id="abc"))

    entry = json.loads(line)
    assert entry["message"] == "request failed: boom"
    assert entry["request_id"] == "abc"
    assert "characters cut" not in line


def test_a_20_mb_exception_message_is_one_bounded_line_keeping_both_ends() -> None:
    """A hook raising with the whole request body in its message wrote a 40 MB line (message + traceback)."""
    body = "head-" + "x" * 20_000_000 + "-tail"
    line = JsonFormatter().format(_record(f"request failed: ValueError: {body}", exc=_raised(body), request_id="r1"))

    assert len(line) <= MAX_LINE_CHARS
    entry = json.loads(line)
    assert entry["request_id"] == "r1"
    assert entry["message"].startswith("request failed: ValueError: head-xxx")
    assert entry["message"].endswith("xxx-tail")
    assert "characters cut ...]" in entry["message"]
    # The traceback keeps where it started and the exception line's end.
    assert entry["exception"].startswith("Traceback (most recent call last)")
    assert entry["exception"].endswith("xxx-tail")


@pytest.mark.parametrize("char", ["é", "\U0001f600", "\x00"])
def test_characters_json_escapes_into_many_still_fit(char: str) -> None:
    line = JsonFormatter().format(_record(char * 200_000, exc=_raised(char * 200_000)))

    assert len(line) <= MAX_LINE_CHARS
    assert json.loads(line)["level"] == "error"


def test_many_long_fields_still_make_one_valid_line() -> None:
    fields = {f"field_{i}": "v" * 60_000 for i in range(12)}
    line = JsonFormatter().format(_record("m" * 100_000, **fields))

    assert len(line) <= MAX_LINE_CHARS
    entry = json.loads(line)
    assert entry["logger"] == "inference.app"
    assert entry["message"].startswith("mmm")


@pytest.mark.parametrize(
    ("head", "tail"), [("ok " * 15_000, "日本語のテキスト" * 800), ("x" * 60_000, "\U0001f600" * 5_000)]
)
def test_an_ascii_message_ending_in_non_ascii_keeps_its_traceback_and_request_id(head: str, tail: str) -> None:
    """An error quoting a CJK body: the escaped tail made the line fall back to dropping the traceback."""
    text = head + tail
    line = JsonFormatter().format(_record("request failed: ValueError", exc=_raised(text), request_id="r2", status=500))

    assert len(line) <= MAX_LINE_CHARS
    entry = json.loads(line)
    assert entry["request_id"] == "r2" and entry["status"] == 500
    assert entry["exception"].startswith("Traceback (most recent call last)")
    assert entry["exception"].endswith(tail[-10:])


def test_huge_field_names_still_make_one_bounded_line() -> None:
    for fields in ({"k" * 200_000: 1}, {f"{i:04d}" + "k" * 210: i for i in range(400)}):
        line = JsonFormatter().format(_record("boom", request_id="r3", **fields))

        assert len(line) <= MAX_LINE_CHARS
        entry = json.loads(line)
        assert entry["message"] == "boom" and entry["request_id"] == "r3"
        assert entry["fields_dropped"]
