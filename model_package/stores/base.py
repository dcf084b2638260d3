"""The package-store interface, store URIs, and the logic every store shares.

A store is a tiny object-store API rooted at a URI (``s3://bucket/prefix``,
``gs://bucket/prefix``, ``file:///abs/path`` or a plain local path). Keys are
relative POSIX paths under that root. Objects are immutable: ``upload_file``
never replaces an existing object, so a content-addressed key can be trusted
to hold the bytes it was first written with.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Literal
from urllib.parse import unquote, urlsplit

from model_package.errors import InvalidStoreURIError, ObjectConflictError, StoreError, UsageError
from model_package.hashing import ProgressCallback, sha256_file
from model_package.manifest import check_relative_path

Scheme = Literal["file", "s3", "gs"]

#: Shown in every bad-URI error so the user sees what would have worked.
SUPPORTED_URIS = "s3://bucket/prefix, gs://bucket/prefix, file:///absolute/path or a local directory path"
#: Object metadata key holding the hex SHA-256 recorded at upload (S3 ``x-amz-meta-sha256``, GCS ``metadata``).
SHA256_METADATA_KEY = "sha256"

MiB = 1024 * 1024

_SCHEME_LIKE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GCS_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object without reading it."""

    key: str
    size: int
    sha256: str | None
    """Hex SHA-256 recorded as metadata at upload; ``None`` if another tool wrote the object."""


@dataclass(frozen=True)
class TransferSettings:
    """How cloud stores move large files and how quickly they give up on a dead endpoint.

    Files of at least ``multipart_threshold`` bytes go up as S3 multipart /
    GCS resumable uploads in ``chunk_size`` pieces and come down as
    ``max_concurrency`` parallel ranged reads. GCS only switches to resumable
    uploads above 8 MiB whatever the threshold (below that a single request is
    cheaper), and rounds ``chunk_size`` up to its required 256 KiB multiple.
    """

    multipart_threshold: int = 64 * MiB
    chunk_size: int = 16 * MiB
    max_concurrency: int = 8
    connect_timeout: float = 3.0
    """Seconds to wait for a TCP connection; short so an unreachable store fails fast."""
    read_timeout: float = 60.0
    max_attempts: int = 3
    """S3: total attempts per request (botocore "standard" retry mode)."""
    retry_deadline: float = 60.0
    """GCS: seconds to keep retrying transient errors (429/5xx, dropped connections)."""

    def __post_init__(self) -> None:
        if self.multipart_threshold < 1 or self.chunk_size < 1 or self.max_concurrency < 1:
            raise UsageError("multipart_threshold, chunk_size and max_concurrency must be positive")


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URI: the scheme, the bucket (empty for local paths) and the prefix.

    For ``file`` locations ``prefix`` is the absolute POSIX path of the root
    directory; for buckets it is the key prefix without leading or trailing
    slashes (possibly empty).
    """

    scheme: Scheme
    bucket: str
    prefix: str

    def __str__(self) -> str:
        if self.scheme == "file":
            return Path(self.prefix).as_uri()
        return f"{self.scheme}://{self.bucket}/{self.prefix}" if self.prefix else f"{self.scheme}://{self.bucket}"

    @property
    def parts(self) -> tuple[str, ...]:
        """The prefix's path segments (for ``file``, without the leading ``/``)."""
        return tuple(part for part in self.prefix.split("/") if part)

    def child(self, *segments: str) -> StoreLocation:
        """This location with ``segments`` appended to the prefix."""
        for segment in segments:
            _check_key(segment)
        joined = "/".join((self.prefix.rstrip("/"), *segments)) if self.prefix else "/".join(segments)
        if self.scheme == "file" and not joined.startswith("/"):
            joined = "/" + joined
        return StoreLocation(self.scheme, self.bucket, joined)

    def parent(self, levels: int = 1) -> StoreLocation:
        """The location ``levels`` segments up (never above the bucket or ``/``)."""
        parts = self.parts[: max(0, len(self.parts) - levels)]
        prefix = "/".join(parts)
        return StoreLocation(self.scheme, self.bucket, "/" + prefix if self.scheme == "file" else prefix)


