"""IAM, KMS and S3 policy documents, as plain dicts built from plain strings.

Every function here is pure: the components resolve their ARNs first and call these inside an
``apply`` that only formats JSON (no resource is ever created inside an ``apply``), and the
tests call them directly.

The execution role gets no ``*`` action and no AWS-managed policy. ``"Resource": "*"`` appears
only where the action has no resource-level permissions at all (``ecr:GetAuthorizationToken``,
``cloudwatch:PutMetricData``, the ``ec2:Describe*`` calls); each such statement says why, and is
narrowed by a condition where IAM offers one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from infra.aws.naming import EndpointPrefixes, s3_bucket_arn, s3_objects_arn

PolicyDocument = dict[str, Any]
Statement = dict[str, Any]

IAM_POLICY_VERSION: Final = "2012-10-17"
SAGEMAKER_PRINCIPAL: Final = "sagemaker.amazonaws.com"
#: The only namespace SageMaker publishes endpoint instance metrics to with the execution role.
ENDPOINT_METRICS_NAMESPACE: Final = "/aws/sagemaker/Endpoints"

#: Actions IAM cannot scope to a resource; the only ones allowed on ``"Resource": "*"``.
UNSCOPABLE_ACTIONS: Final = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeVpcs",
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
    }
)


def _document(*statements: Statement) -> PolicyDocument:
    return {"Version": IAM_POLICY_VERSION, "Statement": list(statements)}


# --- the execution role ---------------------------------------------------------------------


def sagemaker_trust_policy(account_id: str) -> PolicyDocument:
    """Let SageMaker assume the role, on behalf of this account only.

    ``aws:SourceAccount`` closes the confused-deputy hole: without it, SageMaker acting for any
    account that learned the role's ARN could be made to assume it.
    """
    return _document(
        {
            "Sid": "SageMakerAssumesRoleForThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": SAGEMAKER_PRINCIPAL},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    )


@dataclass(frozen=True)
class EndpointAccess:
    """Everything the execution role may touch, as resolved names and ARNs."""

    partition: str
    region: str
    account_id: str
    endpoint_name: str
    package_bucket: str
    package_prefix: str
    """``<store-prefix>/<package-name>/<digest>`` (no leading or trailing slash)."""
    store_bucket: str
    """Where the endpoint writes (data capture, async results): the store's bucket."""
    kms_key_arn: str
    repository_arn: str
    log_group_name: str
    prefixes: EndpointPrefixes
    data_capture: bool = False
    asynchronous: bool = False
    notification_topic_arns: tuple[str, ...] = ()
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    metric_namespaces: tuple[str, ...] = (ENDPOINT_METRICS_NAMESPACE,)
    rollback_alarm_name: str | None = None
    """The alarm the endpoint's auto-rollback names (``None``: no deployment config)."""
    batch_jobs: bool = False
    """Batch Transform jobs of the endpoint's model read and write the store's batch prefixes."""

    @property
    def writes_to_store(self) -> bool:
        """Whether SageMaker writes objects (and so SSE-KMS data keys) with this role."""
        return self.data_capture or self.asynchronous or self.batch_jobs


