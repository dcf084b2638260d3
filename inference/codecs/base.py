"""The codec interface: bytes of one media type <-> named NumPy arrays.

A request codec turns a body into the model's named inputs (a batch per
input, validated later against the signature by the model runner); a response
codec turns named outputs into bytes. Codecs never use pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from inference.codecs.limits import DecodeLimits
from model_package.manifest import Signature

#: Named arrays, one batch per model input or output.
Tensors = dict[str, np.ndarray]


class RequestCodec(Protocol):
    """Decodes request bodies of the media types it lists."""

    media_types: tuple[str, ...]

    def decode(self, body: bytes, params: Mapping[str, str], signature: Signature) -> Tensors:
        """Decode ``body`` (media-type parameters such as ``charset`` in ``params``).

        Raises ``inference.errors.BadRequestError`` naming what is wrong with the body.
        """
        ...


class ResponseCodec(Protocol):
    """Encodes model outputs as one media type."""

    media_type: str

    def encode(self, outputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """Encode the outputs of one request."""
        ...


class Codec(RequestCodec, ResponseCodec, Protocol):
    """A media type the server both reads and writes, with what the dispatcher needs to know about it."""

    def decode(
        self,
        body: bytes,
        params: Mapping[str, str],
        signature: Signature,
        *,
        allow_non_finite: bool = False,
        limits: DecodeLimits | None = None,
    ) -> Tensors:
        """Decode ``body`` as :meth:`RequestCodec.decode` does, casting to the signature's dtypes.

        NaN and infinity in float inputs raise ``BadRequestError`` unless ``allow_non_finite``. Where
        the decoded size is known before allocating, a size beyond ``limits`` raises a 413.
        """
        ...

    content_type: str
    """The ``Content-Type`` header value of a response (``media_type`` plus any parameters)."""

    text: bool
    """Whether bodies are text, so that a ``charset`` other than UTF-8 must be refused."""

    def encode_request(self, inputs: Mapping[str, np.ndarray], signature: Signature) -> bytes:
        """Encode named inputs as a client would send them (the inverse of ``decode``)."""
        ...