def parse_store_uri(uri: str) -> StoreLocation:
    """Parse and validate a store URI; raises ``InvalidStoreURIError`` naming the supported forms."""
    if not uri or not uri.strip():
        raise _invalid(uri, "it is empty")
    if "://" not in uri:
        if _SCHEME_LIKE_RE.match(uri):
            # "s3:bucket" or "file:rel" is a mistyped URI far more often than a directory name with a colon.
            raise _invalid(uri, "it looks like a URI without '//' (write ./name for a local directory with a colon)")
        # A plain local path; relative paths are relative to the working directory.
        return StoreLocation("file", "", _local_prefix(uri, os.path.abspath(os.path.expanduser(uri))))
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    if scheme == "file":
        split = urlsplit(uri)
        if split.netloc not in ("", "localhost"):
            raise _invalid(uri, f"file URIs name a local path (file:///abs/path), not host {split.netloc!r}")
        path = unquote(split.path)
        if not path.startswith("/"):
            raise _invalid(uri, "file URIs need an absolute path, like file:///srv/models")
        return StoreLocation("file", "", _local_prefix(uri, path))
    if scheme not in ("s3", "gs"):
        raise _invalid(uri, f"unknown scheme {scheme + '://'!r}")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise _invalid(uri, "it names no bucket")
    problem = _s3_bucket_problem(bucket) if scheme == "s3" else _gcs_bucket_problem(bucket)
    if problem:
        raise _invalid(uri, f"{bucket!r} is not a valid {'S3' if scheme == 's3' else 'GCS'} bucket name: {problem}")
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_relative_path(prefix)
        except ValueError:
            raise _invalid(uri, "the prefix must not contain empty, '.' or '..' segments or backslashes") from None
    return StoreLocation("s3" if scheme == "s3" else "gs", bucket, prefix)


