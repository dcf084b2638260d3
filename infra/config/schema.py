"""The typed stack configuration: what ``Pulumi.<stack>.yaml`` may say, key by key.

The models mirror the YAML exactly (camelCase keys through aliases), are frozen (config
is read once at program start and passed in, never changed), and forbid unknown keys so
a misspelling is an error that names the key instead of a silently ignored setting.

This module checks each value on its own: types, AWS name patterns and numeric ranges
(from botocore, see :mod:`infra.config.aws_limits`), package URI and image syntax.
Rules that relate several values (serverless variants cannot be mixed with instance
variants, prod needs two instances, ...) live in :mod:`infra.config.rules` and
:mod:`infra.config.aws_rules`, which run on the validated models.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, NoReturn

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from infra.config import gcp_limits
from infra.config.aws_limits import (
    AwsLimits,
    NameRule,
    Range,
    aws_limits,
    instance_family,
)
from infra.config.errors import MISSING, ConfigError, did_you_mean
from infra.config.gcp_limits import GcpNameRule
from model_package.errors import InvalidStoreURIError
from model_package.manifest import _NAME_RE as _PACKAGE_NAME_RE  # one package-name rule for the whole project
from model_package.manifest import _VERSION_RE as _PACKAGE_VERSION_RE
from model_package.publish import Layout, PackageRef, parse_package_uri
from model_package.stores import parse_store_uri

#: The Pulumi project name: the namespace of this program's config keys.
PROJECT: Final = "model-deploy"

Environment = Literal["dev", "staging", "prod"]
Cloud = Literal["aws", "gcp"]
EndpointMode = Literal["realtime", "serverless", "async"]
DeploymentStrategy = Literal["all_at_once", "canary", "linear"]

#: Rollback alarms the endpoint component creates itself (one alarm over errors and latency of
#: the new fleet); they count against SageMaker's AutoRollbackConfig limit with ``rollbackAlarms``.
STACK_ROLLBACK_ALARM_COUNT: Final = 1

#: Tag keys the stack sets on every resource (see :attr:`StackConfig.resource_tags`).
STANDARD_TAG_KEYS: Final = (
    "environment",
    "stack",
    "model",
    "model-version",
    "package-digest",
    "git-revision",
    "managed-by",
)

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# Docker's reference grammar, with the registry made mandatory: a bare "repo@sha256:..." would
# silently mean Docker Hub, which SageMaker cannot pull from and Cloud Run pulls slowly.
_IMAGE_RE = re.compile(
    r"^(?P<registry>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?)/"
    r"(?P<repository>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z0-9_+.-]+:[0-9A-Za-z]+))?$"
)
_IMAGE_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ECR_REGISTRY_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
# IAM scopes kms:Decrypt by key ARN; an alias ARN or bare key id would leave the role's policy unscopable.
_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")
_SCHEDULE_RE = re.compile(
    r"^(?:cron\((?:\S+\s+){5}\S+\)"  # six fields: minutes hours day-of-month month day-of-week year
    r"|rate\([1-9][0-9]*\s+(?:minute|minutes|hour|hours|day|days)\)"
    r"|at\([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\))$"
)


# ---------------------------------------------------------------------------------------------
# Field checks. Each raises PydanticCustomError so the loader reports the message verbatim,
# with the key path pydantic tracked and the offending input.


def _fail(message: str) -> NoReturn:
    # The message goes through the context: a literal template would treat "{0,62}" in a pattern as a field.
    raise PydanticCustomError("model_deploy", "{message}", {"message": message})


def _within(get: Callable[[AwsLimits], Range], what: str) -> AfterValidator:
    """Check a number against a botocore range (looked up when validating, not at import)."""

    def check(value: float) -> float:
        limit = get(aws_limits())
        if value not in limit:
            _fail(f"is out of range: {what} must be {limit.text} ({limit.source})")
        return value

    return AfterValidator(check)


def _count(get: Callable[[AwsLimits], Range], what: str) -> AfterValidator:
    """Check a list's length against a botocore list shape's min/max."""

    def check(value: tuple[Any, ...]) -> tuple[Any, ...]:
        limit = get(aws_limits())
        if len(value) not in limit:
            too = "many" if limit.maximum is not None and len(value) > limit.maximum else "few"
            _fail(f"are too {too}: {what} must number {limit.text} ({limit.source})")
        return value

    return AfterValidator(check)


def _named(get: Callable[[AwsLimits], NameRule], what: str) -> AfterValidator:
    """Check a string against a botocore shape's length and pattern."""

    def check(value: str) -> str:
        problem = get(aws_limits()).problem(value)
        if problem:
            _fail(f"is not a valid {what}: it {problem}")
        return value

    return AfterValidator(check)


