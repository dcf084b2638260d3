"""Deterministic ``model.tar.gz`` archives and safe extraction.

Packing the same package directory always yields the same bytes, so the
archive's SHA-256 (the package *digest*) is a content address:

* entries are sorted, ``manifest.json`` first, then every file the manifest lists;
* every header has mtime 0, uid/gid 0, empty owner names and mode 0644;
* the gzip header carries no file name and mtime 0;
* the gzip stream is compressed in fixed-size blocks on several threads
  (pigz-style, with each block primed by the previous one), which gives one
  standard gzip member that ``tar -xzf`` extracts, whatever the thread count.

Extraction never trusts the archive: each entry is checked before it is
written (no absolute paths, no ``..``, no links or device files, no
duplicates), everything lands in a hidden staging directory, the result is
verified against the manifest, and only then renamed into place.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from isal import igzip_threaded, isal_zlib

from model_package.errors import DigestMismatchError, IntegrityError, MissingFileError, UnsafeArchiveError, UsageError
from model_package.hashing import HashingWriter, ProgressCallback, sha256_file
from model_package.manifest import MANIFEST_FILENAME, Manifest, check_relative_path, read_manifest
from model_package.verify import check_file_set, verify_integrity

# isal's stubs type its error class as an instance; it is an Exception subclass.
IsalError = cast("type[Exception]", isal_zlib.error)
ARCHIVE_NAME = "model.tar.gz"
#: Size of the blocks compressed in parallel; part of the archive format (changing it changes digests).
BLOCK_SIZE = 1024 * 1024
#: ISA-L level 1: close to gzip -6 on model weights (which barely compress) at several times the speed.
COMPRESS_LEVEL = 1
_FILE_MODE = 0o644
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class PackResult:
    """Where the archive was written, its digest (hex SHA-256) and its size in bytes."""

    path: Path
    digest: str
    size: int


def default_threads() -> int:
    """Compression threads: every core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def pack(
    package_dir: Path,
    dest: Path,
    *,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> PackResult:
    """Write the deterministic archive of ``package_dir`` to ``dest`` atomically.

    The directory is checked against its manifest while it is streamed (each
    file's SHA-256 and size, no missing or unlisted files); on any mismatch
    nothing is left at ``dest``.
    """
    manifest = _manifest_for_packing(package_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            hasher = HashingWriter(raw)
            _write_archive(package_dir, manifest, hasher, threads=threads, progress=progress)
            raw.flush()
            os.fsync(raw.fileno())
        tmp.replace(dest)
        return PackResult(path=dest, digest=hasher.hexdigest(), size=hasher.bytes_written)
    finally:
        tmp.unlink(missing_ok=True)


def archive_digest(package_dir: Path, *, threads: int | None = None, progress: ProgressCallback | None = None) -> str:
    """The digest ``pack`` would produce for ``package_dir``, without writing the archive."""
    manifest = _manifest_for_packing(package_dir)
    hasher = HashingWriter(_NullSink())  # type: ignore[arg-type]
    _write_archive(package_dir, manifest, hasher, threads=threads, progress=progress)
    return hasher.hexdigest()


def extract(
    archive: Path,
    dest_dir: Path,
    *,
    expected_digest: str | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Safely unpack ``archive`` into ``dest_dir`` (which must not exist or be empty) and verify it.

    With ``expected_digest``, the archive's SHA-256 is checked before anything is unpacked.
    """
    if not archive.is_file():
        raise MissingFileError(f"{archive} does not exist or is not a file")
    if expected_digest is not None:
        actual = sha256_file(archive)
        if actual != expected_digest:
            raise DigestMismatchError(
                f"{archive} has sha256 {actual} but {expected_digest} was expected: "
                "the archive was modified, truncated or is not the pinned package"
            )
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise UsageError(f"{dest_dir} already exists and is not an empty directory")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.partial-", dir=dest_dir.parent))
    try:
        written = _unpack_into(archive, staging, progress)
        manifest = verify_integrity(staging, known_sha256=written)
        if dest_dir.exists():
            dest_dir.rmdir()
        staging.rename(dest_dir)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _manifest_for_packing(package_dir: Path) -> Manifest:
    if not package_dir.is_dir():
        raise MissingFileError(f"{package_dir} is not a package directory")
    manifest = read_manifest(package_dir)
    check_file_set(package_dir, manifest)
    return manifest


def _write_archive(
    package_dir: Path,
    manifest: Manifest,
    sink: HashingWriter,
    *,
    threads: int | None,
    progress: ProgressCallback | None,
) -> None:
    gz = igzip_threaded.open(  # type: ignore[no-untyped-call]
        sink, "wb", compresslevel=COMPRESS_LEVEL, threads=threads or default_threads(), block_size=BLOCK_SIZE
    )
    # Write straight to the compressor in exact BLOCK_SIZE pieces so block
    # boundaries (and so the bytes) never depend on how tarfile chunks its writes.
    blocks = _FixedBlockWriter(gz.raw, BLOCK_SIZE)
    try:
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=blocks, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_COPY_CHUNK
        ) as tar:
            manifest_bytes = (package_dir / MANIFEST_FILENAME).read_bytes()
            tar.addfile(_tarinfo(MANIFEST_FILENAME, len(manifest_bytes)), io.BytesIO(manifest_bytes))
            for entry in sorted(manifest.files, key=lambda e: e.path):
                path = package_dir / entry.path
                size = path.stat().st_size
                if size != entry.size:
                    raise IntegrityError(
                        f"{entry.path}: size is {size} bytes, the manifest says {entry.size}: "
                        "the file was modified after the manifest was written"
                    )
                with path.open("rb") as source:
                    reader = _HashingReader(source, progress)
                    tar.addfile(_tarinfo(entry.path, size), reader)
                if reader.hexdigest() != entry.sha256:
                    raise IntegrityError(
                        f"{entry.path}: sha256 is {reader.hexdigest()}, the manifest says {entry.sha256}: "
                        "the file was modified after the manifest was written"
                    )
        blocks.close()
    finally:
        gz.close()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = _FILE_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _unpack_into(archive: Path, staging: Path, progress: ProgressCallback | None) -> dict[str, str]:
    """Unpack into ``staging``; returns each file's SHA-256, hashed while it was written (one read)."""
    seen: set[str] = set()
    written: dict[str, str] = {}
    try:
        with (
            igzip_threaded.open(archive, "rb", threads=1) as gz,  # type: ignore[no-untyped-call]
            tarfile.open(fileobj=gz, mode="r|") as tar,
        ):
            for member in tar:
                name = _checked_member_name(member)
                if name is None:
                    continue
                if name in seen:
                    raise UnsafeArchiveError(f"{archive}: entry {name!r} appears more than once")
                seen.add(name)
                if member.isdir():
                    (staging / name).mkdir(parents=True, exist_ok=True)
                    continue
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have data
                    raise UnsafeArchiveError(f"{archive}: entry {name!r} has no data")
                with target.open("xb") as raw:
                    out = HashingWriter(raw)
                    while chunk := source.read(_COPY_CHUNK):
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
                written[name] = out.hexdigest()
        return written
    except (tarfile.TarError, EOFError, OSError, IsalError) as exc:
        if isinstance(exc, FileExistsError):
            raise UnsafeArchiveError(f"{archive}: two entries map to the same file ({exc.filename})") from exc
        raise IntegrityError(f"{archive} is not a valid gzip-compressed tar archive: {exc}") from exc


def _checked_member_name(member: tarfile.TarInfo) -> str | None:
    """The member's safe relative path, ``None`` for the root entry; raises on anything unsafe."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/") if member.isdir() else name
    if name in ("", "."):
        return None
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"archive entry {member.name!r} is a link to {member.linkname!r}; packages may not contain links"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"archive entry {member.name!r} is a device, FIFO or other special file")
    try:
        check_relative_path(name)
    except ValueError as exc:
        raise UnsafeArchiveError(f"archive entry {member.name!r} would escape the package root: {exc}") from exc
    return name


class _FixedBlockWriter(io.RawIOBase):
    """Re-chunks writes into exact ``block_size`` pieces for the parallel compressor."""

    def __init__(self, target: BinaryIO, block_size: int) -> None:
        self._target = target
        self._block_size = block_size
        self._buffer = bytearray()
        self._position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        self._position += len(data)
        while len(self._buffer) >= self._block_size:
            self._target.write(bytes(self._buffer[: self._block_size]))
            del self._buffer[: self._block_size]
        return len(data)

    def close(self) -> None:
        if not self.closed and self._buffer:
            self._target.write(bytes(self._buffer))
            self._buffer.clear()
        super().close()


class _HashingReader(io.RawIOBase):
    """Passes reads through while hashing them, so packing reads each file once."""

    def __init__(self, source: BinaryIO, progress: ProgressCallback | None) -> None:
        import hashlib

        self._source = source
        self._digest = hashlib.sha256()
        self._progress = progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._digest.update(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _NullSink:
    """A write-only sink that discards everything (for computing digests)."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def flush(self) -> None:
        return None
