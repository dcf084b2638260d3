"""Request and response codecs: bytes of a media type <-> named NumPy arrays, and media type negotiation."""

from inference.codecs.base import Codec, RequestCodec, ResponseCodec, Tensors
from inference.codecs.dispatch import (
    REQUEST_MEDIA_TYPES,
    RESPONSE_MEDIA_TYPES,
    check_json_exchange,
    decode_json_lines,
    decode_json_request,
    decode_request,
    encode_request,
    encode_response,
    response_media_type,
)
from inference.codecs.json_codec import JsonInputs, split_json_payload
from inference.codecs.limits import DecodeLimits
from inference.codecs.media_types import negotiate, parse_media_type

__all__ = [
    "REQUEST_MEDIA_TYPES",
    "RESPONSE_MEDIA_TYPES",
    "Codec",
    "DecodeLimits",
    "JsonInputs",
    "RequestCodec",
    "ResponseCodec",
    "Tensors",
    "check_json_exchange",
    "decode_json_lines",
    "decode_json_request",
    "decode_request",
    "encode_request",
    "encode_response",
    "negotiate",
    "parse_media_type",
    "response_media_type",
    "split_json_payload",
]