def _prefixed(prefix: str, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value.startswith(prefix):
            _fail(f"is not {what}: expected an id starting with {prefix!r}")
        return value

    return AfterValidator(check)


def _check_instance_type(value: str) -> str:
    known = aws_limits().instance_types
    if value not in known:
        # Same-family sizes first ("ml.m5.larg" -> ml.m5.large, ml.m5.xlarge), then anything close.
        family = [name for name in known if instance_family(name) == instance_family(value)]
        hint = did_you_mean(value, family, limit=2) or did_you_mean(value, known, limit=2)
        _fail(
            "is not a SageMaker real-time instance type"
            + (hint or f" (sagemaker ProductionVariantInstanceType lists {len(known)}, e.g. ml.m5.large)")
        )
    return value


def _check_instance_family(value: str) -> str:
    known = aws_limits().instance_families
    if value not in known:
        hint = did_you_mean(value, known)
        _fail(f"is not a SageMaker instance family (an instance type without its size, like ml.m5){hint}")
    return value


def _check_memory(value: int) -> int:
    allowed = aws_limits().serverless_memory_sizes_mb
    if value not in allowed:
        limit = aws_limits().serverless_memory_mb
        _fail(
            f"is not an allowed serverless memory size: use one of {', '.join(map(str, allowed))} MB "
            f"({limit.source}: {limit.text} in 1 GB increments)"
        )
    return value


def _check_log_retention(value: int) -> int:
    allowed = aws_limits().log_retention_days
    if value not in allowed:
        _fail(f"is not a CloudWatch Logs retention period: use one of {', '.join(map(str, allowed))} days")
    return value


def _check_region(value: str) -> str:
    regions = aws_limits().sagemaker_regions
    if value not in regions:
        _fail(f"is not a region where botocore knows SageMaker{did_you_mean(value, regions)}")
    return value


def _check_package_name(value: str) -> str:
    if not _PACKAGE_NAME_RE.match(value):
        _fail("is not a package name: use 1-63 of a-z 0-9 . _ -, starting with a letter or digit (as in manifest.json)")
    return value


def _check_package_version(value: str) -> str:
    if not _PACKAGE_VERSION_RE.match(value):
        _fail("is not a package version: use 1-64 of letters, digits, '.', '+', '_', '-' (as in manifest.json)")
    return value


def _check_digest(value: str) -> str:
    if not _DIGEST_RE.match(value):
        _fail("is not a package digest: expected 64 lowercase hex characters (the sha256 `model-package pack` printed)")
    return value


def _check_package_uri(value: str) -> str:
    try:
        parse_package_uri(value)
    except InvalidStoreURIError as exc:
        _fail(f"is not a package URI: {exc}")
    if value.startswith("file:") or "://" not in value:
        _fail("is not a package URI in a cloud store: use s3://… or gs://…, as printed by `model-package push`")
    return value


def _check_image(value: str) -> str:
    match = _IMAGE_RE.match(value)
    if match is None or ("." not in match.group("registry") and ":" not in match.group("registry")):
        _fail("is not a container image reference: expected <registry>/<repository>@sha256:<64 hex>")
    tag, digest = match.group("tag"), match.group("digest")
    if digest is None:
        _fail(
            f"pins the image by tag{f' {tag!r}' if tag else ''}: use <registry>/<repository>@sha256:<64 hex>; "
            "a tag can be moved to other bytes, a pinned digest cannot, and the digest is what promotion moves"
        )
    if not _IMAGE_DIGEST_RE.match(digest):
        _fail("has a malformed digest: expected @sha256: followed by 64 lowercase hex characters")
    if tag is not None:
        _fail(f"names both tag {tag!r} and a digest: drop the tag, the digest alone is what is deployed")
    problem = aws_limits().container_image.problem(value)
    if problem:
        _fail(f"is not a valid SageMaker container image: it {problem}")
    return value


def _check_bucket(value: str) -> str:
    try:
        parse_store_uri(f"s3://{value}")
    except InvalidStoreURIError as exc:
        # model_package words the rule ("... bucket name: <why>; supported: ..."); keep only the why.
        reason = str(exc).partition("bucket name: ")[2].partition("; supported")[0] or str(exc)
        _fail(f"is not a valid S3 bucket name: {reason}")
    return value


def _check_kms_key_arn(value: str) -> str:
    problem = aws_limits().kms_key_id.problem(value)
    if problem or not _KMS_KEY_ARN_RE.match(value):
        _fail(
            "is not a KMS key ARN: expected arn:aws:kms:<region>:<account>:key/<key-id> "
            "(not an alias: IAM policies can only scope kms:Decrypt to a key ARN)"
        )
    return value


def _check_schedule(value: str) -> str:
    problem = aws_limits().schedule.problem(value)
    if problem or not _SCHEDULE_RE.match(value):
        _fail(
            "is not an Application Auto Scaling schedule: use cron(<6 fields>), "
            "rate(<n> minutes|hours|days) or at(yyyy-mm-ddThh:mm:ss)"
        )
    return value


def _check_timezone(value: str) -> str:
    known = zoneinfo.available_timezones()
    # Without a tz database on this machine there is nothing to check against; AWS will still check.
    if known and value not in known:
        _fail(f"is not an IANA time zone{did_you_mean(value, known)}")
    return value


def _check_tag_key(value: str) -> str:
    problem = aws_limits().tag_key.problem(value)
    if problem:
        _fail(f"is not a valid tag key: it {problem}")
    if value.lower().startswith("aws:"):
        _fail("is not a valid tag key: the 'aws:' prefix is reserved for AWS")
    return value


def _check_tag_value(value: str) -> str:
    problem = aws_limits().tag_value.problem(value)
    if problem:
        _fail(f"is not a valid tag value: it {problem}")
    return value


def _at_least(minimum: int, what: str) -> AfterValidator:
    def check(value: int) -> int:
        if value < minimum:
            _fail(f"is too small: {what} must be at least {minimum}")
        return value

    return AfterValidator(check)


def _positive(what: str) -> AfterValidator:
    def check(value: float) -> float:
        if value <= 0:
            _fail(f"must be greater than 0 ({what})")
        return value

    return AfterValidator(check)


def _percent(value: float) -> float:
    if not 0 < value <= 100:
        _fail("is not a percentage: must be greater than 0 and at most 100")
    return value


def _utilization(value: float) -> float:
    # The metric is used/provisioned concurrency, a ratio: below 0.1 keeps 10x the capacity in use warm.
    if not 0.1 <= value <= 1.0:
        _fail("is out of range: the provisioned-concurrency utilization target must be 0.1-1.0 (a fraction, not %)")
    return value


EndpointName = Annotated[str, _named(lambda lim: lim.endpoint_name, "SageMaker endpoint name")]
VariantName = Annotated[str, _named(lambda lim: lim.variant_name, "SageMaker variant name")]
InstanceType = Annotated[str, AfterValidator(_check_instance_type)]
InstanceFamily = Annotated[str, AfterValidator(_check_instance_family)]
SnsTopicArn = Annotated[str, _named(lambda lim: lim.sns_topic_arn, "SNS topic ARN")]
AlarmName = Annotated[str, _named(lambda lim: lim.alarm_name, "CloudWatch alarm name")]
SubnetId = Annotated[str, _named(lambda lim: lim.subnet_id, "subnet id"), _prefixed("subnet-", "a subnet id")]
SecurityGroupId = Annotated[
    str, _named(lambda lim: lim.security_group_id, "security group id"), _prefixed("sg-", "a security group id")
]
TagKey = Annotated[str, AfterValidator(_check_tag_key)]
TagValue = Annotated[str, AfterValidator(_check_tag_value)]
PositiveNumber = Annotated[float, _positive("a target or threshold")]


# ---------------------------------------------------------------------------------------------
# Models


def _camel(name: str) -> str:
    # pydantic's to_camel would turn error_rate_5xx_percent into errorRate5XxPercent.
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_camel)


