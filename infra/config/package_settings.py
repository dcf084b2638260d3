"""``model-deploy:package``: the pinned package and serving image, and how an image reference is read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from infra.config.aws_limits import aws_limits
from infra.config.fields import ConfigModel, fail
from model_package.errors import InvalidStoreURIError
from model_package.manifest import _NAME_RE as _PACKAGE_NAME_RE  # one package-name rule for the whole project
from model_package.manifest import _VERSION_RE as _PACKAGE_VERSION_RE
from model_package.publish import Layout, PackageRef, parse_package_uri

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# Docker's reference grammar, with the registry made mandatory: a bare "repo@sha256:..." would
# silently mean Docker Hub, which SageMaker cannot pull from and Cloud Run pulls slowly.
_IMAGE_RE = re.compile(
    r"^(?P<registry>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?)/"
    r"(?P<repository>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z0-9_+.-]+:[0-9A-Za-z]+))?$"
)
_IMAGE_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ECR_REGISTRY_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
# IAM scopes kms:Decrypt by key ARN; an alias ARN or bare key id would leave the role's policy unscopable.


def _check_package_name(value: str) -> str:
    if not _PACKAGE_NAME_RE.match(value):
        fail("is not a package name: use 1-63 of a-z 0-9 . _ -, starting with a letter or digit (as in manifest.json)")
    return value


def _check_package_version(value: str) -> str:
    if not _PACKAGE_VERSION_RE.match(value):
        fail("is not a package version: use 1-64 of letters, digits, '.', '+', '_', '-' (as in manifest.json)")
    return value


def _check_digest(value: str) -> str:
    if not _DIGEST_RE.match(value):
        fail("is not a package digest: expected 64 lowercase hex characters (the sha256 `model-package pack` printed)")
    return value


def _check_package_uri(value: str) -> str:
    try:
        parse_package_uri(value)
    except InvalidStoreURIError as exc:
        fail(f"is not a package URI: {exc}")
    if value.startswith("file:") or "://" not in value:
        fail("is not a package URI in a cloud store: use s3://… or gs://…, as printed by `model-package push`")
    return value


def _check_image(value: str) -> str:
    match = _IMAGE_RE.match(value)
    if match is None or ("." not in match.group("registry") and ":" not in match.group("registry")):
        fail("is not a container image reference: expected <registry>/<repository>@sha256:<64 hex>")
    tag, digest = match.group("tag"), match.group("digest")
    if digest is None:
        fail(
            f"pins the image by tag{f' {tag!r}' if tag else ''}: use <registry>/<repository>@sha256:<64 hex>; "
            "a tag can be moved to other bytes, a pinned digest cannot, and the digest is what promotion moves"
        )
    if not _IMAGE_DIGEST_RE.match(digest):
        fail("has a malformed digest: expected @sha256: followed by 64 lowercase hex characters")
    if tag is not None:
        fail(f"names both tag {tag!r} and a digest: drop the tag, the digest alone is what is deployed")
    problem = aws_limits().container_image.problem(value)
    if problem:
        fail(f"is not a valid SageMaker container image: it {problem}")
    return value


class PackageConfig(ConfigModel):
    """``model-deploy:package``: the one package this stack serves, pinned by digest."""

    name: Annotated[str, AfterValidator(_check_package_name)] = Field(description="package name, as in manifest.json")
    version: Annotated[str, AfterValidator(_check_package_version)] = Field(
        description="package version, as in manifest.json (informational: the digest identifies content)"
    )
    uri: Annotated[str, AfterValidator(_check_package_uri)] = Field(
        description="<store>/<name>/<digest>/model.tar.gz, or the uncompressed prefix <store>/<name>/<digest>/"
    )
    digest: Annotated[str, AfterValidator(_check_digest)] = Field(
        description="sha256 of model.tar.gz (64 lowercase hex)"
    )
    image: Annotated[str, AfterValidator(_check_image)] = Field(
        description="serving image pinned by digest: <registry>/<repository>@sha256:<64 hex>"
    )

    @property
    def ref(self) -> PackageRef:
        """The parsed URI: store location of ``<name>/<digest>``, name and digest."""
        return parse_package_uri(self.uri)

    @property
    def layout(self) -> Layout:
        """``archive`` (``…/model.tar.gz``) or ``uncompressed`` (the package's files under the prefix)."""
        return "archive" if self.ref.layout == "archive" else "uncompressed"

    @property
    def prefix_uri(self) -> str:
        """``<store>/<name>/<digest>/``: everything a deployment may read lives under it."""
        return self.ref.uri

    @property
    def image_ref(self) -> ImageRef:
        """The image split into registry, repository and digest."""
        return parse_image(self.image)


@dataclass(frozen=True)
class ImageRef:
    """A container image pinned by digest."""

    registry: str
    repository: str
    digest: str
    """``sha256:<64 hex>``."""

    @property
    def ecr_account(self) -> str | None:
        """The AWS account of an ECR registry, else ``None``."""
        match = _ECR_REGISTRY_RE.match(self.registry)
        return match.group("account") if match else None

    @property
    def ecr_region(self) -> str | None:
        """The region of an ECR registry, else ``None``."""
        match = _ECR_REGISTRY_RE.match(self.registry)
        return match.group("region") if match else None

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def parse_image(image: str) -> ImageRef:
    """Split a validated ``<registry>/<repository>@sha256:<hex>`` reference."""
    match = _IMAGE_RE.match(image)
    if match is None or match.group("digest") is None:
        raise ValueError(f"{image!r} is not an image pinned by digest")
    return ImageRef(match.group("registry"), match.group("repository"), match.group("digest"))
