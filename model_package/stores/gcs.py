"""A Google Cloud Storage store (``gs://bucket/prefix``) on google-cloud-storage.

* Writes are conditional (``ifGenerationMatch=0``): GCS refuses to replace an
  existing object even if two publishers race.
* Objects carry their SHA-256 in custom metadata and are encrypted with the
  bucket's default key, or with a customer-managed key (CMEK) when one is given.
* Files above the multipart threshold are uploaded as resumable uploads in
  fixed chunks and downloaded as parallel ranged reads.

The endpoint and credentials come from the library's own environment
(``STORAGE_EMULATOR_HOST``, ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC,
the metadata server), so the same code talks to GCS or an emulator.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from model_package.errors import (
    CredentialsError,
    IntegrityError,
    PackageNotFoundError,
    StoreError,
    StoreUnreachableError,
)
from model_package.hashing import HashingWriter, ProgressCallback, sha256_file
from model_package.stores.base import (
    SHA256_METADATA_KEY,
    ObjectInfo,
    Store,
    StoreLocation,
    TransferSettings,
    _check_key,
)

#: Resumable-upload chunks must be a multiple of 256 KiB.
_CHUNK_MULTIPLE = 256 * 1024


def _import_storage() -> Any:
    try:
        # importlib, not `from google.cloud import storage`: google.cloud is a namespace package that
        # other installed Google libraries (aiplatform) ship typed, which hides storage from mypy.
        storage = importlib.import_module("google.cloud.storage")
    except ImportError:
        raise StoreError(
            "gs:// stores need google-cloud-storage, which is not installed: pip install 'model-deploy[gcp]'"
        ) from None
    return storage


class GCSStore(Store):
    """Objects under ``gs://bucket/prefix``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        kms_key_name: str | None = None,
        endpoint: str | None = None,
        transfer: TransferSettings | None = None,
    ) -> None:
        """``endpoint`` (e.g. an emulator's URL, used without credentials) overrides ``STORAGE_EMULATOR_HOST``.

        The client is created on first use, so opening a store needs no credentials.
        """
        super().__init__(StoreLocation("gs", bucket, prefix.strip("/")))
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.kms_key_name = kms_key_name
        self.transfer = transfer or TransferSettings()
        self._endpoint = endpoint
        self._storage = _import_storage()
        self._timeout = (self.transfer.connect_timeout, self.transfer.read_timeout)

    @cached_property
    def client(self) -> Any:
        """The storage client (credentials are resolved here, so credential errors surface here)."""
        with self._errors("connect to", None):
            if self._endpoint is not None:
                from google.auth.credentials import AnonymousCredentials

                return self._storage.Client(
                    project=None,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": self._endpoint},
                )
            # project=None: object reads and writes need no project, so do not require one to be configured.
            return self._storage.Client(project=None)

    @cached_property
    def retry(self) -> Any:
        """The library's retry policy for transient errors, minus connection-establishment failures.

        A refused connection, unknown host or connect timeout means a wrong
        endpoint or no network; retrying it for a minute only hides the error.
        """
        from google.cloud.storage.retry import DEFAULT_RETRY

        transient = DEFAULT_RETRY._predicate  # storage's own list of retryable errors

        def should_retry(exc: Exception) -> bool:
            return not _is_connect_failure(exc) and bool(transient(exc))

        return DEFAULT_RETRY.with_predicate(should_retry).with_timeout(self.transfer.retry_deadline)

    def close(self) -> None:
        """Close the client's HTTP session, if one was opened."""
        if "client" in self.__dict__:
            self.client.close()

    def head(self, key: str) -> ObjectInfo | None:
        """Size and recorded SHA-256 of ``key``; ``None`` if absent (or the bucket is missing)."""
        blob = self._get_blob(key)
        if blob is None:
            return None
        return ObjectInfo(key=key, size=int(blob.size), sha256=(blob.metadata or {}).get(SHA256_METADATA_KEY))

    def _put_if_absent(self, local_path: Path, key: str, sha256: str, progress: ProgressCallback | None) -> bool:
        size = local_path.stat().st_size
        chunk_size = None
        if size >= self.transfer.multipart_threshold:
            chunk_size = -(-self.transfer.chunk_size // _CHUNK_MULTIPLE) * _CHUNK_MULTIPLE
        blob = self._bucket.blob(self._key(key), chunk_size=chunk_size, kms_key_name=self.kms_key_name)
        blob.metadata = {SHA256_METADATA_KEY: sha256}
        try:
            with self._errors("write", key, conditional=True), local_path.open("rb") as source:
                # No Content-Encoding, ever: GCS would then serve decompressed bytes (decompressive
                # transcoding) and the archive would no longer match its digest.
                blob.upload_from_file(
                    _ProgressReader(source, progress),
                    size=size,
                    content_type=_content_type(key),
                    if_generation_match=0,  # create only: GCS refuses if the object exists
                    retry=self.retry,
                    timeout=self._timeout,
                )
        except _ConditionFailed:
            return False
        return True

    def _get(self, key: str, local_path: Path, progress: ProgressCallback | None) -> str:
        blob = self._get_blob(key)
        if blob is None:
            raise PackageNotFoundError(f"{self.uri_for(key)} does not exist (or the bucket does not exist)")
        size = int(blob.size)
        if size >= self.transfer.multipart_threshold and self.transfer.max_concurrency > 1:
            with self._errors("read", key):
                self._get_ranges(blob, key, local_path, progress)
            return sha256_file(local_path)  # parallel ranges land out of order: hash once complete
        with self._errors("read", key), local_path.open("wb") as out:
            writer = HashingWriter(out)
            # raw_download: the stored bytes, never a transcoded (decompressed) rendition of them.
            blob.download_to_file(
                _ProgressWriter(writer, progress), raw_download=True, retry=self.retry, timeout=self._timeout
            )
            return writer.hexdigest()

    def _get_ranges(self, blob: Any, key: str, local_path: Path, progress: ProgressCallback | None) -> None:
        """Download ``blob`` as parallel ranged reads written in place (``blob`` pins the generation)."""
        size = int(blob.size)
        chunk = self.transfer.chunk_size
        ranges = [(start, min(start + chunk, size) - 1) for start in range(0, size, chunk)]
        with local_path.open("r+b") as out:
            out.truncate(size)
            fd = out.fileno()

            def fetch(start: int, end: int) -> None:
                writer = _PositionalWriter(fd, start, progress)
                blob.download_to_file(
                    writer,
                    start=start,
                    end=end,
                    raw_download=True,
                    checksum=None,
                    retry=self.retry,
                    timeout=self._timeout,
                )
                if writer.written != end - start + 1:
                    raise IntegrityError(
                        f"{self.uri_for(key)}: asked for bytes {start}-{end}, got {writer.written} bytes; retry"
                    )

            with ThreadPoolExecutor(max_workers=min(self.transfer.max_concurrency, len(ranges))) as pool:
                futures = [pool.submit(fetch, start, end) for start, end in ranges]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise

    @property
    def _bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def _get_blob(self, key: str) -> Any:
        with self._errors("read", key):
            return self._bucket.get_blob(self._key(key), retry=self.retry, timeout=self._timeout)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, action: str, key: str | None, *, conditional: bool = False) -> Iterator[None]:
        """Translate google-cloud / google-auth / requests exceptions into this library's errors."""
        import requests
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth
        from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

        where = self.uri_for(key) if key else self.uri
        try:
            yield
        except api.PreconditionFailed:
            if conditional:
                raise _ConditionFailed from None
            raise StoreError(f"cannot {action} {where}: a precondition failed") from None
        except api.NotFound:
            if action == "write":
                raise PackageNotFoundError(
                    f"cannot write {where}: bucket {self.bucket_name!r} does not exist (check the store URI)"
                ) from None
            raise PackageNotFoundError(f"{where} does not exist") from None
        except (api.Forbidden, api.Unauthorized) as exc:
            raise CredentialsError(
                f"Google Cloud refused to {action} {where} ({exc.code}: {_first_line(exc.message)}); check the "
                "credentials and that they may use this bucket and KMS key"
            ) from None
        except api.GoogleAPICallError as exc:
            raise StoreError(f"cannot {action} {where}: GCS error {exc.code}: {_first_line(exc.message)}") from None
        except (auth.DefaultCredentialsError, auth.RefreshError) as exc:
            detail = _first_line(str(exc)).split(". ")[0]
            raise CredentialsError(
                f"cannot {action} {where}: no usable Google Cloud credentials ({detail}); run "
                "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
        except (auth.TransportError, requests.ConnectionError, requests.Timeout) as exc:
            raise StoreUnreachableError(
                f"cannot {action} {where}: {_unreachable(exc)}; check the network and STORAGE_EMULATOR_HOST"
            ) from None
        except DataCorruption as exc:
            raise IntegrityError(f"{where}: the transfer was corrupted ({_first_line(str(exc))}); retry") from None
        except InvalidResponse as exc:
            status = getattr(exc.response, "status_code", "?")
            raise StoreError(f"cannot {action} {where}: unexpected HTTP {status} from GCS") from None


class _ConditionFailed(Exception):
    """GCS refused a conditional write because the object exists."""


class _ProgressReader:
    """A seekable reader that reports the highest offset read so far (retries re-read without re-counting)."""

    def __init__(self, source: BinaryIO, progress: ProgressCallback | None) -> None:
        self._source = source
        self._progress = progress
        self._reported = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        position = self._source.tell()
        if self._progress is not None and position > self._reported:
            self._progress(position - self._reported)
            self._reported = position
        return data

    def tell(self) -> int:
        return self._source.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._source.seek(offset, whence)

    def seekable(self) -> bool:
        return True


class _ProgressWriter:
    """Passes writes through to ``target`` and reports their sizes."""

    def __init__(self, target: HashingWriter, progress: ProgressCallback | None) -> None:
        self._target = target
        self._progress = progress

    def write(self, data: bytes) -> int:
        written = self._target.write(data)
        if self._progress is not None:
            self._progress(len(data))
        return written


class _PositionalWriter:
    """Writes one byte range of a file in place with ``pwrite`` (safe across threads)."""

    def __init__(self, fd: int, offset: int, progress: ProgressCallback | None) -> None:
        self._fd = fd
        self._offset = offset
        self._progress = progress
        self.written = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            count = os.pwrite(self._fd, view, self._offset + self.written)
            self.written += count
            view = view[count:]
        if self._progress is not None:
            self._progress(len(data))
        return len(data)


def _is_connect_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a refused connection, unknown host or connect timeout (no request was sent)."""
    import requests
    from google.auth.exceptions import TransportError
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

    if isinstance(exc, TransportError) and exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = exc.args[0]
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, (NewConnectionError, ConnectTimeoutError))
    return False


def _unreachable(exc: BaseException) -> str:
    """``<endpoint> is unreachable (<reason>)`` from a requests/google-auth exception's long repr."""
    import requests

    url = getattr(getattr(exc, "request", None), "url", None)
    endpoint = "the endpoint"
    if isinstance(url, str):
        parts = urlsplit(url)
        endpoint = f"{parts.scheme}://{parts.netloc}"
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    if match:
        reason = match.group(1).strip()
    elif isinstance(exc, requests.Timeout):
        reason = "timed out"
    else:
        reason = type(exc).__name__
    return f"{endpoint} is unreachable ({reason})"


def _content_type(key: str) -> str:
    return "application/json" if key.endswith(".json") else "application/octet-stream"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no details"
