"""The manifest schema: what it accepts, and the errors it gives for what it does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_package.errors import ManifestError, UnsupportedSchemaVersionError
from model_package.manifest import parse_manifest, read_manifest
from tests.model_package.conftest import PackageFactory


def _raw(package: Path) -> dict[str, object]:
    raw: dict[str, object] = json.loads((package / "manifest.json").read_text())
    return raw


def test_manifest_round_trips_through_canonical_json(make_package: PackageFactory) -> None:
    package = make_package()
    manifest = read_manifest(package)
    assert parse_manifest(manifest.to_json()) == manifest
    assert (package / "manifest.json").read_text() == manifest.to_json()
    assert manifest.signature.inputs[0].shape == (-1, 3)


def test_newer_minor_version_with_unknown_fields_is_read(make_package: PackageFactory) -> None:
    raw = _raw(make_package())
    raw["schema_version"] = "1.7"
    raw["field_from_the_future"] = {"anything": True}
    assert parse_manifest(json.dumps(raw)).name == "demo"


@pytest.mark.parametrize("version", ["2.0", "0.9"])
def test_other_major_versions_are_rejected(make_package: PackageFactory, version: str) -> None:
    raw = _raw(make_package())
    raw["schema_version"] = version
    with pytest.raises(UnsupportedSchemaVersionError, match=f"schema_version {version} is not supported"):
        parse_manifest(json.dumps(raw))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(schema_version=1), "'schema_version' must be a string"),
        (lambda m: m.update(name="Bad Name"), "field 'name'"),
        (lambda m: m.update(format="pickle"), "field 'format'"),
        (lambda m: m["files"][0].update(path="../evil"), "field 'files.0.path'"),
        (lambda m: m["files"][0].update(path="/etc/passwd"), "field 'files.0.path'"),
        (lambda m: m["files"][0].update(sha256="abc"), "field 'files.0.sha256'"),
        (lambda m: m["signature"]["inputs"][0].update(dtype="complex64"), "unknown dtype 'complex64'"),
        (lambda m: m.update(model_path="weights.bin"), "'weights.bin' is referenced by the manifest but not listed"),
        (lambda m: m.pop("files"), "field 'files'"),
    ],
    ids=["version-type", "name", "format", "dotdot", "absolute", "sha", "dtype", "dangling-ref", "no-files"],
)
def test_invalid_manifests_name_the_bad_field(make_package: PackageFactory, mutate: object, message: str) -> None:
    raw = _raw(make_package())
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(raw))


def test_not_json_and_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest("{nope")
    with pytest.raises(ManifestError, match=r"manifest\.json not found"):
        read_manifest(tmp_path)
