"""Bootstrap resources: Pulumi state backend, GitHub OIDC federation and per-environment deploy identities.

What each workflow variable (``.github/workflows/pulumi-stack.yml``) needs, and nothing more:

* ``PULUMI_BACKEND_URL_AWS`` / ``PULUMI_BACKEND_URL_GCP``: a versioned, private, encrypted bucket.
* ``AWS_ROLE_ARN_<ENV>``: a role that only a job of this repository running in the GitHub
  environment ``<env>`` can assume (``sub`` = ``repo:<owner/name>:environment:<env>``).
* ``AWS_ROLE_ARN_READONLY``: a role for pull-request previews and drift checks on ``main``.
* ``GCP_WORKLOAD_IDENTITY_PROVIDER`` and ``GCP_SERVICE_ACCOUNT_<ENV>`` / ``..._READONLY``: the
  same split on GCP, through a Workload Identity pool that accepts only this repository's tokens.
* ``PULUMI_SECRETS_PROVIDER_AWS`` / ``PULUMI_SECRETS_PROVIDER_GCP``: the KMS key that encrypts the
  stacks' secrets (``awskms://…`` / ``gcpkms://…``), usable by the deploy identities and, to
  decrypt only, by the read-only one.

On GCP it also enables the APIs that the main program and the pipelines call (:data:`GCP_SERVICES`)
and never disables them on destroy. With ``gcp.environmentProjects`` each environment deploys into
its own project (APIs enabled and the deploy account's roles granted there, the read-only account
reading all of them); the state bucket, key, pool and service accounts stay in ``gcp.project``.

The config is read once (:func:`from_pulumi`); a bad value raises :class:`~infra.config.ConfigError`
with one line naming the key (``model-deploy-bootstrap:aws.stateBucketName: ...``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.config.errors import MISSING, ConfigError, format_key

PROJECT: Final = "model-deploy-bootstrap"
#: Every resource the model-deploy stacks create that IAM can scope by name starts with this.
NAME_PREFIX: Final = "model-deploy-"
#: Bootstrap identities are named outside :data:`NAME_PREFIX`, so a deploy role can never edit itself.
IDENTITY_PREFIX: Final = "github-model-deploy-"
READONLY: Final = "readonly"
DEFAULT_ENVIRONMENTS: Final = ("dev", "staging", "prod")

GITHUB_OIDC_HOST: Final = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL: Final = f"https://{GITHUB_OIDC_HOST}"
AWS_AUDIENCE: Final = "sts.amazonaws.com"
STATE_KEY_ALIAS: Final = "alias/model-deploy/pulumi-secrets"

_REPOSITORY_PATTERN: Final = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"
_ENVIRONMENT_PATTERN: Final = r"^[a-z][a-z0-9]{0,9}$"  # fits a service-account id and a variable name
_S3_BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_GCS_BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"
_GCP_PROJECT_PATTERN: Final = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AwsBootstrap(_Section):
    """``model-deploy-bootstrap:aws``."""

    state_bucket_name: str = Field(alias="stateBucketName", pattern=_S3_BUCKET_PATTERN)


class GcpBootstrap(_Section):
    """``model-deploy-bootstrap:gcp``."""

    project: str = Field(pattern=_GCP_PROJECT_PATTERN)
    state_bucket_name: str = Field(alias="stateBucketName", pattern=_GCS_BUCKET_PATTERN)
    location: str = Field(default="US", min_length=2)
    """Location of the state bucket (a region or multi-region)."""
    kms_location: str = Field(default="global", alias="kmsLocation", pattern=r"^[a-z][a-z0-9-]{1,62}$")
    """Location of the stack-secrets key ring (``global``, a region or multi-region such as ``us``)."""
    environment_projects: dict[str, Annotated[str, Field(pattern=_GCP_PROJECT_PATTERN)]] = Field(
        default_factory=dict, alias="environmentProjects"
    )
    """The project each environment deploys into (``gcp.project`` for those not listed): the stacks'
    ``model-deploy:gcp.project``. State, key, pool and service accounts stay in ``gcp.project``."""

    def project_of(self, environment: str) -> str:
        """The project ``environment``'s stacks deploy into."""
        return self.environment_projects.get(environment, self.project)

    @property
    def projects(self) -> tuple[str, ...]:
        """``project`` and every environment project, each once, in that order."""
        return tuple(dict.fromkeys((self.project, *self.environment_projects.values())))


