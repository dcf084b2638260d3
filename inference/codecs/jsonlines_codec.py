"""JSON Lines (``application/jsonlines``, ``application/jsonl``, ``application/x-ndjson``): one row per line.

This is what SageMaker batch transform sends with ``SplitType=Line``: each
non-blank line is one instance in the same forms as a JSON request's
``"instances"`` entries (a value for a single-input model, or an object keyed
by input name). The response has one JSON prediction per line, in the same
form as an entry of ``"predictions"``, each line ending in ``\\n``, so batch
transform can join output lines back to input lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from inference.codecs import json_numbers
from inference.codecs.arrays import has_string_values, json_rows, locate_line, may_hold_booleans, ordered
from inference.codecs.base import Tensors
from inference.codecs.json_codec import decode_instances, dumps, load_json
from inference.codecs.limits import DecodeLimits, check_structure
from inference.errors import BadRequestError
from model_package.manifest import Signature

#: The media type SageMaker documents first, then the aliases clients use.
JSON_LINES_MEDIA_TYPES: tuple[str, ...] = ("application/jsonlines", "application/jsonl", "application/x-ndjson")
#: Records from this size take the simdjson shortcut (see ``_numeric_rows``).
NUMERIC_RECORD_BYTES = 4096


class JsonLinesCodec:
    """One instance per line in, one prediction per line out; blank lines are skipped."""

    text: bool = True

    def __init__(self, media_type: str = JSON_LINES_MEDIA_TYPES[0]) -> None:
        self.media_type = media_type
        self.media_types: tuple[str, ...] = (media_type,)
        self.content_type = media_type

    def decode(
        self,
        body: bytes,
        params: Mapping[str, str],
        signature: Signature,
        *,
        allow_non_finite: bool = False,
        limits: DecodeLimits | None = None,
    ) -> Tensors:
        """Decode each non-blank line as one instance; errors name the line (1-based)."""
        check_structure(body, signature, "JSON Lines")
        records: list[bytes] = []
        line_numbers: list[int] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if line.strip():
                records.append(line)
                line_numbers.append(number)
        return self.decode_records(records, signature, allow_non_finite=allow_non_finite, line_numbers=line_numbers)

    def decode_records(
        self,
        records: Sequence[bytes],
        signature: Signature,
        *,
        allow_non_finite: bool = False,
        line_numbers: Sequence[int] | None = None,
    ) -> Tensors:
        """Decode records already split into non-blank lines (``line_numbers``: each one's line; default 1, 2, ...).

        Local batch scoring reads its input line by line already: joining a chunk into a body only
        for :meth:`decode` to split it again cost a third of the decoding time of small rows.
        """
        numbers = range(1, len(records) + 1) if line_numbers is None else line_numbers
        rows = _numeric_rows(records, signature)
        if rows is not None:
            spec = signature.inputs[0]
            return {
                spec.name: json_numbers.as_input(
                    rows, spec, allow_non_finite=allow_non_finite, locate=locate_line(numbers)
                )
            }
        loads = orjson.loads
        try:
            # One orjson call per line, without the per-line wrapper: the common case, all valid.
            instances = [loads(record) for record in records]
        except orjson.JSONDecodeError:
            # NaN/Infinity, a byte-order mark or a real error: the wrapper reads or words it per line.
            instances = [
                load_json(record, what=f"line {number} of the JSON Lines body")
                for record, number in zip(records, numbers, strict=True)
            ]
        if not instances:
            raise BadRequestError("empty batch: the JSON Lines body has no records; send one JSON instance per line")
        return decode_instances(
            instances,
            signature,
            allow_non_finite=allow_non_finite,
            locate=locate_line(numbers),
            # A JSON string needs a quote: without one, skip the tokenising regular expression.
            strings=any(may_hold_booleans(record) for record in records)
            or (any(b'"' in record for record in records) and has_string_values(b"\n".join(records))),
        )

    def encode(self, outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """One JSON prediction per line."""
        return _lines(json_rows(ordered(outputs, signature.outputs)))

    def encode_request(self, inputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """One JSON instance per line (what a client or batch transform sends)."""
        return _lines(json_rows(ordered(inputs, signature.inputs)))


def _numeric_rows(records: Sequence[bytes], signature: Signature) -> np.ndarray | None:
    """The records as one float64 batch when each is a large regular array of plain numbers of one shape.

    For a single float input and records of :data:`NUMERIC_RECORD_BYTES` or more (images, long
    feature vectors): simdjson reads them without a Python float per number (see ``json_numbers``).
    Small records are cheaper through orjson, whose one call per record costs less than simdjson's
    set-up; ``None`` leaves the records to that path, as it does any record the shortcut cannot read.
    """
    if not records or len(records[0]) < NUMERIC_RECORD_BYTES or not json_numbers.takes(signature.inputs):
        return None
    rows: list[np.ndarray] = []
    for record in records:
        row = json_numbers.numeric_batch(record, envelope=False)
        if row is None or (rows and row.shape != rows[0].shape):
            return None
        rows.append(row)
    return np.stack(rows)


def _lines(rows: np.ndarray | list[Any]) -> bytes:
    if isinstance(rows, np.ndarray) and rows.dtype.kind in "biuf" and rows.ndim >= 1 and len(rows):
        return _array_lines(rows)
    return b"".join(dumps(row) + b"\n" for row in rows)


def _array_lines(rows: np.ndarray) -> bytes:
    """The same bytes as one ``dumps(row)`` per row, from one ``dumps`` of the whole array.

    orjson writes a numeric array with no spaces, so rows are separated by exactly ``ndim - 1``
    closing brackets, a comma and ``ndim - 1`` opening brackets, and separators inside a row have
    fewer brackets before their comma: replacing the top-level one by a line break splits rows
    without a Python call per row (a third of the cost of encoding small rows).
    """
    whole = dumps(rows)[1:-1]
    depth = rows.ndim - 1
    separator = b"]" * depth + b"," + b"[" * depth
    return whole.replace(separator, separator[:depth] + b"\n" + separator[depth + 1 :]) + b"\n"
