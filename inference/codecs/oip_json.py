"""The Open Inference Protocol's tensor codec: request bodies to named arrays, outputs to response bodies.

Protocol-independent: ``protocols/oip.py`` routes requests here and shapes the HTTP response. Each
input's ``datatype`` must be the one the signature declares; ``data`` is row-major, flat or nested;
``BYTES`` tensors are JSON strings, passed on as fixed-width NumPy ``bytes_`` arrays. Tensors may
instead travel as raw bytes after the JSON (the binary tensor data extension,
:mod:`inference.codecs.oip_binary`), in either direction. Every size is bounded by
:class:`~inference.codecs.limits.DecodeLimits` before NumPy allocates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from inference.codecs import json_blocks, oip_binary
from inference.codecs.arrays import count_string_values, count_strings, may_hold_booleans
from inference.codecs.limits import DecodeLimits, check_empty_lists
from inference.errors import BadRequestError, ModelError, shown
from model_package.manifest import Manifest, Signature

#: Manifest dtype -> OIP datatype (the protocol's "Tensor Data Types" table).
DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "bytes": "BYTES",
}
#: OIP datatype -> the NumPy dtype its tensors are decoded to.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    datatype: np.dtype(np.bytes_ if dtype == "bytes" else dtype) for dtype, datatype in DATATYPES.items()
}

#: The most axes a tensor may have: NumPy 1.x's limit (2.x allows 64), more than any model's input.
MAX_RANK = 32
#: The most elements NumPy can index in one array (its shapes are products of ``intp``).
_MAX_ELEMENTS = int(np.iinfo(np.intp).max)


@dataclass(frozen=True)
class InferRequest:
    """A decoded V2 inference request."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] | None
    """Requested output names in request order, or ``None`` for every output."""
    binary_outputs: frozenset[str] = frozenset()
    """Outputs to send as binary data after the JSON (the binary tensor data extension)."""


def parse_binary_request(
    body: bytes, header_length: str, signature: Signature, *, limits: DecodeLimits | None = None
) -> InferRequest:
    """Decode a request with binary tensors, given its ``Inference-Header-Content-Length`` value.

    A length of 0 is Triton's raw binary request (the body is the single input's bytes); otherwise
    the JSON part is parsed as :func:`parse_infer_request` does, and the tensors that declare a
    ``binary_data_size`` take their bytes from what follows it, in order.
    """
    header, binary = oip_binary.split_body(body, header_length)
    if not header:
        return _raw_binary_request(binary, signature, limits)
    return parse_infer_request(header, signature, limits=limits, binary=oip_binary.BinaryReader(binary))


