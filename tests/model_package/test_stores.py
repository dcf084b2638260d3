"""The package stores against real servers: local disk, moto's S3 and the GCS emulator."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from model_package.errors import (
    CredentialsError,
    InvalidStoreURIError,
    ObjectConflictError,
    PackageNotFoundError,
    StoreError,
    StoreUnreachableError,
    UsageError,
)
from model_package.hashing import sha256_file
from model_package.stores import LocalStore, StoreLocation, TransferSettings, open_store, parse_store_uri
from model_package.stores.gcs import GCSStore
from model_package.stores.s3 import S3Store
from tests.conftest import GcsEmulator

MiB = 1024 * 1024
FileFactory = Callable[..., Path]
#: Small enough that a few MiB exercise the multipart / ranged paths (S3 parts must be >= 5 MiB).
SMALL_PARTS = TransferSettings(multipart_threshold=5 * MiB, chunk_size=5 * MiB, max_concurrency=4)


class Progress:
    """Collects progress callbacks."""

    def __init__(self) -> None:
        self.total = 0
        self.calls = 0

    def __call__(self, count: int) -> None:
        self.total += count
        self.calls += 1


# --- URIs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://my-bucket/models/prod/", StoreLocation("s3", "my-bucket", "models/prod")),
        ("s3://my.bucket", StoreLocation("s3", "my.bucket", "")),
        ("gs://my_bucket/a", StoreLocation("gs", "my_bucket", "a")),
        ("file:///srv/models/", StoreLocation("file", "", "/srv/models")),
        ("file://localhost/srv/my%20models", StoreLocation("file", "", "/srv/my models")),
        ("/srv/models/../store", StoreLocation("file", "", "/srv/store")),
    ],
)
def test_store_uris_parse_to_bucket_and_prefix(uri: str, expected: StoreLocation) -> None:
    assert parse_store_uri(uri) == expected


def test_relative_paths_are_local_stores_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("store/sub")
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "store" / "sub"
    assert store.uri == (tmp_path / "store" / "sub").as_uri()


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("", "empty"),
        ("azure://container/models", "unknown scheme"),
        ("http://example.com/models", "unknown scheme"),
        ("s3://", "no bucket"),
        ("gs:///models", "no bucket"),
        ("s3://My_Bucket/models", "not a valid S3 bucket name"),
        ("s3://ab", "not a valid S3 bucket name"),
        ("s3://192.168.1.1", "IP address"),
        ("gs://google-models", "not a valid GCS bucket name"),
        ("gs://-bucket", "not a valid GCS bucket name"),
        ("s3://bucket/a//b", "prefix"),
        ("s3://bucket/a/../b", "prefix"),
        ("file://server/share", "host"),
        ("file:relative", "without '//'"),
        ("s3:bucket/models", "without '//'"),
    ],
)
def test_bad_store_uris_name_the_problem_and_the_supported_schemes(uri: str, reason: str) -> None:
    with pytest.raises(InvalidStoreURIError) as caught:
        open_store(uri)
    message = str(caught.value)
    assert reason in message
    assert "s3://bucket/prefix" in message
    assert "gs://bucket/prefix" in message
    assert "file:///" in message
    assert "\n" not in message


def test_importing_stores_and_publish_does_not_import_cloud_sdks() -> None:
    code = (
        "import sys, model_package, model_package.stores, model_package.publish\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 's3transfer')"
        # google.cloud itself is a namespace package some installs import at start-up (.pth files).
        " or m.startswith('google.cloud.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(
    ("uri", "module", "extra"), [("s3://bucket", "boto3", "aws"), ("gs://bucket", "google.cloud.storage", "gcp")]
)
def test_a_missing_sdk_names_the_extra_to_install(
    uri: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what Python does for a package that is not installed
    with pytest.raises(StoreError, match=rf"pip install 'model-deploy\[{extra}\]'"):
        open_store(uri)


def test_a_kms_key_for_a_local_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="KMS"):
        open_store(str(tmp_path), kms_key_id="alias/models")


# --- local ------------------------------------------------------------------------------------------------


def test_local_store_writes_once_and_refuses_different_bytes(tmp_path: Path, scratch_file: FileFactory) -> None:
    store = open_store((tmp_path / "store").as_uri())
    source = scratch_file(3000)
    progress = Progress()
    assert store.upload_file(source, "pkg/abc/model.bin", progress=progress) is True
    assert progress.total == 3000
    assert (tmp_path / "store" / "pkg" / "abc" / "model.bin").read_bytes() == source.read_bytes()
    assert store.upload_file(source, "pkg/abc/model.bin") is False

    other = scratch_file(3000, "other.bin")
    with pytest.raises(ObjectConflictError, match="never overwritten"):
        store.upload_file(other, "pkg/abc/model.bin")
    assert (tmp_path / "store" / "pkg" / "abc" / "model.bin").read_bytes() == source.read_bytes()
    assert not [p for p in (tmp_path / "store").rglob("*") if p.name.endswith(".partial")]


def test_local_store_downloads_with_its_hash_and_reports_missing_keys(
    tmp_path: Path, scratch_file: FileFactory
) -> None:
    store = LocalStore(tmp_path / "store")
    source = scratch_file(5000)
    store.upload_file(source, "k/blob")
    info = store.head("k/blob")
    assert info is not None and info.size == 5000
    assert store.head("k/nothing") is None
    assert store.download_file("k/blob", tmp_path / "out" / "blob") == sha256_file(source)
    with pytest.raises(PackageNotFoundError, match="does not exist"):
        store.download_file("k/nothing", tmp_path / "out" / "nothing")
    assert not (tmp_path / "out" / "nothing").exists()


def test_store_keys_must_stay_under_the_root(tmp_path: Path, scratch_file: FileFactory) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(UsageError, match="invalid store key"):
        store.upload_file(scratch_file(10), "../escape")


# --- S3 ---------------------------------------------------------------------------------------------------


def test_s3_upload_is_encrypted_with_the_kms_key_and_records_the_sha256(
    s3_client: Any, s3_bucket: str, kms_key_arn: str, scratch_file: FileFactory
) -> None:
    source = scratch_file(10_000)
    store = open_store(f"s3://{s3_bucket}/models", kms_key_id=kms_key_arn)
    assert store.upload_file(source, "demo/abc/model.tar.gz") is True

    head = s3_client.head_object(Bucket=s3_bucket, Key="models/demo/abc/model.tar.gz")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == kms_key_arn
    assert head["Metadata"] == {"sha256": sha256_file(source)}
    info = store.head("demo/abc/model.tar.gz")
    assert info is not None
    assert (info.size, info.sha256) == (10_000, sha256_file(source))


def test_s3_upload_without_a_key_takes_the_bucket_default_key(
    s3_client: Any, s3_bucket: str, kms_key_arn: str, scratch_file: FileFactory
) -> None:
    # A store's bucket defaults to its own key; naming no key must not override that with aws/s3.
    s3_client.put_bucket_encryption(
        Bucket=s3_bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_arn}}
            ]
        },
    )
    open_store(f"s3://{s3_bucket}").upload_file(scratch_file(100), "k")
    head = s3_client.head_object(Bucket=s3_bucket, Key="k")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", kms_key_arn)


def test_s3_same_bytes_upload_nothing_and_different_bytes_are_refused(
    s3_client: Any, s3_bucket: str, scratch_file: FileFactory
) -> None:
    s3_client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    store = open_store(f"s3://{s3_bucket}/p")
    source = scratch_file(2048)
    assert store.upload_file(source, "obj") is True
    assert store.upload_file(source, "obj") is False
    with pytest.raises(ObjectConflictError, match=r"s3://.*/p/obj already exists"):
        store.upload_file(scratch_file(2048, "other"), "obj")
    versions = s3_client.list_object_versions(Bucket=s3_bucket, Prefix="p/obj")["Versions"]
    assert len(versions) == 1


def test_s3_itself_refuses_to_overwrite(s3_client: Any, s3_bucket: str, scratch_file: FileFactory) -> None:
    """The conditional write (If-None-Match: *) holds even when the existence check was skipped (a race)."""
    store = S3Store(s3_bucket, "p")
    first, second = scratch_file(100, "a"), scratch_file(100, "b")
    assert store._put_if_absent(first, "obj", sha256_file(first), None) is True
    assert store._put_if_absent(second, "obj", sha256_file(second), None) is False
    body = s3_client.get_object(Bucket=s3_bucket, Key="p/obj")["Body"].read()
    assert body == first.read_bytes()


def test_s3_objects_written_by_other_tools_are_compared_by_content(
    s3_client: Any, s3_bucket: str, scratch_file: FileFactory
) -> None:
    source = scratch_file(1000)
    s3_client.put_object(Bucket=s3_bucket, Key="obj", Body=source.read_bytes())  # no sha256 metadata
    store = open_store(f"s3://{s3_bucket}")
    assert store.upload_file(source, "obj") is False
    with pytest.raises(ObjectConflictError):
        store.upload_file(scratch_file(1000, "other"), "obj")


def test_s3_large_files_use_multipart_upload_and_parallel_download(
    s3_client: Any, s3_bucket: str, kms_key_arn: str, scratch_file: FileFactory, tmp_path: Path
) -> None:
    source = scratch_file(11 * MiB)
    store = S3Store(s3_bucket, "big", kms_key_id=kms_key_arn, transfer=SMALL_PARTS)
    up = Progress()
    assert store.upload_file(source, "model.tar.gz", progress=up) is True
    assert up.total == source.stat().st_size

    assert s3_client.head_object(Bucket=s3_bucket, Key="big/model.tar.gz", PartNumber=1)["PartsCount"] == 3
    head = s3_client.head_object(Bucket=s3_bucket, Key="big/model.tar.gz")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart ETag: 5 + 5 + 1 MiB parts
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == kms_key_arn
    with pytest.raises(ObjectConflictError):  # CompleteMultipartUpload is conditional too
        store.upload_file(scratch_file(11 * MiB, "other"), "model.tar.gz")

    down = Progress()
    digest = store.download_file("model.tar.gz", tmp_path / "copy", progress=down)
    assert digest == sha256_file(source)
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
    assert down.total == source.stat().st_size
    assert down.calls > 1


def test_s3_missing_objects_and_buckets_are_not_found(
    s3_bucket: str, scratch_file: FileFactory, tmp_path: Path
) -> None:
    store = open_store(f"s3://{s3_bucket}/p")
    assert store.head("nothing") is None
    with pytest.raises(PackageNotFoundError, match="does not exist"):
        store.download_file("nothing", tmp_path / "x")
    missing = open_store("s3://no-such-bucket-here/p")
    with pytest.raises(PackageNotFoundError, match="bucket 'no-such-bucket-here' does not exist"):
        missing.upload_file(scratch_file(10), "obj")


def test_s3_unreachable_endpoint_fails_fast(
    isolated_cloud_env: None, monkeypatch: pytest.MonkeyPatch, closed_port: int, scratch_file: FileFactory
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    started = time.monotonic()
    with pytest.raises(StoreUnreachableError) as caught:
        open_store("s3://bucket/p").upload_file(scratch_file(10), "obj")
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{closed_port}" in str(caught.value)


def test_s3_without_credentials_is_a_credentials_error(
    isolated_cloud_env: None, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    with pytest.raises(CredentialsError, match="configure AWS credentials"):
        open_store("s3://bucket/p").head("obj")


def test_s3_rejected_credentials_are_a_credentials_error(
    aws_env: str, s3_bucket: str, scratch_file: FileFactory
) -> None:
    import requests

    # moto's documented switch: authenticate every request from now on (unknown keys get 403).
    requests.post(f"{aws_env}/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
    try:
        with pytest.raises(CredentialsError, match=r"AWS refused to read .*403"):
            open_store(f"s3://{s3_bucket}/p").upload_file(scratch_file(10), "obj")
    finally:
        requests.post(f"{aws_env}/moto-api/reset-auth", data=b"inf", timeout=5).raise_for_status()


# --- GCS --------------------------------------------------------------------------------------------------

CMEK = "projects/p/locations/global/keyRings/models/cryptoKeys/packages"


def _query(request: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.path).query)


def test_gcs_upload_is_conditional_carries_the_cmek_and_records_the_sha256(
    gcs_env: GcsEmulator, gcs_client: Any, gcs_bucket: str, scratch_file: FileFactory
) -> None:
    source = scratch_file(10_000)
    store = open_store(f"gs://{gcs_bucket}/models", kms_key_id=CMEK)
    assert store.upload_file(source, "demo/abc/model.tar.gz") is True

    blob = gcs_client.bucket(gcs_bucket).get_blob("models/demo/abc/model.tar.gz")
    assert blob.metadata == {"sha256": sha256_file(source)}
    uploads = [r for r in gcs_env.requests if r.method == "POST" and "/upload/" in r.path]
    assert len(uploads) == 1
    # What the client asked GCS for: encryption with our CMEK, and "create only" (generation 0).
    # The emulator accepts both parameters but ignores them: it neither records kmsKeyName on the
    # object (blob.kms_key_name stays None) nor enforces ifGenerationMatch, so assert on the wire.
    assert _query(uploads[0])["kmsKeyName"] == [CMEK]
    assert _query(uploads[0])["ifGenerationMatch"] == ["0"]
    assert blob.kms_key_name is None


def test_gcs_same_bytes_upload_nothing_and_different_bytes_are_refused(
    gcs_client: Any, gcs_bucket: str, scratch_file: FileFactory
) -> None:
    store = open_store(f"gs://{gcs_bucket}/p")
    source = scratch_file(2048)
    assert store.upload_file(source, "obj") is True
    generation = gcs_client.bucket(gcs_bucket).get_blob("p/obj").generation
    assert store.upload_file(source, "obj") is False
    with pytest.raises(ObjectConflictError, match=r"gs://.*/p/obj already exists"):
        store.upload_file(scratch_file(2048, "other"), "obj")
    blob = gcs_client.bucket(gcs_bucket).get_blob("p/obj")
    assert blob.generation == generation
    assert blob.download_as_bytes() == source.read_bytes()


def test_gcs_large_files_use_chunked_resumable_upload_and_parallel_download(
    gcs_env: GcsEmulator, gcs_bucket: str, scratch_file: FileFactory, tmp_path: Path
) -> None:
    # GCS sends files up to 8 MiB in one request whatever the threshold, so use 9 MiB in 1 MiB chunks.
    source = scratch_file(9 * MiB)
    settings = TransferSettings(multipart_threshold=2 * MiB, chunk_size=1 * MiB, max_concurrency=4)
    store = GCSStore(gcs_bucket, "big", transfer=settings)
    up = Progress()
    assert store.upload_file(source, "model.tar.gz", progress=up) is True
    assert up.total == source.stat().st_size
    chunks = [r for r in gcs_env.requests if r.method == "PUT" and "upload_id" in r.path]
    assert len(chunks) == 9

    gcs_env.requests.clear()
    down = Progress()
    assert store.download_file("model.tar.gz", tmp_path / "copy", progress=down) == sha256_file(source)
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
    assert down.total == source.stat().st_size
    ranges = {r.headers["range"] for r in gcs_env.requests if "range" in r.headers}
    assert ranges == {f"bytes={i * MiB}-{(i + 1) * MiB - 1}" for i in range(9)}


def test_gcs_missing_objects_and_buckets_are_not_found(
    gcs_bucket: str, scratch_file: FileFactory, tmp_path: Path
) -> None:
    store = open_store(f"gs://{gcs_bucket}/p")
    assert store.head("nothing") is None
    with pytest.raises(PackageNotFoundError, match="does not exist"):
        store.download_file("nothing", tmp_path / "x")
    with pytest.raises(PackageNotFoundError, match="bucket 'no-such-bucket-here' does not exist"):
        open_store("gs://no-such-bucket-here/p").upload_file(scratch_file(10), "obj")


def test_gcs_unreachable_endpoint_fails_fast(
    isolated_cloud_env: None, monkeypatch: pytest.MonkeyPatch, closed_port: int, scratch_file: FileFactory
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port}")
    started = time.monotonic()
    with pytest.raises(StoreUnreachableError, match="unreachable"):
        open_store("gs://bucket/p").upload_file(scratch_file(10), "obj")
    assert time.monotonic() - started < 10


def test_gcs_explicit_endpoint_needs_no_environment(
    isolated_cloud_env: None, gcs_emulator: GcsEmulator, scratch_file: FileFactory
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    admin = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator.endpoint},
    )
    bucket = f"explicit-{uuid.uuid4().hex[:16]}"
    admin.create_bucket(bucket)
    store = GCSStore(bucket, "p", endpoint=gcs_emulator.endpoint)
    assert store.upload_file(scratch_file(10), "obj") is True
    assert store.exists("obj")


def test_gcs_without_credentials_is_a_credentials_error(isolated_cloud_env: None) -> None:
    with pytest.raises(CredentialsError, match="no usable Google Cloud credentials"):
        open_store("gs://bucket/p").head("obj")
