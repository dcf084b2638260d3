"""Choosing a codec: ``Content-Type`` -> request codec, ``Accept`` -> response codec, plus the shared checks.

Every codec casts through ``arrays.coerce`` (dtype rules, NaN and infinity);
the checks that need the whole batch (empty batch, a single value where a
batch was expected) run here once, after the codec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inference.codecs.arrays import check_batch, may_hold_non_numbers
from inference.codecs.base import Codec, Tensors
from inference.codecs.csv_codec import CsvCodec
from inference.codecs.json_codec import JsonCodec, decode_json_inputs, split_json_payload
from inference.codecs.jsonlines_codec import JSON_LINES_MEDIA_TYPES, JsonLinesCodec
from inference.codecs.limits import DecodeLimits, check_structure
from inference.codecs.media_types import negotiate, parse_media_type
from inference.codecs.npy_codec import NPY_MEDIA_TYPE, NPZ_MEDIA_TYPE, NpyCodec
from inference.codecs.npz_codec import NpzCodec
from inference.errors import NotAcceptableError, UnsupportedMediaTypeError, shown
from model_package.manifest import Signature

_CODEC_LIST: tuple[Codec, ...] = (
    JsonCodec(),
    *(JsonLinesCodec(media_type) for media_type in JSON_LINES_MEDIA_TYPES),
    CsvCodec(),
    NpyCodec(),
    NpzCodec(),
)
_CODECS: dict[str, Codec] = {codec.media_type: codec for codec in _CODEC_LIST}
_JSON_LINES_CODEC = JsonLinesCodec()

#: Media types ``decode_request`` accepts, the default (for a missing Content-Type) first.
REQUEST_MEDIA_TYPES: tuple[str, ...] = tuple(_CODECS)
#: Media types ``encode_response`` can produce, in the server's order of preference.
RESPONSE_MEDIA_TYPES: tuple[str, ...] = tuple(_CODECS)
# .npy holds one array: responses with several outputs can use every other type.
_MULTI_OUTPUT_MEDIA_TYPES = tuple(media_type for media_type in RESPONSE_MEDIA_TYPES if media_type != NPY_MEDIA_TYPE)
# US-ASCII is a subset of UTF-8; any other charset would need transcoding nobody has asked for.
_TEXT_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_DEFAULT_REQUEST_TYPE = "application/json"


def decode_request(
    body: bytes,
    content_type: str | None,
    signature: Signature,
    *,
    allow_non_finite: bool = False,
    limits: DecodeLimits | None = None,
) -> Tensors:
    """Decode a request body into one batch per signature input, cast to the signature's dtypes.

    A missing Content-Type means JSON. Raises :class:`UnsupportedMediaTypeError`
    (415) for a media type or charset the server cannot read, listing the
    supported ones, and :class:`BadRequestError` (400) for a body that does not
    fit the signature, including an empty batch and, unless
    ``allow_non_finite``, NaN or infinity in a float input. Shapes are left to
    the model runner's ``check_inputs``. With ``limits``, a body that decodes to more than they allow
    is a 413 naming the limit, raised before the allocation wherever the codec can know its size.
    """
    codec, params = _request_codec(content_type)
    tensors = codec.decode(body, params, signature, allow_non_finite=allow_non_finite, limits=limits)
    check_decoded(tensors, signature, limits)
    return tensors


def check_decoded(tensors: Tensors, signature: Signature, limits: DecodeLimits | None) -> None:
    """What every decoded request is checked for, whatever its codec: a batch with rows, within ``limits``."""
    check_batch(tensors, signature.inputs)
    if limits is not None:
        limits.check_rows(tensors)


def decode_json_lines(
    records: list[bytes],
    signature: Signature,
    *,
    allow_non_finite: bool = False,
    limits: DecodeLimits | None = None,
    line_numbers: Sequence[int] | None = None,
) -> Tensors:
    """:func:`decode_request` for a JSON Lines body already split into its non-blank lines, in order.

    The same tensors, checks and errors (line N is the N-th record, or ``line_numbers``' N-th: each
    record's line in its file) as decoding the lines joined by ``\\n``; local batch scoring reads its
    input line by line and would otherwise join and re-split.
    """
    tensors = _JSON_LINES_CODEC.decode_records(
        records, signature, allow_non_finite=allow_non_finite, line_numbers=line_numbers
    )
    check_decoded(tensors, signature, limits)
    return tensors


def decode_json_request(
    body: bytes, signature: Signature, *, allow_non_finite: bool = False
) -> tuple[Tensors, dict[str, Any]]:
    """Decode a JSON request and return its ``"parameters"`` object too, parsing the body once.

    For protocols that read parameters (Vertex AI, TF Serving); the checks are
    those of :func:`decode_request`.
    """
    check_structure(body, signature, "JSON")
    inputs, parameters = split_json_payload(body)
    tensors = decode_json_inputs(
        inputs, signature, allow_non_finite=allow_non_finite, strings=may_hold_non_numbers(body)
    )
    check_batch(tensors, signature.inputs)
    return tensors, parameters


def check_json_exchange(content_type: str | None, accept: str | None) -> None:
    """For routes that speak only JSON (KServe V1 and V2, Vertex AI): check both headers before any work.

    A ``Content-Type`` other than JSON (or a charset other than UTF-8) is a 415, an ``Accept`` that
    excludes JSON (``application/json;q=0``) a 406; a missing header means JSON.
    """
    media_type, _ = parse_media_type(content_type)
    if media_type and media_type != _DEFAULT_REQUEST_TYPE:
        raise UnsupportedMediaTypeError(
            f"cannot decode Content-Type {shown(media_type)}; this route reads application/json"
        )
    _request_codec(content_type)  # the charset check
    negotiate(accept, (_DEFAULT_REQUEST_TYPE,), _DEFAULT_REQUEST_TYPE)


def response_media_type(accept: str | None, signature: Signature, *, default: str = "application/json") -> str:
    """The media type :func:`encode_response` will use for this signature's outputs.

    Lets the server refuse with 406 before spending time on a prediction it
    could not send.
    """
    return _negotiate_response(accept, [spec.name for spec in signature.outputs], default)


def encode_response(
    outputs: Mapping[str, np.ndarray], accept: str | None, signature: Signature, *, default: str = "application/json"
) -> tuple[bytes, str]:
    """Encode outputs in the best media type ``Accept`` allows; returns the body and its Content-Type value.

    Outputs are written in signature order (names the signature lacks go last).
    Raises :class:`NotAcceptableError` (406) listing the supported types when
    ``Accept`` excludes them all, and naming ``application/x-npz`` when
    ``application/x-npy`` was asked for several outputs.
    """
    codec = _CODECS[_negotiate_response(accept, list(outputs), default)]
    return codec.encode(outputs, signature), codec.content_type


def encode_request(inputs: Mapping[str, np.ndarray], media_type: str, signature: Signature) -> bytes:
    """Encode inputs as a client sends them in ``media_type`` (for clients, tests and benchmarks)."""
    codec, _ = _request_codec(media_type)
    return codec.encode_request(inputs, signature)


def _request_codec(content_type: str | None) -> tuple[Codec, dict[str, str]]:
    media_type, params = parse_media_type(content_type)
    codec = _CODECS.get(media_type or _DEFAULT_REQUEST_TYPE)
    if codec is None:
        raise UnsupportedMediaTypeError(
            f"cannot decode Content-Type {shown(media_type)}; supported: {', '.join(REQUEST_MEDIA_TYPES)}"
        )
    charset = params.get("charset")
    if codec.text and charset is not None and charset.lower() not in _TEXT_CHARSETS:
        raise UnsupportedMediaTypeError(f"charset {charset!r} is not supported for {media_type}; send UTF-8")
    return codec, params


def _negotiate_response(accept: str | None, names: list[str], default: str) -> str:
    if default not in RESPONSE_MEDIA_TYPES:
        raise ValueError(f"default response media type {default!r} is not one of {RESPONSE_MEDIA_TYPES}")
    if len(names) == 1:
        return negotiate(accept, RESPONSE_MEDIA_TYPES, default)
    try:
        chosen = negotiate(accept, _MULTI_OUTPUT_MEDIA_TYPES, default)
    except NotAcceptableError:
        if not _accepts(accept, NPY_MEDIA_TYPE):
            raise
        chosen = NPY_MEDIA_TYPE
    if chosen == NPY_MEDIA_TYPE:
        raise NotAcceptableError(
            f"{NPY_MEDIA_TYPE} holds a single array but the model has {len(names)} outputs {names}; "
            f"accept {NPZ_MEDIA_TYPE} instead (supported: {', '.join(_MULTI_OUTPUT_MEDIA_TYPES)})"
        )
    return chosen


def _accepts(accept: str | None, media_type: str) -> bool:
    try:
        negotiate(accept, (media_type,), media_type)
    except NotAcceptableError:
        return False
    return True