class BootstrapConfig(_Section):
    """The whole bootstrap stack config, validated."""

    github_repository: str = Field(alias="githubRepository", pattern=_REPOSITORY_PATTERN)
    cloud: Literal["aws", "gcp"]
    environments: tuple[str, ...] = Field(default=DEFAULT_ENVIRONMENTS, min_length=1)
    aws: AwsBootstrap | None = None
    gcp: GcpBootstrap | None = None

    @field_validator("environments")
    @classmethod
    def _environments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for environment in value:
            if not re.match(_ENVIRONMENT_PATTERN, environment):
                raise ValueError(f"environment {environment!r} must match {_ENVIRONMENT_PATTERN}")
            if environment == READONLY:
                raise ValueError(f"{READONLY!r} is the preview identity, not an environment")
        if len(set(value)) != len(value):
            raise ValueError("must not repeat an environment")
        return value

    @model_validator(mode="after")
    def _cloud_section(self) -> BootstrapConfig:
        if getattr(self, self.cloud) is None:
            raise ConfigError(f"{PROJECT}:{self.cloud}", MISSING, f"is required when cloud is {self.cloud!r}")
        for environment, project in (self.gcp.environment_projects if self.gcp else {}).items():
            if environment not in self.environments:
                raise ConfigError(
                    f"{PROJECT}:gcp.environmentProjects.{environment}",
                    project,
                    f"names no environment (expected one of {', '.join(self.environments)})",
                )
        return self

    @property
    def subject_prefix(self) -> str:
        """``repo:<owner/name>``: how every GitHub OIDC ``sub`` claim of this repository starts."""
        return f"repo:{self.github_repository}"

    def environment_subject(self, environment: str) -> str:
        """The ``sub`` claim of a job running in GitHub environment ``environment``."""
        return f"{self.subject_prefix}:environment:{environment}"

    @property
    def readonly_subjects(self) -> tuple[str, str]:
        """The ``sub`` claims of pull-request previews and of jobs on ``main`` (drift checks)."""
        return (f"{self.subject_prefix}:pull_request", f"{self.subject_prefix}:ref:refs/heads/main")


_KEYS: Final = ("githubRepository", "cloud", "environments", "aws", "gcp")


def parse_config(values: Mapping[str, Any]) -> BootstrapConfig:
    """Validate ``values`` (keys without the ``model-deploy-bootstrap:`` namespace); one-line errors."""
    for key in values:
        if key not in _KEYS:
            raise ConfigError(
                f"{PROJECT}:{key}", MISSING, f"is not a bootstrap setting (expected one of {', '.join(_KEYS)})"
            )
    try:
        return BootstrapConfig.model_validate(dict(values))
    except ConfigError:
        raise
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location: Sequence[str | int] = error["loc"]
            key = format_key([f"{PROJECT}:{location[0]}", *location[1:]]) if location else PROJECT
            value = MISSING if error["type"] == "missing" else error.get("input", MISSING)
            message = "is required" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
            problems.append(ConfigError(key, value, message))
        raise ConfigError.collect(problems) from None


def from_pulumi() -> BootstrapConfig:
    """The stack's config, read once through :class:`pulumi.Config`."""
    config = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for key in _KEYS:
        raw = config.get(key)
        if raw is None:
            continue
        if key in ("environments", "aws", "gcp"):
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(f"{PROJECT}:{key}", raw, "must be a YAML object or list") from None
        else:
            values[key] = raw
    return parse_config(values)


def deploy(config: BootstrapConfig) -> dict[str, pulumi.Input[str]]:
    """Declare the cloud's bootstrap resources; returns the outputs, named like the repository variables."""
    return deploy_gcp(config) if config.cloud == "gcp" else deploy_aws(config)


def variable(environment: str) -> str:
    """``staging`` -> ``STAGING``: the suffix of ``AWS_ROLE_ARN_*`` / ``GCP_SERVICE_ACCOUNT_*``."""
    return environment.upper()


# --- AWS --------------------------------------------------------------------------------------------


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


# --- GCP --------------------------------------------------------------------------------------------