def _raw_binary_request(data: memoryview, signature: Signature, limits: DecodeLimits | None) -> InferRequest:
    # Triton's rules for a raw binary request: one input, whose shape has at most one variable
    # dimension (deduced from the byte count), and every output in binary.
    names = [spec.name for spec in signature.inputs]
    if len(names) != 1:
        raise BadRequestError(
            f"a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; this model "
            f"takes {names}: send a JSON header describing each input"
        )
    spec = signature.inputs[0]
    datatype = DATATYPES[spec.dtype]
    variable = [axis for axis, size in enumerate(spec.shape) if size == -1]
    if datatype == "BYTES" or len(variable) > 1:
        raise BadRequestError(
            f"input {spec.name!r} ({datatype}, shape {list(spec.shape)}) cannot be sent as a raw binary request: "
            "its shape cannot be deduced from the byte count; send a JSON header with its shape"
        )
    dtype = NUMPY_DTYPES[datatype]
    row = math.prod(size for size in spec.shape if size != -1) * dtype.itemsize
    if row == 0 or len(data) % row:
        raise BadRequestError(
            f"a raw binary request for input {spec.name!r} ({datatype}, shape {list(spec.shape)}) must hold a "
            f"multiple of {row} bytes; got {len(data)}"
        )
    shape = [len(data) // row if size == -1 else size for size in spec.shape]
    array = oip_binary.decode_binary_tensor(spec.name, datatype, dtype, shape, data, limits=limits)
    return InferRequest(
        id=None,
        inputs={spec.name: array},
        outputs=None,
        binary_outputs=frozenset(out.name for out in signature.outputs),
    )


def parse_infer_request(
    body: bytes,
    signature: Signature,
    *,
    limits: DecodeLimits | None = None,
    binary: oip_binary.BinaryReader | None = None,
) -> InferRequest:
    """Decode and check a V2 inference request body against the model's signature.

    ``binary`` holds the bytes after the JSON when the request uses the binary tensor data
    extension (see :func:`parse_binary_request`). Raises :class:`BadRequestError` naming the field
    or input that is wrong and what was expected, and with ``limits`` a 413 for tensors that would
    decode beyond them. Shapes are checked against the signature later, by ``ModelService.predict``.
    """
    # Not check_structure: a tensor's "data" may be nested in any way (flat, as its shape, deeper), so
    # its arrays say nothing about its rows; and inputs sent as binary data take no JSON bytes at all.
    # But every list of data holds a value: a body of empty lists is refused before it is parsed.
    check_empty_lists(body, "empty lists ([]); a tensor's data holds its values in every list, flat or nested")
    try:
        raw = json_blocks.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    try:
        return _infer_request(raw, signature, limits=limits, binary=binary, body=body)
    finally:
        # Converted or refused, the tensors' numbers are garbage now: freed a block at a time.
        tensors = raw.get("inputs") if isinstance(raw, dict) else None
        for tensor in tensors if isinstance(tensors, list) else ():
            if isinstance(tensor, dict):
                json_blocks.release(tensor.get("data"))


def _infer_request(
    raw: Any, signature: Signature, *, limits: DecodeLimits | None, binary: oip_binary.BinaryReader | None, body: bytes
) -> InferRequest:
    if not isinstance(raw, dict):
        raise BadRequestError('the body must be a JSON object {"inputs": [...]} (Open Inference Protocol)')
    request_id = raw.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError(f"'id' must be a string, got {type(request_id).__name__}")
    specs = {spec.name: spec for spec in signature.inputs}
    expected = list(specs)
    tensors = raw.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadRequestError(f"'inputs' must be a non-empty list of tensors; this model takes {expected}")
    # Strings inside numeric 'data' would make NumPy widen every element to the longest one; walking
    # every tensor for them costs as much as decoding, so only when the body has strings beyond the
    # names, datatypes and other fields outside 'data'.
    outside = count_strings({key: value for key, value in raw.items() if key != "inputs"}) + sum(
        count_strings({key: value for key, value in tensor.items() if key != "data"})
        for tensor in tensors
        if isinstance(tensor, dict)
    )
    strings_in_data = count_string_values(body) > outside
    # Booleans by their text: NumPy reads [true, 0.5] as [1.0, 0.5], so numeric data holding one is walked.
    booleans = may_hold_booleans(body)
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict):
            raise BadRequestError(f"inputs[{index}] must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        spec = specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise BadRequestError(f"inputs[{index}] has name {shown(name)}; this model's inputs are {expected}")
        if name in inputs:
            raise BadRequestError(f"input {name!r} is given more than once")
        parameters = tensor.get("parameters", {})
        if not isinstance(parameters, dict):
            raise BadRequestError(f"input {name!r} has 'parameters' that are not an object")
        in_binary = "binary_data_size" in parameters
        for field_name in ("shape", "datatype") if in_binary else ("shape", "datatype", "data"):
            if field_name not in tensor:
                raise BadRequestError(f"input {name!r} has no {field_name!r}")
        want = DATATYPES[spec.dtype]
        if tensor["datatype"] != want:
            raise BadRequestError(
                f"input {name!r} has datatype {shown(tensor['datatype'])}; this model expects {want} for it"
            )
        if not in_binary:
            inputs[spec.name] = decode_tensor(
                spec.name,
                tensor["datatype"],
                tensor["shape"],
                tensor["data"],
                strings=strings_in_data,
                booleans=booleans,
                limits=limits,
            )
            continue
        if binary is None:
            raise BadRequestError(
                f"input {name!r} has a binary_data_size but the request has no Inference-Header-Content-Length "
                "header giving where its JSON ends (binary tensor data extension)"
            )
        if "data" in tensor:
            raise BadRequestError(f"input {name!r} has both 'data' and a binary_data_size; send its values once")
        shape = tensor_shape(spec.name, tensor["shape"])
        data = binary.take(spec.name, parameters["binary_data_size"])
        inputs[spec.name] = oip_binary.decode_binary_tensor(
            spec.name, want, NUMPY_DTYPES[want], shape, data, limits=limits
        )
    missing = [name for name in expected if name not in inputs]
    if missing:
        raise BadRequestError(f"missing inputs {missing}; this model's inputs are {expected}")
    if binary is not None:
        binary.check_consumed()
    requested = requested_outputs(raw.get("outputs"), [spec.name for spec in signature.outputs])
    names = requested if requested is not None else [spec.name for spec in signature.outputs]
    return InferRequest(
        id=request_id,
        inputs=inputs,
        outputs=requested,
        binary_outputs=oip_binary.binary_outputs(raw.get("parameters"), raw.get("outputs"), names),
    )


def requested_outputs(requested: object, available: Sequence[str]) -> tuple[str, ...] | None:
    """The output names a request's ``outputs`` asks for, in its order (``None``: it names none)."""
    if requested is None:
        return None
    available = list(available)
    if not isinstance(requested, list):
        raise BadRequestError(f"'outputs' must be a list of {{\"name\": ...}} objects; this model has {available}")
    names: list[str] = []
    for index, item in enumerate(requested):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in available:
            raise BadRequestError(f"outputs[{index}] requests {shown(name)}; this model's outputs are {available}")
        if name not in names:
            names.append(name)
    return tuple(names)


def decode_tensor(
    name: str,
    datatype: str,
    shape: object,
    data: object,
    *,
    strings: bool = True,
    booleans: bool = True,
    limits: DecodeLimits | None = None,
) -> np.ndarray:
    """One OIP tensor's JSON ``data`` (flat or nested, row-major) as an array of ``shape`` and ``datatype``.

    The values are converted in NumPy, not element by element in Python, except for ``BYTES``
    (whose elements must each be checked to be strings) and, unless ``strings`` is false (the
    caller knows ``data`` holds none), a walk refusing strings in numeric data, and unless
    ``booleans`` is false, one refusing booleans in data that is neither BOOL nor BYTES. Raises
    :class:`BadRequestError`, and with ``limits`` a 413 before allocating beyond them.
    """
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequestError(
            f"input {name!r} has unknown datatype {shown(datatype)}; supported: {', '.join(NUMPY_DTYPES)}"
        )
    shape = tensor_shape(name, shape)
    if datatype == "BYTES":
        array = _bytes_array(name, data, limits)
    else:
        if strings and _holds(data, str):
            raise _not_numbers(name, datatype)
        if booleans and datatype != "BOOL" and _holds(data, bool):
            raise _not_numbers(name, datatype)
        array = _numeric_array(name, datatype, dtype, data)
    count = math.prod(shape)
    if array.size != count:
        raise BadRequestError(
            f"input {name!r} has {array.size} values in 'data' but its shape {shape} needs {count} "
            "(data is the tensor's values in row-major order, flat or nested)"
        )
    return array.reshape(shape)


def tensor_shape(name: str, shape: object) -> list[int]:
    """A tensor's ``shape`` field as sizes, or a 400 naming what is wrong with it."""
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(dim) is int and dim >= 0 for dim in shape)  # type(...) is int: refuses true/false
    ):
        raise BadRequestError(f"input {name!r} has shape {shown(shape)}; expected a non-empty list of sizes >= 0")
    if len(shape) > MAX_RANK:
        # NumPy refuses to build it (ValueError past 64 axes), which reached the client as a 500.
        raise BadRequestError(f"input {name!r} has a shape of {len(shape)} axes; at most {MAX_RANK} are allowed")
    # A 0 makes the element count 0, so the count checks against the data pass, but NumPy still
    # multiplies the other sizes to build the shape and refuses (ValueError) when they overflow.
    if 0 in shape and math.prod(dim for dim in shape if dim) > _MAX_ELEMENTS:
        raise BadRequestError(
            f"input {name!r} has shape {shape!r}, whose sizes multiply to more than {_MAX_ELEMENTS} elements; "
            "no tensor can be that large"
        )
    return shape


