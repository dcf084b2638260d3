"""KServe's protocols: the Open Inference Protocol (V2) REST API and the V1 ``:predict`` API.

Open Inference Protocol (V2), JSON over HTTP:

- ``GET /v2/health/live``: 200 while the process runs; ``GET /v2/health/ready``: 200 once the model
  is loaded and warmed up, 503 before that and while draining.
- ``GET /v2``: server metadata; ``GET /v2/models/{name}[/versions/{version}]``: model metadata
  (the manifest's signature as OIP tensors, ``-1`` for dynamic dimensions);
  ``GET /v2/models/{name}[/versions/{version}]/ready``.
- ``POST /v2/models/{name}[/versions/{version}]/infer``: named, typed tensors in and out. Input
  ``data`` may be flat (row-major) or nested; it is reshaped to the input's ``shape``. The
  ``datatype`` must be the one the signature declares (``FP32`` for ``float32``, see
  :data:`DATATYPES`), so a client never has its values silently converted; the only leniency is
  that integral JSON numbers such as ``1.0`` are accepted for integer tensors. ``BYTES`` tensors
  are JSON strings, passed to the model as UTF-8 in fixed-width NumPy ``bytes_`` arrays (never
  ``object`` arrays), which cannot end in NUL bytes. Only the JSON encoding is supported: the
  binary tensor data extension is refused with 415. Without a request ``id`` the response
  carries the server's request id (the ``X-Request-ID`` header), so every answer can be traced.

KServe V1: ``GET /v1/models`` and ``GET /v1/models/{name}`` (``{"name", "ready"}``) and
``POST /v1/models/{name}:predict`` with ``{"instances": [...]}`` in and ``{"predictions": [...]}``
out, through the same JSON codec as Vertex AI's route (and the package's own hooks when it ships
``code/inference.py``).

The V2 ``infer`` route hands tensors straight to the model: OIP payloads are already tensors, so a
package's ``input_fn``/``predict_fn``/``output_fn`` hooks do not run there (the V1, Vertex and
SageMaker routes run them). A package whose ``model_fn`` returns something other than a standard
loaded model has no tensor interface the server can call, so ``infer`` answers 501 for it and
points to the routes that do serve it. Every prediction goes through ``ModelService.predict``, so
validation, batching, deadlines and the NaN policy are the same as on every other route.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.codecs import DecodeLimits, check_json_exchange, decode_request, encode_response
from inference.codecs.arrays import count_string_values, count_strings
from inference.config import ServerConfig
from inference.errors import ApiError, BadRequestError, ModelError, NotFoundError, UnsupportedMediaTypeError
from inference.protocols.sagemaker import invoke_user_code
from inference.service import ModelService
from model_package._version import __version__
from model_package.manifest import Manifest, Signature, TensorSpec

JSON = "application/json"
SERVER_NAME = "model-deploy"

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

#: Manifest format -> OIP "platform" (``<framework>_<format>``, the names Triton and the spec use where they exist).
PLATFORMS: dict[str, str] = {
    "torch_export": "pytorch_exportedprogram",
    "torchscript": "pytorch_torchscript",
    "onnx": "onnxruntime_onnx",
    "tf_savedmodel": "tensorflow_savedmodel",
    "keras": "tensorflow_keras",
}

_BINARY_HEADER = "inference-header-content-length"
_LIVE = b'{"live":true}'
_READY = b'{"ready":true}'
_NOT_READY = b'{"ready":false}'


class NotImplementedForModelError(ApiError):
    """The route exists but cannot serve this package (user code without a standard loaded model)."""

    status = 501


@dataclass(frozen=True)
class InferRequest:
    """A decoded V2 inference request."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] | None
    """Requested output names in request order, or ``None`` for every output."""