#: Project roles of a deploy service account, and why each is needed (the GCP program's resources).
GCP_DEPLOY_ROLES: Final[Mapping[str, str]] = {
    "roles/run.admin": "Cloud Run services of the serving image (create, update traffic, delete)",
    "roles/aiplatform.user": "Vertex AI endpoints and model deployments",
    "roles/storage.admin": "the artifact bucket (IAM, lifecycle, versioning); the state bucket is granted apart",
    "roles/artifactregistry.admin": "the image repository and its IAM bindings",
    "roles/iam.serviceAccountUser": "deploy Cloud Run / Vertex with the runtime service account (actAs)",
    "roles/iam.serviceAccountAdmin": "the runtime service account the GCP program creates (infra/gcp/iam.py)",
}
#: Project roles of the read-only (preview / drift) service account.
GCP_READONLY_ROLES: Final[Mapping[str, str]] = {
    "roles/run.viewer": "read Cloud Run services",
    "roles/aiplatform.viewer": "read Vertex AI endpoints",
    "roles/artifactregistry.reader": "read the image repository",
    "roles/iam.serviceAccountViewer": "read the runtime service account",
    "roles/storage.objectViewer": "read the artifact store objects",
}


#: APIs enabled in the project, and who calls them. monitoring.googleapis.com is not among them:
#: the GCP program declares no alert policy or dashboard yet (add it together with those).
#: serviceusage.googleapis.com, which enables the others, is on in every project.
GCP_SERVICES: Final[Mapping[str, str]] = {
    "run.googleapis.com": "Cloud Run services (infra/gcp/cloud_run.py)",
    "aiplatform.googleapis.com": "Vertex AI endpoints and model deployments (infra/gcp/vertex*.py)",
    "artifactregistry.googleapis.com": "the image repository; model-deploy-promote's digest check",
    "storage.googleapis.com": "the package bucket and the Pulumi state bucket",
    "iam.googleapis.com": "service accounts (runtime and deploy) and the Workload Identity pool",
    "iamcredentials.googleapis.com": "GitHub Actions impersonating the deploy accounts; identity tokens for verify",
    "sts.googleapis.com": "exchanging GitHub's OIDC tokens (Workload Identity Federation)",
    "cloudkms.googleapis.com": "the stack-secrets key; the optional CMEK of the package bucket and Vertex",
    "cloudresourcemanager.googleapis.com": "project IAM bindings of the deploy accounts (get/setIamPolicy)",
    "logging.googleapis.com": "container and request logs of Cloud Run and Vertex AI",
}
SECRETS_KEY_RING: Final = "model-deploy"
SECRETS_KEY: Final = "pulumi-secrets"
#: Rotation of the stack-secrets key: a new primary version every 90 days (old ones still decrypt).
SECRETS_KEY_ROTATION: Final = f"{90 * 24 * 3600}s"
#: Deploys create stacks (wrapping a new data key: encrypt) and read them; previews only read.
SECRETS_DEPLOY_ROLE: Final = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
SECRETS_READONLY_ROLE: Final = "roles/cloudkms.cryptoKeyDecrypter"


def attribute_condition(repository: str) -> str:
    """The pool provider's CEL condition: tokens of any other repository are refused at the exchange."""
    return f"assertion.repository == '{repository}'"


def _principal(pool_name: str, subject: str) -> str:
    return f"principal://iam.googleapis.com/{pool_name}/subject/{subject}"


