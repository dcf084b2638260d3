"""Publish packages to a store by digest, and fetch them back verified.

A published package lives under ``<store-uri>/<name>/<digest>/`` where
``digest`` is the SHA-256 of its deterministic ``model.tar.gz``:

* ``archive`` layout: ``model.tar.gz`` plus a copy of ``manifest.json`` beside
  it (for tools that want to read the manifest without the archive);
* ``uncompressed`` layout: the package's files themselves, ``manifest.json``
  included (what SageMaker's uncompressed ``S3Prefix`` model data expects).

Pushing is idempotent (objects already present with the same SHA-256 are not
re-sent) and never overwrites: if any key holds different bytes, nothing is
written. Uploads go in an order that makes a half-finished push invisible to
``pull``: the archive before its manifest copy, every file before
``manifest.json``. Pulling hashes what it downloads and refuses anything that
does not match the digest in the URI before a single file reaches the
destination.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from model_package.archive import ARCHIVE_NAME, archive_digest, extract, pack
from model_package.errors import (
    DigestMismatchError,
    IntegrityError,
    InvalidStoreURIError,
    MissingFileError,
    PackageNotFoundError,
    UsageError,
)
from model_package.hashing import ProgressCallback, sha256_file
from model_package.manifest import MANIFEST_FILENAME, Manifest, read_manifest
from model_package.stores import Store, StoreLocation, TransferSettings, open_store, parse_store_uri
from model_package.verify import verify_integrity

Layout = Literal["archive", "uncompressed"]
LAYOUTS: tuple[str, ...] = get_args(Layout)

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PushResult:
    """Where a package was published and what the push did."""

    uri: str
    """What to pin and pass to ``pull``: ``…/<digest>/model.tar.gz`` (archive) or ``…/<digest>/`` (uncompressed)."""
    digest: str
    uploaded: bool
    """``False`` when every object was already in the store (a repeated push)."""
    name: str
    version: str
    layout: Layout
    size: int
    """Bytes the package occupies in the store."""
    uploaded_keys: tuple[str, ...]
    """Keys (relative to ``…/<name>/<digest>/``) written by this push."""


@dataclass(frozen=True)
class PackageRef:
    """A parsed package URI: the ``…/<name>/<digest>`` location and, if the URI said so, the layout."""

    location: StoreLocation
    name: str
    digest: str | None
    """``None`` only for :func:`fetch` without an expected digest (integrity is still checked)."""
    layout: Layout | None

    @property
    def uri(self) -> str:
        """The package's prefix URI, ``…/<name>/<digest>/``."""
        return f"{self.location}/"


@dataclass(frozen=True)
class _Object:
    key: str
    path: Path
    sha256: str
    size: int


def package_uri(store_uri: str, name: str, digest: str, layout: Layout = "archive") -> str:
    """The URI ``push`` reports for package ``name`` with ``digest`` in ``store_uri``."""
    location = parse_store_uri(store_uri).child(name, _checked_digest(digest, store_uri))
    return str(location.child(ARCHIVE_NAME)) if layout == "archive" else f"{location}/"


def parse_package_uri(uri: str) -> PackageRef:
    """Parse ``…/<name>/<digest>/model.tar.gz`` or ``…/<name>/<digest>/``; raises ``InvalidStoreURIError``."""
    location = parse_store_uri(uri)
    parts = location.parts
    layout: Layout | None = None
    if parts and parts[-1] == ARCHIVE_NAME:
        layout = "archive"
        location = location.parent()
        parts = parts[:-1]
    if len(parts) < 2:
        raise InvalidStoreURIError(
            f"package URI {uri!r} must end in <name>/<digest>/ or <name>/<digest>/{ARCHIVE_NAME}, "
            "as printed by `model-package push`"
        )
    return PackageRef(location=location, name=parts[-2], digest=_checked_digest(parts[-1], uri), layout=layout)


