"""An S3 store (``s3://bucket/prefix``) on boto3.

* Writes are conditional (``If-None-Match: *`` on PutObject and
  CompleteMultipartUpload), so S3 itself refuses to replace an object even if
  two publishers race.
* Objects are encrypted at rest by the bucket's default encryption (a store the stack
  created defaults to its own KMS key) unless a KMS key is named, and carry their SHA-256
  as ``x-amz-meta-sha256``. A named key (id, ARN, alias or alias ARN) is sent as its key
  ARN, the one form a bucket policy requiring that key can match.
* Large files use boto3's transfer manager: multipart uploads and parallel
  ranged downloads.

The endpoint, region and credentials come from boto3's usual sources
(``AWS_ENDPOINT_URL[_S3]``, ``AWS_PROFILE``, instance roles…), so the same
code talks to AWS, MinIO or moto.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from model_package.errors import (
    CredentialsError,
    PackageNotFoundError,
    StoreError,
    StoreUnreachableError,
)
from model_package.hashing import CHUNK_SIZE, HashingWriter, ProgressCallback, sha256_file
from model_package.stores.base import (
    SHA256_METADATA_KEY,
    ObjectInfo,
    Store,
    StoreLocation,
    TransferSettings,
    _check_key,
)

_CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "403",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# A key ARN, as opposed to a key id, an alias name or an alias ARN, which KMS must resolve first.
_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")
# 409 ConditionalRequestConflict: a concurrent conditional write to the same key won.
_CONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


def _import_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise StoreError("s3:// stores need boto3, which is not installed: pip install 'model-deploy[aws]'") from None
    return boto3


class S3Store(Store):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        kms_key_id: str | None = None,
        endpoint_url: str | None = None,
        transfer: TransferSettings | None = None,
    ) -> None:
        """``endpoint_url`` overrides ``AWS_ENDPOINT_URL`` (for tests); the client is created on first use."""
        super().__init__(StoreLocation("s3", bucket, prefix.strip("/")))
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.kms_key_id = kms_key_id
        self.transfer = transfer or TransferSettings()
        self._endpoint_url = endpoint_url
        self._boto3 = _import_boto3()

    @cached_property
    def client(self) -> Any:
        """The boto3 S3 client, with short timeouts and conditional writes wired in."""
        from botocore.config import Config

        settings = self.transfer
        config = Config(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            max_pool_connections=max(10, settings.max_concurrency * 2),
        )
        with self._errors("connect to", None):
            client = self._boto3.session.Session().client("s3", endpoint_url=self._endpoint_url, config=config)
        # s3transfer does not let callers pass IfNoneMatch, so add it to the two requests that
        # create objects. This client only ever creates immutable objects, so it applies to all.
        for operation in ("PutObject", "CompleteMultipartUpload"):
            client.meta.events.register(f"before-parameter-build.s3.{operation}", _add_if_none_match)
        return client

    def head(self, key: str) -> ObjectInfo | None:
        """Size and ``x-amz-meta-sha256`` of ``key``, ``None`` if absent (or the bucket is missing)."""
        full_key = self._key(key)
        try:
            with self._errors("read", key, missing_ok=True):
                response = self.client.head_object(Bucket=self.bucket, Key=full_key)
        except _Missing:
            return None
        metadata = response.get("Metadata") or {}
        return ObjectInfo(key=key, size=int(response["ContentLength"]), sha256=metadata.get(SHA256_METADATA_KEY))

    def _put_if_absent(self, local_path: Path, key: str, sha256: str, progress: ProgressCallback | None) -> bool:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        extra_args: dict[str, Any] = {
            "Metadata": {SHA256_METADATA_KEY: sha256},
            "ContentType": _content_type(key),
            **self._encryption_args,
        }
        try:
            with (
                self._errors("write", key, conditional=True),
                create_transfer_manager(self.client, self._transfer_config(TransferConfig)) as manager,
            ):
                future = manager.upload(
                    str(local_path),
                    self.bucket,
                    self._key(key),
                    extra_args=extra_args,
                    subscribers=_subscribers(progress),
                )
                future.result()
        except _ConditionFailed:
            return False
        return True

    @cached_property
    def _encryption_args(self) -> dict[str, str]:
        """The SSE arguments of every upload: none (bucket default) or SSE-KMS with the key's ARN."""
        # With no key named, send no encryption header at all: S3 then applies the bucket's default
        # encryption (SSE-S3 on every bucket since 2023-01-05; the store bucket's own KMS key on a
        # store the stack created). `aws:kms` without a key id would select the account's `aws/s3`
        # key instead, which the store's bucket policy refuses (PutObject, x-amz-server-side-
        # encryption-aws-kms-key-id: https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html;
        # https://docs.aws.amazon.com/AmazonS3/latest/userguide/default-encryption-faq.html).
        if not self.kms_key_id:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._kms_key_arn(self.kms_key_id)}

    def _kms_key_arn(self, key_id: str) -> str:
        """``key_id`` as a key ARN, resolved through ``kms:DescribeKey`` unless it already is one.

        A bucket policy that requires a key compares ``s3:x-amz-server-side-encryption-aws-kms-key-id``
        with the string sent, and AWS's examples and our store policy name the key ARN; an alias or
        bare id would be denied. A key in another account must be named by ARN anyway (PutObject
        reference, SSEKMSKeyId). DescribeKey takes a key id, key ARN, alias name or alias ARN
        (https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeKey.html).
        """
        if _KMS_KEY_ARN_RE.match(key_id):
            return key_id
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            kms = self._boto3.session.Session().client("kms", region_name=self.client.meta.region_name)
            return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), error.get("Message") or ""
            if code == "NotFoundException":
                raise StoreError(
                    f"KMS key {key_id!r} does not exist in {self.client.meta.region_name} "
                    "(the bucket's region): pass the key ARN, arn:aws:kms:<region>:<account>:key/<id>"
                ) from None
            error_type = CredentialsError if "AccessDenied" in code else StoreError
            raise error_type(
                f"cannot resolve KMS key {key_id!r} to its ARN ({code}: {message}): pass the key ARN "
                "(arn:aws:kms:<region>:<account>:key/<id>) instead, or allow kms:DescribeKey on it"
            ) from None
        except BotoCoreError as exc:
            raise StoreUnreachableError(f"cannot resolve KMS key {key_id!r} to its ARN: {exc}") from None

    def _get(self, key: str, local_path: Path, progress: ProgressCallback | None) -> str:
        info = self.head(key)
        if info is None:
            raise PackageNotFoundError(f"{self.uri_for(key)} does not exist (or the bucket does not exist)")
        if info.size < self.transfer.multipart_threshold or self.transfer.max_concurrency == 1:
            return self._get_streamed(key, local_path, progress)
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        # Parallel ranged GETs land out of order, so hash once the file is complete.
        with (
            self._errors("read", key),
            create_transfer_manager(self.client, self._transfer_config(TransferConfig)) as manager,
        ):
            manager.download(self.bucket, self._key(key), str(local_path), subscribers=_subscribers(progress)).result()
        return sha256_file(local_path)

    def _get_streamed(self, key: str, local_path: Path, progress: ProgressCallback | None) -> str:
        """One GET, hashed while it is written: no second pass over the file."""
        with self._errors("read", key), local_path.open("wb") as out:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            writer = HashingWriter(out)
            try:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    writer.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            finally:
                body.close()
            return writer.hexdigest()

    def _transfer_config(self, config_class: Any) -> Any:
        settings = self.transfer
        return config_class(
            multipart_threshold=settings.multipart_threshold,
            multipart_chunksize=settings.chunk_size,
            max_concurrency=settings.max_concurrency,
            use_threads=settings.max_concurrency > 1,
            # The If-None-Match hook is a botocore event: pin the botocore-based transfer client
            # rather than the optional CRT one, which sends requests through its own pipeline.
            preferred_transfer_client="classic",
        )

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(
        self, action: str, key: str | None, *, missing_ok: bool = False, conditional: bool = False
    ) -> Iterator[None]:
        """Translate botocore/s3transfer exceptions into this library's errors (one-line messages)."""
        try:
            yield
        except Exception as exc:
            # s3transfer wraps the last error of a download it gave up retrying; judge that error.
            last = getattr(exc, "last_exception", None)
            cause = last if isinstance(last, Exception) else exc
            translated = self._translate(cause, action, key, missing_ok=missing_ok, conditional=conditional)
            if translated is None:
                raise
            raise translated from None

    def _translate(
        self, exc: Exception, action: str, key: str | None, *, missing_ok: bool, conditional: bool
    ) -> Exception | None:
        """The library error for a botocore exception, or ``None`` if ``exc`` is not one."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            CredentialRetrievalError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ProfileNotFound,
            ReadTimeoutError,
        )

        where = self.uri_for(key) if key else self.uri
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = error.get("Message") or code
            if conditional and code in _CONDITION_CODES:
                return _ConditionFailed()
            if missing_ok and code in _NOT_FOUND_CODES:
                return _Missing()
            if code == "NoSuchBucket":
                return PackageNotFoundError(
                    f"cannot {action} {where}: bucket {self.bucket!r} does not exist (check the store URI)"
                )
            if code in _NOT_FOUND_CODES:
                return PackageNotFoundError(f"{where} does not exist")
            if code in _CREDENTIAL_CODES:
                # A bare 403 comes from HEAD (no body). S3 answers HEAD of a *missing* key with 403
                # when the caller lacks s3:ListBucket, so name that permission too.
                needs = " (s3:ListBucket is needed to check whether a key exists)" if code == "403" else ""
                return CredentialsError(
                    f"AWS refused to {action} {where} ({code}: {message}){needs}; check the credentials "
                    "(AWS_PROFILE, AWS_ACCESS_KEY_ID…) and that they may use this bucket and KMS key"
                )
            if code.startswith("KMS.") or "KMS" in message:
                return StoreError(f"cannot {action} {where}: KMS error {code}: {message}")
            return StoreError(f"cannot {action} {where}: S3 error {code}: {message}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError | ProfileNotFound):
            return CredentialsError(
                f"cannot {action} {where}: {exc}; configure AWS credentials (aws configure, AWS_PROFILE "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            )
        if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
            return StoreUnreachableError(
                f"cannot {action} {where}: {exc}; check the network, AWS_ENDPOINT_URL and the region"
            )
        if isinstance(exc, BotoCoreError):
            return StoreError(f"cannot {action} {where}: {exc}")
        return None


class _ConditionFailed(Exception):
    """S3 refused a conditional write because the key exists."""


class _Missing(Exception):
    """HEAD found no object."""


def _add_if_none_match(params: dict[str, Any], **_: Any) -> None:
    params.setdefault("IfNoneMatch", "*")


def _content_type(key: str) -> str:
    return "application/json" if key.endswith(".json") else "application/octet-stream"


def _subscribers(progress: ProgressCallback | None) -> list[Any] | None:
    if progress is None:
        return None
    from boto3.s3.transfer import ProgressCallbackInvoker

    callback = progress

    def forward(count: int) -> None:
        # s3transfer reports negative counts when it rewinds a retried part; progress only moves forward.
        if count > 0:
            callback(count)

    return [ProgressCallbackInvoker(forward)]