def endpoint_role_policy(access: EndpointAccess) -> PolicyDocument:
    """The execution role's one inline policy: exactly what serving this package needs."""
    p = access.partition
    log_group_arn = f"arn:{p}:logs:{access.region}:{access.account_id}:log-group:{access.log_group_name}"
    statements: list[Statement] = [
        {
            "Sid": "ReadPinnedPackage",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": s3_objects_arn(p, access.package_bucket, access.package_prefix),
        },
        {
            # The uncompressed layout is an S3Prefix that SageMaker lists; with the archive layout a
            # listing right turns a missing object into a clear 404 instead of a 403.
            "Sid": "ListPinnedPackage",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": s3_bucket_arn(p, access.package_bucket),
            "Condition": {"StringLike": {"s3:prefix": [access.package_prefix, f"{access.package_prefix}/*"]}},
        },
        {
            # Only S3 decrypts for the role (the package, async inputs); ECR pulls use the grants ECR holds.
            "Sid": "DecryptWithStoreKey",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": access.kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{access.region}.amazonaws.com"}},
        },
        {
            "Sid": "PullServingImage",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": access.repository_arn,
        },
        {
            # GetAuthorizationToken returns a registry-wide login token and has no resource-level
            # permissions: IAM only accepts "*" here. What the token can pull is still limited to
            # the one repository by the statement above.
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "WriteEndpointLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group_arn}:log-stream:*",
        },
        {
            "Sid": "DescribeEndpointLogStreams",
            "Effect": "Allow",
            "Action": "logs:DescribeLogStreams",
            "Resource": f"{log_group_arn}:*",
        },
        {
            # PutMetricData has no resource-level permissions; the namespace condition is the scope.
            "Sid": "PutEndpointMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": list(access.metric_namespaces)}},
        },
    ]
    if access.rollback_alarm_name is not None:
        alarms = f"arn:{p}:cloudwatch:{access.region}:{access.account_id}:alarm"
        statements.append(
            {
                # "Ensure that your IAM execution role has permission to perform the
                # cloudwatch:DescribeAlarms action on the auto-rollback alarms you specify"
                # (SageMaker Developer Guide, "Auto-Rollback Configuration and Monitoring").
                "Sid": "ReadRollbackAlarm",
                "Effect": "Allow",
                "Action": "cloudwatch:DescribeAlarms",
                "Resource": f"{alarms}:{access.rollback_alarm_name}",
            }
        )
    if access.writes_to_store:
        statements.append(
            {
                # SSE-KMS puts need a data key; only S3 asks for one on the role's behalf.
                "Sid": "EncryptStoreWrites",
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": access.kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{access.region}.amazonaws.com"}},
            }
        )
    if access.data_capture:
        statements.append(
            {
                "Sid": "WriteDataCapture",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": s3_objects_arn(p, access.store_bucket, access.prefixes.data_capture),
            }
        )
    if access.asynchronous:
        statements.extend(_async_statements(access))
    if access.batch_jobs:
        statements.extend(_batch_statements(access))
    if access.subnet_ids:
        statements.extend(_vpc_statements(access))
    return _document(*statements)


def _async_statements(access: EndpointAccess) -> list[Statement]:
    p = access.partition
    statements: list[Statement] = [
        {
            # InvokeEndpointAsync hands SageMaker an S3 location that it reads with this role.
            "Sid": "ReadAsyncInputs",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": s3_objects_arn(p, access.store_bucket, access.prefixes.async_input),
        },
        {
            "Sid": "WriteAsyncResults",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": [
                s3_objects_arn(p, access.store_bucket, access.prefixes.async_output),
                s3_objects_arn(p, access.store_bucket, access.prefixes.async_failure),
            ],
        },
    ]
    if access.notification_topic_arns:
        statements.append(
            {
                "Sid": "PublishAsyncNotifications",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": sorted(set(access.notification_topic_arns)),
            }
        )
    return statements


def _batch_statements(access: EndpointAccess) -> list[Statement]:
    """A transform job runs with the model's execution role: it lists and reads the input prefix and
    writes ``.out`` objects under the output prefix (SageMaker Developer Guide, "CreateTransformJob API:
    Execution Role Permissions": s3:ListBucket, s3:GetObject, s3:PutObject, plus kms:GenerateDataKey for
    an output KmsKeyId, https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html)."""
    p = access.partition
    return [
        {
            "Sid": "ListBatchInputs",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": s3_bucket_arn(p, access.store_bucket),
            "Condition": {
                "StringLike": {"s3:prefix": [access.prefixes.batch_input, f"{access.prefixes.batch_input}/*"]}
            },
        },
        {
            "Sid": "ReadBatchInputs",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": s3_objects_arn(p, access.store_bucket, access.prefixes.batch_input),
        },
        {
            "Sid": "WriteBatchOutputs",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": s3_objects_arn(p, access.store_bucket, access.prefixes.batch_output),
        },
    ]


def _vpc_statements(access: EndpointAccess) -> list[Statement]:
    """The ENI permissions SageMaker needs to attach the model containers to the stack's subnets."""
    p, region, account = access.partition, access.region, access.account_id
    subnets = [f"arn:{p}:ec2:{region}:{account}:subnet/{subnet}" for subnet in access.subnet_ids]
    groups = [f"arn:{p}:ec2:{region}:{account}:security-group/{group}" for group in access.security_group_ids]
    interfaces = f"arn:{p}:ec2:{region}:{account}:network-interface/*"
    in_our_subnets = {"ArnEquals": {"ec2:Subnet": subnets}}
    return [
        {
            # Describe* calls have no resource-level permissions and no useful condition keys.
            "Sid": "VpcDescribe",
            "Effect": "Allow",
            "Action": sorted(action for action in UNSCOPABLE_ACTIONS if action.startswith("ec2:")),
            "Resource": "*",
        },
        {
            # CreateNetworkInterface is authorized against the subnet and each security group it
            # names: list exactly the configured ones.
            "Sid": "VpcCreateEniInConfiguredSubnets",
            "Effect": "Allow",
            "Action": "ec2:CreateNetworkInterface",
            "Resource": subnets + groups,
        },
        {
            # ...and against the new interface, which has no ARN yet: scope it by the subnet it lands in.
            "Sid": "VpcCreateEni",
            "Effect": "Allow",
            "Action": "ec2:CreateNetworkInterface",
            "Resource": interfaces,
            "Condition": in_our_subnets,
        },
        {
            "Sid": "VpcManageEnisInConfiguredSubnets",
            "Effect": "Allow",
            "Action": [
                "ec2:CreateNetworkInterfacePermission",
                "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission",
            ],
            "Resource": interfaces,
            "Condition": in_our_subnets,
        },
    ]