class PackageConfig(_Model):
    """``model-deploy:package``: the one package this stack serves, pinned by digest."""

    name: Annotated[str, AfterValidator(_check_package_name)] = Field(description="package name, as in manifest.json")
    version: Annotated[str, AfterValidator(_check_package_version)] = Field(
        description="package version, as in manifest.json (informational: the digest identifies content)"
    )
    uri: Annotated[str, AfterValidator(_check_package_uri)] = Field(
        description="<store>/<name>/<digest>/model.tar.gz, or the uncompressed prefix <store>/<name>/<digest>/"
    )
    digest: Annotated[str, AfterValidator(_check_digest)] = Field(
        description="sha256 of model.tar.gz (64 lowercase hex)"
    )
    image: Annotated[str, AfterValidator(_check_image)] = Field(
        description="serving image pinned by digest: <registry>/<repository>@sha256:<64 hex>"
    )

    @property
    def ref(self) -> PackageRef:
        """The parsed URI: store location of ``<name>/<digest>``, name and digest."""
        return parse_package_uri(self.uri)

    @property
    def layout(self) -> Layout:
        """``archive`` (``…/model.tar.gz``) or ``uncompressed`` (the package's files under the prefix)."""
        return "archive" if self.ref.layout == "archive" else "uncompressed"

    @property
    def prefix_uri(self) -> str:
        """``<store>/<name>/<digest>/``: everything a deployment may read lives under it."""
        return self.ref.uri

    @property
    def image_ref(self) -> ImageRef:
        """The image split into registry, repository and digest."""
        return parse_image(self.image)


class StoreSettings(_Model):
    """``model-deploy:aws.store``: the artifact bucket, its KMS key and the ECR repository."""

    create: bool = Field(
        default=True, description="create the bucket, key and repository (false: reference existing ones)"
    )
    bucket_name: Annotated[str, AfterValidator(_check_bucket)] | None = Field(
        default=None, description="bucket name (required when create is false; autonamed when omitted)"
    )
    kms_key_arn: Annotated[str, AfterValidator(_check_kms_key_arn)] | None = Field(
        default=None, description="existing customer-managed key (required when create is false)"
    )
    repository_name: Annotated[str, _named(lambda lim: lim.repository_name, "ECR repository name")] | None = Field(
        default=None, description="ECR repository (defaults to the image's repository)"
    )
    noncurrent_version_expiration_days: Annotated[int, _at_least(1, "the expiration")] = Field(
        default=30, description="days before noncurrent object versions expire"
    )
    force_destroy: bool = Field(
        default=False, description="let `pulumi destroy` delete a non-empty bucket (never in prod)"
    )


class VpcSettings(_Model):
    """``model-deploy:aws.endpoint.vpc``: run the model containers in your subnets."""

    subnet_ids: Annotated[tuple[SubnetId, ...], _count(lambda lim: lim.subnets, "subnets")] = Field(
        description="subnet-… ids"
    )
    security_group_ids: Annotated[
        tuple[SecurityGroupId, ...], _count(lambda lim: lim.security_groups, "security groups")
    ] = Field(description="sg-… ids")


class ServerlessSettings(_Model):
    """A variant's serverless capacity."""

    memory_size_mb: Annotated[int, AfterValidator(_check_memory)] = Field(description="1024-6144 in 1024 steps")
    max_concurrency: Annotated[
        int, _within(lambda lim: lim.serverless_max_concurrency, "the serverless max concurrency")
    ] = Field(description="concurrent invocations before throttling")
    provisioned_concurrency: (
        Annotated[int, _within(lambda lim: lim.serverless_provisioned_concurrency, "provisioned concurrency")] | None
    ) = Field(default=None, description="warm capacity (<= maxConcurrency)")


class VariantSettings(_Model):
    """One production (or shadow) variant."""

    name: VariantName = Field(description="stable across updates so blue/green rollouts can match old and new")
    instance_type: InstanceType | None = Field(
        default=None, description="instance type (realtime/async; not with serverless)"
    )
    initial_instance_count: Annotated[
        int, _within(lambda lim: lim.initial_instance_count, "the initial instance count")
    ] = Field(default=1, description="instances at creation")
    weight: Annotated[float, _within(lambda lim: lim.variant_weight, "a variant weight")] = Field(
        default=1.0, description="relative share of traffic"
    )
    serverless: ServerlessSettings | None = Field(default=None, description="serverless capacity (mode serverless)")

    @property
    def instance_family(self) -> str | None:
        """``ml.m5`` for ``ml.m5.xlarge``; ``None`` for serverless variants."""
        return instance_family(self.instance_type) if self.instance_type else None


