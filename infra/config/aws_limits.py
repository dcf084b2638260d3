"""AWS API constraints, read from the service models botocore ships.

botocore carries the same API definitions the AWS SDKs are generated from: enums of
instance types, name patterns and lengths, numeric ranges, list sizes. Reading them
here (by shape name, never by copying lists) means a ``pip install -U botocore``
brings new instance types and changed limits with no code change, and a stack that
the API would reject fails at ``pulumi preview`` with the same rule, instead of
ten minutes into a failed endpoint creation.

A few limits are documented only in prose (the API reference text botocore also
ships), never as a constraint; those are constants below, each next to the shape
whose documentation states it, and ``tests/infra/test_config.py`` checks that the
documentation still says so.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import botocore.session

SAGEMAKER: Final = "sagemaker"
AUTOSCALING: Final = "application-autoscaling"

#: ``ProductionVariantServerlessConfig.MemorySizeInMB`` documents "1 GB increments"; the model has only min/max.
SERVERLESS_MEMORY_STEP_MB: Final = 1024
#: ``TrafficRoutingConfig.CanarySize`` documents "less than or equal to 50% of the variant's total instance count".
CANARY_MAX_PERCENT: Final = 50
#: ``TrafficRoutingConfig.LinearStepSize`` documents "10-50% of the variant's total instance count".
LINEAR_STEP_PERCENT: Final = (10, 50)
#: ``logs`` ``PutRetentionPolicyRequest.retentionInDays`` (shape ``Days``) has no enum; its documentation lists these.
LOG_RETENTION_DAYS: Final = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

Number = int | float


@dataclass(frozen=True)
class Range:
    """An inclusive numeric range (a value range, or a list's length range) and where it came from."""

    minimum: Number | None
    maximum: Number | None
    source: str
    """``"<service> <Shape>"`` or ``"<service> <Shape>.<Member>"``, shown in error messages."""

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        return self.maximum is None or value <= self.maximum

    @property
    def text(self) -> str:
        """``"1-10"``, ``">= 1"``, ``"<= 10"`` or ``"any number"``."""
        if self.minimum is not None and self.maximum is not None:
            return f"{_number(self.minimum)}-{_number(self.maximum)}"
        if self.minimum is not None:
            return f">= {_number(self.minimum)}"
        if self.maximum is not None:
            return f"<= {_number(self.maximum)}"
        return "any number"


@dataclass(frozen=True)
class NameRule:
    """A string's length bounds and pattern (matched against the whole string), and where they came from."""

    min_length: int
    max_length: int | None
    pattern: str | None
    source: str

    def problem(self, value: str) -> str | None:
        """Why ``value`` breaks the rule, or ``None`` if it does not."""
        if len(value) < self.min_length or (self.max_length is not None and len(value) > self.max_length):
            most = f"-{self.max_length}" if self.max_length is not None else " or more"
            return f"must be {max(self.min_length, 1)}{most} characters long, not {len(value)} ({self.source})"
        if self.pattern is not None and not _matcher(self.pattern)(value):
            return f"must match the pattern {self.pattern} ({self.source})"
        return None


@dataclass(frozen=True)
class AwsLimits:
    """Every AWS constraint the stack config checks, each read from a botocore shape."""

    # SageMaker endpoint configuration
    instance_types: tuple[str, ...]
    endpoint_name: NameRule
    variant_name: NameRule
    production_variants: Range
    initial_instance_count: Range
    variant_weight: Range
    serverless_memory_mb: Range
    serverless_max_concurrency: Range
    serverless_provisioned_concurrency: Range
    sampling_percentage: Range
    max_concurrent_invocations_per_instance: Range
    sns_topic_arn: NameRule
    subnets: Range
    subnet_id: NameRule
    security_groups: Range
    security_group_id: NameRule
    kms_key_id: NameRule
    container_image: NameRule
    tag_key: NameRule
    tag_value: NameRule
    tags: Range
    # SageMaker deployment guardrails
    canary_percent: Range
    linear_step_percent: Range
    wait_interval_seconds: Range
    termination_wait_seconds: Range
    maximum_execution_timeout_seconds: Range
    rollback_alarms: Range
    alarm_name: NameRule
    # Application Auto Scaling
    capacity: Range
    cooldown_seconds: Range
    scheduled_action_name: NameRule
    schedule: NameRule
    scalable_dimensions: tuple[str, ...]
    predefined_metrics: tuple[str, ...]
    # Everything else the stack touches
    repository_name: NameRule
    evaluation_periods: Range
    log_retention_days: tuple[int, ...]
    sagemaker_regions: tuple[str, ...]

    @property
    def instance_families(self) -> tuple[str, ...]:
        """``ml.m5``, ``ml.g5``, ``ml.p6-b200``… (an instance type without its size), sorted."""
        return tuple(sorted({instance_family(name) for name in self.instance_types}))

    @property
    def serverless_memory_sizes_mb(self) -> tuple[int, ...]:
        """The memory sizes a serverless variant accepts: the model's range in documented 1 GB steps."""
        low, high = self.serverless_memory_mb.minimum, self.serverless_memory_mb.maximum
        if low is None or high is None:
            raise RuntimeError("botocore's ServerlessMemorySizeInMB shape lost its min/max")
        return tuple(range(int(low), int(high) + 1, SERVERLESS_MEMORY_STEP_MB))


def instance_family(instance_type: str) -> str:
    """``ml.m5.xlarge`` -> ``ml.m5`` (everything before the last dot)."""
    return instance_type.rsplit(".", 1)[0]


# Instance families whose volumes are local NVMe instance store. SageMaker refuses a KmsKeyId for
# them ("Certain Nitro-based instances include local storage... the call to CreateEndpointConfig
# fails"); their disks are encrypted by the instance hardware instead. botocore does not publish
# this, so it is kept here, once, for the endpoint component and the policy pack. A "d" in the
# attribute suffix (m5d, c6gd, g4dn, p4de, r7gd) means local storage; the listed accelerated
# families have it without one.
_LOCAL_STORAGE_SUFFIX_RE: Final = re.compile(r"^[a-z]+[0-9]+[a-z]*d[a-z]*$")
LOCAL_STORAGE_FAMILIES: Final = frozenset(
    {
        "ml.dl1",
        "ml.g5",
        "ml.g6",
        "ml.g6e",
        "ml.g7",
        "ml.g7e",
        "ml.p5",
        "ml.p5e",
        "ml.p5en",
        "ml.p6-b200",
        "ml.p6-b300",
        "ml.p6e-gb200",
        "ml.trn1",
        "ml.trn1n",
        "ml.trn2",
    }
)


def has_local_instance_storage(instance_type: str) -> bool:
    """Whether ``instance_type``'s volume is local NVMe instance storage (SageMaker refuses a KMS key)."""
    family = instance_family(instance_type)
    return family in LOCAL_STORAGE_FAMILIES or bool(_LOCAL_STORAGE_SUFFIX_RE.match(family.removeprefix("ml.")))


@functools.cache
def aws_limits() -> AwsLimits:
    """The constraints from the installed botocore (loaded once; about 0.2 s)."""
    session = botocore.session.get_session()
    sagemaker = _Service(session, SAGEMAKER)
    autoscaling = _Service(session, AUTOSCALING)
    ecr = _Service(session, "ecr")
    cloudwatch = _Service(session, "cloudwatch")
    capacity_value = sagemaker.range("CapacitySize.Value")
    return AwsLimits(
        instance_types=sagemaker.enum("ProductionVariantInstanceType"),
        endpoint_name=sagemaker.name_rule("EndpointName"),
        variant_name=sagemaker.name_rule("VariantName"),
        production_variants=sagemaker.range("CreateEndpointConfigInput.ProductionVariants"),
        initial_instance_count=sagemaker.range("ProductionVariant.InitialInstanceCount"),
        variant_weight=sagemaker.range("ProductionVariant.InitialVariantWeight"),
        serverless_memory_mb=sagemaker.range("ProductionVariantServerlessConfig.MemorySizeInMB"),
        serverless_max_concurrency=sagemaker.range("ProductionVariantServerlessConfig.MaxConcurrency"),
        serverless_provisioned_concurrency=sagemaker.range("ProductionVariantServerlessConfig.ProvisionedConcurrency"),
        sampling_percentage=sagemaker.range("DataCaptureConfig.InitialSamplingPercentage"),
        max_concurrent_invocations_per_instance=sagemaker.range(
            "AsyncInferenceClientConfig.MaxConcurrentInvocationsPerInstance"
        ),
        sns_topic_arn=sagemaker.name_rule("SnsTopicArn"),
        subnets=sagemaker.range("VpcConfig.Subnets"),
        subnet_id=sagemaker.name_rule("SubnetId"),
        security_groups=sagemaker.range("VpcConfig.SecurityGroupIds"),
        security_group_id=sagemaker.name_rule("SecurityGroupId"),
        kms_key_id=sagemaker.name_rule("CreateEndpointConfigInput.KmsKeyId"),
        container_image=sagemaker.name_rule("ContainerDefinition.Image"),
        tag_key=sagemaker.name_rule("Tag.Key"),
        tag_value=sagemaker.name_rule("Tag.Value"),
        tags=sagemaker.range("CreateEndpointConfigInput.Tags"),
        # CapacitySize.Value gives the minimum (1); the maximum is only in the CanarySize/LinearStepSize prose.
        canary_percent=Range(
            capacity_value.minimum,
            CANARY_MAX_PERCENT,
            "sagemaker CapacitySize.Value and TrafficRoutingConfig.CanarySize",
        ),
        linear_step_percent=Range(
            max(LINEAR_STEP_PERCENT[0], capacity_value.minimum or 0),
            LINEAR_STEP_PERCENT[1],
            "sagemaker TrafficRoutingConfig.LinearStepSize",
        ),
        wait_interval_seconds=sagemaker.range("TrafficRoutingConfig.WaitIntervalInSeconds"),
        termination_wait_seconds=sagemaker.range("BlueGreenUpdatePolicy.TerminationWaitInSeconds"),
        maximum_execution_timeout_seconds=sagemaker.range("BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds"),
        rollback_alarms=sagemaker.range("AutoRollbackConfig.Alarms"),
        alarm_name=sagemaker.name_rule("Alarm.AlarmName"),
        # Neither shape has bounds in the model; a negative count or duration is never meaningful.
        capacity=autoscaling.range("RegisterScalableTargetRequest.MinCapacity", default_minimum=0),
        cooldown_seconds=autoscaling.range(
            "TargetTrackingScalingPolicyConfiguration.ScaleInCooldown", default_minimum=0
        ),
        scheduled_action_name=autoscaling.name_rule("PutScheduledActionRequest.ScheduledActionName"),
        schedule=autoscaling.name_rule("PutScheduledActionRequest.Schedule"),
        scalable_dimensions=tuple(
            d for d in autoscaling.enum("ScalableDimension") if d.startswith("sagemaker:variant:")
        ),
        predefined_metrics=tuple(m for m in autoscaling.enum("MetricType") if m.startswith("SageMakerVariant")),
        repository_name=ecr.name_rule("CreateRepositoryRequest.repositoryName"),
        evaluation_periods=cloudwatch.range("PutMetricAlarmInput.EvaluationPeriods"),
        log_retention_days=LOG_RETENTION_DAYS,
        sagemaker_regions=_regions(session, SAGEMAKER),
    )


class _Service:
    """One botocore service model, with lookups by ``Shape`` or ``Shape.Member``."""

    def __init__(self, session: Any, name: str) -> None:
        self.name = name
        self._model: Any = session.get_service_model(name)

    def shape(self, ref: str) -> Any:
        shape_name, _, member = ref.partition(".")
        try:
            shape = self._model.shape_for(shape_name)
            return shape.members[member] if member else shape
        except Exception as exc:  # botocore raises NoShapeFoundError / KeyError
            # Only a botocore far older or newer than the pinned one gets here: say which shape moved.
            raise RuntimeError(f"botocore's {self.name} service model has no shape {ref!r}: {exc}") from exc

    def range(self, ref: str, *, default_minimum: Number | None = None) -> Range:
        metadata: dict[str, Any] = self.shape(ref).metadata
        minimum = metadata.get("min", default_minimum)
        return Range(minimum, metadata.get("max"), f"{self.name} {ref}")

    def enum(self, ref: str) -> tuple[str, ...]:
        values: list[str] | None = self.shape(ref).metadata.get("enum")
        if not values:
            raise RuntimeError(f"botocore's {self.name} shape {ref!r} has no enum")
        return tuple(values)

    def name_rule(self, ref: str) -> NameRule:
        metadata: dict[str, Any] = self.shape(ref).metadata
        return NameRule(
            min_length=int(metadata.get("min", 0)),
            max_length=metadata.get("max"),
            pattern=metadata.get("pattern"),
            source=f"{self.name} {ref}",
        )


def _regions(session: Any, service: str) -> tuple[str, ...]:
    # Every partition (aws, aws-cn, aws-us-gov, ...): a GovCloud stack is as valid as a commercial one.
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions(service, partition_name=partition))
    return tuple(sorted(regions))