def _numeric_array(name: str, datatype: str, dtype: np.dtype[Any], data: object) -> np.ndarray:
    try:
        array = json_blocks.asarray(data)
    except (ValueError, OverflowError):
        raise BadRequestError(
            f"input {name!r} has 'data' of uneven nesting; send a flat list or lists of equal length"
        ) from None
    if array.size == 0:
        return array.astype(dtype)
    if dtype.kind == "b":
        if array.dtype.kind != "b":
            raise BadRequestError(f"input {name!r} is {datatype}: its data must be JSON true/false values")
        return array
    if dtype.kind in "iu":
        return _integer_array(name, datatype, dtype, array, data)
    if array.dtype.kind not in "iuf":
        raise _not_numbers(name, datatype)
    with np.errstate(over="ignore"):
        converted = array.astype(dtype)
    # Narrowing to FP16/FP32 turns large numbers into infinity; JSON has no infinity, so that is an error.
    if dtype.itemsize < array.dtype.itemsize and not np.isfinite(converted).all():
        limit = float(np.finfo(dtype).max)
        raise BadRequestError(f"input {name!r} is {datatype}: values must lie within +-{limit:.6g}")
    return converted


def _integer_array(name: str, datatype: str, dtype: np.dtype[Any], array: np.ndarray, data: object) -> np.ndarray:
    kind = array.dtype.kind
    if kind == "f":
        if not np.array_equal(array, np.trunc(array)):
            raise BadRequestError(f"input {name!r} is {datatype}: its data must be whole numbers")
    elif kind == "O":
        # NumPy falls back to objects for integers beyond 64 bits (and for null): rare, so checked one by one.
        if not all(type(v) is int or (type(v) is float and v.is_integer()) for v in array.reshape(-1)):
            raise _not_numbers(name, datatype)
    elif kind not in "iu":
        raise _not_numbers(name, datatype)
    info = np.iinfo(dtype)
    low, high = array.min(), array.max()
    if low < info.min or high > info.max:
        raise BadRequestError(
            f"input {name!r} is {datatype}: values must lie in [{info.min}, {info.max}], got {low} to {high}"
        )
    if kind in "iu":
        return array.astype(dtype)
    # NumPy read these values as floats (exact only up to 2**53) or objects: convert the JSON values exactly.
    try:
        return np.asarray(data, dtype=dtype)
    except (OverflowError, ValueError, TypeError):
        raise BadRequestError(f"input {name!r} is {datatype}: values must lie in [{info.min}, {info.max}]") from None