def routes(service: ModelService, config: ServerConfig) -> list[BaseRoute]:
    """The Open Inference Protocol (V2) and KServe V1 routes bound to ``service``."""
    manifest = service.manifest
    signature = service.signature
    server_metadata = orjson.dumps({"name": SERVER_NAME, "version": __version__, "extensions": []})
    model_metadata = orjson.dumps(model_metadata_payload(manifest))

    def check_model(request: Request) -> None:
        name = request.path_params["name"]
        if name != manifest.name:
            raise NotFoundError(f"unknown model {name!r}; this server serves the model {manifest.name!r}")
        version = request.path_params.get("version")
        if version is not None and version != manifest.version:
            raise NotFoundError(
                f"model {name!r} has no version {version!r}; this server serves version {manifest.version!r}"
            )

    async def live(_: Request) -> Response:
        return Response(_LIVE, media_type=JSON)

    async def ready(_: Request) -> Response:
        healthy = service.healthy
        return Response(_READY if healthy else _NOT_READY, 200 if healthy else 503, media_type=JSON)

    async def metadata(_: Request) -> Response:
        return Response(server_metadata, media_type=JSON)

    async def model_metadata_endpoint(request: Request) -> Response:
        check_model(request)
        return Response(model_metadata, media_type=JSON)

    async def model_ready(request: Request) -> Response:
        check_model(request)
        healthy = service.healthy
        body = orjson.dumps({"name": manifest.name, "ready": healthy})
        return Response(body, 200 if healthy else 503, media_type=JSON)

    async def infer(request: Request) -> Response:
        check_model(request)
        if _BINARY_HEADER in request.headers:
            raise UnsupportedMediaTypeError(
                "the binary tensor data extension (Inference-Header-Content-Length) is not supported; "
                "send every tensor's values as JSON in its 'data' field"
            )
        if service.model is None:
            raise NotImplementedForModelError(
                f"model {manifest.name!r} runs through its package's own model_fn, which has no tensor "
                "interface for the Open Inference Protocol; use POST /v1/models/"
                f"{manifest.name}:predict, /invocations or {config.predict_route} instead"
            )
        check_json_exchange(request.headers.get("content-type"), request.headers.get("accept"))
        body = await request.body()
        parsed = await service.offload.run(
            len(body), lambda: parse_infer_request(body, signature, limits=service.limits)
        )
        outputs = await service.predict(parsed.inputs)
        request_id = parsed.id if parsed.id is not None else request.scope.get("state", {}).get("request_id")
        body = infer_response(manifest, outputs, parsed.outputs, request_id)
        return Response(body, media_type=JSON)

    async def v1_models(_: Request) -> Response:
        return Response(orjson.dumps({"models": [manifest.name]}), media_type=JSON)

    async def v1_model(request: Request) -> Response:
        if request.path_params["name"].endswith(":predict"):
            # `GET /v1/models/m:predict` matches this route's `{name}`; it is the predict route, wrong method.
            raise HTTPException(405, "GET is not allowed on :predict; use POST", headers={"Allow": "POST"})
        check_model(request)
        healthy = service.healthy
        body = orjson.dumps({"name": manifest.name, "ready": healthy})
        return Response(body, 200 if healthy else 503, media_type=JSON)

    async def v1_predict(request: Request) -> Response:
        check_model(request)
        body = await request.body()
        if service.user_code is not None:
            return await invoke_user_code(service, request, body)
        check_json_exchange(request.headers.get("content-type"), request.headers.get("accept"))
        if not body.lstrip().startswith(b"{"):
            raise BadRequestError('the body must be a JSON object {"instances": [...]}')
        inputs = await service.offload.run(
            len(body),
            lambda: decode_request(
                body, JSON, signature, allow_non_finite=config.allow_non_finite, limits=service.limits
            ),
        )
        outputs = await service.predict(inputs)
        payload, media_type = encode_response(outputs, JSON, signature, default=JSON)
        return Response(payload, media_type=media_type)

    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", metadata, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata_endpoint, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", model_metadata_endpoint, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v1/models", v1_models, methods=["GET"]),
        # The name converter stops at "/", and the regex backtracks so "mlp:predict" gives name "mlp".
        Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
        Route("/v1/models/{name}", v1_model, methods=["GET"]),
    ]


def model_metadata_payload(manifest: Manifest) -> dict[str, Any]:
    """The V2 model metadata object for a package."""
    return {
        "name": manifest.name,
        "versions": [manifest.version],
        "platform": PLATFORMS.get(manifest.format, manifest.format),
        "inputs": [_tensor_metadata(spec) for spec in manifest.signature.inputs],
        "outputs": [_tensor_metadata(spec) for spec in manifest.signature.outputs],
    }


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": DATATYPES[spec.dtype], "shape": list(spec.shape)}