def push(
    source: Path,
    store_uri: str,
    *,
    layout: Layout = "archive",
    kms_key_id: str | None = None,
    progress: ProgressCallback | None = None,
    threads: int | None = None,
    transfer: TransferSettings | None = None,
) -> PushResult:
    """Publish a package directory or ``model.tar.gz`` under ``<store_uri>/<name>/<digest>/``.

    The package is verified against its manifest first. A ``model.tar.gz``
    source must be the deterministic archive ``pack`` writes (its digest is
    re-derived from its contents). ``kms_key_id`` is an S3 SSE-KMS key id/ARN or
    a GCS CMEK key name; ``progress`` receives uploaded byte counts (objects
    already present count as done). Raises ``ObjectConflictError`` without
    writing anything if a key already holds different bytes.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    root = parse_store_uri(store_uri)  # a bad URI fails before any packing work
    source = Path(source)
    if not source.exists():
        raise MissingFileError(f"{source} does not exist; pass a package directory or a {ARCHIVE_NAME}")
    with tempfile.TemporaryDirectory(prefix="model-package-push-") as scratch_name:
        scratch = Path(scratch_name)
        if source.is_dir():
            manifest, digest, objects = _plan_directory(source, layout, scratch, threads)
        else:
            manifest, digest, objects = _plan_archive(source, layout, scratch, threads)
        location = root.child(manifest.name, digest)
        with open_store(str(location), kms_key_id=kms_key_id, transfer=transfer) as store:
            uploaded = _upload_all(store, objects, progress)
    uri = str(location.child(ARCHIVE_NAME)) if layout == "archive" else f"{location}/"
    return PushResult(
        uri=uri,
        digest=digest,
        uploaded=bool(uploaded),
        name=manifest.name,
        version=manifest.version,
        layout=layout,
        size=sum(obj.size for obj in objects),
        uploaded_keys=tuple(uploaded),
    )


def pull(
    package_uri: str,
    dest_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    threads: int | None = None,
    transfer: TransferSettings | None = None,
) -> Manifest:
    """Download the package at ``package_uri`` into ``dest_dir`` (new or empty), verified.

    Accepts ``…/<name>/<digest>/model.tar.gz`` or ``…/<name>/<digest>/`` (the
    layout is then detected). Everything is downloaded into a scratch directory
    beside ``dest_dir`` and checked against the digest in the URI (and, for the
    uncompressed layout, each file against the manifest) before ``dest_dir`` is
    created; on ``DigestMismatchError`` or any other failure ``dest_dir`` is left
    as it was. ``progress`` receives downloaded byte counts.
    """
    return _fetch(parse_package_uri(package_uri), Path(dest_dir), progress=progress, threads=threads, transfer=transfer)


def fetch(
    uri: str,
    dest_dir: Path,
    *,
    expected_digest: str | None = None,
    progress: ProgressCallback | None = None,
    threads: int | None = None,
    transfer: TransferSettings | None = None,
) -> Manifest:
    """Download a package from any store prefix (or ``…/model.tar.gz``), verified against its manifest.

    For locations that do not carry the digest in their path, such as the copy
    Vertex AI makes of a model's artifacts (``AIP_STORAGE_URI``). With
    ``expected_digest`` the package must also have that digest.
    """
    if expected_digest is not None:
        expected_digest = _checked_digest(expected_digest, uri)
    location = parse_store_uri(uri)
    layout: Layout | None = None
    if location.parts and location.parts[-1] == ARCHIVE_NAME:
        layout, location = "archive", location.parent()
    ref = PackageRef(location=location, name="", digest=expected_digest, layout=layout)
    return _fetch(ref, Path(dest_dir), progress=progress, threads=threads, transfer=transfer)


def _fetch(
    ref: PackageRef,
    dest_dir: Path,
    *,
    progress: ProgressCallback | None,
    threads: int | None,
    transfer: TransferSettings | None,
) -> Manifest:
    _check_destination(dest_dir)
    with open_store(str(ref.location), transfer=transfer) as store:
        layout = ref.layout or _detect_layout(store, ref)
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        # Scratch beside dest_dir: same file system, so the final rename is atomic and no /tmp quota applies.
        scratch = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.pull-", dir=dest_dir.parent))
        try:
            if layout == "archive":
                return _pull_archive(store, ref, scratch, dest_dir, progress)
            return _pull_uncompressed(store, ref, scratch, dest_dir, progress, threads=threads)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _plan_directory(
    package_dir: Path, layout: Layout, scratch: Path, threads: int | None
) -> tuple[Manifest, str, list[_Object]]:
    if layout == "archive":
        packed = pack(package_dir, scratch / ARCHIVE_NAME, threads=threads)  # verifies files against the manifest
        manifest = read_manifest(package_dir)
        archive = _Object(ARCHIVE_NAME, packed.path, packed.digest, packed.size)
        return manifest, packed.digest, [archive, _manifest_object(package_dir)]
    manifest = verify_integrity(package_dir)
    digest = archive_digest(package_dir, threads=threads)
    return manifest, digest, _file_objects(package_dir, manifest)


def _plan_archive(
    archive: Path, layout: Layout, scratch: Path, threads: int | None
) -> tuple[Manifest, str, list[_Object]]:
    digest = sha256_file(archive)
    package_dir = scratch / "package"
    manifest = extract(archive, package_dir)  # rejects unsafe entries, verifies files against the manifest
    canonical = archive_digest(package_dir, threads=threads)
    if canonical != digest:
        # The digest must be the same whichever way the package is pushed, so only canonical archives qualify.
        raise UsageError(
            f"{archive} is not a canonical package archive (its sha256 {digest} differs from {canonical}, the "
            "digest of its contents): push the package directory, or re-create the archive with `model-package pack`"
        )
    if layout == "archive":
        return (
            manifest,
            digest,
            [_Object(ARCHIVE_NAME, archive, digest, archive.stat().st_size), _manifest_object(package_dir)],
        )
    return manifest, digest, _file_objects(package_dir, manifest)


def _file_objects(package_dir: Path, manifest: Manifest) -> list[_Object]:
    """The uncompressed layout's objects, ``manifest.json`` last so it marks a complete upload."""
    if any(entry.path == ARCHIVE_NAME for entry in manifest.files):
        raise UsageError(
            f"the package has a top-level {ARCHIVE_NAME}, which the uncompressed layout reserves; "
            "publish it with the archive layout"
        )
    files = [_Object(entry.path, package_dir / entry.path, entry.sha256, entry.size) for entry in manifest.files]
    return [*files, _manifest_object(package_dir)]