def deploy_gcp(config: BootstrapConfig) -> dict[str, pulumi.Input[str]]:
    """State bucket, Workload Identity pool/provider for GitHub, and one service account per environment."""
    import pulumi_gcp as gcp

    settings = config.gcp
    assert settings is not None  # BootstrapConfig requires the section of its cloud
    project = settings.project
    labels = {"project": "model-deploy", "managed-by": PROJECT}

    def in_project(name: str, where: str) -> str:
        """Logical names in the bootstrap's own project stay short (and as they always were)."""
        return name if where == project else f"{name}-{where}"

    services = [
        gcp.projects.Service(
            in_project(f"api-{api.split('.')[0]}", where),
            project=where,
            service=api,
            # Destroying the bootstrap must never turn off an API that a running service uses.
            disable_on_destroy=False,
            disable_dependent_services=False,
        )
        for where in settings.projects
        for api in GCP_SERVICES
    ]
    after_apis = pulumi.ResourceOptions(depends_on=services)

    bucket = gcp.storage.Bucket(
        "state-bucket",
        name=settings.state_bucket_name,
        project=project,
        location=settings.location,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning=gcp.storage.BucketVersioningArgs(enabled=True),
        force_destroy=False,
        labels=labels,
        opts=pulumi.ResourceOptions(protect=True, depends_on=services),
    )
    # Losing this key loses every stack's secrets: protected, and the provider refuses to delete it too.
    key_ring = gcp.kms.KeyRing(
        "secrets-key-ring",
        name=SECRETS_KEY_RING,
        project=project,
        location=settings.kms_location,
        opts=pulumi.ResourceOptions(protect=True, depends_on=services),
    )
    secrets_key = gcp.kms.CryptoKey(
        "secrets-key",
        name=SECRETS_KEY,
        key_ring=key_ring.id,
        purpose="ENCRYPT_DECRYPT",
        rotation_period=SECRETS_KEY_ROTATION,
        deletion_policy="PREVENT",
        labels=labels,
        opts=pulumi.ResourceOptions(protect=True),
    )
    pool = gcp.iam.WorkloadIdentityPool(
        "github-pool",
        project=project,
        workload_identity_pool_id="github-model-deploy",
        display_name="GitHub model-deploy",
        description=f"GitHub Actions of {config.github_repository}",
        opts=after_apis,
    )
    provider = gcp.iam.WorkloadIdentityPoolProvider(
        "github-provider",
        project=project,
        workload_identity_pool_id=pool.workload_identity_pool_id,
        workload_identity_pool_provider_id="github",
        display_name="GitHub Actions OIDC",
        attribute_mapping={
            "google.subject": "assertion.sub",
            "attribute.repository": "assertion.repository",
            "attribute.environment": "assertion.environment",
            "attribute.ref": "assertion.ref",
        },
        attribute_condition=attribute_condition(config.github_repository),
        oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_OIDC_URL),
        opts=after_apis,
    )

    def account(
        name: str,
        member: pulumi.Input[str],
        *,
        roles: Mapping[str, str],
        projects: Sequence[str],
        secrets_role: str,
        what: str,
    ) -> gcp.serviceaccount.Account:
        created = gcp.serviceaccount.Account(
            f"{name}-account",
            project=project,
            account_id=f"{IDENTITY_PREFIX}{name}",
            display_name=f"model-deploy {name} (GitHub Actions)",
            description=what,
            opts=after_apis,
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=created.name,
            role="roles/iam.workloadIdentityUser",
            member=member,
        )
        for where in projects:
            for role_name in roles:
                gcp.projects.IAMMember(
                    in_project(f"{name}-{role_name.removeprefix('roles/').replace('.', '-')}", where),
                    project=where,
                    role=role_name,
                    member=created.member,
                    opts=after_apis,
                )
        # Every operation takes a lock in the state bucket and reads (deploys: writes) the state.
        gcp.storage.BucketIAMMember(
            f"{name}-state",
            bucket=bucket.name,
            role="roles/storage.objectAdmin",
            member=created.member,
        )
        # On the secrets key only: no project-wide KMS role, so no other key is reachable.
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-secrets-key",
            crypto_key_id=secrets_key.id,
            role=secrets_role,
            member=created.member,
        )
        return created

    outputs: dict[str, pulumi.Input[str]] = {}
    for environment in config.environments:
        # Exactly the jobs of this repository that run in the GitHub environment (google.subject = sub).
        subject = config.environment_subject(environment)
        member = pool.name.apply(functools.partial(_principal, subject=subject))
        created = account(
            environment,
            member,
            roles=GCP_DEPLOY_ROLES,
            projects=[settings.project_of(environment)],
            secrets_role=SECRETS_DEPLOY_ROLE,
            what=f"Deploys model-deploy {environment} from {config.github_repository} (environment {environment})",
        )
        outputs[f"GCP_SERVICE_ACCOUNT_{variable(environment)}"] = created.email
    readonly = account(
        READONLY,
        pool.name.apply(
            lambda pool_name: (
                f"principalSet://iam.googleapis.com/{pool_name}/attribute.repository/{config.github_repository}"
            )
        ),
        roles=GCP_READONLY_ROLES,
        # Previews and drift checks read every environment's resources.
        projects=tuple(dict.fromkeys(settings.project_of(environment) for environment in config.environments)),
        secrets_role=SECRETS_READONLY_ROLE,
        what=f"Previews and drift checks of {config.github_repository}",
    )
    outputs["GCP_SERVICE_ACCOUNT_READONLY"] = readonly.email
    outputs["GCP_WORKLOAD_IDENTITY_PROVIDER"] = provider.name
    outputs["PULUMI_BACKEND_URL_GCP"] = bucket.name.apply(lambda name: f"gs://{name}")
    # secrets_key.id is projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>, what gcpkms:// takes.
    outputs["PULUMI_SECRETS_PROVIDER_GCP"] = secrets_key.id.apply(lambda key_id: f"gcpkms://{key_id}")
    return outputs
