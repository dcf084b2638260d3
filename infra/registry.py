"""Is an image digest in a registry? Amazon ECR and Artifact Registry, asked through their own APIs.

Promotion pins an image by digest in the target environment's own repository; this module
answers whether that digest is actually there (and with which tags) before anything is written:
ECR through ``ecr:DescribeImages`` (boto3; ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_ECR`` point it
elsewhere, as for every AWS call here), Artifact Registry through ``GetDockerImage`` (the
``google-cloud-artifact-registry`` client; a loopback ``host:port`` endpoint is a local test server,
spoken to in plain text with anonymous credentials).

Only ECR and Artifact Registry are supported: a stack's config accepts no other registry.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

from infra.config.package_settings import ImageRef
from infra.loopback import gapic_client

_ECR_RE: Final = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
_ARTIFACT_REGISTRY_RE: Final = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev$")
ARTIFACT_REGISTRY_API: Final = "artifactregistry.googleapis.com"
_REQUEST_TIMEOUT_S: Final = 30.0


class RegistryError(Exception):
    """The registry could not be asked (credentials, permissions, network, unsupported registry); one line."""


@dataclass(frozen=True)
class ImageLookup:
    """What the registry said about one digest."""

    found: bool
    tags: tuple[str, ...] = ()
    """The digest's tags; an untagged image is deleted by the repositories' cleanup rules."""


def lookup_image(image: ImageRef, *, artifact_registry_endpoint: str | None = None) -> ImageLookup:
    """Whether ``image``'s digest is in its repository; :class:`RegistryError` when that cannot be told."""
    if _ECR_RE.match(image.registry):
        return _ecr(image)
    if _ARTIFACT_REGISTRY_RE.match(image.registry):
        return _artifact_registry(image, artifact_registry_endpoint or ARTIFACT_REGISTRY_API)
    raise RegistryError(
        f"cannot check {image.registry}: only Amazon ECR (<account>.dkr.ecr.<region>.amazonaws.com) and "
        "Artifact Registry (<location>-docker.pkg.dev) are supported"
    )


# --- Amazon ECR ---------------------------------------------------------------------------------


def _ecr(image: ImageRef) -> ImageLookup:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    match = _ECR_RE.match(image.registry)
    assert match is not None
    where = f"{image.registry}/{image.repository}"
    try:
        client = boto3.client("ecr", region_name=match.group("region"))
        response = client.describe_images(
            registryId=match.group("account"),
            repositoryName=image.repository,
            imageIds=[{"imageDigest": image.digest}],
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
            return ImageLookup(found=False)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise RegistryError(
            f"cannot check {where} for {image.digest}: {code}: {message} (needs ecr:DescribeImages on the repository)"
        ) from None
    except BotoCoreError as exc:
        raise RegistryError(f"cannot check {where} for {image.digest}: {exc}") from None
    details: list[dict[str, Any]] = response.get("imageDetails", [])
    matching = [detail for detail in details if detail.get("imageDigest") == image.digest]
    if not matching:
        return ImageLookup(found=False)
    return ImageLookup(found=True, tags=tuple(sorted(matching[0].get("imageTags") or ())))


# --- Artifact Registry --------------------------------------------------------------------------


def docker_image_name(image: ImageRef) -> str:
    """The Artifact Registry resource name of ``image``.

    ``<location>-docker.pkg.dev/<project>/<repository>/<image>@sha256:…`` is
    ``projects/<project>/locations/<location>/repositories/<repository>/dockerImages/<image, URL-encoded>@sha256:…``.
    """
    match = _ARTIFACT_REGISTRY_RE.match(image.registry)
    parts = image.repository.split("/")
    if match is None or len(parts) < 3:
        raise RegistryError(
            f"{image} is not an Artifact Registry image: expected "
            "<location>-docker.pkg.dev/<project>/<repository>/<image>@sha256:<64 hex>"
        )
    project, repository, name = parts[0], parts[1], "/".join(parts[2:])
    return (
        f"projects/{project}/locations/{match.group('location')}/repositories/{repository}"
        f"/dockerImages/{urllib.parse.quote(name, safe='')}@{image.digest}"
    )


def _artifact_registry(image: ImageRef, endpoint: str) -> ImageLookup:
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import artifactregistry_v1
    from google.cloud.artifactregistry_v1.services.artifact_registry.transports.grpc import (
        ArtifactRegistryGrpcTransport,
    )

    name = docker_image_name(image)
    where = f"{image.registry}/{image.repository}"
    channel: Any = None
    try:
        client, channel = gapic_client(
            artifactregistry_v1.ArtifactRegistryClient, ArtifactRegistryGrpcTransport, endpoint
        )
        found = client.get_docker_image(name=name, timeout=_REQUEST_TIMEOUT_S)
    except exceptions.NotFound:
        return ImageLookup(found=False)
    except exceptions.PermissionDenied as exc:
        raise RegistryError(
            f"cannot check {where} for {image.digest}: permission denied ({exc.message}); "
            "needs roles/artifactregistry.reader on the repository"
        ) from None
    except (exceptions.GoogleAPIError, GoogleAuthError) as exc:
        raise RegistryError(f"cannot check {where} for {image.digest}: {exc}") from None
    finally:
        if channel is not None:
            channel.close()
    return ImageLookup(found=True, tags=tuple(sorted(found.tags)))
