"""The Open Inference Protocol's binary tensor data extension, as Triton defines it.

Source: Triton's ``docs/protocol/extension_binary_data.md`` (triton-inference-server/server). A body
is the JSON inference request (or response) followed by the raw bytes of the tensors that carry a
``binary_data_size`` parameter, in the order the tensors appear in the JSON; the
``Inference-Header-Content-Length`` header gives the JSON part's length. Tensor bytes are
little-endian, row-major, without padding; a ``BOOL`` element is one byte (0 or 1); a ``BYTES``
element is a 4-byte little-endian unsigned length followed by that many bytes. An output is sent
back in binary when its ``binary_data`` parameter is true, or when the request's
``binary_data_output`` parameter is true and the output does not say otherwise. A header length of
0 is a "raw binary request": the whole body is the one input of a single-input model, whose shape
is deduced from the byte count, and every output comes back in binary.

Every size a client states is checked against the bytes actually present before anything is
allocated: the header length against the body, each ``binary_data_size`` against what is left of
it, the shape's element count against the stated size, and each ``BYTES`` length prefix against the
tensor's remaining bytes. Nothing here knows HTTP; ``protocols/oip.py`` reads the headers.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from inference.codecs.limits import DecodeLimits
from inference.errors import BadRequestError, ModelError, shown

#: The header giving the length of the JSON part of a body with binary tensors.
HEADER = "inference-header-content-length"
#: The response media type when any output is binary (Triton's examples use it for requests too).
BINARY_MEDIA_TYPE = "application/octet-stream"
#: The extension's name in the server metadata's ``extensions`` (Triton reports this name).
EXTENSION = "binary_tensor_data"

_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of ``body``, given the ``Inference-Header-Content-Length`` value.

    Raises :class:`BadRequestError` when the value is not a whole number or exceeds the body.
    """
    text = header_length.strip()
    # int() would accept "+5", "1_000" and Unicode digits; the header is a plain decimal length.
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise BadRequestError(
            "Inference-Header-Content-Length must be the byte length of the JSON part of the body, "
            f"got {header_length!r}"
        )
    length = int(text)
    if length > len(body):
        raise BadRequestError(
            f"Inference-Header-Content-Length is {length} but the body holds only {len(body)} bytes; "
            "it must give the length of the JSON object at the start of the body"
        )
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