def _holds(data: object, kind: type) -> bool:
    """Whether nested lists hold a ``kind`` (a loop: data may nest deeper than Python's recursion limit)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, kind):
            return True
    return False


def _not_numbers(name: str, datatype: str) -> BadRequestError:
    if datatype == "BOOL":
        return BadRequestError(f"input {name!r} is {datatype}: its data must be JSON true/false values")
    return BadRequestError(
        f"input {name!r} is {datatype}: its data must be JSON numbers (got booleans, strings, null or mixed values)"
    )


def _bytes_array(name: str, data: object, limits: DecodeLimits | None) -> np.ndarray:
    try:
        objects = np.asarray(data, dtype=object)
    except ValueError:
        raise BadRequestError(
            f"input {name!r} has 'data' of uneven nesting; send a flat list or lists of equal length"
        ) from None
    flat = objects.reshape(-1)
    if not all(isinstance(item, str) for item in flat):
        raise BadRequestError(f"input {name!r} is BYTES: its data must be JSON strings")
    if flat.size == 0:
        return np.empty(objects.shape, dtype=np.bytes_)
    encoded = [item.encode("utf-8") for item in flat]
    if any(item.endswith(b"\0") for item in encoded):
        # NumPy's fixed-width bytes drop trailing NULs: "abc\u0000" reached the model as "abc", silently.
        raise BadRequestError(
            f"input {name!r} has a BYTES element ending in a NUL byte, which this server cannot pass on"
        )
    if limits is not None:
        # A fixed-width array is as wide as its longest element: one long string among many short
        # ones would multiply the body's size; checked before NumPy allocates it.
        limits.check_size(len(encoded) * max(map(len, encoded)), f"BYTES input {name!r}")
    return np.array(encoded, dtype=np.bytes_).reshape(objects.shape)


def encode_tensor(name: str, array: np.ndarray, *, as_json: bool = True) -> dict[str, Any]:
    """One output as an OIP response tensor: flat row-major ``data`` (NumPy arrays, serialised by orjson).

    Without ``as_json`` the tensor has no ``data`` (its values travel in binary).
    """
    kind = array.dtype.kind
    datatype = "BYTES" if kind in "SUO" else DATATYPES.get(array.dtype.name, "")
    if not datatype:
        raise ModelError(f"output {name!r} has dtype {array.dtype}, which the Open Inference Protocol cannot carry")
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if as_json:
        tensor["data"] = _text_values(name, array) if datatype == "BYTES" else np.ascontiguousarray(array).reshape(-1)
    return tensor


def _text_values(name: str, array: np.ndarray) -> list[str]:
    values: list[str] = []
    for item in array.reshape(-1).tolist():
        if isinstance(item, str):
            values.append(item)
        elif isinstance(item, bytes) and _is_utf8(item):
            values.append(item.decode("utf-8"))
        else:
            raise ModelError(
                f"output {name!r} holds a {type(item).__name__} that is not UTF-8 text, "
                "which JSON cannot carry as a BYTES element"
            )
    return values


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def infer_response(
    manifest: Manifest,
    outputs: Mapping[str, np.ndarray],
    requested: tuple[str, ...] | None,
    request_id: str | None,
    binary: frozenset[str] = frozenset(),
) -> tuple[bytes, int | None]:
    """The V2 inference response body: requested outputs in request order, else all in signature order.

    Outputs named in ``binary`` carry a ``binary_data_size`` instead of ``data``, and their bytes
    follow the JSON in the same order. Returns the body and, when any output is binary, the JSON
    part's length (for the ``Inference-Header-Content-Length`` header), else ``None``.
    """
    names = requested if requested is not None else [spec.name for spec in manifest.signature.outputs]
    payload: dict[str, Any] = {"model_name": manifest.name, "model_version": manifest.version}
    if request_id is not None:
        payload["id"] = request_id
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in names:
        tensor = encode_tensor(name, outputs[name], as_json=name not in binary)
        if name in binary:
            blob = oip_binary.encode_binary_tensor(name, tensor["datatype"], outputs[name])
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        tensors.append(tensor)
    payload["outputs"] = tensors
    header = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
