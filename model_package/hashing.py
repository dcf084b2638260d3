"""Streamed SHA-256 of files and streams: constant memory whatever the file size."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 4 * 1024 * 1024

#: Called with the number of bytes just processed; drives progress bars.
ProgressCallback = Callable[[int], None]


def sha256_file(path: Path, progress: ProgressCallback | None = None) -> str:
    """Hex SHA-256 of a file, read in fixed-size chunks."""
    with path.open("rb") as handle:
        return sha256_stream(handle, progress)


def sha256_stream(stream: BinaryIO, progress: ProgressCallback | None = None) -> str:
    """Hex SHA-256 of everything left in ``stream``."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK_SIZE):
        digest.update(chunk)
        if progress is not None:
            progress(len(chunk))
    return digest.hexdigest()


class HashingWriter:
    """A write-only binary stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self._digest = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._digest.update(data)
        self.bytes_written += len(data)
        return self._target.write(data)

    def flush(self) -> None:
        self._target.flush()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
