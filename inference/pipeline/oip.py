"""Raw inputs on the Open Inference Protocol: one ``BYTES`` tensor of images or texts, answers as tensors.

A request to a package with an image or text pipeline whose only input is a ``BYTES`` tensor
carries raw items, one per element: texts as JSON strings, images as base64 strings (JSON cannot
hold raw bytes; KServe's V2 JSON convention for binary data), or either as binary tensor data after
the JSON (each element a 4-byte length, then the file's or the text's bytes: what Triton's clients
send by default; see :mod:`inference.codecs.oip_binary`). Any other request holds the model's
own tensors and is served as before. The answers come back as tensors, one row per item:
``labels`` (BYTES) and ``scores`` (FP32) ``[n, k]``; ``items`` (INT64) and ``scores``; or
``embedding`` (FP32 ``[n, d]``).
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from inference.codecs import oip_binary
from inference.codecs.base64_text import decode_base64
from inference.errors import BadRequestError, shown
from inference.pipeline.requests import check_containers
from model_package.pipeline.runner import RawItem


def raw_oip_items(body: bytes, kind: str, header_length: str | None = None) -> tuple[list[RawItem], str | None] | None:
    """The raw items of a V2 infer request and its ``id``, or ``None`` when it holds tensors for the model.

    ``header_length`` (``Inference-Header-Content-Length``) says binary tensor data follows the JSON.
    """
    if kind not in ("image", "text"):
        return None
    binary: memoryview | None = None
    if header_length is not None:
        body, binary = oip_binary.split_body(body, header_length)
    check_containers(body, kind)
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
    request_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        return _binary_items(tensor, kind, size, binary), request_id
    if binary is not None:
        oip_binary.BinaryReader(binary).check_consumed()  # binary data no input claims: sizes that do not add up
    values = _flatten(tensor.get("data"))
    if not values or not all(isinstance(value, str) for value in values):
        raise BadRequestError(
            f"input {shown(tensor.get('name'))}: a BYTES tensor of {'images' if kind == 'image' else 'texts'} needs "
            "its 'data' as a non-empty list of strings"
            + (" (base64 of each JPEG or PNG file)" if kind == "image" else "")
        )
    if kind == "text":
        return list(values), request_id
    items: list[RawItem] = []
    for index, value in enumerate(values):
        try:
            items.append(decode_base64(value))
        except (binascii.Error, ValueError):
            raise BadRequestError(f"element {index} of {shown(tensor.get('name'))} is not valid base64") from None
    return items, request_id


def _binary_items(tensor: dict[str, Any], kind: str, size: object, binary: memoryview | None) -> list[RawItem]:
    """The items of a ``BYTES`` tensor sent as binary tensor data: each a 4-byte length, then the file or the text."""
    name = tensor.get("name")
    if binary is None:
        raise BadRequestError(
            f"input {name!r} has binary_data_size but the request has no Inference-Header-Content-Length header "
            "giving the length of its JSON part"
        )
    reader = oip_binary.BinaryReader(binary)
    data = reader.take(str(name), size)
    reader.check_consumed()
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and all(type(dim) is int and dim >= 0 for dim in shape)):
        raise BadRequestError(f"input {name!r}: 'shape' must be a list of whole numbers >= 0, got {shape!r}")
    elements = oip_binary.bytes_elements(str(name), shape, data)
    if not elements:
        raise BadRequestError(f"input {name!r}: a BYTES tensor of {kind}s needs at least one element")
    if kind == "image":
        return list(elements)
    texts: list[RawItem] = []
    for index, element in enumerate(elements):
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequestError(f"element {index} of {name!r} is not UTF-8 text") from None
    return texts


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
