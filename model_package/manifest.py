"""The package manifest: a versioned, validated description of a package.

``manifest.json`` sits at the package root and is the contract between the
packager, the serving container and the infrastructure code. Its schema is
documented in ``docs/manifest.md``. Readers accept any ``1.x`` manifest
(fields added in later minor versions are ignored) and reject other major
versions with a clear error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model_package.errors import ManifestError, UnsupportedSchemaVersionError
from model_package.pipeline.schema import IdsInput, ImageInput, Pipeline, TextInput, TopKOutput

MANIFEST_FILENAME = "manifest.json"
SCHEMA_MAJOR = 1
SCHEMA_MINOR = 2
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"

#: The formats a package can hold; each has exactly one module in ``model_package.formats``.
ModelFormatName = Literal["torch_export", "torchscript", "onnx", "tf_savedmodel", "keras"]
MODEL_FORMATS: tuple[str, ...] = ("torch_export", "torchscript", "onnx", "tf_savedmodel", "keras")

#: NumPy dtype names a signature may use (the Open Inference Protocol's numeric types + bool + bytes).
DTYPES: tuple[str, ...] = (
    "bool",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
    "bytes",
)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Package names end up in store keys, image labels and Pulumi config: keep them boring.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")

Sha256 = Annotated[str, Field(pattern=_SHA256_RE.pattern)]


class _Model(BaseModel):
    # Unknown fields are ignored so a 1.0 reader can read a 1.1 manifest.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TensorSpec(_Model):
    """One named input or output: dtype and shape, ``-1`` marking a dynamic dimension."""

    name: str = Field(min_length=1)
    dtype: str
    shape: tuple[int, ...]
    valid_range: tuple[int, int] | None = None
    """Schema 1.1, integer inputs: the inclusive ``[low, high]`` every value must lie in, such as the rows
    of the embedding table an id indexes; requests outside it are refused before the model runs."""

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}; allowed: {', '.join(DTYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _valid_dims(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(dim < -1 for dim in value):
            raise ValueError(f"shape {list(value)} has a dimension below -1; use -1 for dynamic")
        return value

    @field_validator("valid_range")
    @classmethod
    def _ordered_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"valid_range {list(value)} must be [low, high] with low <= high")
        return value


class Signature(_Model):
    """The model's inputs and outputs, in call order."""

    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Signature:
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [spec.name for spec in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {names}")
        return self


class Framework(_Model):
    """The framework that produced the model and the version it was saved with."""

    name: Literal["torch", "tensorflow", "onnx"]
    version: str


class FileEntry(_Model):
    """One file of the package (path relative to the root, POSIX separators)."""

    path: str
    sha256: Sha256
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        check_relative_path(value)
        return value


class Example(_Model):
    """The bundled example: inputs, the outputs they must produce, and the tolerance."""

    inputs: str = "example/inputs.npz"
    outputs: str = "example/outputs.npz"
    rtol: float = Field(default=1e-4, ge=0)
    atol: float = Field(default=1e-5, ge=0)


class UserCode(_Model):
    """SageMaker inference-toolkit style user code shipped in the package."""

    entry_point: str = "code/inference.py"
    requirements: str | None = None


class Creation(_Model):
    """Who made the package, when and from what."""

    created_at: str
    tool: str
    python: str
    source: str | None = None


class Manifest(_Model):
    """The contents of ``manifest.json``."""

    schema_version: str
    name: str
    version: str
    format: ModelFormatName
    framework: Framework
    model_path: str
    signature: Signature
    example: Example
    code: UserCode | None = None
    files: tuple[FileEntry, ...]
    created: Creation
    metadata: dict[str, str] = Field(default_factory=dict)
    serving_signature: str | None = None
    """Schema 1.1: the SavedModel signature key served, when not ``serving_default`` (tf_savedmodel only)."""
    pipeline: Pipeline | None = None
    """Schema 1.2: pre- and post-processing the server runs around the model (``docs/manifest.md``)."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"package name {value!r} must be 1-63 characters of lowercase letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("version")
    @classmethod
    def _valid_version(cls, value: str) -> str:
        if not _VERSION_RE.match(value):
            raise ValueError(
                f"package version {value!r} must be 1-64 characters of letters, digits, '.', '+', '_', '-'"
            )
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> Manifest:
        paths = [entry.path for entry in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("files lists a path more than once")
        if MANIFEST_FILENAME in paths:
            raise ValueError(f"files must not list {MANIFEST_FILENAME} itself")
        listed = set(paths)
        referenced = [self.model_path, self.example.inputs, self.example.outputs]
        if self.code is not None:
            referenced.append(self.code.entry_point)
            if self.code.requirements is not None:
                referenced.append(self.code.requirements)
        if self.pipeline is not None:
            if self.code is not None:
                raise ValueError("a package declares either user code (code/) or a pipeline, not both")
            _check_pipeline_names(self.pipeline, self.signature)
            referenced.extend(self.pipeline.files())
        for ref in referenced:
            # model_path may name a directory (a SavedModel): then some file must live under it.
            if ref not in listed and not any(p.startswith(ref.rstrip("/") + "/") for p in listed):
                raise ValueError(f"{ref!r} is referenced by the manifest but not listed in files")
        return self

    def file(self, path: str) -> FileEntry:
        """The entry for ``path``; raises ``KeyError`` if the package has no such file."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)

    @property
    def total_size(self) -> int:
        """Bytes of all files (without the manifest)."""
        return sum(entry.size for entry in self.files)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, two-space indent, trailing newline (stable bytes for hashing)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def _check_pipeline_names(pipeline: Pipeline, signature: Signature) -> None:
    """The pipeline may only name the signature's own inputs and outputs."""
    inputs = {spec.name: spec for spec in signature.inputs}
    outputs = {spec.name for spec in signature.outputs}
    named: list[str | None] = []
    if isinstance(pipeline.input, ImageInput):
        named = [pipeline.input.input]
        if len(inputs) != 1:
            raise ValueError(f"an image pipeline feeds one input, but the model takes {sorted(inputs)}")
    elif isinstance(pipeline.input, TextInput):
        named = [pipeline.input.input_ids, pipeline.input.attention_mask, pipeline.input.token_type_ids]
    elif isinstance(pipeline.input, IdsInput):
        named = list(inputs)
    for name in named:
        if name is not None and name not in inputs:
            raise ValueError(f"pipeline input names {name!r}, which is not a model input; inputs: {sorted(inputs)}")
    if pipeline.output.output not in outputs:
        raise ValueError(
            f"pipeline output names {pipeline.output.output!r}, which is not a model output; outputs: {sorted(outputs)}"
        )
    if isinstance(pipeline.output, TopKOutput) and pipeline.output.items not in (None, *inputs):
        raise ValueError(f"pipeline items come from {pipeline.output.items!r}, which is not a model input")


def check_relative_path(path: str) -> None:
    """Reject paths that could escape a package root; raises ``ValueError``."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"path {path!r} must be a non-empty relative POSIX path")
    parts = PurePosixPath(path).parts
    if any(part in ("..", ".") for part in parts) or path != "/".join(parts):
        raise ValueError(f"path {path!r} must not contain '.', '..' or empty segments")


def parse_manifest(text: str | bytes, *, source: str = MANIFEST_FILENAME) -> Manifest:
    """Parse and validate manifest JSON; raises ``ManifestError`` naming the bad field."""
    try:
        raw: Any = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{source} must hold a JSON object, got {type(raw).__name__}")
    _check_schema_version(raw.get("schema_version"), source)
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ManifestError(f"{source}: field {where!r}: {first['msg']}{more}") from exc


def read_manifest(package_dir: Path) -> Manifest:
    """Read ``manifest.json`` from an unpacked package directory."""
    path = package_dir / MANIFEST_FILENAME
    if not path.is_file():
        raise ManifestError(f"{path} not found: a package directory must contain {MANIFEST_FILENAME} at its root")
    return parse_manifest(path.read_bytes(), source=str(path))


def write_manifest(package_dir: Path, manifest: Manifest) -> Path:
    """Write the canonical manifest JSON into ``package_dir``."""
    path = package_dir / MANIFEST_FILENAME
    path.write_text(manifest.to_json(), encoding="utf-8")
    return path


def _check_schema_version(value: object, source: str) -> None:
    if not isinstance(value, str) or not re.match(r"^\d+\.\d+$", value):
        raise ManifestError(f"{source}: 'schema_version' must be a string like '{SCHEMA_VERSION}', got {value!r}")
    major = int(value.split(".")[0])
    if major != SCHEMA_MAJOR:
        raise UnsupportedSchemaVersionError(
            f"{source}: schema_version {value} is not supported; this reader understands "
            f"{SCHEMA_MAJOR}.x manifests. Upgrade model-package to read it."
        )