def _number(value: Number) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# Java writes characters beyond U+FFFF as UTF-16 surrogate pairs (\uD800\uDC00); Python's re needs \U00010000.
_SURROGATE_PAIR_RE = re.compile(r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})", re.IGNORECASE)


def _code_point(match: re.Match[str]) -> str:
    high, low = int(match.group(1), 16), int(match.group(2), 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"


# Unicode property classes (\p{L}) appear in tag patterns; Python's re has no \p{...}.
_UNICODE_CLASS_RE = re.compile(r"^\(?\[(?P<body>[^\]]*)\]\*\)?$")
_PROPERTY_RE = re.compile(r"\\p\{(?P<category>[A-Z][a-z]?)\}")


@functools.cache
def _matcher(pattern: str) -> Callable[[str], bool]:
    """A full-string matcher for a botocore (Java-flavoured, unanchored) pattern."""
    if "\\p{" not in pattern:
        compiled = re.compile(_SURROGATE_PAIR_RE.sub(_code_point, pattern))
        return lambda value: compiled.fullmatch(value) is not None
    # The only \p{...} patterns in the shapes used here are "[<classes and characters>]*".
    match = _UNICODE_CLASS_RE.match(pattern)
    if match is None:
        raise RuntimeError(f"cannot translate the botocore pattern {pattern!r} to a Python check")
    body = match.group("body")
    categories = tuple(m.group("category") for m in _PROPERTY_RE.finditer(body))
    literal = _PROPERTY_RE.sub("", body).replace("\\", "")

    def allowed(value: str) -> bool:
        return all(ch in literal or unicodedata.category(ch).startswith(categories) for ch in value)

    return allowed