class DataCaptureSettings(_Model):
    """``model-deploy:aws.endpoint.dataCapture``: request/response capture into the store (KMS-encrypted)."""

    enabled: bool = Field(default=True, description="capture is on")
    sampling_percentage: Annotated[int, _within(lambda lim: lim.sampling_percentage, "the sampling percentage")] = (
        Field(description="share of requests captured, 0-100")
    )
    capture_requests: bool = Field(default=True, description="capture request payloads")
    capture_responses: bool = Field(default=True, description="capture response payloads")


class AsyncSettings(_Model):
    """``model-deploy:aws.endpoint.async``: asynchronous inference (mode async only)."""

    max_concurrent_invocations_per_instance: (
        Annotated[
            int,
            _within(lambda lim: lim.max_concurrent_invocations_per_instance, "max concurrent invocations per instance"),
        ]
        | None
    ) = Field(default=None, description="requests each instance works on at once (SageMaker picks when omitted)")
    success_topic_arn: SnsTopicArn | None = Field(default=None, description="SNS topic told about each success")
    error_topic_arn: SnsTopicArn | None = Field(default=None, description="SNS topic told about each failure")


class DeploymentSettings(_Model):
    """``model-deploy:aws.endpoint.deployment``: blue/green traffic shifting with auto-rollback."""

    strategy: DeploymentStrategy = Field(default="all_at_once", description="all_at_once, canary or linear")
    canary_percent: Annotated[int, _within(lambda lim: lim.canary_percent, "the canary size in %")] | None = Field(
        default=None, description="share of capacity in the canary step (strategy canary)"
    )
    linear_step_percent: Annotated[int, _within(lambda lim: lim.linear_step_percent, "the linear step in %")] | None = (
        Field(default=None, description="share of capacity per step (strategy linear)")
    )
    wait_interval_seconds: Annotated[
        int, _within(lambda lim: lim.wait_interval_seconds, "the wait between traffic steps")
    ] = Field(default=300, description="bake time between traffic-shifting steps")
    maximum_execution_timeout_seconds: (
        Annotated[int, _within(lambda lim: lim.maximum_execution_timeout_seconds, "the deployment timeout")] | None
    ) = Field(default=None, description="give up (and roll back) after this long")
    termination_wait_seconds: Annotated[
        int, _within(lambda lim: lim.termination_wait_seconds, "the wait before the old fleet is terminated")
    ] = Field(default=0, description="keep the old fleet this long after the shift completes")
    rollback_on_alarms: bool = Field(
        default=True, description="roll back when a rollback alarm fires during a deployment"
    )
    rollback_alarms: tuple[AlarmName, ...] = Field(
        default=(), description="names of existing alarms that also trigger rollback (besides the stack's own)"
    )


class ScheduleSettings(_Model):
    """One scheduled change of the autoscaling bounds."""

    name: Annotated[str, _named(lambda lim: lim.scheduled_action_name, "scheduled action name")] = Field(
        description="unique per endpoint"
    )
    schedule: Annotated[str, AfterValidator(_check_schedule)] = Field(description="cron(…), rate(…) or at(…)")
    timezone: Annotated[str, AfterValidator(_check_timezone)] | None = Field(
        default=None, description="IANA time zone for cron/at (UTC when omitted)"
    )
    min_capacity: Annotated[int, _within(lambda lim: lim.capacity, "a scalable target capacity")] | None = Field(
        default=None, description="new minimum (instances, or provisioned concurrency for serverless)"
    )
    max_capacity: Annotated[int, _within(lambda lim: lim.capacity, "a scalable target capacity")] | None = Field(
        default=None, description="new maximum"
    )


class AutoscalingSettings(_Model):
    """``model-deploy:aws.endpoint.autoscaling``: one scalable target and target-tracking policy per variant."""

    # At least one instance: a real-time or async endpoint at zero instances cannot take a request, and
    # scaling out from zero needs step scaling on HasBacklogWithoutCapacity, which this stack does not build.
    min_instances: Annotated[int, _at_least(1, "an instance count")] | None = Field(
        default=None, description="instance modes: lower bound"
    )
    max_instances: Annotated[int, _at_least(1, "an instance count")] | None = Field(
        default=None, description="instance modes: upper bound"
    )
    min_provisioned_concurrency: (
        Annotated[int, _within(lambda lim: lim.serverless_provisioned_concurrency, "provisioned concurrency")] | None
    ) = Field(default=None, description="serverless: lower bound of provisioned concurrency")
    max_provisioned_concurrency: (
        Annotated[int, _within(lambda lim: lim.serverless_provisioned_concurrency, "provisioned concurrency")] | None
    ) = Field(default=None, description="serverless: upper bound of provisioned concurrency")
    target_invocations_per_instance: PositiveNumber | None = Field(
        default=None, description="realtime/async: invocations per instance per minute"
    )
    target_concurrent_requests_per_model: PositiveNumber | None = Field(
        default=None, description="realtime: concurrent requests per model (high-resolution metric)"
    )
    target_backlog_per_instance: PositiveNumber | None = Field(
        default=None, description="async: queued requests per instance"
    )
    target_provisioned_concurrency_utilization: Annotated[float, AfterValidator(_utilization)] | None = Field(
        default=None, description="serverless: used/provisioned concurrency, 0.1-1.0"
    )
    scale_in_cooldown_seconds: Annotated[int, _within(lambda lim: lim.cooldown_seconds, "a cooldown")] = Field(
        default=300, description="wait after scaling in"
    )
    scale_out_cooldown_seconds: Annotated[int, _within(lambda lim: lim.cooldown_seconds, "a cooldown")] = Field(
        default=60, description="wait after scaling out"
    )
    schedules: tuple[ScheduleSettings, ...] = Field(default=(), description="scheduled changes of the bounds")


