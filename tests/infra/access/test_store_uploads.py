"""Pushes into a stack-created store pass its bucket policy, with every key form the CLI accepts.

The uploads run through the real ``S3Store`` against moto; the encryption headers it actually put
on the wire (PutObject, or CreateMultipartUpload for large files: both are authorized as
``s3:PutObject``) are then evaluated offline against the store's own bucket policy
(:func:`infra.aws.iam.artifact_bucket_policy`), the way S3 would judge them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.access.aws_policy import Principal, Request, ResourcePolicy, evaluate
from infra.aws.iam import artifact_bucket_policy
from model_package.errors import StoreError
from model_package.stores import open_store
from model_package.stores.base import TransferSettings
from model_package.stores.s3 import S3Store

ACCOUNT = "123456789012"  # moto's account
PUBLISHER = Principal(f"arn:aws:iam::{ACCOUNT}:role/model-publisher")
_SSE = "x-amz-server-side-encryption"
_SSE_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
SMALL_PARTS = TransferSettings(multipart_threshold=5 * 1024 * 1024, chunk_size=5 * 1024 * 1024, max_concurrency=2)


def _record_put_headers(store: S3Store) -> list[dict[str, str]]:
    """Capture the SSE headers of every request S3 authorizes as ``s3:PutObject``."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        seen.append({name: value.decode() if isinstance(value, bytes) else value
                     for name, value in headers.items() if name in (_SSE, _SSE_KEY)})  # fmt: skip

    for operation in ("PutObject", "CreateMultipartUpload"):
        store.client.meta.events.register(f"before-send.s3.{operation}", record)
    return seen


def _allowed_by_store_policy(bucket: str, key_arn: str, headers: dict[str, str]) -> bool:
    identity = {"publish": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
    ]}}  # fmt: skip
    context = {f"s3:{name}": value for name, value in headers.items()}
    request = Request(PUBLISHER, "s3:PutObject", f"arn:aws:s3:::{bucket}/pkg/model.tar.gz", context)
    policy = ResourcePolicy(artifact_bucket_policy("aws", bucket, key_arn), ACCOUNT, "s3")
    return evaluate(request, identity, policy).allowed


@pytest.fixture
def store_key(aws_env: str) -> dict[str, str]:
    """A customer-managed key with an alias, as a stack-created store has."""
    kms = boto3.client("kms")
    metadata = kms.create_key(Description="store key")["KeyMetadata"]
    alias = f"alias/models-{metadata['KeyId'][:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    region = kms.meta.region_name
    return {
        "arn": metadata["Arn"],
        "id": metadata["KeyId"],
        "alias": alias,
        "alias_arn": f"arn:aws:kms:{region}:{ACCOUNT}:{alias}",
    }


@pytest.mark.parametrize("form", [None, "arn", "id", "alias", "alias_arn"])
@pytest.mark.parametrize("size", [10_000, 11 * 1024 * 1024], ids=["single-put", "multipart"])
def test_every_key_form_passes_the_store_bucket_policy(  # noqa: PLR0917 (pytest fixtures)
    form: str | None,
    size: int,
    s3_client: Any,
    s3_bucket: str,
    store_key: dict[str, str],
    scratch_file: Callable[[int], Path],
) -> None:
    s3_client.put_bucket_encryption(
        Bucket=s3_bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": store_key["arn"]}}
            ]
        },
    )
    store = S3Store(s3_bucket, "models", kms_key_id=store_key[form] if form else None, transfer=SMALL_PARTS)
    sent = _record_put_headers(store)
    assert store.upload_file(scratch_file(size), "pkg/model.tar.gz") is True

    assert sent, "no upload request was recorded"
    for headers in sent:
        assert _allowed_by_store_policy(s3_bucket, store_key["arn"], headers), headers
    if form is not None:  # a named key travels as its ARN: the only form the policy can match
        assert {headers.get(_SSE_KEY) for headers in sent} == {store_key["arn"]}
        head = s3_client.head_object(Bucket=s3_bucket, Key="models/pkg/model.tar.gz")
        assert head["SSEKMSKeyId"] == store_key["arn"]


def test_another_key_is_still_denied_by_the_store_policy(
    s3_bucket: str, store_key: dict[str, str], kms_key_arn: str, scratch_file: Callable[[int], Path]
) -> None:
    store = S3Store(s3_bucket, "models", kms_key_id=kms_key_arn)
    sent = _record_put_headers(store)
    store.upload_file(scratch_file(100), "pkg/model.tar.gz")
    assert sent and not _allowed_by_store_policy(s3_bucket, store_key["arn"], sent[0])


def test_an_unknown_alias_is_one_clear_error_naming_it(
    s3_bucket: str, aws_env: str, scratch_file: Callable[[int], Path]
) -> None:
    store = open_store(f"s3://{s3_bucket}/models", kms_key_id="alias/does-not-exist")
    with pytest.raises(StoreError, match=r"KMS key 'alias/does-not-exist' does not exist in us-east-1.*key ARN"):
        store.upload_file(scratch_file(100), "pkg/model.tar.gz")
    assert boto3.client("s3").list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
