"""AWS bootstrap: state bucket and secrets key, GitHub OIDC provider, per-environment deploy roles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi

from infra.bootstrap.config import (
    AWS_AUDIENCE,
    GITHUB_OIDC_HOST,
    GITHUB_OIDC_URL,
    IDENTITY_PREFIX,
    NAME_PREFIX,
    PROJECT,
    READONLY,
    STATE_KEY_ALIAS,
    BootstrapConfig,
    variable,
)


def github_trust_policy(provider_arn: str, subjects: Sequence[str]) -> dict[str, Any]:
    """Trust policy letting only GitHub OIDC tokens with audience STS and one of ``subjects`` assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitHubActions",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": AWS_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": list(subjects),
                    }
                },
            }
        ],
    }


def _statement(sid: str, actions: Sequence[str], resources: Sequence[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": list(resources), **extra}


def _state_statements(bucket_arn: str, key_arn: str, *, write: bool) -> list[dict[str, Any]]:
    objects = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]  # previews take and release a lock
    return [
        _statement("StateBucket", ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketVersioning"], [bucket_arn]),
        _statement("StateObjects", objects, [f"{bucket_arn}/*"]),
        _statement(
            "StateSecrets",
            ["kms:Decrypt", "kms:DescribeKey", *(["kms:Encrypt", "kms:GenerateDataKey"] if write else [])],
            [key_arn],
        ),
    ]


def deploy_policy(partition: str, account: str, bucket_arn: str, key_arn: str) -> dict[str, Any]:
    """What a deploy role may do: the resource types the model-deploy stacks manage, in this account.

    ``Resource: "*"`` appears only for the actions IAM cannot scope to a resource (creating a KMS
    key, ECR login, application-autoscaling); no action is a wildcard.
    """
    arn = f"arn:{partition}"
    roles = f"{arn}:iam::{account}:role/{NAME_PREFIX}*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_state_statements(bucket_arn, key_arn, write=True),
            _statement(
                "SageMaker",
                [
                    f"sagemaker:{action}"
                    for action in (
                        "CreateModel",
                        "DeleteModel",
                        "DescribeModel",
                        "CreateEndpointConfig",
                        "DeleteEndpointConfig",
                        "DescribeEndpointConfig",
                        "CreateEndpoint",
                        "UpdateEndpoint",
                        "DeleteEndpoint",
                        "DescribeEndpoint",
                        "UpdateEndpointWeightsAndCapacities",
                        "AddTags",
                        "DeleteTags",
                        "ListTags",
                    )
                ],
                [
                    f"{arn}:sagemaker:*:{account}:model/*",
                    f"{arn}:sagemaker:*:{account}:endpoint-config/*",
                    f"{arn}:sagemaker:*:{account}:endpoint/*",
                ],
            ),
            _statement(
                "ArtifactBuckets",
                [
                    f"s3:{action}"
                    for action in (
                        "CreateBucket",
                        "DeleteBucket",
                        "ListBucket",
                        "GetBucketLocation",
                        "GetBucketTagging",
                        "PutBucketTagging",
                        "GetBucketPolicy",
                        "PutBucketPolicy",
                        "DeleteBucketPolicy",
                        "GetBucketVersioning",
                        "PutBucketVersioning",
                        "GetEncryptionConfiguration",
                        "PutEncryptionConfiguration",
                        "GetBucketPublicAccessBlock",
                        "PutBucketPublicAccessBlock",
                        "GetBucketOwnershipControls",
                        "PutBucketOwnershipControls",
                        "GetLifecycleConfiguration",
                        "PutLifecycleConfiguration",
                        "GetBucketAcl",
                        "GetBucketCORS",
                        "GetBucketWebsite",
                        "GetBucketLogging",
                        "GetBucketObjectLockConfiguration",
                        "GetReplicationConfiguration",
                        "GetAccelerateConfiguration",
                        "GetBucketRequestPayment",
                    )
                ],
                [f"{arn}:s3:::{NAME_PREFIX}*"],
            ),
            _statement(
                "ArtifactObjects",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectTagging"],
                [f"{arn}:s3:::{NAME_PREFIX}*/*"],
            ),
            _statement("CreateKeys", ["kms:CreateKey", "kms:ListAliases"], ["*"]),
            _statement(
                "ManageKeys",
                [
                    f"kms:{action}"
                    for action in (
                        "DescribeKey",
                        "GetKeyPolicy",
                        "PutKeyPolicy",
                        "GetKeyRotationStatus",
                        "EnableKeyRotation",
                        "ListResourceTags",
                        "TagResource",
                        "UntagResource",
                        "ScheduleKeyDeletion",
                        "CreateGrant",
                        "Encrypt",
                        "Decrypt",
                        "GenerateDataKey",
                        "CreateAlias",
                        "DeleteAlias",
                        "UpdateAlias",
                    )
                ],
                [f"{arn}:kms:*:{account}:key/*", f"{arn}:kms:*:{account}:alias/model-deploy/*"],
            ),
            _statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
            _statement(
                "Ecr",
                [
                    f"ecr:{action}"
                    for action in (
                        "CreateRepository",
                        "DeleteRepository",
                        "DescribeRepositories",
                        "ListTagsForResource",
                        "TagResource",
                        "UntagResource",
                        "PutLifecyclePolicy",
                        "GetLifecyclePolicy",
                        "DeleteLifecyclePolicy",
                        "PutImageScanningConfiguration",
                        "PutImageTagMutability",
                        "GetRepositoryPolicy",
                        "SetRepositoryPolicy",
                        "DeleteRepositoryPolicy",
                        "BatchGetImage",
                        "BatchCheckLayerAvailability",
                        "GetDownloadUrlForLayer",
                        "DescribeImages",
                    )
                ],
                [f"{arn}:ecr:*:{account}:repository/*"],
            ),
            # The image workflow pushes the serving image, and promotion copies it by digest
            # (`crane copy`), with this environment's role: without these, both fail with AccessDenied.
            _statement(
                "EcrPush",
                [
                    f"ecr:{action}"
                    for action in ("InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "PutImage")
                ],
                [f"{arn}:ecr:*:{account}:repository/*"],
            ),
            _statement(
                "ExecutionRoles",
                [
                    f"iam:{action}"
                    for action in (
                        "CreateRole",
                        "DeleteRole",
                        "GetRole",
                        "UpdateRole",
                        "UpdateRoleDescription",
                        "UpdateAssumeRolePolicy",
                        "TagRole",
                        "UntagRole",
                        "ListRoleTags",
                        "PutRolePolicy",
                        "GetRolePolicy",
                        "DeleteRolePolicy",
                        "ListRolePolicies",
                        "ListAttachedRolePolicies",
                        "ListInstanceProfilesForRole",
                    )
                ],
                [roles],
            ),
            _statement(
                "PassExecutionRoles",
                ["iam:PassRole"],
                [roles],
                Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            _statement(
                "AutoscalingServiceRole",
                ["iam:CreateServiceLinkedRole"],
                [f"{arn}:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/*"],
                Condition={"StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
            ),
            _statement(
                "Autoscaling",
                [
                    f"application-autoscaling:{action}"
                    for action in (
                        "RegisterScalableTarget",
                        "DeregisterScalableTarget",
                        "DescribeScalableTargets",
                        "PutScalingPolicy",
                        "DeleteScalingPolicy",
                        "DescribeScalingPolicies",
                        "PutScheduledAction",
                        "DeleteScheduledAction",
                        "DescribeScheduledActions",
                        "TagResource",
                        "UntagResource",
                        "ListTagsForResource",
                    )
                ],
                ["*"],
            ),
            _statement(
                "Alarms",
                [
                    f"cloudwatch:{action}"
                    for action in (
                        "PutMetricAlarm",
                        "DeleteAlarms",
                        "DescribeAlarms",
                        "TagResource",
                        "UntagResource",
                        "ListTagsForResource",
                        "PutDashboard",
                        "GetDashboard",
                        "DeleteDashboards",
                    )
                ],
                [f"{arn}:cloudwatch:*:{account}:alarm:*", f"{arn}:cloudwatch::{account}:dashboard/*"],
            ),
            _statement("DescribeLogGroups", ["logs:DescribeLogGroups"], [f"{arn}:logs:*:{account}:log-group:*"]),
            _statement(
                "LogGroups",
                [
                    f"logs:{action}"
                    for action in (
                        "CreateLogGroup",
                        "DeleteLogGroup",
                        "PutRetentionPolicy",
                        "DeleteRetentionPolicy",
                        "TagResource",
                        "UntagResource",
                        "ListTagsForResource",
                        "ListTagsLogGroup",
                        "AssociateKmsKey",
                        "DisassociateKmsKey",
                    )
                ],
                [f"{arn}:logs:*:{account}:log-group:/aws/sagemaker/*"],
            ),
        ],
    }


def readonly_policy(partition: str, account: str, bucket_arn: str, key_arn: str) -> dict[str, Any]:
    """What previews and drift checks need: read the stacks' resources, lock and read the state."""
    arn = f"arn:{partition}"
    reads = {
        "sagemaker": ("DescribeModel", "DescribeEndpointConfig", "DescribeEndpoint", "ListTags"),
        "s3": (
            "ListBucket",
            "GetBucketLocation",
            "GetBucketTagging",
            "GetBucketPolicy",
            "GetBucketVersioning",
            "GetEncryptionConfiguration",
            "GetBucketPublicAccessBlock",
            "GetBucketOwnershipControls",
            "GetLifecycleConfiguration",
            "GetBucketAcl",
            "GetBucketCORS",
            "GetBucketWebsite",
            "GetBucketLogging",
            "GetBucketObjectLockConfiguration",
            "GetReplicationConfiguration",
            "GetAccelerateConfiguration",
            "GetBucketRequestPayment",
            "GetObject",
        ),
        "kms": ("DescribeKey", "GetKeyPolicy", "GetKeyRotationStatus", "ListResourceTags"),
        "ecr": ("DescribeRepositories", "ListTagsForResource", "GetLifecyclePolicy", "GetRepositoryPolicy"),
        "iam": ("GetRole", "GetRolePolicy", "ListRolePolicies", "ListAttachedRolePolicies", "ListRoleTags"),
        "cloudwatch": ("DescribeAlarms", "ListTagsForResource", "GetDashboard"),
        "logs": ("DescribeLogGroups", "ListTagsForResource", "ListTagsLogGroup"),
    }
    resources = {
        "sagemaker": [f"{arn}:sagemaker:*:{account}:{kind}/*" for kind in ("model", "endpoint-config", "endpoint")],
        "s3": [f"{arn}:s3:::{NAME_PREFIX}*", f"{arn}:s3:::{NAME_PREFIX}*/*"],
        "kms": [f"{arn}:kms:*:{account}:key/*"],
        "ecr": [f"{arn}:ecr:*:{account}:repository/*"],
        "iam": [f"{arn}:iam::{account}:role/{NAME_PREFIX}*"],
        "cloudwatch": [f"{arn}:cloudwatch:*:{account}:alarm:*", f"{arn}:cloudwatch::{account}:dashboard/*"],
        "logs": [f"{arn}:logs:*:{account}:log-group:*"],
    }
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_state_statements(bucket_arn, key_arn, write=False),
            *(
                _statement(
                    f"Read{service.title().replace('-', '')}", [f"{service}:{a}" for a in actions], resources[service]
                )
                for service, actions in reads.items()
            ),
            _statement(
                "ReadAutoscaling",
                [
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScalingPolicies",
                    "application-autoscaling:DescribeScheduledActions",
                    "application-autoscaling:ListTagsForResource",
                ],
                ["*"],
            ),
            _statement("ListKeyAliases", ["kms:ListAliases"], ["*"]),
        ],
    }


def deploy_aws(config: BootstrapConfig) -> dict[str, pulumi.Input[str]]:
    """State bucket and secrets key, GitHub OIDC provider, one role per environment and a read-only one."""
    import pulumi_aws as aws

    settings = config.aws
    assert settings is not None  # BootstrapConfig requires the section of its cloud
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output().partition
    region = aws.get_region_output().region
    tags = {"project": "model-deploy", "managed-by": PROJECT}
    keep = pulumi.ResourceOptions(protect=True)  # losing these loses every stack's state

    key = aws.kms.Key(
        "state-key",
        description="model-deploy: Pulumi state bucket and stack secrets",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        tags=tags,
        opts=keep,
    )
    aws.kms.Alias("state-key-alias", name=STATE_KEY_ALIAS, target_key_id=key.key_id)

    bucket = aws.s3.Bucket("state-bucket", bucket=settings.state_bucket_name, tags=tags, opts=keep)
    aws.s3.BucketOwnershipControls(
        "state-bucket-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
    )
    public_access = aws.s3.BucketPublicAccessBlock(
        "state-bucket-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
    )
    aws.s3.BucketVersioning(
        "state-bucket-versioning",
        bucket=bucket.id,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        "state-bucket-encryption",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms",
                    kms_master_key_id=key.arn,
                ),
                bucket_key_enabled=True,
            )
        ],
    )
    aws.s3.BucketPolicy(
        "state-bucket-policy",
        bucket=bucket.id,
        policy=bucket.arn.apply(
            lambda bucket_arn: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [bucket_arn, f"{bucket_arn}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            )
        ),
        opts=pulumi.ResourceOptions(depends_on=[public_access]),
    )

    provider = aws.iam.OpenIdConnectProvider(
        "github-oidc",
        url=GITHUB_OIDC_URL,
        client_id_lists=[AWS_AUDIENCE],
        tags=tags,
    )

    def role(name: str, subjects: Sequence[str], policy: Any, description: str) -> aws.iam.Role:
        created = aws.iam.Role(
            f"{name}-role",
            name=f"{IDENTITY_PREFIX}{name}",
            description=description,
            assume_role_policy=provider.arn.apply(lambda arn: json.dumps(github_trust_policy(arn, subjects))),
            max_session_duration=3600,
            tags=tags,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=created.id,
            policy=pulumi.Output.all(partition, identity.account_id, bucket.arn, key.arn).apply(
                lambda values: json.dumps(policy(*values))
            ),
        )
        return created

    outputs: dict[str, pulumi.Input[str]] = {}
    for environment in config.environments:
        created = role(
            environment,
            [config.environment_subject(environment)],
            deploy_policy,
            f"model-deploy {environment}: assumed by {config.github_repository} jobs in environment {environment}",
        )
        outputs[f"AWS_ROLE_ARN_{variable(environment)}"] = created.arn
    readonly = role(
        READONLY,
        config.readonly_subjects,
        readonly_policy,
        f"model-deploy previews and drift checks of {config.github_repository} (pull requests, main)",
    )
    outputs["AWS_ROLE_ARN_READONLY"] = readonly.arn
    outputs["PULUMI_BACKEND_URL_AWS"] = bucket.bucket.apply(lambda name: f"s3://{name}")
    outputs["PULUMI_SECRETS_PROVIDER_AWS"] = region.apply(lambda name: f"awskms://{STATE_KEY_ALIAS}?region={name}")
    outputs["stateKeyArn"] = key.arn
    outputs["oidcProviderArn"] = provider.arn
    return outputs