class AlarmSettings(_Model):
    """``model-deploy:aws.endpoint.alarms``: thresholds of the per-variant CloudWatch alarms."""

    model_latency_p99_ms: PositiveNumber = Field(default=1000, description="p99 ModelLatency in milliseconds")
    error_rate_5xx_percent: Annotated[float, AfterValidator(_percent)] = Field(
        default=1, description="% of invocations"
    )
    error_rate_4xx_percent: Annotated[float, AfterValidator(_percent)] = Field(
        default=5, description="% of invocations"
    )
    evaluation_periods: Annotated[int, _within(lambda lim: lim.evaluation_periods, "the evaluation periods")] = Field(
        default=3, description="one-minute periods over the threshold before the alarm fires"
    )
    sns_topic_arn: SnsTopicArn | None = Field(default=None, description="notify this topic when an alarm changes state")


class EndpointSettings(_Model):
    """``model-deploy:aws.endpoint``: the SageMaker endpoint and everything around it."""

    name: EndpointName = Field(description="stable endpoint name")
    mode: EndpointMode = Field(default="realtime", description="realtime, serverless or async")
    network_isolation_setting: bool | None = Field(
        default=None,
        alias="networkIsolation",
        description="no network access from the model container (default: on, except serverless, which lacks it)",
    )
    vpc: VpcSettings | None = Field(default=None, description="subnets and security groups (not serverless)")
    variants: Annotated[
        tuple[VariantSettings, ...], _count(lambda lim: lim.production_variants, "production variants")
    ] = Field(description="production variants (A/B by weight)")
    shadow_variant: VariantSettings | None = Field(
        default=None, description="shadow variant (realtime, one production variant)"
    )
    data_capture: DataCaptureSettings | None = Field(
        default=None, description="capture requests/responses to the store"
    )
    async_inference: AsyncSettings | None = Field(
        default=None, alias="async", description="async settings (mode async)"
    )
    deployment: DeploymentSettings | None = Field(default=None, description="blue/green rollout and rollback")
    autoscaling: AutoscalingSettings | None = Field(default=None, description="autoscaling bounds and target")
    alarms: AlarmSettings = Field(default_factory=AlarmSettings, description="alarm thresholds")
    allowed_instance_families: tuple[InstanceFamily, ...] | None = Field(
        default=None, description="instance families this stack may use, e.g. [ml.m5, ml.c6i]"
    )

    @property
    def network_isolation(self) -> bool:
        """Whether the model container runs without network access (on unless serverless or set false)."""
        if self.network_isolation_setting is not None:
            return self.network_isolation_setting
        return self.mode != "serverless"

    @property
    def async_settings(self) -> AsyncSettings | None:
        """The async settings in effect: the given ones (or defaults) for mode async, else ``None``."""
        if self.mode != "async":
            return None
        return self.async_inference or AsyncSettings()

    @property
    def all_variants(self) -> tuple[VariantSettings, ...]:
        """Production variants, then the shadow variant if any."""
        return self.variants + ((self.shadow_variant,) if self.shadow_variant else ())


class AwsConfig(_Model):
    """``model-deploy:aws``: everything the AWS program declares."""

    store: StoreSettings = Field(default_factory=StoreSettings, description="artifact bucket, key and repository")
    endpoint: EndpointSettings = Field(description="the SageMaker endpoint")
    log_retention_days: Annotated[int, AfterValidator(_check_log_retention)] = Field(
        default=30, description="CloudWatch Logs retention of the endpoint's log group"
    )


# --- GCP --------------------------------------------------------------------------------------


def _gcp_named(rule: GcpNameRule, what: str) -> AfterValidator:
    def check(value: str) -> str:
        problem = rule.problem(value)
        if problem:
            _fail(f"is not a valid {what}: it {problem}")
        return value

    return AfterValidator(check)


def _between(minimum: int, maximum: int, what: str) -> AfterValidator:
    def check(value: int) -> int:
        if not minimum <= value <= maximum:
            _fail(f"is out of range: {what} must be {minimum}-{maximum}")
        return value

    return AfterValidator(check)


def _check_gcp_region(value: str) -> str:
    known = gcp_limits.regions()
    if value not in known:
        _fail(f"is not a Cloud Run or Vertex AI region{did_you_mean(value, known)}")
    return value


def _check_gcs_bucket(value: str) -> str:
    try:
        parse_store_uri(f"gs://{value}")
    except InvalidStoreURIError as exc:
        reason = str(exc).partition("bucket name: ")[2].partition("; supported")[0] or str(exc)
        _fail(
            f"is not a valid Cloud Storage bucket name: {reason} (https://cloud.google.com/storage/docs/buckets#naming)"
        )
    return value


def _check_kms_key_name(value: str) -> str:
    if not gcp_limits.KMS_KEY_NAME_RE.match(value):
        _fail(
            "is not a Cloud KMS key name: expected "
            "projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>"
        )
    return value


def _check_soft_delete(value: int) -> int:
    low, high = gcp_limits.SOFT_DELETE_MIN_DAYS, gcp_limits.SOFT_DELETE_MAX_DAYS
    if value != 0 and not low <= value <= high:
        _fail(f"is not a soft-delete retention: use 0 (off) or {low}-{high} days (Cloud Storage soft delete)")
    return value


def parse_cpu(value: str) -> int:
    """A Cloud Run CPU limit (``"2"`` or ``"500m"``) in millicores; raises ``ValueError``."""
    match = re.fullmatch(r"([0-9]+)(m?)", value)
    if match is None:
        raise ValueError(value)
    return int(match.group(1)) * (1 if match.group(2) else 1000)


