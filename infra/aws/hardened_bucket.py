"""One customer-managed KMS key and one private, versioned bucket encrypted with it.

The two buckets every deployment depends on are made here: a stack's artifact store (packages,
captured data) and the bootstrap's Pulumi state bucket. They were two copies of the same resources
once, and drifted (the state bucket accepted SSE-C uploads and kept abandoned multipart uploads).

Resource names are ``<prefix>-bucket``, ``<prefix>-bucket-ownership`` and so on, the names both
programs used before: the same names under the same parent keep the same URNs, so existing stacks
see no replacement of a bucket (Pulumi identifies a resource by its URN: type, name and parent;
https://www.pulumi.com/docs/iac/concepts/resources/names/#urns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
from pulumi_aws import kms, s3

#: KMS waits this long before deleting a key (the maximum): a key deleted by mistake makes everything
#: it encrypted unreadable, so leave the most time to cancel.
KEY_DELETION_WINDOW_DAYS: Final = 30
#: Abandoned multipart uploads (an interrupted ``model-package push``, a cut state upload) are billed until aborted.
ABORT_INCOMPLETE_UPLOADS_DAYS: Final = 7


@dataclass(frozen=True)
class HardenedBucket:
    """The bucket and the settings resources a bucket policy or an object must wait for."""

    bucket: s3.Bucket
    public_access: s3.BucketPublicAccessBlock
    encryption: s3.BucketServerSideEncryptionConfiguration


def rotating_key(
    name: str,
    *,
    description: str,
    tags: pulumi.Input[dict[str, str]],
    policy: pulumi.Input[str] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> kms.Key:
    """A symmetric customer-managed key rotated yearly, with the longest deletion window."""
    return kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=KEY_DELETION_WINDOW_DAYS,
        policy=policy,
        tags=tags,
        opts=opts,
    )


def hardened_bucket(
    prefix: str,
    *,
    bucket_name: pulumi.Input[str],
    key_arn: pulumi.Input[str],
    tags: pulumi.Input[dict[str, str]],
    noncurrent_version_days: int,
    force_destroy: bool = False,
    parent: pulumi.Resource | None = None,
    protect: bool = False,
) -> HardenedBucket:
    """``bucket_name`` encrypted with ``key_arn``: owner-enforced, never public, versioned, SSE-C refused.

    Old versions expire ``noncurrent_version_days`` after they are replaced. ``protect`` stops
    ``pulumi destroy`` at the bucket; the settings resources are children of ``parent``.
    """
    child = pulumi.ResourceOptions(parent=parent)
    bucket = s3.Bucket(
        f"{prefix}-bucket",
        bucket=bucket_name,
        force_destroy=force_destroy,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    # ACLs off: the bucket owner owns every object, so the bucket policy is the whole story.
    s3.BucketOwnershipControls(
        f"{prefix}-bucket-ownership",
        bucket=bucket.id,
        rule=s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=child,
    )
    public_access = s3.BucketPublicAccessBlock(
        f"{prefix}-bucket-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    versioning = s3.BucketVersioning(
        f"{prefix}-bucket-versioning",
        bucket=bucket.id,
        versioning_configuration=s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        opts=child,
    )
    encryption = s3.BucketServerSideEncryptionConfiguration(
        f"{prefix}-bucket-encryption",
        bucket=bucket.id,
        rules=[
            s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms",
                    kms_master_key_id=key_arn,
                ),
                # One data key per bucket instead of one KMS call per object: cheaper, same protection.
                bucket_key_enabled=True,
                # An SSE-C object can only be read with the key its writer held ("you must provide the
                # same encryption key": https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerSideEncryptionCustomerKeys.html),
                # which SageMaker, Vertex AI and Pulumi never have: refuse such uploads.
                blocked_encryption_types=["SSE-C"],
            )
        ],
        opts=child,
    )
    s3.BucketLifecycleConfiguration(
        f"{prefix}-bucket-lifecycle",
        bucket=bucket.id,
        rules=[
            s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-versions",
                status="Enabled",
                filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=noncurrent_version_days,
                ),
                abort_incomplete_multipart_upload=s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=ABORT_INCOMPLETE_UPLOADS_DAYS,
                ),
            )
        ],
        # Noncurrent-version rules only mean something once versioning is on.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning]),
    )
    return HardenedBucket(bucket, public_access, encryption)
