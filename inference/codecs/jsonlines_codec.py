"""JSON Lines (``application/jsonlines``, ``application/jsonl``, ``application/x-ndjson``): one row per line.

This is what SageMaker batch transform sends with ``SplitType=Line``: each
non-blank line is one instance in the same forms as a JSON request's
``"instances"`` entries (a value for a single-input model, or an object keyed
by input name). The response has one JSON prediction per line, in the same
form as an entry of ``"predictions"``, each line ending in ``\\n``, so batch
transform can join output lines back to input lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from inference.codecs.arrays import has_string_values, json_rows, locate_line, ordered
from inference.codecs.base import Tensors
from inference.codecs.json_codec import decode_instances, dumps, load_json
from inference.codecs.limits import DecodeLimits
from inference.errors import BadRequestError
from model_package.manifest import Signature

#: The media type SageMaker documents first, then the aliases clients use.
JSON_LINES_MEDIA_TYPES: tuple[str, ...] = ("application/jsonlines", "application/jsonl", "application/x-ndjson")


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
        instances: list[Any] = []
        line_numbers: list[int] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if line.strip():
                instances.append(load_json(line, what=f"line {number} of the JSON Lines body"))
                line_numbers.append(number)
        if not instances:
            raise BadRequestError("empty batch: the JSON Lines body has no records; send one JSON instance per line")
        return decode_instances(
            instances,
            signature,
            allow_non_finite=allow_non_finite,
            locate=locate_line(line_numbers),
            strings=has_string_values(body),
        )

    def encode(self, outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """One JSON prediction per line."""
        return _lines(json_rows(ordered(outputs, signature.outputs)))

    def encode_request(self, inputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """One JSON instance per line (what a client or batch transform sends)."""
        return _lines(json_rows(ordered(inputs, signature.inputs)))


def _lines(rows: np.ndarray | list[Any]) -> bytes:
    return b"".join(dumps(row) + b"\n" for row in rows)