class BinaryReader:
    """Hands out the binary part of a body to the tensors that declare it, in order, never past its end."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._offset = 0

    def take(self, name: str, size: object) -> memoryview:
        """The next ``size`` bytes, for input ``name``; a 400 when ``size`` is not a count of bytes still there."""
        if type(size) is not int or size < 0:  # type(...) is int: refuses true/false and floats
            raise BadRequestError(
                f"input {name!r} has binary_data_size {size!r}; expected the tensor's size in bytes (an integer >= 0)"
            )
        left = len(self._data) - self._offset
        if size > left:
            raise BadRequestError(
                f"input {name!r} has binary_data_size {size} but only {left} bytes of binary data are left in "
                "the body after the JSON header and the inputs before it"
            )
        start = self._offset
        self._offset += size
        return self._data[start : self._offset]

    def check_consumed(self) -> None:
        """A 400 when bytes are left over: sizes that do not add up mean the tensors were misread."""
        extra = len(self._data) - self._offset
        if extra:
            raise BadRequestError(
                f"the body has {extra} bytes after the binary data of every input; the inputs' binary_data_size "
                "values must add up to the body's length minus Inference-Header-Content-Length"
            )


def decode_binary_tensor(
    name: str,
    datatype: str,
    dtype: np.dtype[Any],
    shape: list[int],
    data: memoryview,
    *,
    limits: DecodeLimits | None = None,
) -> np.ndarray:
    """One tensor's binary data as an array of ``shape``; ``dtype`` is the NumPy dtype of ``datatype``.

    The element count the shape implies must match the bytes given exactly, checked before any copy.
    """
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_tensor(name, shape, count, data, limits)
    want = count * dtype.itemsize
    if want != len(data):
        raise BadRequestError(
            f"input {name!r} has binary_data_size {len(data)} but its shape {shape} of {datatype} needs "
            f"{want} bytes ({count} elements of {dtype.itemsize})"
        )
    # Little-endian on the wire; a copy, so the model gets a writable array that does not pin the body.
    array = np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype, copy=True)
    if datatype == "BOOL" and array.size and int(np.frombuffer(data, dtype=np.uint8).max()) > 1:
        raise BadRequestError(f"input {name!r} is BOOL: each element must be one byte, 0 or 1")
    return array.reshape(shape)


def bytes_elements(name: str, shape: list[int], data: memoryview) -> list[bytes]:
    """A ``BYTES`` tensor's elements in row-major order, each checked like :func:`decode_binary_tensor` checks them.

    For raw items (a pipeline's images or texts), which become one bytes object each anyway.
    """
    # Bytes objects keep trailing NULs: only fixed-width NumPy arrays would drop them.
    lengths = _element_lengths(name, shape, math.prod(shape), data, fixed_width=False)
    elements: list[bytes] = []
    offset = 0
    for length in lengths.tolist():
        offset += _LENGTH.size
        elements.append(bytes(data[offset : offset + length]))
        offset += length
    return elements


def _bytes_tensor(name: str, shape: list[int], count: int, data: memoryview, limits: DecodeLimits | None) -> np.ndarray:
    lengths = _element_lengths(name, shape, count, data)
    widest = int(lengths.max()) if count else 0
    if limits is not None:
        # A fixed-width array is as wide as its longest element (see oip_json._bytes_array): checked
        # before it is allocated.
        limits.check_size(count * widest, f"BYTES input {name!r}")
    # Second pass: copy each element into its slot.
    array = np.zeros(count, dtype=f"S{max(widest, 1)}")
    offset = 0
    for index, length in enumerate(lengths.tolist()):
        offset += _LENGTH.size
        array[index] = bytes(data[offset : offset + length])
        offset += length
    return array.reshape(shape)


def _element_lengths(
    name: str, shape: list[int], count: int, data: memoryview, *, fixed_width: bool = True
) -> np.ndarray:
    """Every element's length prefix, checked against the bytes there, before anything is allocated per element."""
    # Every element needs at least its 4-byte length: a shape claiming more cannot fit (and would
    # otherwise make us loop over a count the client chose).
    if count * _LENGTH.size > len(data):
        raise BadRequestError(
            f"input {name!r} has shape {shape} ({count} BYTES elements) but binary_data_size {len(data)} cannot "
            f"hold that many: each element takes a 4-byte length before its bytes"
        )
    # First pass: read and check every length prefix, allocating nothing per element (a list of
    # bytes objects would cost ~40 bytes of Python object per element, 8x a body of 1-byte strings).
    lengths = np.empty(count, dtype=np.uint32)
    offset = 0
    for index in range(count):
        if offset + _LENGTH.size > len(data):
            raise BadRequestError(
                f"input {name!r} has shape {shape} ({count} BYTES elements) but its binary data ends after "
                f"{index}: element {index}'s 4-byte length is missing"
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if length > len(data) - offset:
            raise BadRequestError(
                f"input {name!r} element {index} has length {length} but only {len(data) - offset} bytes of "
                "the tensor's binary data are left"
            )
        if fixed_width and length and data[offset + length - 1] == 0:
            # NumPy's fixed-width bytes drop trailing NULs, which would change the value silently.
            raise BadRequestError(
                f"input {name!r} has a BYTES element ending in a NUL byte, which this server cannot pass on"
            )
        lengths[index] = length
        offset += length
    if offset != len(data):
        raise BadRequestError(
            f"input {name!r} has {len(data) - offset} bytes after its {count} BYTES elements; "
            "binary_data_size must be the elements' lengths plus 4 bytes each"
        )
    return lengths


def encode_binary_tensor(name: str, datatype: str, array: np.ndarray) -> bytes:
    """An output's bytes on the wire: little-endian and row-major, ``BYTES`` as length-prefixed elements."""
    if datatype != "BYTES":
        contiguous = np.ascontiguousarray(array)
        return contiguous.astype(contiguous.dtype.newbyteorder("<"), copy=False).tobytes()
    parts: list[bytes] = []
    for item in array.reshape(-1).tolist():
        value = item.encode("utf-8") if isinstance(item, str) else item
        if not isinstance(value, bytes):
            raise ModelError(f"output {name!r} holds a {type(item).__name__}, which a BYTES tensor cannot carry")
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)
    return b"".join(parts)


def binary_outputs(
    request_parameters: object, outputs: object, names: Iterable[str], *, default: bool = False
) -> frozenset[str]:
    """The outputs to send in binary: each output's ``binary_data``, else the request's ``binary_data_output``.

    ``outputs`` is the request's ``outputs`` list (already checked to name known outputs) or ``None``;
    ``names`` are the outputs the response will hold. Raises :class:`BadRequestError` for non-boolean flags.
    """
    everything = default
    if request_parameters is not None:
        if not isinstance(request_parameters, Mapping):
            raise BadRequestError("the request's 'parameters' must be an object")
        everything = _flag(request_parameters, "binary_data_output", "the request's parameters", default)
    chosen = {name for name in names} if everything else set()
    for item in outputs if isinstance(outputs, list) else ():
        parameters = item.get("parameters") if isinstance(item, Mapping) else None
        if parameters is None:
            continue
        if not isinstance(parameters, Mapping):
            raise BadRequestError(f"output {shown(item.get('name'))} has 'parameters' that are not an object")
        name = item["name"]
        if _flag(parameters, "binary_data", f"output {shown(name)}", name in chosen):
            chosen.add(name)
        else:
            chosen.discard(name)
    return frozenset(chosen)


def _flag(parameters: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise BadRequestError(f"{where} has {key} {shown(value)}; expected true or false")
    return value
