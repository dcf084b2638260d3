"""The serving identity: a dedicated service account that may read the package bucket and pull from the repository.

Both grants are on the one bucket and the one repository (resource-level IAM members), never
on the project, so the service can read nothing else. Members are additive: they do not
replace bindings others manage on a shared (referenced) bucket or repository.
"""

from __future__ import annotations

from typing import Final

import pulumi
from pulumi_gcp import artifactregistry, serviceaccount, storage

from infra.config import PROJECT, StackConfig

TYPE: Final = f"{PROJECT}:gcp:ServingIdentity"
BUCKET_READER_ROLE: Final = "roles/storage.objectViewer"
BATCH_WRITER_ROLE: Final = "roles/storage.objectCreator"
REPOSITORY_READER_ROLE: Final = "roles/artifactregistry.reader"


class ServingIdentity(pulumi.ComponentResource):
    """A service account plus ``storage.objectViewer`` on the bucket and ``artifactregistry.reader`` on the repository.

    Outputs: :attr:`email`, :attr:`member` (``serviceAccount:<email>``).
    """

    email: pulumi.Output[str]
    member: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        account_id: str,
        bucket_name: pulumi.Input[str],
        repository_name: pulumi.Input[str],
        batch_output_prefix: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the account ``account_id`` and its two grants (three with ``batch_output_prefix``)."""
        super().__init__(TYPE, name, None, opts)
        gcp_config = config.require_gcp()
        child = pulumi.ResourceOptions(parent=self)
        account = serviceaccount.Account(
            f"{name}-account",
            account_id=account_id,
            project=gcp_config.project,
            display_name=f"{PROJECT} serving identity ({config.stack})",
            description=f"Runs model {config.package.name} (stack {config.stack}); reads its package and image only.",
            opts=child,
        )
        self.email = account.email
        self.member = pulumi.Output.concat("serviceAccount:", account.email)
        storage.BucketIAMMember(
            f"{name}-bucket-reader",
            bucket=bucket_name,
            role=BUCKET_READER_ROLE,
            member=self.member,
            opts=child,
        )
        if batch_output_prefix is not None:
            # Batch prediction jobs run as this account and write their output (model-deploy-batch); only
            # under the prefix: an IAM condition on the object name, which Cloud Storage evaluates as
            # projects/_/buckets/<bucket>/objects/<name> on buckets with uniform bucket-level access
            # (https://cloud.google.com/storage/docs/access-control/iam#conditions).
            storage.BucketIAMMember(
                f"{name}-batch-writer",
                bucket=bucket_name,
                role=BATCH_WRITER_ROLE,
                member=self.member,
                condition=storage.BucketIAMMemberConditionArgs(
                    title="batch-output-only",
                    description="model-deploy-batch output of this stack",
                    expression=pulumi.Output.concat(
                        'resource.name.startsWith("projects/_/buckets/',
                        bucket_name,
                        f'/objects/{batch_output_prefix}/")',
                    ),
                ),
                opts=child,
            )
        artifactregistry.RepositoryIamMember(
            f"{name}-repository-reader",
            project=gcp_config.project,
            location=gcp_config.region,
            repository=repository_name,
            role=REPOSITORY_READER_ROLE,
            member=self.member,
            opts=child,
        )
        self.register_outputs({"email": self.email, "member": self.member})
