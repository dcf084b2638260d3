"""``model-deploy:aws``: the artifact store and the SageMaker endpoint, value by value.

Names, patterns and numeric ranges come from botocore's service models
(:mod:`infra.config.aws_limits`); rules relating several values live in
:mod:`infra.config.aws_rules`.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field

from infra.config.aws_limits import AwsLimits, NameRule, Range, aws_limits, instance_family
from infra.config.errors import did_you_mean
from infra.config.fields import ConfigModel, at_least, between, bucket_name_problem, fail, positive

EndpointMode = Literal["realtime", "serverless", "async"]
DeploymentStrategy = Literal["all_at_once", "canary", "linear"]

#: Rollback alarms the endpoint component creates itself (one alarm over errors and latency of
#: the new fleet). With ``rollbackAlarms`` they make the rule of the composite alarm the endpoint
#: names, held to SageMaker's AutoRollbackConfig limit (the limit the alarms had when the
#: endpoint named them all; a conservative bound for the rule now).
STACK_ROLLBACK_ALARM_COUNT: Final = 1

_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")
_SCHEDULE_RE = re.compile(
    r"^(?:cron\((?:\S+\s+){5}\S+\)"  # six fields: minutes hours day-of-month month day-of-week year
    r"|rate\([1-9][0-9]*\s+(?:minute|minutes|hour|hours|day|days)\)"
    r"|at\([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\))$"
)


def _within(get: Callable[[AwsLimits], Range], what: str) -> AfterValidator:
    """Check a number against a botocore range (looked up when validating, not at import)."""

    def check(value: float) -> float:
        limit = get(aws_limits())
        if value not in limit:
            fail(f"is out of range: {what} must be {limit.text} ({limit.source})")
        return value

    return AfterValidator(check)


def _count(get: Callable[[AwsLimits], Range], what: str) -> AfterValidator:
    """Check a list's length against a botocore list shape's min/max."""

    def check(value: tuple[Any, ...]) -> tuple[Any, ...]:
        limit = get(aws_limits())
        if len(value) not in limit:
            too = "many" if limit.maximum is not None and len(value) > limit.maximum else "few"
            fail(f"are too {too}: {what} must number {limit.text} ({limit.source})")
        return value

    return AfterValidator(check)


def _named(get: Callable[[AwsLimits], NameRule], what: str) -> AfterValidator:
    """Check a string against a botocore shape's length and pattern."""

    def check(value: str) -> str:
        problem = get(aws_limits()).problem(value)
        if problem:
            fail(f"is not a valid {what}: it {problem}")
        return value

    return AfterValidator(check)


