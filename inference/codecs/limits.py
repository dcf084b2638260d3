"""How much a request may cost once decoded: bounded relative to the body limit and the model's input.

A request body is bounded by the platform's limit, but what it decodes to need not be: a compressed
``.npz`` of zeros, or a JSON list with one long string that NumPy would widen every element to, can
turn a megabyte into gigabytes. Every codec therefore keeps its decoded arrays within
:data:`DECODE_EXPANSION` times the body limit, checked before allocating where the size is known
in advance (``.npy`` and ``.npz`` headers, CSV rows), and the decoded request as a whole is checked
again against the same bound, which gives the largest number of rows one request may hold for this
model's input (a 413 names both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from inference.errors import PayloadTooLargeError

#: Decoded arrays may be this many times the body limit: text codecs expand numbers by up to 4x
#: ("0," -> float64), and casts (uint8 -> float32) by 4x; beyond that a body is a compression bomb.
DECODE_EXPANSION = 4


@dataclass(frozen=True)
class DecodeLimits:
    """The decoded-size bound of one request."""

    max_bytes: int
    """The most bytes a request's decoded input arrays may hold together."""
    body_limit: int
    """The request-body limit the bound derives from (named in messages)."""

    @classmethod
    def for_body_limit(cls, max_request_bytes: int) -> DecodeLimits:
        """The bound for a server whose bodies are at most ``max_request_bytes``."""
        return cls(max_bytes=DECODE_EXPANSION * max_request_bytes, body_limit=max_request_bytes)

    def check_size(self, decoded_bytes: int, what: str) -> None:
        """Raise a 413 before allocating ``decoded_bytes`` for ``what`` when they exceed the bound."""
        if decoded_bytes > self.max_bytes:
            raise PayloadTooLargeError(
                f"{what} decodes to {decoded_bytes:,} bytes; this endpoint decodes at most {self.max_bytes:,} "
                f"bytes per request ({DECODE_EXPANSION} x its {self.body_limit:,}-byte body limit): "
                "split the batch into smaller requests"
            )

    def check_rows(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise a 413 naming the row limit when decoded ``inputs`` exceed the bound."""
        total = sum(_nbytes(array) for array in inputs.values())
        if total <= self.max_bytes:
            return
        first = next(iter(inputs.values()))
        rows = int(first.shape[0]) if first.ndim else 1
        max_rows = max(0, self.max_bytes * rows // total) if rows else 0
        raise PayloadTooLargeError(
            f"the request holds {rows:,} rows ({total:,} bytes once decoded); this endpoint accepts at most "
            f"{max_rows:,} rows of this model's input per request ({self.max_bytes:,} decoded bytes, "
            f"{DECODE_EXPANSION} x its {self.body_limit:,}-byte body limit): split it into smaller requests"
        )


def _nbytes(array: np.ndarray) -> int:
    if array.dtype.kind == "O":  # bytes inputs: the pointers plus the bytes they point to
        return int(array.nbytes) + sum(len(leaf) for leaf in array.reshape(-1).tolist() if isinstance(leaf, bytes))
    return int(array.nbytes)
