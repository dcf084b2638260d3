"""HTTP bodies to a pipeline's raw items: image files, text, JSON objects of ids.

What a client may send, per pipeline kind (a missing Content-Type means JSON):

- image: the file itself as ``image/jpeg``, ``image/png`` or ``application/x-image`` (SageMaker's
  built-in image algorithms' type); or JSON with each image as ``{"b64": "..."}`` (Vertex AI's
  convention for binary data): ``{"instances": [{"b64": ...}, ...]}``, a bare ``{"b64": ...}``,
  or ``{"instances": [{"<name>": {"b64": ...}}]}``.
- text: ``text/plain`` (UTF-8, one text); JSON ``"a text"``, ``["a", "b"]``, ``{"inputs": "a"}``
  or ``{"inputs": ["a", "b"]}`` (the Hugging Face inference toolkit's shape), or
  ``{"instances": ["a", {"text": "b"}]}``.
- ids: JSON ``{"user_id": 7, "candidates": [...]}``, a list of such objects, or ``{"instances": [...]}``.

Other media types (``.npy``, ``.npz``, CSV) are tensors and bypass the pipeline (``None``).
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from inference.codecs import REQUEST_MEDIA_TYPES, parse_media_type
from inference.codecs.base64_text import decode_base64
from inference.codecs.limits import check_containers_per_byte, nested_list_bytes
from inference.errors import BadRequestError, UnsupportedMediaTypeError, shown
from model_package.pipeline.runner import RawItem

JSON = "application/json"
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "application/x-image")
TEXT_MEDIA_TYPE = "text/plain"
#: Media types that carry tensors for the model itself, not raw inputs for the pipeline.
TENSOR_MEDIA_TYPES = tuple(media_type for media_type in REQUEST_MEDIA_TYPES if media_type != JSON)
_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")
#: The fewest bytes, comma included, each JSON array or object takes in a valid body of a pipeline
#: kind: an image ``{"b64":""},``, a text ``{"text":""},``, a list of ids ``[1],`` (lists of lists of
#: ids, ``[[1]],``, take 3 a list, and so on down towards 2: see ``nested_list_bytes``).
_BYTES_PER_CONTAINER = {"image": 10, "text": 10}


def raw_media_types(kind: str) -> tuple[str, ...]:
    """The media types a pipeline of ``kind`` reads (JSON first)."""
    if kind == "image":
        return (JSON, *IMAGE_MEDIA_TYPES)
    if kind == "text":
        return (JSON, TEXT_MEDIA_TYPE)
    return (JSON,)


def parse_items(body: bytes, content_type: str | None, kind: str, *, id_depth: int = 1) -> list[RawItem] | None:
    """The raw items of a request for a pipeline of ``kind``; ``None`` for a tensor media type.

    Raises :class:`UnsupportedMediaTypeError` (415) for a media type the pipeline cannot read and
    :class:`BadRequestError` (400) naming what was wrong with the body and what is accepted.
    """
    media_type, params = parse_media_type(content_type)
    media_type = media_type or JSON
    if media_type in TENSOR_MEDIA_TYPES:
        return None
    allowed = raw_media_types(kind)
    if media_type not in allowed:
        raise UnsupportedMediaTypeError(
            f"cannot read Content-Type {shown(media_type)} for this {kind} model; send one of {', '.join(allowed)} "
            f"(or tensors as {', '.join(TENSOR_MEDIA_TYPES[:3])})"
        )
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _CHARSETS and media_type in (JSON, TEXT_MEDIA_TYPE):
        raise UnsupportedMediaTypeError(f"charset {charset!r} is not supported for {media_type}; send UTF-8")
    if media_type in IMAGE_MEDIA_TYPES:
        if not body:
            raise BadRequestError(f"the {media_type} body is empty; send the image file's bytes")
        return [body]
    if media_type == TEXT_MEDIA_TYPE:
        return [_utf8(body, "the text/plain body")]
    return json_items(body, kind, id_depth=id_depth)


def json_items(body: bytes, kind: str, *, id_depth: int = 1) -> list[RawItem]:
    """The raw items of a JSON body (every shape the module docstring lists).

    ``id_depth``: how deep an ids pipeline's instances may nest lists (its inputs' rank less one).
    """
    check_containers(body, kind, id_depth=id_depth)
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    if isinstance(payload, dict) and "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise BadRequestError('"instances" must be a list, one entry per input')
    elif isinstance(payload, dict) and "inputs" in payload and kind == "text":
        given = payload["inputs"]
        instances = given if isinstance(given, list) else [given]
    elif isinstance(payload, list):
        instances = payload
    else:
        instances = [payload]
    if not instances:
        raise BadRequestError("the request holds no instances; send at least one")
    if kind == "image":
        return [_image(item, index) for index, item in enumerate(instances)]
    if kind == "text":
        return [_text(item, index) for index, item in enumerate(instances)]
    for index, item in enumerate(instances):
        if not isinstance(item, dict):
            raise BadRequestError(
                f"instance {index} is {type(item).__name__}; send objects such as "
                '{"user_id": 7, "candidates": [3, 9, 12]} with one field per model input'
            )
    return list(instances)


def _image(item: Any, index: int) -> bytes:
    if isinstance(item, dict) and len(item) == 1 and "b64" not in item:
        item = next(iter(item.values()))  # {"image": {"b64": ...}}: the input's own name around it
    if not (isinstance(item, dict) and isinstance(item.get("b64"), str)):
        raise BadRequestError(
            f'instance {index} is not an image: send {{"b64": "<base64 of the JPEG or PNG file>"}}, '
            "or the file itself as image/jpeg or image/png"
        )
    try:
        return decode_base64(item["b64"])
    except (binascii.Error, ValueError):
        raise BadRequestError(f"instance {index}: the b64 field is not valid base64") from None


def _text(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("text"), str) and len(item) == 1:
        return str(item["text"])
    if not isinstance(item, str):
        raise BadRequestError(
            f'instance {index} is {type(item).__name__}; send text as a JSON string, {{"text": "..."}}, '
            '{"inputs": "..."} or a text/plain body'
        )
    return item


def _utf8(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"{what} is not valid UTF-8 (byte {exc.start}); send UTF-8 text") from None


def check_containers(body: bytes, kind: str, *, id_depth: int = 1) -> None:
    """A 400 for a large body with more JSON arrays and objects than valid items of ``kind`` could hold.

    Parsing costs per array, not per byte, and holds the interpreter throughout: 4 MB of ``[[],[],...]``
    to a text model, or 700,000 candidates each nested ``[[[1]]]``, kept ``/ping`` waiting 1.3-2.4 s
    before the items were refused. Brackets are counted first (one NumPy pass); only a body over the
    bound is counted again outside its strings (texts may hold brackets).
    """
    least = _BYTES_PER_CONTAINER.get(kind) or nested_list_bytes(id_depth)
    check_containers_per_byte(
        body,
        least,
        f"more arrays and objects than {len(body):,} bytes of {kind} instances could: "
        "send one JSON value per instance, nested no deeper than the model's inputs",
    )