def _prefixed(prefix: str, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value.startswith(prefix):
            fail(f"is not {what}: expected an id starting with {prefix!r}")
        return value

    return AfterValidator(check)


def _check_instance_type(value: str) -> str:
    known = aws_limits().instance_types
    if value not in known:
        # Same-family sizes first ("ml.m5.larg" -> ml.m5.large, ml.m5.xlarge), then anything close.
        family = [name for name in known if instance_family(name) == instance_family(value)]
        hint = did_you_mean(value, family, limit=2) or did_you_mean(value, known, limit=2)
        fail(
            "is not a SageMaker real-time instance type"
            + (hint or f" (sagemaker ProductionVariantInstanceType lists {len(known)}, e.g. ml.m5.large)")
        )
    return value


def _check_instance_family(value: str) -> str:
    known = aws_limits().instance_families
    if value not in known:
        hint = did_you_mean(value, known)
        fail(f"is not a SageMaker instance family (an instance type without its size, like ml.m5){hint}")
    return value


def _check_memory(value: int) -> int:
    allowed = aws_limits().serverless_memory_sizes_mb
    if value not in allowed:
        limit = aws_limits().serverless_memory_mb
        fail(
            f"is not an allowed serverless memory size: use one of {', '.join(map(str, allowed))} MB "
            f"({limit.source}: {limit.text} in 1 GB increments)"
        )
    return value


def _check_log_retention(value: int) -> int:
    allowed = aws_limits().log_retention_days
    if value not in allowed:
        fail(f"is not a CloudWatch Logs retention period: use one of {', '.join(map(str, allowed))} days")
    return value


def _check_region(value: str) -> str:
    regions = aws_limits().sagemaker_regions
    if value not in regions:
        fail(f"is not a region where botocore knows SageMaker{did_you_mean(value, regions)}")
    return value


def _check_bucket(value: str) -> str:
    reason = bucket_name_problem("s3", value)
    if reason:
        fail(f"is not a valid S3 bucket name: {reason}")
    return value


def _check_kms_key_arn(value: str) -> str:
    problem = aws_limits().kms_key_id.problem(value)
    if problem or not _KMS_KEY_ARN_RE.match(value):
        fail(
            "is not a KMS key ARN: expected arn:aws:kms:<region>:<account>:key/<key-id> "
            "(not an alias: IAM policies can only scope kms:Decrypt to a key ARN)"
        )
    return value


def _check_schedule(value: str) -> str:
    problem = aws_limits().schedule.problem(value)
    if problem or not _SCHEDULE_RE.match(value):
        fail(
            "is not an Application Auto Scaling schedule: use cron(<6 fields>), "
            "rate(<n> minutes|hours|days) or at(yyyy-mm-ddThh:mm:ss)"
        )
    return value


def _check_timezone(value: str) -> str:
    known = zoneinfo.available_timezones()
    # Without a tz database on this machine there is nothing to check against; AWS will still check.
    if known and value not in known:
        fail(f"is not an IANA time zone{did_you_mean(value, known)}")
    return value


def _percent(value: float) -> float:
    if not 0 < value <= 100:
        fail("is not a percentage: must be greater than 0 and at most 100")
    return value


def _utilization(value: float) -> float:
    # The metric is used/provisioned concurrency, a ratio: below 0.1 keeps 10x the capacity in use warm.
    if not 0.1 <= value <= 1.0:
        fail("is out of range: the provisioned-concurrency utilization target must be 0.1-1.0 (a fraction, not %)")
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
PositiveNumber = Annotated[float, positive("a target or threshold")]
AwsRegion = Annotated[str, AfterValidator(_check_region)]


class StoreSettings(ConfigModel):
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
    noncurrent_version_expiration_days: Annotated[int, at_least(1, "the expiration")] = Field(
        default=30, description="days before noncurrent object versions expire"
    )
    force_destroy: bool = Field(
        default=False, description="let `pulumi destroy` delete a non-empty bucket (never in prod)"
    )


class VpcSettings(ConfigModel):
    """``model-deploy:aws.endpoint.vpc``: run the model containers in your subnets."""

    subnet_ids: Annotated[tuple[SubnetId, ...], _count(lambda lim: lim.subnets, "subnets")] = Field(
        description="subnet-… ids"
    )
    security_group_ids: Annotated[
        tuple[SecurityGroupId, ...], _count(lambda lim: lim.security_groups, "security groups")
    ] = Field(description="sg-… ids")


class ServerlessSettings(ConfigModel):
    """A variant's serverless capacity."""

    memory_size_mb: Annotated[int, AfterValidator(_check_memory)] = Field(description="1024-6144 in 1024 steps")
    max_concurrency: Annotated[
        int, _within(lambda lim: lim.serverless_max_concurrency, "the serverless max concurrency")
    ] = Field(description="concurrent invocations before throttling")
    provisioned_concurrency: (
        Annotated[int, _within(lambda lim: lim.serverless_provisioned_concurrency, "provisioned concurrency")] | None
    ) = Field(default=None, description="warm capacity (<= maxConcurrency)")


class VariantSettings(ConfigModel):
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


class DataCaptureSettings(ConfigModel):
    """``model-deploy:aws.endpoint.dataCapture``: request/response capture into the store (KMS-encrypted)."""

    enabled: bool = Field(default=True, description="capture is on")
    sampling_percentage: Annotated[int, _within(lambda lim: lim.sampling_percentage, "the sampling percentage")] = (
        Field(description="share of requests captured, 0-100")
    )
    capture_requests: bool = Field(default=True, description="capture request payloads")
    capture_responses: bool = Field(default=True, description="capture response payloads")


class AsyncSettings(ConfigModel):
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


class DeploymentSettings(ConfigModel):
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
    provisioning_seconds: Annotated[int, between(60, 3600, "the provisioning allowance")] = Field(
        default=900,
        description="how long SageMaker takes to start and health-check the new fleet (read it from the "
        "endpoint's past rollouts); counted against the rollout time budget",
    )

    @property
    def traffic_steps(self) -> int:
        """Traffic shifts of one rollout, each followed by ``waitIntervalSeconds`` of baking.

        All at once: one shift; canary: the canary, then the rest; linear: one shift per step
        (SageMaker "Blue/Green Deployments" guide, traffic shifting modes).
        """
        if self.strategy == "canary":
            return 2
        if self.strategy == "linear":
            return math.ceil(100 / (self.linear_step_percent or 100))
        return 1

    @property
    def waiting_seconds(self) -> int:
        """Baking after every traffic shift plus the wait before the old fleet is terminated."""
        return self.traffic_steps * self.wait_interval_seconds + self.termination_wait_seconds

    @property
    def expected_seconds(self) -> int:
        """What one rollout takes when nothing goes wrong: provisioning, baking, termination wait."""
        return self.provisioning_seconds + self.waiting_seconds


class ScheduleSettings(ConfigModel):
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


class AutoscalingSettings(ConfigModel):
    """``model-deploy:aws.endpoint.autoscaling``: one scalable target and target-tracking policy per variant."""

    # At least one instance: a real-time or async endpoint at zero instances cannot take a request, and
    # scaling out from zero needs step scaling on HasBacklogWithoutCapacity, which this stack does not build.
    min_instances: Annotated[int, at_least(1, "an instance count")] | None = Field(
        default=None, description="instance modes: lower bound"
    )
    max_instances: Annotated[int, at_least(1, "an instance count")] | None = Field(
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


class AlarmSettings(ConfigModel):
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


class EndpointSettings(ConfigModel):
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
    batch_jobs: bool = Field(
        default=False,
        description="model-deploy-batch may run Batch Transform jobs with this endpoint's model: its role reads "
        "batch/<endpoint>/input/ and writes batch/<endpoint>/output/ of the store",
    )
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


class AwsConfig(ConfigModel):
    """``model-deploy:aws``: everything the AWS program declares."""

    store: StoreSettings = Field(default_factory=StoreSettings, description="artifact bucket, key and repository")
    endpoint: EndpointSettings = Field(description="the SageMaker endpoint")
    log_retention_days: Annotated[int, AfterValidator(_check_log_retention)] = Field(
        default=30, description="CloudWatch Logs retention of the endpoint's log group"
    )
