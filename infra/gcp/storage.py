"""The artifact store on GCP: a private, versioned Cloud Storage bucket and an immutable Artifact Registry repository.

Either the stack creates them (``store.create: true``, the default) or it references
existing ones by name: then nothing is looked up, the configured names are the outputs.
A created bucket with a CMEK (``store.kmsKeyName``) comes with the grant that lets the project's
Cloud Storage service agent use that key; for a referenced bucket that is its owner's business.
"""

from __future__ import annotations

from typing import Final

import pulumi
from pulumi_gcp import artifactregistry, storage

from infra.config import PROJECT, StackConfig
from infra.gcp.cmek import grant_key_use, storage_service_agent

TYPE: Final = f"{PROJECT}:gcp:GcsArtifactStore"
SECONDS_PER_DAY: Final = 86_400


class GcsArtifactStore(pulumi.ComponentResource):
    """The bucket packages are published to and the repository serving images are pushed to.

    Outputs: :attr:`bucket_name`, :attr:`repository_name`, :attr:`repository_url`.
    """

    bucket_name: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, config: StackConfig, *, opts: pulumi.ResourceOptions | None = None) -> None:
        """Create (or reference) the store of ``config``'s stack."""
        super().__init__(TYPE, name, None, opts)
        gcp_config = config.require_gcp()
        store = gcp_config.store
        # The package must live in this bucket (a rule checks bucketName against the package URI).
        bucket = store.bucket_name or config.package.ref.location.bucket
        if store.create:
            self._create(name, config, bucket)
        else:
            self.bucket_name = pulumi.Output.from_input(bucket)
            self.repository_name = pulumi.Output.from_input(store.repository.name)
        host, project = gcp_config.registry_host, gcp_config.project
        self.repository_url = self.repository_name.apply(lambda repository: f"{host}/{project}/{repository}")
        self.register_outputs(
            {
                "bucketName": self.bucket_name,
                "repositoryName": self.repository_name,
                "repositoryUrl": self.repository_url,
            }
        )

    def _create(self, name: str, config: StackConfig, bucket_name: str) -> None:
        gcp_config = config.require_gcp()
        store = gcp_config.store
        labels = config.resource_labels
        # Losing the prod store loses every published package: make `pulumi destroy` stop at it. A
        # decommissioned prod stack lets destroy through, but leaves the store in GCP (retain_on_delete:
        # Pulumi forgets it instead of deleting it), with the key grant that keeps its objects readable.
        decommissioning = config.is_prod and gcp_config.decommissioning(config.stack)
        keep = pulumi.ResourceOptions(
            parent=self, protect=config.is_prod and not decommissioning, retain_on_delete=decommissioning
        )
        key_grants: list[pulumi.Resource] = []
        if store.kms_key_name:
            # Cloud Storage refuses to create a bucket whose default key its service agent cannot use.
            # Protected with the bucket: without the grant no object written under the key can be read.
            key_grants.append(
                grant_key_use(
                    f"{name}-bucket-key-user",
                    key_name=store.kms_key_name,
                    member=storage_service_agent(gcp_config.project, parent=self),
                    opts=keep,
                )
            )
        bucket = storage.Bucket(
            f"{name}-bucket",
            name=bucket_name,
            project=gcp_config.project,
            location=gcp_config.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=storage.BucketVersioningArgs(enabled=True),
            soft_delete_policy=storage.BucketSoftDeletePolicyArgs(
                retention_duration_seconds=store.soft_delete_days * SECONDS_PER_DAY
            ),
            lifecycle_rules=[
                storage.BucketLifecycleRuleArgs(
                    action=storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=store.noncurrent_version_days,
                        with_state="ARCHIVED",
                    ),
                )
            ],
            encryption=(
                storage.BucketEncryptionArgs(default_kms_key_name=store.kms_key_name) if store.kms_key_name else None
            ),
            force_destroy=store.force_destroy and not config.is_prod,
            labels=labels,
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=key_grants)),
        )
        repository = artifactregistry.Repository(
            f"{name}-repository",
            repository_id=store.repository.name,
            project=gcp_config.project,
            location=gcp_config.region,
            format="DOCKER",
            description=f"Serving images of {PROJECT} (stack {config.stack}); deployed by digest.",
            docker_config=artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True),
            cleanup_policy_dry_run=False,
            # KEEP wins over DELETE: the newest versions of each image survive whatever their tags.
            cleanup_policies=[
                artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=store.repository.keep_recent_versions
                    ),
                ),
                artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-untagged",
                    action="DELETE",
                    condition=artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED",
                        older_than=f"{store.repository.delete_untagged_after_days * SECONDS_PER_DAY}s",
                    ),
                ),
            ],
            labels=labels,
            opts=keep,
        )
        self.bucket_name = bucket.name
        self.repository_name = repository.repository_id