def parse_memory(value: str) -> int:
    """A Cloud Run memory limit (``"512Mi"``, ``"16Gi"``) in MiB; raises ``ValueError``."""
    match = re.fullmatch(r"([0-9]+)(Mi|Gi)", value)
    if match is None:
        raise ValueError(value)
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def _check_cpu(value: str) -> str:
    whole = ", ".join(f'"{cpus}"' for cpus in gcp_limits.CLOUD_RUN_WHOLE_CPUS)
    allowed = f"use {whole}, or {gcp_limits.CLOUD_RUN_MIN_MILLICPU}m-1000m for less than one CPU (Cloud Run CPU limits)"
    try:
        millicpu = parse_cpu(value)
    except ValueError:
        _fail(f"is not a CPU limit: {allowed}")
    if millicpu % 1000 == 0 and millicpu // 1000 in gcp_limits.CLOUD_RUN_WHOLE_CPUS:
        return value
    if gcp_limits.CLOUD_RUN_MIN_MILLICPU <= millicpu <= 1000:
        return value
    _fail(f"is not an allowed CPU limit: {allowed}")


def _check_memory_limit(value: str) -> str:
    low, high = gcp_limits.CLOUD_RUN_MIN_MEMORY_MIB, gcp_limits.CLOUD_RUN_MAX_MEMORY_MIB
    try:
        mib = parse_memory(value)
    except ValueError:
        _fail('is not a memory limit: use <n>Mi or <n>Gi, like "512Mi" or "16Gi"')
    if not low <= mib <= high:
        _fail(f"is out of range: Cloud Run memory must be {low}Mi-{high // 1024}Gi (Cloud Run memory limits)")
    return value


def _check_invoker(value: str) -> str:
    if value in ("allUsers", "allAuthenticatedUsers"):
        _fail("is a public principal: set cloudRun.public: true to allow unauthenticated calls instead")
    if not gcp_limits.INVOKER_MEMBER_RE.match(value):
        _fail("is not an IAM principal: use user:<email>, serviceAccount:<email>, group:<email> or domain:<domain>")
    return value


def _check_accelerator_type(value: str) -> str:
    known = gcp_limits.accelerator_types()
    if value not in known:
        _fail(f"is not a Vertex AI accelerator type (aiplatform_v1 AcceleratorType){did_you_mean(value, known)}")
    return value


def _check_machine_type(value: str) -> str:
    match = gcp_limits.VERTEX_MACHINE_TYPE_RE.match(value)
    series = match.group("series") if match else value
    if match is None or series not in gcp_limits.VERTEX_MACHINE_SERIES:
        known = sorted(gcp_limits.VERTEX_MACHINE_SERIES)
        _fail(
            "is not a Vertex AI prediction machine type (<series>-<size>, like n1-standard-4 or g2-standard-8)"
            + (did_you_mean(series, known) or f"; series: {', '.join(known)}")
        )
    return value


ProjectId = Annotated[str, _gcp_named(gcp_limits.PROJECT_ID, "GCP project ID")]
GcsBucketName = Annotated[str, AfterValidator(_check_gcs_bucket)]
Percent = Annotated[int, _between(1, 100, "a percentage")]
GcpRegion = Annotated[str, AfterValidator(_check_gcp_region)]
GcpTarget = Literal["cloudrun", "vertex"]
PackageDelivery = Literal["mount", "fetch"]
CloudRunIngress = Literal["all", "internal", "internal-and-cloud-load-balancing"]
#: Cloud Run v2's ingress values for ``cloudRun.ingress``.
CLOUD_RUN_INGRESS: dict[str, str] = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
CloudRunGpuType = Literal["nvidia-l4", "nvidia-rtx-pro-6000"]


class RepositorySettings(_Model):
    """``model-deploy:gcp.store.repository``: the Artifact Registry Docker repository of the serving image."""

    name: Annotated[str, _gcp_named(gcp_limits.REPOSITORY_ID, "Artifact Registry repository id")] = Field(
        description="repository id (the image must be in it)"
    )
    keep_recent_versions: Annotated[int, _at_least(1, "the versions kept")] = Field(
        default=10, description="cleanup keeps this many most recent versions of each image"
    )
    delete_untagged_after_days: Annotated[int, _at_least(1, "the age")] = Field(
        default=30, description="cleanup deletes untagged versions older than this"
    )


class GcsStoreSettings(_Model):
    """``model-deploy:gcp.store``: the package bucket and the image repository."""

    create: bool = Field(default=True, description="create the bucket and repository (false: reference existing ones)")
    bucket_name: GcsBucketName | None = Field(
        default=None, description="bucket name (defaults to the pinned package's bucket, which must be it)"
    )
    kms_key_name: Annotated[str, AfterValidator(_check_kms_key_name)] | None = Field(
        default=None, description="Cloud KMS key for the bucket's default encryption (CMEK)"
    )
    noncurrent_version_days: Annotated[int, _at_least(1, "the age")] = Field(
        default=30, description="days before noncurrent object versions are deleted"
    )
    soft_delete_days: Annotated[int, AfterValidator(_check_soft_delete)] = Field(
        default=7, description="soft-delete retention: 0 (off) or 7-90 days"
    )
    force_destroy: bool = Field(
        default=False, description="let `pulumi destroy` delete a non-empty bucket (never in prod)"
    )
    repository: RepositorySettings = Field(description="the Docker repository")


class CloudRunGpuSettings(_Model):
    """``model-deploy:gcp.cloudRun.gpu``: one GPU per instance."""

    type: CloudRunGpuType = Field(description="nvidia-l4 or nvidia-rtx-pro-6000")
    count: int = Field(default=1, description="GPUs per instance (Cloud Run allows 1)")


