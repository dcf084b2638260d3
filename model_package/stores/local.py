"""A store on the local file system (``file:///abs/path`` or a plain path).

Useful for air-gapped hand-offs, shared volumes and tests. Objects are plain
files under the root; the SHA-256 is not stored beside them (so the
uncompressed layout stays a clean package directory) but recomputed when needed.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from model_package.errors import PackageNotFoundError, StoreError
from model_package.hashing import CHUNK_SIZE, HashingWriter, ProgressCallback, sha256_file
from model_package.stores.base import ObjectInfo, Store, StoreLocation, _check_key


class LocalStore(Store):
    """Objects are files under ``root``; directories are created on demand."""

    def __init__(self, root: Path) -> None:
        root = Path(os.path.abspath(root))
        super().__init__(StoreLocation("file", "", root.as_posix()))
        self.root = root

    def head(self, key: str) -> ObjectInfo | None:
        """Size of the file at ``key``; the SHA-256 is left to :meth:`has_identical` to compute."""
        path = self._path(key)
        if not path.is_file():
            return None
        return ObjectInfo(key=key, size=path.stat().st_size, sha256=None)

    def _object_sha256(self, key: str) -> str:
        return sha256_file(self._path(key))

    def _put_if_absent(self, local_path: Path, key: str, sha256: str, progress: ProgressCallback | None) -> bool:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {target.parent}: {exc.strerror}") from exc
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, local_path.open("rb") as source:
                while chunk := source.read(CHUNK_SIZE):
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            return _link_if_absent(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _get(self, key: str, local_path: Path, progress: ProgressCallback | None) -> str:
        source_path = self._path(key)
        try:
            source = source_path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PackageNotFoundError(f"{self.uri_for(key)} does not exist") from None
        with source, local_path.open("wb") as out:
            writer = HashingWriter(out)
            while chunk := source.read(CHUNK_SIZE):
                writer.write(chunk)
                if progress is not None:
                    progress(len(chunk))
            return writer.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)


def _link_if_absent(tmp: Path, target: Path) -> bool:
    """Publish ``tmp`` as ``target`` atomically, refusing to replace an existing file."""
    try:
        # link() fails if target exists, unlike rename(): an atomic "create only" on POSIX.
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise StoreError(f"cannot write {target}: {exc.strerror}") from exc
    # File systems without hard links (some FUSE/SMB mounts): check, then rename (a tiny race window).
    if target.exists():
        return False
    tmp.replace(target)
    return True
