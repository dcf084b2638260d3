"""Raw inputs on the Open Inference Protocol: one ``BYTES`` tensor of images or texts, answers as tensors.

A request to a package with an image or text pipeline whose only input is a ``BYTES`` tensor
carries raw items, one per element: texts as JSON strings, images as base64 strings (JSON cannot
hold raw bytes; KServe's V2 JSON convention for binary data), or either as binary tensor data after
the JSON (each element a 4-byte length, then the file's or the text's bytes: what Triton's clients
send by default; see :mod:`inference.codecs.oip_binary`). Any other request holds the model's
own tensors and is served as before. The answers come back as tensors, one row per item:
``labels`` (BYTES) and ``scores`` (FP32) ``[n, k]``; ``items`` (INT64) and ``scores``; or
``embedding`` (FP32 ``[n, d]``), held to the protocol as the model's own tensors are: a ``shape``
that does not fit the data, an ``id`` that is not a string, an output the answers do not have or a
``binary_data_output`` that is not a boolean is a 400, and outputs asked for in binary come in binary.
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from inference.codecs import oip_binary
from inference.codecs.base64_text import decode_base64
from inference.codecs.limits import check_containers_per_byte, check_empty_lists
from inference.codecs.oip_json import requested_outputs, tensor_shape
from inference.errors import BadRequestError, shown
from model_package.pipeline.runner import RawItem

#: The output tensors a pipeline's answers become, by the kind of its output.
ANSWER_TENSORS: dict[str, tuple[str, ...]] = {
    "labels": ("labels", "scores"),
    "top_k": ("items", "scores"),
    "embedding": ("embedding",),
}


@dataclass(frozen=True)
class RawRequest:
    """A V2 infer request of raw items: the items, and how the answer is wanted."""

    items: list[RawItem]
    id: str | None
    outputs: tuple[str, ...]
    """The output tensors to answer, in order: those the request names, else all."""
    binary: frozenset[str]
    """Outputs to send as binary tensor data."""


def raw_oip_items(
    body: bytes, kind: str, header_length: str | None = None, *, answers: tuple[str, ...] = ("labels", "scores")
) -> RawRequest | None:
    """The raw items of a V2 infer request, or ``None`` when it holds tensors for the model.

    ``header_length`` (``Inference-Header-Content-Length``) says binary tensor data follows the JSON;
    ``answers`` are the output tensors the pipeline answers with (:data:`ANSWER_TENSORS`).
    """
    if kind not in ("image", "text"):
        return None
    binary: memoryview | None = None
    if header_length is not None:
        body, binary = oip_binary.split_body(body, header_length)
    if b'"BYTES"' not in body:
        return None  # no BYTES tensor: the model's own tensors, read (and bounded) by the tensor codec
    # A BYTES tensor's data may nest as its shape does ([n, 1]: ["a"], a list per 6 bytes), so only
    # denser bodies (a list per fewer than 3 bytes: [[[...]]]) are refused unparsed.
    check_containers_per_byte(
        body, 3, "more arrays and objects than a BYTES tensor's data, flat or nested as its shape, could"
    )
    # ... nor empty lists ([],: exactly 3 bytes a list), which no BYTES data holds.
    check_empty_lists(body, "empty lists ([]); a BYTES tensor's data holds its elements in every list")
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
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError(f"'id' must be a string, got {type(request_id).__name__}")
    requested = requested_outputs(payload.get("outputs"), answers)
    names = requested if requested is not None else answers
    binary_outputs = oip_binary.binary_outputs(payload.get("parameters"), payload.get("outputs"), names)
    items = _items(tensor, kind, binary)
    return RawRequest(items, request_id, names, binary_outputs)


def _items(tensor: dict[str, Any], kind: str, binary: memoryview | None) -> list[RawItem]:
    """The raw items of the request's one ``BYTES`` tensor, in JSON ``data`` or in binary."""
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        return _binary_items(tensor, kind, size, binary)
    if binary is not None:
        oip_binary.BinaryReader(binary).check_consumed()  # binary data no input claims: sizes that do not add up
    values = _flatten(tensor.get("data"))
    if not values or not all(isinstance(value, str) for value in values):
        raise BadRequestError(
            f"input {shown(tensor.get('name'))}: a BYTES tensor of {'images' if kind == 'image' else 'texts'} needs "
            "its 'data' as a non-empty list of strings"
            + (" (base64 of each JPEG or PNG file)" if kind == "image" else "")
        )
    shape = tensor_shape(str(tensor.get("name")), tensor.get("shape"))
    if math.prod(shape) != len(values):
        raise BadRequestError(
            f"input {shown(tensor.get('name'))} has {len(values)} values in 'data' but its shape {shape} needs "
            f"{math.prod(shape)} (one element per {'image' if kind == 'image' else 'text'})"
        )
    if kind == "text":
        return list(values)
    items: list[RawItem] = []
    for index, value in enumerate(values):
        try:
            items.append(decode_base64(value))
        except (binascii.Error, ValueError):
            raise BadRequestError(f"element {index} of {shown(tensor.get('name'))} is not valid base64") from None
    return items


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


def answer_arrays(answers: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The pipeline's answers as output arrays, one row per item: class names BYTES, ids INT64, scores FP32."""
    arrays: dict[str, np.ndarray] = {}
    for key in answers[0] if answers else ():
        rows = [answer[key] for answer in answers]
        if key == "labels" and rows[0] and isinstance(rows[0][0], str):
            arrays[key] = np.array(rows, dtype=object)
        elif key in ("labels", "items"):
            arrays[key] = np.asarray(rows, dtype=np.int64)
        else:
            arrays[key] = np.asarray(rows, dtype=np.float32)
    return arrays


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