def parse_infer_request(body: bytes, signature: Signature, *, limits: DecodeLimits | None = None) -> InferRequest:
    """Decode and check a V2 inference request body against the model's signature.

    Raises :class:`BadRequestError` naming the field or input that is wrong and what was expected,
    and with ``limits`` a 413 for tensors that would decode beyond them.
    Shapes are checked against the signature later, by ``ModelService.predict``.
    """
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
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
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict):
            raise BadRequestError(f"inputs[{index}] must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        spec = specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise BadRequestError(f"inputs[{index}] has name {name!r}; this model's inputs are {expected}")
        if name in inputs:
            raise BadRequestError(f"input {name!r} is given more than once")
        for field_name in ("shape", "datatype", "data"):
            if field_name not in tensor:
                raise BadRequestError(f"input {name!r} has no {field_name!r}")
        parameters = tensor.get("parameters")
        if isinstance(parameters, dict) and "binary_data_size" in parameters:
            raise BadRequestError(
                f"input {name!r} uses the binary tensor data extension, which this server does not support; "
                "send its values as JSON in 'data'"
            )
        want = DATATYPES[spec.dtype]
        if tensor["datatype"] != want:
            raise BadRequestError(
                f"input {name!r} has datatype {tensor['datatype']!r}; this model expects {want} for it"
            )
        inputs[spec.name] = decode_tensor(
            spec.name, tensor["datatype"], tensor["shape"], tensor["data"], strings=strings_in_data, limits=limits
        )
    missing = [name for name in expected if name not in inputs]
    if missing:
        raise BadRequestError(f"missing inputs {missing}; this model's inputs are {expected}")
    return InferRequest(id=request_id, inputs=inputs, outputs=_requested_outputs(raw.get("outputs"), signature))


def _requested_outputs(requested: object, signature: Signature) -> tuple[str, ...] | None:
    if requested is None:
        return None
    available = [spec.name for spec in signature.outputs]
    if not isinstance(requested, list):
        raise BadRequestError(f"'outputs' must be a list of {{\"name\": ...}} objects; this model has {available}")
    names: list[str] = []
    for index, item in enumerate(requested):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in available:
            raise BadRequestError(f"outputs[{index}] requests {name!r}; this model's outputs are {available}")
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
    limits: DecodeLimits | None = None,
) -> np.ndarray:
    """One OIP tensor's JSON ``data`` (flat or nested, row-major) as an array of ``shape`` and ``datatype``.

    The values are converted in NumPy, not element by element in Python, except for ``BYTES``
    (whose elements must each be checked to be strings) and, unless ``strings`` is false (the
    caller knows ``data`` holds none), a walk refusing strings in numeric data. Raises
    :class:`BadRequestError`, and with ``limits`` a 413 before allocating beyond them.
    """
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequestError(f"input {name!r} has unknown datatype {datatype!r}; supported: {', '.join(NUMPY_DTYPES)}")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(dim) is int and dim >= 0 for dim in shape)  # type(...) is int: refuses true/false
    ):
        raise BadRequestError(f"input {name!r} has shape {shape!r}; expected a non-empty list of sizes >= 0")
    if datatype == "BYTES":
        array = _bytes_array(name, data, limits)
    else:
        if strings and _holds_string(data):
            raise _not_numbers(name, datatype)
        array = _numeric_array(name, datatype, dtype, data)
    count = math.prod(shape)
    if array.size != count:
        raise BadRequestError(
            f"input {name!r} has {array.size} values in 'data' but its shape {shape} needs {count} "
            "(data is the tensor's values in row-major order, flat or nested)"
        )
    return array.reshape(shape)


def _numeric_array(name: str, datatype: str, dtype: np.dtype[Any], data: object) -> np.ndarray:
    try:
        array = np.asarray(data)
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


def _holds_string(data: object) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
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
    if limits is not None:
        # A fixed-width array is as wide as its longest element: one long string among many short
        # ones would multiply the body's size; checked before NumPy allocates it.
        limits.check_size(len(encoded) * max(map(len, encoded)), f"BYTES input {name!r}")
    return np.array(encoded, dtype=np.bytes_).reshape(objects.shape)


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """One output as an OIP response tensor: flat row-major ``data`` (NumPy arrays, serialised by orjson)."""
    kind = array.dtype.kind
    if kind in "SUO":
        data: Any = _text_values(name, array)
        datatype = "BYTES"
    else:
        datatype = DATATYPES.get(array.dtype.name, "")
        if not datatype:
            raise ModelError(f"output {name!r} has dtype {array.dtype}, which the Open Inference Protocol cannot carry")
        data = np.ascontiguousarray(array).reshape(-1)
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


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
) -> bytes:
    """The V2 inference response body: requested outputs in request order, else all in signature order."""
    names = requested if requested is not None else [spec.name for spec in manifest.signature.outputs]
    payload: dict[str, Any] = {"model_name": manifest.name, "model_version": manifest.version}
    if request_id is not None:
        payload["id"] = request_id
    payload["outputs"] = [encode_tensor(name, outputs[name]) for name in names]
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
