"""A small, real gRPC server that answers Artifact Registry's ``GetDockerImage``.

Artifact Registry has no emulator, so this implements the one RPC promotion calls, on the wire,
with the request/response messages ``google-cloud-artifact-registry`` ships: the real GAPIC client
talks to it over a real loopback channel. Images live in memory, keyed by resource name
(``projects/<p>/locations/<l>/repositories/<r>/dockerImages/<image>@sha256:<hex>``); every request
is recorded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import artifactregistry_v1

from tests.infra.grpc_loopback import serve_on_loopback

SERVICE = "google.devtools.artifactregistry.v1.ArtifactRegistry"


@dataclass
class FakeArtifactRegistry:
    """In-memory Docker images behind a loopback gRPC server (start with :meth:`start`)."""

    images: dict[str, artifactregistry_v1.DockerImage] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    """The resource name of every ``GetDockerImage`` request, in arrival order."""
    denied: bool = False
    """Answer every request with PERMISSION_DENIED (a caller without ``artifactregistry.reader``)."""
    address: str = ""
    _server: grpc.Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeArtifactRegistry:
        """Serve on ``127.0.0.1:<free port>``; :attr:`address` is where."""
        handler = grpc.unary_unary_rpc_method_handler(
            self._get_docker_image,
            request_deserializer=artifactregistry_v1.GetDockerImageRequest.deserialize,
            response_serializer=artifactregistry_v1.DockerImage.serialize,
        )
        self._server, self.address = serve_on_loopback(
            [grpc.method_handlers_generic_handler(SERVICE, {"GetDockerImage": handler})]
        )
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop(grace=None)

    def add_image(self, name: str, *tags: str) -> None:
        """Store an image under its resource name, with ``tags``."""
        with self._lock:
            self.images[name] = artifactregistry_v1.DockerImage(name=name, tags=list(tags))

    def _get_docker_image(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self.requested.append(request.name)
            if self.denied:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied on resource {request.name}")
            image = self.images.get(request.name)
        if image is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Requested entity was not found: {request.name}")
        return image