def _manifest_object(package_dir: Path) -> _Object:
    path = package_dir / MANIFEST_FILENAME
    return _Object(MANIFEST_FILENAME, path, sha256_file(path), path.stat().st_size)


def _upload_all(store: Store, objects: Sequence[_Object], progress: ProgressCallback | None) -> list[str]:
    # Check every key before writing any, so a conflict leaves the store exactly as it was.
    present = {obj.key for obj in objects if store.has_identical(obj.key, obj.sha256)}
    uploaded: list[str] = []
    for obj in objects:
        if obj.key not in present and store.upload_file(obj.path, obj.key, sha256=obj.sha256, progress=progress):
            uploaded.append(obj.key)
        elif progress is not None and obj.size:
            progress(obj.size)  # already stored: count it as done so a progress bar completes
    return uploaded


def _check_destination(dest_dir: Path) -> None:
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise UsageError(f"{dest_dir} already exists and is not an empty directory; pull into a new directory")


def _detect_layout(store: Store, ref: PackageRef) -> Layout:
    if store.exists(ARCHIVE_NAME):
        return "archive"
    if store.exists(MANIFEST_FILENAME):
        return "uncompressed"
    raise PackageNotFoundError(
        f"no package at {ref.uri}: neither {ARCHIVE_NAME} nor {MANIFEST_FILENAME} is there "
        "(check the store, package name and digest)"
    )


def _pull_archive(
    store: Store, ref: PackageRef, scratch: Path, dest_dir: Path, progress: ProgressCallback | None
) -> Manifest:
    archive = scratch / ARCHIVE_NAME
    actual = store.download_file(ARCHIVE_NAME, archive, progress=progress)
    if ref.digest is not None and actual != ref.digest:
        raise DigestMismatchError(
            f"{store.uri_for(ARCHIVE_NAME)} hashes to sha256 {actual}, but the URI pins {ref.digest}: "
            "the stored archive was modified or corrupted; do not deploy it"
        )
    # The digest was checked on the bytes as they were written; extract re-checks every file.
    return extract(archive, dest_dir)


def _pull_uncompressed(
    store: Store,
    ref: PackageRef,
    scratch: Path,
    dest_dir: Path,
    progress: ProgressCallback | None,
    *,
    threads: int | None,
) -> Manifest:
    staging = scratch / "package"
    store.download_file(MANIFEST_FILENAME, staging / MANIFEST_FILENAME)
    manifest = read_manifest(staging)
    for entry in manifest.files:
        try:
            actual = store.download_file(entry.path, staging / entry.path, progress=progress)
        except PackageNotFoundError:
            raise IntegrityError(
                f"the package at {ref.uri} is incomplete: {entry.path}, listed in its manifest, is missing"
            ) from None
        except (NotADirectoryError, IsADirectoryError, FileExistsError):
            raise IntegrityError(
                f"{ref.uri}: the manifest lists {entry.path!r} both as a file and a directory"
            ) from None
        if actual != entry.sha256:
            raise DigestMismatchError(
                f"{store.uri_for(entry.path)} hashes to sha256 {actual}, but the manifest lists {entry.sha256}: "
                "the stored file was modified or corrupted; do not deploy it"
            )
    # Per-file hashes prove the files match the manifest; the digest proves the manifest is the pinned one.
    digest = archive_digest(staging, threads=threads) if ref.digest is not None else None
    if digest != ref.digest:
        raise DigestMismatchError(
            f"the package at {ref.uri} has digest {digest}, but the URI pins {ref.digest}: "
            "its manifest or files were replaced; do not deploy it"
        )
    try:
        if dest_dir.exists():
            dest_dir.rmdir()
        staging.rename(dest_dir)
    except OSError as exc:
        raise UsageError(f"cannot move the package into {dest_dir}: {exc.strerror}") from None
    return manifest


def _checked_digest(digest: str, uri: str) -> str:
    if not _DIGEST_RE.match(digest):
        raise InvalidStoreURIError(
            f"{digest!r} in {uri!r} is not a package digest: expected 64 lowercase hex characters "
            f"(the sha256 of {ARCHIVE_NAME})"
        )
    return digest