class CloudRunSettings(_Model):
    """``model-deploy:gcp.cloudRun``: the Cloud Run v2 service (target cloudrun)."""

    service_name: Annotated[str, _gcp_named(gcp_limits.CLOUD_RUN_SERVICE_NAME, "Cloud Run service name")] = Field(
        description="service name (<= 49 characters)"
    )
    cpu: Annotated[str, AfterValidator(_check_cpu)] = Field(
        default="1", description='"1", "2", "4", "6", "8" or "80m"-"1000m"'
    )
    memory: Annotated[str, AfterValidator(_check_memory_limit)] = Field(default="512Mi", description='"512Mi"-"32Gi"')
    gpu: CloudRunGpuSettings | None = Field(default=None, description="attach a GPU")
    min_instances: Annotated[int, _at_least(0, "an instance count")] = Field(default=0, description="warm instances")
    max_instances: Annotated[int, _at_least(1, "an instance count")] = Field(default=10, description="scale-out bound")
    concurrency: Annotated[int, _between(1, gcp_limits.CLOUD_RUN_MAX_CONCURRENCY, "Cloud Run concurrency")] = Field(
        default=80, description="requests per instance at once"
    )
    timeout_seconds: Annotated[
        int, _between(1, gcp_limits.CLOUD_RUN_MAX_TIMEOUT_SECONDS, "the Cloud Run request timeout")
    ] = Field(default=300, description="request timeout")
    public: bool = Field(default=False, description="let anyone call the service (allUsers invoker)")
    invokers: tuple[Annotated[str, AfterValidator(_check_invoker)], ...] = Field(
        default=(), description="principals granted roles/run.invoker"
    )
    package_delivery: PackageDelivery = Field(
        default="fetch", description="mount (Cloud Storage volume at /opt/ml/model) or fetch (AIP_STORAGE_URI)"
    )
    deletion_protection: bool | None = Field(default=None, description="refuse deletion (default: true in prod)")
    ingress: CloudRunIngress = Field(
        default="all",
        description="who can reach the URL at all (IAM still applies): all, internal (VPC), "
        "or internal-and-cloud-load-balancing (behind an external HTTPS load balancer)",
    )

    @property
    def millicpu(self) -> int:
        """The CPU limit in millicores."""
        return parse_cpu(self.cpu)

    @property
    def memory_mib(self) -> int:
        """The memory limit in MiB."""
        return parse_memory(self.memory)


class VertexSettings(_Model):
    """``model-deploy:gcp.vertex``: the Vertex AI endpoint and deployed model (target vertex)."""

    endpoint_name: Annotated[str, _gcp_named(gcp_limits.VERTEX_DISPLAY_NAME, "Vertex AI endpoint name")] = Field(
        description="endpoint display name"
    )
    machine_type: Annotated[str, AfterValidator(_check_machine_type)] = Field(description="e.g. n1-standard-4")
    accelerator_type: Annotated[str, AfterValidator(_check_accelerator_type)] | None = Field(
        default=None, description="e.g. NVIDIA_TESLA_T4 (aiplatform AcceleratorType)"
    )
    accelerator_count: Annotated[int, _at_least(0, "an accelerator count")] = Field(
        default=0, description="accelerators per replica"
    )
    min_replicas: Annotated[int, _at_least(1, "a replica count")] = Field(default=1, description="lower bound")
    max_replicas: Annotated[int, _at_least(1, "a replica count")] = Field(default=1, description="upper bound")
    cpu_utilization_target: Percent | None = Field(default=None, description="autoscaling CPU target, %")
    accelerator_duty_cycle_target: Percent | None = Field(
        default=None, description="autoscaling accelerator duty-cycle target, %"
    )
    traffic_percent: Percent = Field(default=100, description="share of traffic the new model gets")
    deploy_timeout_seconds: Annotated[int, _at_least(1, "a timeout")] = Field(
        default=1800, description="give up on a deployment after this long"
    )


class GcpConfig(_Model):
    """``model-deploy:gcp``: everything the GCP program declares."""

    project: ProjectId = Field(description="GCP project id")
    region: GcpRegion = Field(description="region of the bucket, repository and service or endpoint")
    target: GcpTarget = Field(description="cloudrun or vertex")
    store: GcsStoreSettings = Field(description="package bucket and image repository")
    cloud_run: CloudRunSettings | None = Field(default=None, description="Cloud Run service (target cloudrun)")
    vertex: VertexSettings | None = Field(default=None, description="Vertex AI endpoint (target vertex)")

    @property
    def registry_host(self) -> str:
        """``<region>-docker.pkg.dev``: the Artifact Registry Docker host of the region."""
        return f"{self.region}-docker.pkg.dev"

    @property
    def repository_url(self) -> str:
        """``<region>-docker.pkg.dev/<project>/<repository>``."""
        return f"{self.registry_host}/{self.project}/{self.store.repository.name}"


def _auto_or_between(minimum: int, maximum: int, what: str) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(f"must be auto or a whole number {minimum}-{maximum} ({what})")
        if not minimum <= value <= maximum:
            _fail(f"is out of range: {what} must be auto or {minimum}-{maximum}")
        return value

    return BeforeValidator(check)


ServerLogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServingConfig(_Model):
    """``model-deploy:serving``: how the serving container runs, the same on every cloud and target.

    Each setting becomes the ``MODEL_SERVER_*`` variable of the same name (``inference/config.py``);
    unset ones keep the server's defaults. See the README's model-serve section for what they do.
    """

    workers: Annotated[int | Literal["auto"], _auto_or_between(1, 256, "a worker count")] = Field(
        default=1, description="worker processes over one loaded model; auto: one per CPU"
    )
    max_batch_size: Annotated[int | Literal["auto"], _auto_or_between(1, 4096, "a batch size")] | None = Field(
        default=None, description="rows per model call at most; auto: measured at start-up"
    )
    max_batch_delay_ms: Annotated[int, _between(0, 1000, "a batching delay in ms")] | None = Field(
        default=None, description="wait this long for a batch to fill (0: never wait)"
    )
    max_queue: Annotated[int, _between(1, 100_000, "a queue length")] | None = Field(
        default=None, description="queued requests before 503"
    )
    compute_threads: Annotated[int, _between(1, 256, "a thread count")] | None = Field(
        default=None, description="framework threads per worker (default: the CPU quota / workers)"
    )
    log_level: ServerLogLevel | None = Field(default=None, description="DEBUG, INFO, WARNING or ERROR")

    def environment(self) -> dict[str, str]:
        """The ``MODEL_SERVER_*`` variables for the settings that are set."""
        values = {
            "MODEL_SERVER_WORKERS": self.workers if self.workers != 1 else None,
            "MODEL_SERVER_MAX_BATCH_SIZE": self.max_batch_size,
            "MODEL_SERVER_MAX_BATCH_DELAY_MS": self.max_batch_delay_ms,
            "MODEL_SERVER_MAX_QUEUE": self.max_queue,
            "MODEL_SERVER_COMPUTE_THREADS": self.compute_threads,
            "MODEL_SERVER_LOG_LEVEL": self.log_level,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


class StackConfig(_Model):
    """A whole stack's configuration: the namespaced Pulumi keys, parsed and validated.

    Build it with :func:`infra.config.load_stack_config`, :func:`~infra.config.load_stack_file`
    or :func:`~infra.config.from_pulumi`, which also run the cross-field rules.
    """

    stack: str = Field(alias="pulumi:stack", description="the Pulumi stack name")
    environment: Environment = Field(alias="model-deploy:environment", description="dev, staging or prod")
    cloud: Cloud = Field(alias="model-deploy:cloud", description="aws or gcp")
    git_revision: Annotated[str, AfterValidator(_check_tag_value)] | None = Field(
        default=None, alias="model-deploy:gitRevision", description="revision tagged on every resource"
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict, alias="model-deploy:tags", description="extra tags on every resource"
    )
    package: PackageConfig = Field(alias="model-deploy:package", description="the pinned model package")
    aws: AwsConfig | None = Field(default=None, alias="model-deploy:aws", description="AWS settings (cloud aws)")
    gcp: GcpConfig | None = Field(default=None, alias="model-deploy:gcp", description="GCP settings (cloud gcp)")
    serving: ServingConfig = Field(
        default_factory=ServingConfig, alias="model-deploy:serving", description="the serving container's settings"
    )
    aws_region: Annotated[str, AfterValidator(_check_region)] | None = Field(
        default=None, alias="aws:region", description="AWS region (cloud aws)"
    )

    @property
    def is_prod(self) -> bool:
        """Production rules apply (two instances, rollback, no force-destroy)."""
        return self.environment == "prod"

    @property
    def is_dev(self) -> bool:
        """Development stack: the relaxed rules (no autoscaling required)."""
        return self.environment == "dev"

    @property
    def standard_tags(self) -> dict[str, str]:
        """The tags the stack itself sets: environment, stack, model, version, digest, revision."""
        tags = {
            "environment": self.environment,
            "stack": self.stack,
            "model": self.package.name,
            "model-version": self.package.version,
            "package-digest": self.package.digest,
            "managed-by": PROJECT,
        }
        if self.git_revision:
            tags["git-revision"] = self.git_revision
        return tags

    @property
    def resource_tags(self) -> dict[str, str]:
        """Tags for every taggable resource: ``model-deploy:tags`` plus :attr:`standard_tags`."""
        return {**self.tags, **self.standard_tags}

    @property
    def resource_labels(self) -> dict[str, str]:
        """:attr:`resource_tags` as GCP labels: lowercase, ``[a-z0-9_-]``, at most 63 characters.

        Standard tags are rewritten to fit (``model-version`` 1.0.0 -> ``1_0_0``, the digest cut to 63
        characters); the GCP rules require user tags to be valid labels as they are.
        """
        return {gcp_limits.label_key(key): gcp_limits.label_value(value) for key, value in self.resource_tags.items()}

    def require_gcp(self) -> GcpConfig:
        """The GCP settings; raises :class:`ConfigError` on a stack without them."""
        if self.gcp is None:
            raise ConfigError(f"{PROJECT}:gcp", MISSING, "is required to deploy to GCP")
        return self.gcp

    def require_aws(self) -> AwsConfig:
        """The AWS settings; raises :class:`ConfigError` on a stack without them."""
        if self.aws is None:
            raise ConfigError(f"{PROJECT}:aws", MISSING, "is required to deploy to AWS")
        return self.aws

    @property
    def region(self) -> str:
        """The AWS region; raises :class:`ConfigError` on a stack without one."""
        if self.aws_region is None:
            raise ConfigError("aws:region", MISSING, "is required to deploy to AWS")
        return self.aws_region


@dataclass(frozen=True)
class ImageRef:
    """A container image pinned by digest."""

    registry: str
    repository: str
    digest: str
    """``sha256:<64 hex>``."""

    @property
    def ecr_account(self) -> str | None:
        """The AWS account of an ECR registry, else ``None``."""
        match = _ECR_REGISTRY_RE.match(self.registry)
        return match.group("account") if match else None

    @property
    def ecr_region(self) -> str | None:
        """The region of an ECR registry, else ``None``."""
        match = _ECR_REGISTRY_RE.match(self.registry)
        return match.group("region") if match else None

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def parse_image(image: str) -> ImageRef:
    """Split a validated ``<registry>/<repository>@sha256:<hex>`` reference."""
    match = _IMAGE_RE.match(image)
    if match is None or match.group("digest") is None:
        raise ValueError(f"{image!r} is not an image pinned by digest")
    return ImageRef(match.group("registry"), match.group("repository"), match.group("digest"))
