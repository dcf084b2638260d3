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
  ``object`` arrays), which cannot end in NUL bytes. Tensors may also travel as raw bytes after
  the JSON, in both directions: the binary tensor data extension as Triton defines it (its
  ``docs/protocol/extension_binary_data.md``; codec in :mod:`inference.codecs.oip_binary`), which is
  what Triton's own clients send by default. A response with any binary output is
  ``application/octet-stream`` with ``Inference-Header-Content-Length``; the response type is
  settled (406 if ``Accept`` excludes it) before the model runs. Without a request ``id`` the
  response carries the server's request id (the ``X-Request-ID`` header), so every answer can be traced.

KServe V1: ``GET /v1/models`` and ``GET /v1/models/{name}`` (``{"name", "ready"}``) and
``POST /v1/models/{name}:predict`` with ``{"instances": [...]}`` in and ``{"predictions": [...]}``
out, through the same JSON codec as Vertex AI's route (and the package's own hooks when it ships
``code/inference.py``).

The V2 ``infer`` route serves packages with user code through their prediction hook: OIP payloads
are tensors already, so the codec decodes them (validated against the signature like any request),
``predict_fn`` or ``predict_batch_fn`` gets the named arrays (what the default ``input_fn`` would
give it), and its prediction, which must be the signature's outputs as arrays, is encoded as output
tensors; ``input_fn``/``output_fn`` (body <-> data) do not run, and ``transform_fn`` (a whole body)
cannot serve it (501). Without user code every prediction goes through ``ModelService.predict``, so
validation, batching, deadlines and the NaN policy are the same as on every other route.
The tensor codec (request bodies to arrays, outputs to response bodies) is
:mod:`inference.codecs.oip_json`; this module routes, binds the codec to a request
(:class:`OipExchange`) and hands it to the data plane (:mod:`inference.dataplane`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.codecs import check_json_exchange, negotiate, oip_binary, parse_media_type
from inference.codecs.media_types import accept_header
from inference.codecs.oip_json import (
    DATATYPES,
    InferRequest,
    infer_response,
    parse_binary_request,
    parse_infer_request,
)
from inference.config import ServerConfig
from inference.dataplane import Answer, DataPlane, InferenceRequest, Tensors
from inference.errors import NotFoundError, UnsupportedMediaTypeError, shown
from inference.protocols.vertex import InstancesExchange
from inference.response_limits import encode_within
from model_package._version import __version__
from model_package.manifest import Manifest, TensorSpec

if TYPE_CHECKING:
    from inference.pipeline.oip import RawRequest
    from inference.service import ModelService
    from model_package.pipeline.runner import RawItem

JSON = "application/json"
SERVER_NAME = "model-deploy"

#: Manifest format -> OIP "platform" (``<framework>_<format>``, the names Triton and the spec use where they exist).
PLATFORMS: dict[str, str] = {
    "torch_export": "pytorch_exportedprogram",
    "torchscript": "pytorch_torchscript",
    "onnx": "onnxruntime_onnx",
    "tf_savedmodel": "tensorflow_savedmodel",
    "keras": "tensorflow_keras",
}

# What a body with binary tensors may be labelled: Triton's examples say octet-stream, its Python
# client sends no Content-Type, and some clients keep saying JSON for the JSON part.
_BINARY_REQUEST_TYPES = frozenset({"", oip_binary.BINARY_MEDIA_TYPE, JSON})
_LIVE = b'{"live":true}'
_READY = b'{"ready":true}'
_NOT_READY = b'{"ready":false}'


@dataclass(slots=True)
class OipExchange:
    """An Open Inference Protocol infer request: JSON tensors, or JSON followed by binary tensor data."""

    manifest: Manifest
    content_type: str | None
    accept: str | None
    header_length: str | None
    """``Inference-Header-Content-Length``: present when binary tensor data follows the JSON."""
    request_id: str | None
    """The server's request id, answered when the request names no ``id`` of its own."""
    parsed: InferRequest | None = field(default=None)
    raw: RawRequest | None = None
    """A request of raw items for the package's pipeline (``pipeline_items``)."""
    tensors_for_hooks: ClassVar[bool] = True

    def check(self, body: bytes, service: ModelService) -> None:
        """JSON, or a body labelled for binary tensors (415)."""
        if self.header_length is None:
            check_json_exchange(self.content_type, None)
        else:
            _check_binary_content_type(self.content_type)

    def pipeline_items(self, body: bytes, kind: str, *, id_depth: int) -> list[RawItem] | None:
        """Images or texts as one BYTES tensor (``inference.pipeline.oip``); ``None`` for the model's own tensors."""
        from inference.pipeline.oip import ANSWER_TENSORS, raw_oip_items

        assert self.manifest.pipeline is not None
        answers = ANSWER_TENSORS[self.manifest.pipeline.output.kind]
        raw = raw_oip_items(body, kind, self.header_length, answers=answers)
        if raw is None:
            return None
        media_type = oip_binary.BINARY_MEDIA_TYPE if raw.binary else JSON
        negotiate(self.accept, (media_type,), media_type)  # refused with 406 before any work
        self.raw = raw
        return raw.items

    def pipeline_answer(self, answers: list[dict[str, Any]]) -> Answer:
        """The answers as output tensors, one row per item, those asked for in binary after the JSON."""
        from inference.pipeline.oip import answer_arrays

        raw = self.raw
        assert raw is not None, "pipeline_items() runs before pipeline_answer()"
        request_id = raw.id if raw.id is not None else self.request_id
        payload, json_length = infer_response(
            self.manifest, answer_arrays(answers), raw.outputs, request_id, raw.binary
        )
        if json_length is None:
            return Answer(payload, JSON)
        return Answer(payload, oip_binary.BINARY_MEDIA_TYPE, {oip_binary.HEADER: str(json_length)})

    def decode(self, body: bytes, service: ModelService) -> Tensors:
        """The input tensors; the response type follows from the request and is settled (406) here."""
        if self.header_length is None:
            parsed = parse_infer_request(body, service.signature, limits=service.limits)
        else:
            parsed = parse_binary_request(body, self.header_length, service.signature, limits=service.limits)
        media_type = oip_binary.BINARY_MEDIA_TYPE if parsed.binary_outputs else JSON
        negotiate(self.accept, (media_type,), media_type)
        self.parsed = parsed
        return parsed.inputs

    def encode(self, outputs: Mapping[str, np.ndarray], service: ModelService) -> Answer:
        """Output tensors, the binary ones after the JSON, within the response limit."""
        parsed = self.parsed
        assert parsed is not None, "decode() runs before encode()"
        request_id = parsed.id if parsed.id is not None else self.request_id
        payload, json_length = encode_within(
            service.response_limit,
            outputs,
            lambda part: infer_response(self.manifest, part, parsed.outputs, request_id, parsed.binary_outputs),
            lambda encoded: len(encoded[0]),
        )
        if json_length is None:
            return Answer(payload, JSON)
        return Answer(payload, oip_binary.BINARY_MEDIA_TYPE, {oip_binary.HEADER: str(json_length)})


def routes(plane: DataPlane, config: ServerConfig) -> list[BaseRoute]:
    """The Open Inference Protocol (V2) and KServe V1 routes over ``plane``."""
    service = plane.service
    manifest = service.manifest
    server_metadata = orjson.dumps({"name": SERVER_NAME, "version": __version__, "extensions": [oip_binary.EXTENSION]})
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
        body = await request.body()
        headers = request.headers
        exchange = OipExchange(
            manifest,
            headers.get("content-type"),
            accept_header(headers),
            headers.get(oip_binary.HEADER),
            request.scope.get("state", {}).get("request_id"),
        )
        answer = await plane.infer(InferenceRequest(body, headers, exchange))
        return Response(answer.body, headers=answer.headers, media_type=answer.media_type)

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
        headers = request.headers
        exchange = InstancesExchange(
            headers.get("content-type"), accept_header(headers), config.allow_non_finite, shape='{"instances": [...]}'
        )
        answer = await plane.infer(InferenceRequest(body, headers, exchange))
        return Response(answer.body, media_type=answer.media_type, headers=answer.headers)

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


def _check_binary_content_type(content_type: str | None) -> None:
    media_type, _ = parse_media_type(content_type)
    if media_type not in _BINARY_REQUEST_TYPES:
        raise UnsupportedMediaTypeError(
            f"cannot decode Content-Type {shown(media_type)} with Inference-Header-Content-Length; a body with binary "
            f"tensors is {oip_binary.BINARY_MEDIA_TYPE} (or has no Content-Type)"
        )


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