class Store(ABC):
    """An immutable-object store rooted at :attr:`location`.

    Subclasses implement three primitives (:meth:`head`, :meth:`_put_if_absent`
    and :meth:`_get`, optionally :meth:`_object_sha256`); the no-overwrite and
    atomic-download rules live here so every backend behaves the same.
    Progress callbacks receive byte counts and are never called concurrently.
    """

    def __init__(self, location: StoreLocation) -> None:
        self.location = location

    @property
    def uri(self) -> str:
        """The root URI of the store."""
        return str(self.location)

    def uri_for(self, key: str) -> str:
        """The full URI of ``key``."""
        return str(self.location.child(*_check_key(key).split("/")))

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size and recorded SHA-256 of ``key``, or ``None`` if there is no such object."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""
        return self.head(key) is not None

    def has_identical(self, key: str, sha256: str) -> bool:
        """``True`` if ``key`` already holds bytes hashing to ``sha256``, ``False`` if it is absent.

        Raises ``ObjectConflictError`` if ``key`` holds different bytes: keys
        are content addressed, so that means corruption or a bug, and
        overwriting would hide it.
        """
        info = self.head(key)
        if info is None:
            return False
        actual = info.sha256 or self._object_sha256(key)
        if actual != sha256:
            raise ObjectConflictError(
                f"{self.uri_for(key)} already exists with sha256 {actual}, not {sha256}; stored packages are "
                "never overwritten: delete the object if it is corrupt, or publish to another store"
            )
        return True

    def upload_file(
        self,
        local_path: Path,
        key: str,
        *,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> bool:
        """Upload ``local_path`` to ``key`` unless identical bytes are already there.

        Returns ``True`` if bytes were uploaded, ``False`` if the object already
        existed with the same SHA-256. Never overwrites: a different object at
        ``key`` raises ``ObjectConflictError``. ``sha256`` (hex) is recorded as
        object metadata; it is computed when not given.
        """
        _check_key(key)
        if not local_path.is_file():
            raise UsageError(f"{local_path} is not a file")
        digest = sha256 or sha256_file(local_path)
        if self.has_identical(key, digest):
            return False
        if self._put_if_absent(local_path, key, digest, _serialised(progress)):
            return True
        # Someone created the key between our check and our conditional write: same rule applies.
        if self.has_identical(key, digest):
            return False
        raise StoreError(f"{self.uri_for(key)}: the conditional write was refused but no object is there; retry")

    def download_file(self, key: str, local_path: Path, *, progress: ProgressCallback | None = None) -> str:
        """Stream ``key`` into ``local_path`` (replaced atomically) and return the hex SHA-256 of the bytes.

        On failure ``local_path`` is left untouched. Raises
        ``PackageNotFoundError`` if there is no such object.
        """
        _check_key(key)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial_name = tempfile.mkstemp(prefix=f".{local_path.name}.", suffix=".partial", dir=local_path.parent)
        os.close(fd)
        partial = Path(partial_name)
        try:
            digest = self._get(key, partial, _serialised(progress))
            partial.replace(local_path)
            return digest
        finally:
            partial.unlink(missing_ok=True)

    def close(self) -> None:  # noqa: B027 - deliberately optional: only network stores hold resources
        """Release network resources (a no-op for most stores)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    @abstractmethod
    def _put_if_absent(self, local_path: Path, key: str, sha256: str, progress: ProgressCallback | None) -> bool:
        """Write ``key`` only if it does not exist; ``False`` if the store refused because it does."""

    @abstractmethod
    def _get(self, key: str, local_path: Path, progress: ProgressCallback | None) -> str:
        """Write the object's bytes to ``local_path`` (which exists, empty) and return their hex SHA-256."""

    def _object_sha256(self, key: str) -> str:
        """SHA-256 of an object that carries no recorded digest (written by another tool): read it."""
        with tempfile.TemporaryDirectory(prefix="model-package-hash-") as scratch:
            return self.download_file(key, Path(scratch) / "object")


def open_store(
    uri: str,
    *,
    kms_key_id: str | None = None,
    transfer: TransferSettings | None = None,
) -> Store:
    """Open the store at ``uri``.

    ``kms_key_id`` selects the encryption key for uploads: an SSE-KMS key id
    or ARN for S3, a CMEK resource name
    (``projects/…/locations/…/keyRings/…/cryptoKeys/…``) for GCS. Endpoints and
    credentials come from each SDK's own environment (``AWS_ENDPOINT_URL``,
    ``AWS_PROFILE``…, ``STORAGE_EMULATOR_HOST``, ``GOOGLE_APPLICATION_CREDENTIALS``…).
    """
    location = parse_store_uri(uri)
    settings = transfer or TransferSettings()
    # Imported here so that boto3 / google-cloud-storage load only when such a store is used.
    if location.scheme == "s3":
        from model_package.stores.s3 import S3Store

        return S3Store(location.bucket, location.prefix, kms_key_id=kms_key_id, transfer=settings)
    if location.scheme == "gs":
        from model_package.stores.gcs import GCSStore

        return GCSStore(location.bucket, location.prefix, kms_key_name=kms_key_id, transfer=settings)
    from model_package.stores.local import LocalStore

    if kms_key_id is not None:
        raise UsageError(f"a KMS key only applies to s3:// and gs:// stores, not {location}")
    return LocalStore(Path(location.prefix))


def _check_key(key: str) -> str:
    try:
        check_relative_path(key)
    except ValueError as exc:
        raise UsageError(f"invalid store key: {exc}") from None
    return key


def _serialised(progress: ProgressCallback | None) -> ProgressCallback | None:
    """Wrap ``progress`` so parallel transfer threads never call it at the same time."""
    if progress is None:
        return None
    lock = threading.Lock()
    callback = progress

    def report(count: int) -> None:
        if count:
            with lock:
                callback(count)

    return report


def _invalid(uri: str, reason: str) -> InvalidStoreURIError:
    return InvalidStoreURIError(f"invalid store URI {uri!r}: {reason}; supported: {SUPPORTED_URIS}")


def _local_prefix(uri: str, path: str) -> str:
    if "\x00" in path:
        raise _invalid(uri, "the path contains a NUL byte")
    # normpath folds "a/../b" and "//": the root must be one canonical directory.
    return "/" + posixpath.normpath(PurePosixPath(path).as_posix()).lstrip("/")


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _s3_bucket_problem(bucket: str) -> str | None:
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
    if not _S3_BUCKET_RE.match(bucket):
        return "use 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit"
    if ".." in bucket or _is_ip_address(bucket):
        return "it must not contain '..' or look like an IP address"
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3")):
        return "it uses a prefix or suffix reserved by AWS"
    return None


def _gcs_bucket_problem(bucket: str) -> str | None:
    # https://cloud.google.com/storage/docs/buckets#naming
    if not _GCS_BUCKET_RE.match(bucket):
        return "use 3-63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    if "." not in bucket and len(bucket) > 63:
        return "names without dots are at most 63 characters"
    if any(len(part) > 63 or not part for part in bucket.split(".")):
        return "each dot-separated part must be 1-63 characters"
    if _is_ip_address(bucket):
        return "it must not look like an IP address"
    if bucket.startswith("goog") or "google" in bucket:
        return "names may not start with 'goog' or contain 'google'"
    return None
