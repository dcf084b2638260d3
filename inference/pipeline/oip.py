"""Raw inputs on the Open Inference Protocol: one ``BYTES`` tensor of images or texts, answers as tensors.

A request to a package with an image or text pipeline whose only input is a ``BYTES`` tensor
carries raw items, one per element: texts as JSON strings, images as base64 strings (JSON cannot
hold raw bytes; KServe's V2 JSON convention for binary data). Any other request holds the model's
own tensors and is served as before. The answers come back as tensors, one row per item:
``labels`` (BYTES) and ``scores`` (FP32) ``[n, k]``; ``items`` (INT64) and ``scores``; or
``embedding`` (FP32 ``[n, d]``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from inference.errors import BadRequestError
from model_package.pipeline.runner import RawItem


def raw_oip_items(body: bytes, kind: str) -> tuple[list[RawItem], str | None] | None:
    """The raw items of a V2 infer request and its ``id``, or ``None`` when it holds tensors for the model."""
    if kind not in ("image", "text"):
        return None
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the tensor codec answers with its own message
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not (isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], dict)):
        return None
    tensor = inputs[0]
    if tensor.get("datatype") != "BYTES":
        return None
    values = _flatten(tensor.get("data"))
    if not values or not all(isinstance(value, str) for value in values):
        raise BadRequestError(
            f"input {tensor.get('name')!r}: a BYTES tensor of {'images' if kind == 'image' else 'texts'} needs "
            "its 'data' as a non-empty list of strings"
            + (" (base64 of each JPEG or PNG file)" if kind == "image" else "")
        )
    request_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    if kind == "text":
        return list(values), request_id
    items: list[RawItem] = []
    for index, value in enumerate(values):
        try:
            items.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequestError(f"element {index} of {tensor.get('name')!r} is not valid base64") from None
    return items, request_id


def answers_as_tensors(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pipeline's answers as V2 output tensors, one row per item."""
    if not answers:
        return []
    tensors = []
    for key in answers[0]:
        rows = [answer[key] for answer in answers]
        width = len(rows[0])
        if key == "labels":
            datatype = "BYTES" if isinstance(rows[0][0], str) else "INT64"
        elif key == "items":
            datatype = "INT64"
        else:
            datatype = "FP32"
        data = [value for row in rows for value in row]
        tensors.append({"name": key, "datatype": datatype, "shape": [len(rows), width], "data": data})
    return tensors


def _flatten(data: Any) -> list[Any]:
    """The leaves of nested lists in row-major order; a loop, since JSON may nest deeper than Python recurses."""
    if not isinstance(data, list):
        return []
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat
