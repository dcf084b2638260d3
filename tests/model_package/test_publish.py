"""Publishing by digest and verified fetching, against local disk, moto's S3 and the GCS emulator."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from model_package.archive import archive_digest, pack
from model_package.errors import (
    CredentialsError,
    DigestMismatchError,
    IntegrityError,
    InvalidStoreURIError,
    ObjectConflictError,
    PackageNotFoundError,
    StoreUnreachableError,
    UsageError,
)
from model_package.publish import Layout, package_uri, parse_package_uri, pull, push
from model_package.stores import TransferSettings
from tests.conftest import GcsEmulator
from tests.model_package.conftest import PackageFactory

MiB = 1024 * 1024


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _s3_keys(s3_client: Any, bucket: str) -> list[str]:
    return sorted(obj["Key"] for obj in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))


class Progress:
    def __init__(self) -> None:
        self.total = 0

    def __call__(self, count: int) -> None:
        self.total += count


# --- URIs -------------------------------------------------------------------------------------------------

DIGEST = "ab" * 32


def test_package_uris_name_the_package_and_digest() -> None:
    ref = parse_package_uri(f"s3://bucket/models/demo/{DIGEST}/model.tar.gz")
    assert (ref.name, ref.digest, ref.layout) == ("demo", DIGEST, "archive")
    assert ref.uri == f"s3://bucket/models/demo/{DIGEST}/"
    prefix = parse_package_uri(f"gs://bucket/demo/{DIGEST}/")
    assert (prefix.name, prefix.digest, prefix.layout) == ("demo", DIGEST, None)
    assert package_uri("s3://bucket/models/", "demo", DIGEST) == f"s3://bucket/models/demo/{DIGEST}/model.tar.gz"
    assert package_uri("gs://bkt", "demo", DIGEST, "uncompressed") == f"gs://bkt/demo/{DIGEST}/"


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://bucket/demo/{DIGEST[:-1]}/model.tar.gz",  # 63 characters
        f"s3://bucket/demo/{DIGEST.upper()}/",
        "s3://bucket/demo/latest/",
        f"gs://bucket/demo/sha256:{DIGEST}/",
    ],
)
def test_a_malformed_digest_is_an_invalid_uri(uri: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreURIError, match="64 lowercase hex"):
        pull(uri, tmp_path / "out")


def test_a_uri_without_name_and_digest_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreURIError, match=r"<name>/<digest>/"):
        pull(f"s3://bucket/{DIGEST}/", tmp_path / "out")


# --- local store ------------------------------------------------------------------------------------------


def test_push_and_pull_through_a_local_store(make_package: PackageFactory, tmp_path: Path) -> None:
    package = make_package()
    store = tmp_path / "store"
    result = push(package, store.as_uri())
    digest = archive_digest(package)
    assert result.digest == digest
    assert result.uri == (store / "demo" / digest / "model.tar.gz").as_uri()
    assert (result.uploaded, result.name, result.version, result.layout) == (True, "demo", "1.0.0", "archive")
    assert sorted(p.name for p in (store / "demo" / digest).iterdir()) == ["manifest.json", "model.tar.gz"]
    assert (store / "demo" / digest / "manifest.json").read_bytes() == (package / "manifest.json").read_bytes()

    again = push(package, str(store))  # a plain path names the same store
    assert (again.uploaded, again.uploaded_keys, again.uri) == (False, (), result.uri)

    manifest = pull(result.uri, tmp_path / "pulled")
    assert manifest.name == "demo"
    assert _tree(tmp_path / "pulled") == _tree(package)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pulled")], "scratch directory left behind"


def test_pull_refuses_a_non_empty_destination(make_package: PackageFactory, tmp_path: Path) -> None:
    result = push(make_package(), str(tmp_path / "store"))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty directory"):
        pull(result.uri, dest)
    assert _tree(dest) == {"keep.txt": b"mine"}


def test_pushing_the_archive_gives_the_same_digest_as_the_directory(
    make_package: PackageFactory, tmp_path: Path
) -> None:
    package = make_package()
    archive = pack(package, tmp_path / "model.tar.gz")
    from_archive = push(archive.path, str(tmp_path / "store"))
    from_dir = push(package, str(tmp_path / "store"))
    assert from_archive.digest == from_dir.digest == archive.digest
    assert from_archive.uploaded is True
    assert from_dir.uploaded is False


def test_a_non_canonical_archive_is_refused(make_package: PackageFactory, tmp_path: Path) -> None:
    import tarfile

    package = make_package()
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # a valid package, but not packed deterministically
        for path in sorted(package.rglob("*")):
            tar.add(path, arcname=path.relative_to(package).as_posix(), recursive=False)
    with pytest.raises(UsageError, match="not a canonical package archive"):
        push(archive, str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_a_package_that_does_not_match_its_manifest_is_not_pushed(make_package: PackageFactory, tmp_path: Path) -> None:
    package = make_package()
    (package / "model.onnx").write_bytes(b"tampered")
    layouts: tuple[Layout, ...] = ("archive", "uncompressed")
    for layout in layouts:
        with pytest.raises(IntegrityError):
            push(package, str(tmp_path / "store"), layout=layout)
    assert not (tmp_path / "store").exists()


def test_pull_of_a_missing_package_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(PackageNotFoundError, match=r"neither model\.tar\.gz nor manifest\.json"):
        pull(f"{tmp_path.as_uri()}/demo/{DIGEST}/", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- S3 ---------------------------------------------------------------------------------------------------


def test_s3_push_is_content_addressed_encrypted_and_idempotent(
    make_package: PackageFactory, s3_client: Any, s3_bucket: str, kms_key_arn: str, tmp_path: Path
) -> None:
    s3_client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    package = make_package()
    progress = Progress()
    result = push(package, f"s3://{s3_bucket}/models", kms_key_id=kms_key_arn, progress=progress)
    key = f"models/demo/{result.digest}/model.tar.gz"
    assert result.uri == f"s3://{s3_bucket}/{key}"
    assert result.uploaded_keys == ("model.tar.gz", "manifest.json")
    assert progress.total == result.size
    assert _s3_keys(s3_client, s3_bucket) == [f"models/demo/{result.digest}/manifest.json", key]
    for stored in _s3_keys(s3_client, s3_bucket):
        head = s3_client.head_object(Bucket=s3_bucket, Key=stored)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == kms_key_arn
    assert s3_client.head_object(Bucket=s3_bucket, Key=key)["Metadata"] == {"sha256": result.digest}

    again = push(package, f"s3://{s3_bucket}/models", kms_key_id=kms_key_arn)
    assert (again.uploaded, again.digest) == (False, result.digest)
    versions = s3_client.list_object_versions(Bucket=s3_bucket)["Versions"]
    assert len(versions) == 2, "a repeated push must not write new object versions"

    assert pull(result.uri, tmp_path / "by-archive").name == "demo"
    assert _tree(tmp_path / "by-archive") == _tree(package)
    pull(f"s3://{s3_bucket}/models/demo/{result.digest}/", tmp_path / "by-prefix")
    assert _tree(tmp_path / "by-prefix") == _tree(package)


def test_s3_tampered_archive_is_rejected_and_nothing_is_unpacked(
    make_package: PackageFactory, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    result = push(make_package(), f"s3://{s3_bucket}")
    key = f"demo/{result.digest}/model.tar.gz"
    good = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    s3_client.delete_object(Bucket=s3_bucket, Key=key)
    # An attacker (or bit rot) that keeps the recorded sha256 metadata: only hashing the bytes catches it.
    s3_client.put_object(
        Bucket=s3_bucket, Key=key, Body=good[:-1] + bytes([good[-1] ^ 1]), Metadata={"sha256": result.digest}
    )

    dest = tmp_path / "dest"
    with pytest.raises(DigestMismatchError) as caught:
        pull(result.uri, dest)
    assert result.digest in str(caught.value)
    assert "hashes to sha256" in str(caught.value)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"], "no scratch files may be left behind"

    dest.mkdir()  # an existing empty destination stays empty
    with pytest.raises(DigestMismatchError):
        pull(result.uri, dest)
    assert list(dest.iterdir()) == []


def test_s3_conflicting_object_stops_the_push_before_anything_is_written(
    make_package: PackageFactory, s3_client: Any, s3_bucket: str
) -> None:
    package = make_package()
    digest = archive_digest(package)
    s3_client.put_object(Bucket=s3_bucket, Key=f"demo/{digest}/manifest.json", Body=b"{}")
    with pytest.raises(ObjectConflictError, match="already exists"):
        push(package, f"s3://{s3_bucket}")
    assert _s3_keys(s3_client, s3_bucket) == [f"demo/{digest}/manifest.json"]
    assert s3_client.get_object(Bucket=s3_bucket, Key=f"demo/{digest}/manifest.json")["Body"].read() == b"{}"


def test_s3_uncompressed_layout_round_trips_and_checks_each_file(
    make_package: PackageFactory, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    package = make_package()
    result = push(package, f"s3://{s3_bucket}/m", layout="uncompressed")
    prefix = f"m/demo/{result.digest}/"
    assert result.uri == f"s3://{s3_bucket}/{prefix}"
    assert result.digest == archive_digest(package)
    assert _s3_keys(s3_client, s3_bucket) == sorted(prefix + name for name in _tree(package))
    assert result.uploaded_keys[-1] == "manifest.json", "the manifest goes last: it marks a complete upload"
    assert push(package, f"s3://{s3_bucket}/m", layout="uncompressed").uploaded is False

    progress = Progress()
    manifest = pull(result.uri, tmp_path / "out", progress=progress)
    assert manifest.name == "demo"
    assert _tree(tmp_path / "out") == _tree(package)
    assert progress.total == manifest.total_size

    s3_client.put_object(Bucket=s3_bucket, Key=prefix + "model.onnx", Body=b"evil")
    with pytest.raises(DigestMismatchError, match=r"model\.onnx hashes to sha256"):
        pull(result.uri, tmp_path / "tampered")
    assert not (tmp_path / "tampered").exists()


def test_s3_uncompressed_layout_detects_a_replaced_manifest(
    make_package: PackageFactory, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    result = push(make_package(), f"s3://{s3_bucket}", layout="uncompressed")
    key = f"demo/{result.digest}/manifest.json"
    manifest = json.loads(s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    manifest["version"] = "6.6.6"  # still consistent with every file, but not the pinned package
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(manifest).encode())
    with pytest.raises(DigestMismatchError) as caught:
        pull(result.uri, tmp_path / "out")
    assert result.digest in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_s3_large_package_is_uploaded_in_parts(
    make_package: PackageFactory, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    package = make_package(weights=os.urandom(11 * MiB))  # random bytes do not compress
    transfer = TransferSettings(multipart_threshold=5 * MiB, chunk_size=5 * MiB, max_concurrency=4)
    result = push(package, f"s3://{s3_bucket}", transfer=transfer)
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"demo/{result.digest}/model.tar.gz")
    assert head["ETag"].strip('"').endswith("-3")
    pull(result.uri, tmp_path / "out", transfer=transfer)
    assert _tree(tmp_path / "out") == _tree(package)


def test_s3_push_to_a_missing_bucket_is_not_found(make_package: PackageFactory, aws_env: str) -> None:
    with pytest.raises(PackageNotFoundError, match="bucket 'missing-bucket' does not exist"):
        push(make_package(), "s3://missing-bucket/models")


def test_s3_unreachable_endpoint_fails_fast(
    make_package: PackageFactory, isolated_cloud_env: None, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed_port}")
    package = make_package()
    started = time.monotonic()
    with pytest.raises(StoreUnreachableError):
        push(package, "s3://bucket/models")
    with pytest.raises(StoreUnreachableError):
        pull(f"s3://bucket/models/demo/{DIGEST}/", package.parent / "out")
    assert time.monotonic() - started < 15


def test_s3_without_credentials_is_a_credentials_error(
    make_package: PackageFactory, isolated_cloud_env: None, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    with pytest.raises(CredentialsError):
        push(make_package(), "s3://bucket/models")


# --- GCS --------------------------------------------------------------------------------------------------

CMEK = "projects/p/locations/global/keyRings/models/cryptoKeys/packages"


def test_gcs_push_is_content_addressed_idempotent_and_round_trips(
    make_package: PackageFactory, gcs_env: GcsEmulator, gcs_client: Any, gcs_bucket: str, tmp_path: Path
) -> None:
    package = make_package()
    result = push(package, f"gs://{gcs_bucket}/models", kms_key_id=CMEK)
    key = f"models/demo/{result.digest}/model.tar.gz"
    assert result.uri == f"gs://{gcs_bucket}/{key}"
    bucket = gcs_client.bucket(gcs_bucket)
    blob = bucket.get_blob(key)
    assert blob.metadata == {"sha256": result.digest}
    # The emulator ignores CMEK (blob.kms_key_name stays None); check the client asked for it.
    uploads = [r for r in gcs_env.requests if r.method == "POST" and "/upload/" in r.path]
    assert len(uploads) == 2
    assert all("kmsKeyName=projects%2Fp%2F" in r.path for r in uploads)

    again = push(package, f"gs://{gcs_bucket}/models", kms_key_id=CMEK)
    assert again.uploaded is False
    assert bucket.get_blob(key).generation == blob.generation

    pull(result.uri, tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(package)


def test_gcs_tampered_archive_is_rejected(
    make_package: PackageFactory, gcs_client: Any, gcs_bucket: str, tmp_path: Path
) -> None:
    result = push(make_package(), f"gs://{gcs_bucket}")
    blob = gcs_client.bucket(gcs_bucket).blob(f"demo/{result.digest}/model.tar.gz")
    blob.metadata = {"sha256": result.digest}
    blob.upload_from_string(b"not the package")
    with pytest.raises(DigestMismatchError, match=result.digest):
        pull(f"gs://{gcs_bucket}/demo/{result.digest}/", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gcs_uncompressed_layout_round_trips(
    make_package: PackageFactory, gcs_client: Any, gcs_bucket: str, tmp_path: Path
) -> None:
    package = make_package()
    result = push(package, f"gs://{gcs_bucket}", layout="uncompressed")
    names = sorted(blob.name for blob in gcs_client.list_blobs(gcs_bucket))
    assert names == sorted(f"demo/{result.digest}/{name}" for name in _tree(package))
    pull(result.uri, tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(package)


def test_gcs_conflicting_object_is_refused(make_package: PackageFactory, gcs_client: Any, gcs_bucket: str) -> None:
    package = make_package()
    digest = archive_digest(package)
    gcs_client.bucket(gcs_bucket).blob(f"demo/{digest}/model.tar.gz").upload_from_string(b"other bytes")
    with pytest.raises(ObjectConflictError):
        push(package, f"gs://{gcs_bucket}")
    assert [blob.name for blob in gcs_client.list_blobs(gcs_bucket)] == [f"demo/{digest}/model.tar.gz"]


@pytest.mark.parametrize("layout", ["archive", "uncompressed"])
def test_fetch_from_a_prefix_without_the_digest_in_its_path(
    make_package: PackageFactory, tmp_path: Path, layout: Layout
) -> None:
    """Vertex AI copies artifacts to a location of its own (AIP_STORAGE_URI): no <name>/<digest> in the path."""
    import shutil

    from model_package.publish import fetch

    result = push(make_package(), str(tmp_path / "store"), layout=layout)
    copy = tmp_path / "vertex-managed-copy"
    shutil.copytree(tmp_path / "store" / "demo" / result.digest, copy)

    assert fetch(copy.as_uri(), tmp_path / "a").name == "demo"
    assert fetch(copy.as_uri(), tmp_path / "b", expected_digest=result.digest).name == "demo"
    with pytest.raises(DigestMismatchError):
        fetch(copy.as_uri(), tmp_path / "c", expected_digest="0" * 64)
    assert not (tmp_path / "c").exists()
