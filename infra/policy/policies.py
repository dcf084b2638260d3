"""The policy pack's ``Policy`` objects: each rule of :mod:`infra.policy.rules` (AWS) and
:mod:`infra.policy.gcp_rules` (GCP) with its name, description and config schema, all mandatory.

Kept apart from ``__main__`` because constructing a ``PolicyPack`` starts the analyzer's
gRPC server and blocks; this list can be built (and checked) in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policy import gcp_rules, rules
from infra.policy.settings import CONFIG_SCHEMAS

#: The name ``pulumi policy publish`` and ``--policy-pack`` runs know the pack by.
POLICY_PACK_NAME: Final = "model-deploy"


ResourceRule = Callable[[ResourceValidationArgs, ReportViolation], None]
StackRule = Callable[[StackValidationArgs, ReportViolation], None]


@dataclass(frozen=True)
class RuleSpec:
    """One rule: its policy name, what it enforces, and its validation function."""

    name: str
    description: str
    validate: ResourceRule | StackRule
    stack: bool = False
    """A stack rule (sees every resource, after the update) rather than a per-resource rule."""


RULES: Final[tuple[RuleSpec, ...]] = (
    RuleSpec(
        "s3-bucket-encryption-present",
        "Every S3 bucket has a server-side encryption configuration (SSE-KMS).",
        rules.s3_bucket_encryption_present,
        stack=True,
    ),
    RuleSpec(
        "s3-encryption-uses-kms",
        "S3 default encryption uses aws:kms with a customer-managed key.",
        rules.s3_encryption_uses_kms,
    ),
    RuleSpec(
        "s3-bucket-public-access-block-present",
        "Every S3 bucket has a public access block.",
        rules.s3_bucket_public_access_block_present,
        stack=True,
    ),
    RuleSpec(
        "s3-public-access-block-all-on",
        "S3 public access blocks set all four settings to true.",
        rules.s3_public_access_block_all_on,
    ),
    RuleSpec(
        "s3-no-public-access",
        "No bucket policy, bucket ACL or object ACL makes objects public.",
        rules.s3_no_public_access,
    ),
    RuleSpec(
        "iam-no-wildcard-actions",
        "IAM policies do not allow '*' or '<service>:*' actions.",
        rules.iam_no_wildcard_actions,
    ),
    RuleSpec(
        "iam-no-wildcard-resources",
        "IAM policies allow Resource '*' only for actions that cannot be scoped.",
        rules.iam_no_wildcard_resources,
    ),
    RuleSpec(
        "iam-no-full-access-managed-policies",
        "No AWS-managed *FullAccess, AdministratorAccess or PowerUserAccess policy is attached.",
        rules.iam_no_full_access_managed_policies,
    ),
    RuleSpec(
        "sagemaker-endpoint-kms",
        "SageMaker endpoint configurations with instance variants encrypt their volumes with KMS.",
        rules.sagemaker_endpoint_kms,
    ),
    RuleSpec(
        "sagemaker-prod-endpoint-not-replaceable",
        "A prod SageMaker endpoint is protected and its auto-rollback names only its <endpoint>-rollback "
        "composite alarm, so no change replaces (deletes, then recreates) it.",
        rules.sagemaker_prod_endpoint_not_replaceable,
    ),
    RuleSpec(
        "sagemaker-autoscaling-outside-dev",
        "Outside dev, every instance-based SageMaker variant has an autoscaling target.",
        rules.sagemaker_autoscaling_outside_dev,
        stack=True,
    ),
    RuleSpec(
        "sagemaker-allowed-instance-families",
        "SageMaker variants use instance families allowed in the stack's environment.",
        rules.sagemaker_allowed_instance_families,
    ),
    RuleSpec(
        "aws-required-tags",
        "Every taggable AWS resource carries the stack's tags.",
        rules.aws_required_tags,
    ),
    RuleSpec(
        "gcs-bucket-uniform-access",
        "Cloud Storage buckets use uniform bucket-level access (IAM only, no ACLs).",
        gcp_rules.gcs_bucket_uniform_access,
    ),
    RuleSpec(
        "gcs-bucket-public-access-prevention-enforced",
        "Cloud Storage buckets enforce public access prevention.",
        gcp_rules.gcs_bucket_public_access_prevention_enforced,
    ),
    RuleSpec(
        "gcs-bucket-versioning",
        "Cloud Storage buckets keep object versions.",
        gcp_rules.gcs_bucket_versioning,
    ),
    RuleSpec(
        "gcs-bucket-no-force-destroy-in-prod",
        "In prod, Cloud Storage buckets do not set force_destroy.",
        gcp_rules.gcs_bucket_no_force_destroy_in_prod,
    ),
    RuleSpec(
        "artifact-registry-immutable-docker",
        "Artifact Registry repositories are Docker repositories with immutable tags.",
        gcp_rules.artifact_registry_immutable_docker,
    ),
    RuleSpec(
        "cloud-run-image-pinned-by-digest",
        "Cloud Run services run images pinned by digest.",
        gcp_rules.cloud_run_image_pinned_by_digest,
    ),
    RuleSpec(
        "cloud-run-deletion-protection-in-prod",
        "In prod, Cloud Run services keep deletion protection on.",
        gcp_rules.cloud_run_deletion_protection_in_prod,
    ),
    RuleSpec(
        "cloud-run-allowed-ingress",
        "Cloud Run services use an ingress setting allowed in the stack's environment.",
        gcp_rules.cloud_run_allowed_ingress,
    ),
    RuleSpec(
        "cloud-run-public-invoker",
        "Anyone may invoke a Cloud Run service only in environments the policy config allows.",
        gcp_rules.cloud_run_public_invoker,
    ),
    RuleSpec(
        "gcp-no-public-members",
        "No GCP IAM grant or Cloud Storage ACL gives allUsers or allAuthenticatedUsers access.",
        gcp_rules.gcp_no_public_members,
    ),
    RuleSpec(
        "gcp-no-basic-roles",
        "No GCP IAM grant uses the basic roles roles/owner, roles/editor or roles/viewer.",
        gcp_rules.gcp_no_basic_roles,
    ),
    RuleSpec(
        "gcp-required-labels",
        "Every labelled GCP resource carries the stack's labels.",
        gcp_rules.gcp_required_labels,
    ),
)


def build_policies() -> list[Policy]:
    """The pack's policies, every one mandatory (a violation blocks ``pulumi up``)."""
    policies: list[Policy] = []
    for spec in RULES:
        schema = CONFIG_SCHEMAS.get(spec.name)
        config_schema = PolicyConfigSchema(properties={k: dict(v) for k, v in schema.items()}) if schema else None
        if spec.stack:
            policies.append(
                StackValidationPolicy(
                    spec.name,
                    spec.description,
                    cast(StackRule, spec.validate),
                    enforcement_level=EnforcementLevel.MANDATORY,
                    config_schema=config_schema,
                )
            )
        else:
            policies.append(
                ResourceValidationPolicy(
                    spec.name,
                    spec.description,
                    cast(ResourceRule, spec.validate),
                    enforcement_level=EnforcementLevel.MANDATORY,
                    config_schema=config_schema,
                )
            )
    return policies
