"""The artifact store: an encrypted, versioned, private S3 bucket and an immutable ECR repository.

Either the stack creates them (``store.create: true``, the default) with one customer-managed
KMS key for both, or it references existing ones (a shared artifact account is common): then
nothing is looked up, the configured names and ARNs are the outputs as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import pulumi
from pulumi_aws import ecr, kms, s3

from infra.aws.hardened_bucket import hardened_bucket, rotating_key
from infra.aws.iam import artifact_bucket_policy, ecr_lifecycle_policy, kms_key_policy
from infra.aws.naming import ecr_repository_arn, partition, s3_bucket_arn
from infra.config import PROJECT, StackConfig

TYPE: Final = f"{PROJECT}:aws:ArtifactStore"
#: Untagged images expire this long after their push (see :func:`~infra.aws.iam.ecr_lifecycle_policy`).
UNTAGGED_IMAGE_DAYS: Final = 30


@dataclass(frozen=True)
class StoreNames:
    """The bucket and repository names the stack uses, resolved from the config."""

    bucket: str
    repository: str

    @classmethod
    def from_config(cls, config: StackConfig) -> StoreNames:
        """``store.bucketName``, else the pinned package's bucket; ``store.repositoryName``, else the image's.

        A created store defaults to the package's bucket rather than an autonamed one: the pinned
        package must live in the store (the role may read nothing else), and an autonamed bucket
        could never already hold it.
        """
        store = config.require_aws().store
        image = config.package.image_ref
        return cls(
            bucket=store.bucket_name or config.package.ref.location.bucket,
            repository=store.repository_name or image.repository,
        )


class ArtifactStore(pulumi.ComponentResource):
    """The bucket packages are published to and the repository serving images are pushed to.

    Outputs: :attr:`bucket_name`, :attr:`bucket_arn`, :attr:`kms_key_arn`,
    :attr:`repository_name`, :attr:`repository_url`, :attr:`repository_arn`.
    """

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        account_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create (or reference) the store of ``config``'s stack; ``account_id`` is the deploying account."""
        super().__init__(TYPE, name, None, opts)
        self._config = config
        self._names = StoreNames.from_config(config)
        self._partition = partition(config.region)
        if config.require_aws().store.create:
            self._create(name, account_id)
        else:
            self._reference()
        self.register_outputs(
            {
                "bucketName": self.bucket_name,
                "bucketArn": self.bucket_arn,
                "kmsKeyArn": self.kms_key_arn,
                "repositoryName": self.repository_name,
                "repositoryUrl": self.repository_url,
                "repositoryArn": self.repository_arn,
            }
        )

    def _reference(self) -> None:
        # Validation guarantees bucketName and kmsKeyArn for a referenced store, and an ECR image.
        store = self._config.require_aws().store
        image = self._config.package.image_ref
        assert store.kms_key_arn is not None and image.ecr_account and image.ecr_region
        self.bucket_name = pulumi.Output.from_input(self._names.bucket)
        self.bucket_arn = pulumi.Output.from_input(s3_bucket_arn(self._partition, self._names.bucket))
        self.kms_key_arn = pulumi.Output.from_input(store.kms_key_arn)
        self.repository_name = pulumi.Output.from_input(self._names.repository)
        # The image names its registry (account and region), so the repository ARN needs no lookup.
        self.repository_url = pulumi.Output.from_input(f"{image.registry}/{self._names.repository}")
        self.repository_arn = pulumi.Output.from_input(
            ecr_repository_arn(self._partition, image.ecr_region, image.ecr_account, self._names.repository)
        )

    def _create(self, name: str, account_id: pulumi.Input[str]) -> None:
        config = self._config
        store = config.require_aws().store
        tags = config.resource_tags
        child = pulumi.ResourceOptions(parent=self)
        # Losing the prod store loses every published package: make `pulumi destroy` stop at it.
        keep = pulumi.ResourceOptions(parent=self, protect=config.is_prod)

        key = rotating_key(
            f"{name}-key",
            description=f"{PROJECT} {config.stack}: model packages, captured data and serving images",
            policy=pulumi.Output.from_input(account_id).apply(
                lambda account: json.dumps(kms_key_policy(self._partition, account))
            ),
            tags=tags,
            opts=keep,
        )
        kms.Alias(
            f"{name}-key-alias",
            name=f"alias/{PROJECT}/{config.stack}/artifacts",
            target_key_id=key.key_id,
            opts=child,
        )

        stored = hardened_bucket(
            name,
            bucket_name=self._names.bucket,
            key_arn=key.arn,
            tags=tags,
            noncurrent_version_days=store.noncurrent_version_expiration_days,
            force_destroy=store.force_destroy,
            parent=self,
            protect=config.is_prod,
        )
        bucket = stored.bucket
        s3.BucketPolicy(
            f"{name}-bucket-policy",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.bucket, key.arn).apply(
                lambda values: json.dumps(artifact_bucket_policy(self._partition, values[0], values[1]))
            ),
            # S3 rejects concurrent changes to one bucket's settings ("conflicting conditional
            # operation"), and a policy set before the public-access block could briefly be evaluated
            # without it: put the policy after the block.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[stored.public_access]),
        )

        repository = ecr.Repository(
            f"{name}-repository",
            name=self._names.repository,
            # A tag can never be moved to other bytes; deployments pin digests anyway.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[
                ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=key.arn)
            ],
            force_delete=store.force_destroy,
            tags=tags,
            opts=keep,
        )
        ecr.LifecyclePolicy(
            f"{name}-repository-lifecycle",
            repository=repository.name,
            policy=json.dumps(ecr_lifecycle_policy(UNTAGGED_IMAGE_DAYS)),
            opts=child,
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.repository_name = repository.name
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
