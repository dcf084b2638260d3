"""What a batch job reads and writes, independent of the cloud: content types and record counts.

A *line format* (JSON Lines, CSV) holds one record per non-empty line: the managed engines
split it by line and write one output line per record, so the output check compares line
counts. Any other format is one record per object (the whole object is one request).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

JSON_LINES: Final = "application/jsonlines"
CSV: Final = "text/csv"
LINE_FORMATS: Final = frozenset({JSON_LINES, CSV})

#: Content type by file extension, for ``--content-type``'s default.
CONTENT_TYPES: Final = {
    ".jsonl": JSON_LINES,
    ".jsonlines": JSON_LINES,
    ".csv": CSV,
    ".json": "application/json",
    ".npy": "application/x-npy",
}


class ContentTypeError(ValueError):
    """The content type cannot be told from the input's names; ``str()`` says what is allowed."""


def content_type_of(keys: Iterable[str]) -> str:
    """The one content type the input objects' extensions name (all must agree)."""
    found: set[str] = set()
    for key in keys:
        name = key.rsplit("/", 1)[-1].lower()
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix not in CONTENT_TYPES:
            raise ContentTypeError(
                f"cannot tell the content type of {key!r} from its extension; name the files "
                f"{', '.join(sorted(CONTENT_TYPES))} or pass --content-type"
            )
        found.add(CONTENT_TYPES[suffix])
    if len(found) > 1:
        raise ContentTypeError(
            f"the input mixes content types {', '.join(sorted(found))}; one job reads one type: "
            "split the input or pass --content-type"
        )
    if not found:
        raise ContentTypeError("the input holds no objects")
    return found.pop()


def is_line_format(content_type: str) -> bool:
    """Whether records are lines (split by line, assembled by line)."""
    return content_type.split(";", 1)[0].strip().lower() in LINE_FORMATS


def count_records(data: bytes, content_type: str) -> int:
    """Records in one input object: non-empty lines for line formats, else one."""
    if not is_line_format(content_type):
        return 1
    return count_lines(data)


def count_lines(data: bytes) -> int:
    """Non-empty lines (a trailing newline or blank lines add none)."""
    return sum(1 for line in data.splitlines() if line.strip())