# --- the artifact store -----------------------------------------------------------------------


def kms_key_policy(partition_name: str, account_id: str) -> PolicyDocument:
    """The store key's policy: the account administers it, and IAM policies grant its use.

    This is the shape AWS gives a key by default. ``kms:*`` for the account root does not grant
    anyone anything by itself; it delegates to IAM, where the execution role gets ``kms:Decrypt``
    (and ``kms:GenerateDataKey`` when it writes) on this key only. Anything narrower here risks a
    key no one can manage any more (KMS refuses such policies only when asked to check).
    """
    return _document(
        {
            "Sid": "AccountAdministersKeyThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition_name}:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    )


def artifact_bucket_policy(partition_name: str, bucket: str, kms_key_arn: str) -> PolicyDocument:
    """Deny plain-HTTP access and any put that would not be encrypted with the store's key."""
    return _document(*hardened_bucket_statements(s3_bucket_arn(partition_name, bucket), kms_key_arn))


def hardened_bucket_statements(bucket_arn: str, kms_key_arn: str) -> list[Statement]:
    """What every hardened bucket's policy denies (the artifact store's and the Pulumi state bucket's).

    Plain HTTP, and any put that would not be encrypted with the bucket's key. A put without
    encryption headers is fine: the bucket's default encryption applies its key (with an S3 Bucket
    Key). A put that asks for SSE-KMS must name the key by ARN: one naming no key would get the
    account's ``aws/s3`` key instead. (Multipart parts carry no encryption headers; the upload's
    first request, which does, is what these rules judge.)
    """
    objects = f"{bucket_arn}/*"
    return [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            # A deny on every S3 action: the one place a wildcard action narrows access.
            "Action": "s3:*",
            "Resource": [bucket_arn, objects],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "DenyNonKmsEncryption",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {
                # Present (Null: false) and anything but SSE-KMS: SSE-S3, DSSE-KMS.
                "Null": {"s3:x-amz-server-side-encryption": "false"},
                "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
            },
        },
        {
            "Sid": "DenyOtherOrUnnamedKmsKeys",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {
                # SSE-KMS with another key, or with none named (a missing key id counts as "not equal").
                "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": kms_key_arn},
            },
        },
    ]


def ecr_lifecycle_policy(untagged_days: int) -> PolicyDocument:
    """Expire images that lost (or never had) a tag after ``untagged_days``.

    Push serving images with a tag: the pinned digest then stays tagged (tags are immutable),
    so this rule can never remove an image a variant still pulls when it scales out.
    """
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"Expire untagged images {untagged_days} days after push",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": untagged_days,
                },
                "action": {"type": "expire"},
            }
        ]
    }


def statement_actions(statement: Statement) -> list[str]:
    """A statement's actions as a list (IAM accepts a string or a list)."""
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def statement_resources(statement: Statement) -> list[str]:
    """A statement's resources as a list (IAM accepts a string or a list)."""
    resources = statement.get("Resource", [])
    return [resources] if isinstance(resources, str) else list(resources)


def wildcard_grants(document: PolicyDocument) -> Sequence[str]:
    """Problems with ``document``'s Allow statements: wildcard actions, or ``*`` on scopable actions."""
    problems: list[str] = []
    for statement in document["Statement"]:
        if statement.get("Effect") != "Allow":
            continue
        sid = statement.get("Sid", "?")
        actions = statement_actions(statement)
        problems.extend(f"{sid}: wildcard action {action!r}" for action in actions if "*" in action)
        if "*" in statement_resources(statement):
            problems.extend(
                f"{sid}: {action} on '*' although IAM can scope it"
                for action in actions
                if action not in UNSCOPABLE_ACTIONS
            )
    return problems
