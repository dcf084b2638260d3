"""Cross-field rules for AWS stacks: what SageMaker would reject, or what this project refuses.

Each rule cites its reason in the message. Where SageMaker documents a restriction only
in prose, the comment names the page:

* serverless endpoints: "Feature exclusions" of the Serverless Inference guide (no VPC,
  network isolation, data capture, multiple production variants, shadow variants);
* blue/green traffic shifting: "Deployment guardrails > Exclusions" (Inf1 instances fall back
  to all-at-once; rolling updates exclude serverless and multi-variant endpoints, which is
  why this stack only offers blue/green);
* shadow variants: ``CreateEndpointConfig.ShadowProductionVariants`` ("only one variant for
  ProductionVariants and one for ShadowProductionVariants") and "Shadow tests > Exclusions"
  (not serverless, not async).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from infra.config.aws_limits import aws_limits
from infra.config.aws_rollout_rules import AWS_ROLLOUT_RULES
from infra.config.aws_settings import (
    STACK_ROLLBACK_ALARM_COUNT,
    AutoscalingSettings,
    AwsConfig,
    EndpointSettings,
    VariantSettings,
)
from infra.config.errors import MISSING, ConfigError, format_key
from infra.config.schema import PROJECT, StackConfig

AWS_KEY = f"{PROJECT}:aws"


def _key(*parts: str | int) -> str:
    return format_key((AWS_KEY, *parts))


def _endpoint_key(*parts: str | int) -> str:
    return _key("endpoint", *parts)


def _aws(config: StackConfig) -> AwsConfig | None:
    # Common rules already report a missing section; AWS rules only look at stacks that have one.
    return config.aws if config.cloud == "aws" else None


# --- store, package and image -------------------------------------------------------------------


def store(config: StackConfig) -> Iterator[ConfigError]:
    """A referenced store names its bucket and key; prod never force-destroys packages."""
    aws = _aws(config)
    if aws is None:
        return
    if not aws.store.create:
        if aws.store.bucket_name is None:
            yield ConfigError(_key("store", "bucketName"), MISSING, "is required when store.create is false")
        if aws.store.kms_key_arn is None:
            yield ConfigError(
                _key("store", "kmsKeyArn"),
                MISSING,
                "is required when store.create is false: the endpoint role may decrypt with this one key only",
            )
    if config.is_prod and aws.store.force_destroy:
        yield ConfigError(
            _key("store", "forceDestroy"),
            True,
            "is not allowed in prod: `pulumi destroy` would delete every package version in the bucket",
        )


def package_location(config: StackConfig) -> Iterator[ConfigError]:
    """SageMaker reads the package from S3 and the image from ECR in the endpoint's region."""
    aws = _aws(config)
    if aws is None:
        return
    package = config.package
    if package.ref.location.scheme != "s3":
        yield ConfigError(
            f"{PROJECT}:package.uri", package.uri, "is not in S3: SageMaker loads model data from s3:// URIs only"
        )
    image = package.image_ref
    if image.ecr_region is None:
        yield ConfigError(
            f"{PROJECT}:package.image",
            package.image,
            "is not in ECR (<account>.dkr.ecr.<region>.amazonaws.com/...): the endpoint role may pull from "
            "one ECR repository only",
        )
        return
    # CreateModel's ContainerDefinition.Image: the image "must be in the same region as the model".
    if config.aws_region is not None and image.ecr_region != config.aws_region:
        yield ConfigError(
            f"{PROJECT}:package.image",
            package.image,
            f"is in {image.ecr_region}, but aws:region is {config.aws_region}: SageMaker pulls images "
            "from the endpoint's own region; replicate the image there",
        )
    repository = aws.store.repository_name
    if repository is not None and repository != image.repository:
        yield ConfigError(
            _key("store", "repositoryName"),
            repository,
            f"differs from the image's repository {image.repository!r}: the endpoint role may pull from "
            "this repository only, so the image must live in it",
        )


# --- endpoint shape ---------------------------------------------------------------------------------


def variant_kinds(config: StackConfig) -> Iterator[ConfigError]:
    """Every variant matches the mode: instance types for realtime/async, serverless blocks for serverless."""
    aws = _aws(config)
    if aws is None:
        return
    endpoint = aws.endpoint
    if endpoint.mode == "serverless":
        for index, variant in enumerate(endpoint.variants):
            if variant.instance_type is not None:
                yield ConfigError(
                    _endpoint_key("variants", index, "instanceType"),
                    variant.instance_type,
                    "must not be set when mode is serverless (serverless variants have no instances)",
                )
            if variant.serverless is None:
                yield ConfigError(
                    _endpoint_key("variants", index, "serverless"),
                    MISSING,
                    "is required when mode is serverless: set memorySizeMb and maxConcurrency",
                )
        return
    instance_variants = [i for i, v in enumerate(endpoint.variants) if v.serverless is None]
    for index, variant in enumerate(endpoint.variants):
        if variant.serverless is not None:
            if instance_variants:
                message = (
                    f"is set, but variants[{instance_variants[0]}] runs on instances: serverless and "
                    "instance-based variants cannot be mixed in one endpoint"
                )
            else:
                message = f"is set, but mode is {endpoint.mode}: set mode: serverless for serverless variants"
            yield ConfigError(_endpoint_key("variants", index, "serverless"), MISSING, message)
        elif variant.instance_type is None:
            yield ConfigError(
                _endpoint_key("variants", index, "instanceType"),
                MISSING,
                f"is required when mode is {endpoint.mode}, e.g. ml.m5.large",
            )


def serverless_exclusions(config: StackConfig) -> Iterator[ConfigError]:
    """Serverless endpoints lack VPC, network isolation, data capture, shadow and multiple variants."""
    aws = _aws(config)
    if aws is None or aws.endpoint.mode != "serverless":
        return
    endpoint = aws.endpoint
    why = "which serverless endpoints do not support (SageMaker Serverless Inference feature exclusions)"
    if len(endpoint.variants) > 1:
        yield ConfigError(
            _endpoint_key("variants"), endpoint.variants, f"has {len(endpoint.variants)} production variants, {why}"
        )
    if endpoint.vpc is not None:
        yield ConfigError(_endpoint_key("vpc"), MISSING, f"is set: VPC configuration is a feature {why}")
    if endpoint.network_isolation_setting:
        yield ConfigError(_endpoint_key("networkIsolation"), True, f"asks for network isolation, {why}")
    if endpoint.data_capture is not None and endpoint.data_capture.enabled:
        yield ConfigError(_endpoint_key("dataCapture", "enabled"), True, f"asks for data capture, {why}")
    for index, variant in enumerate(endpoint.variants):
        serverless = variant.serverless
        provisioned = serverless.provisioned_concurrency if serverless else None
        if serverless and provisioned is not None and provisioned > serverless.max_concurrency:
            yield ConfigError(
                _endpoint_key("variants", index, "serverless", "provisionedConcurrency"),
                serverless.provisioned_concurrency,
                f"exceeds maxConcurrency ({serverless.max_concurrency}); provisioned concurrency must "
                "not be more than the maximum",
            )


def mode_sections(config: StackConfig) -> Iterator[ConfigError]:
    """``async`` only with mode async; a shadow variant only on a one-variant real-time endpoint."""
    aws = _aws(config)
    if aws is None:
        return
    endpoint = aws.endpoint
    if endpoint.async_inference is not None and endpoint.mode != "async":
        yield ConfigError(
            _endpoint_key("async"), MISSING, f"is set, but mode is {endpoint.mode}: use mode: async or remove it"
        )
    shadow = endpoint.shadow_variant
    if shadow is None:
        return
    if endpoint.mode != "realtime":
        yield ConfigError(
            _endpoint_key("shadowVariant"),
            MISSING,
            f"is set, but mode is {endpoint.mode}: SageMaker shadow variants work with real-time instance "
            "endpoints only",
        )
        return
    if len(endpoint.variants) != 1:
        yield ConfigError(
            _endpoint_key("shadowVariant"),
            MISSING,
            f"is set with {len(endpoint.variants)} production variants: SageMaker allows a shadow variant "
            "only beside exactly one production variant",
        )
    if shadow.serverless is not None:
        yield ConfigError(
            _endpoint_key("shadowVariant", "serverless"), MISSING, "is set: a shadow variant runs on instances"
        )
    if shadow.instance_type is None:
        yield ConfigError(_endpoint_key("shadowVariant", "instanceType"), MISSING, "is required for a shadow variant")


def variant_names_and_weights(config: StackConfig) -> Iterator[ConfigError]:
    """Variant names are unique (shadow included); at least one production variant gets traffic."""
    aws = _aws(config)
    if aws is None:
        return
    endpoint = aws.endpoint
    seen: dict[str, str] = {}
    keyed = [(_endpoint_key("variants", i, "name"), v) for i, v in enumerate(endpoint.variants)]
    if endpoint.shadow_variant is not None:
        keyed.append((_endpoint_key("shadowVariant", "name"), endpoint.shadow_variant))
    for key, variant in keyed:
        if variant.name in seen:
            yield ConfigError(
                key, variant.name, f"is already the name of {seen[variant.name]}: variant names must be unique"
            )
        seen.setdefault(variant.name, key)
    if all(variant.weight == 0 for variant in endpoint.variants):
        yield ConfigError(
            _endpoint_key("variants", 0, "weight"),
            endpoint.variants[0].weight,
            "leaves the endpoint without traffic: every production variant's weight is 0, at least one must be above 0",
        )


def instance_families(config: StackConfig) -> Iterator[ConfigError]:
    """Each instance type belongs to a family in ``allowedInstanceFamilies`` (when the stack sets it)."""
    aws = _aws(config)
    if aws is None or aws.endpoint.allowed_instance_families is None:
        return
    endpoint = aws.endpoint
    allowed = endpoint.allowed_instance_families or ()
    keyed: list[tuple[tuple[str | int, ...], VariantSettings]] = [
        (("variants", i), v) for i, v in enumerate(endpoint.variants)
    ]
    if endpoint.shadow_variant is not None:
        keyed.append((("shadowVariant",), endpoint.shadow_variant))
    for parts, variant in keyed:
        family = variant.instance_family
        if family is not None and family not in allowed:
            yield ConfigError(
                _endpoint_key(*parts, "instanceType"),
                variant.instance_type,
                f"is in family {family}, which {_endpoint_key('allowedInstanceFamilies')} does not allow "
                f"(allowed: {', '.join(allowed) or 'none'})",
            )


# --- rollout ------------------------------------------------------------------------------------------


def deployment(config: StackConfig) -> Iterator[ConfigError]:
    """Strategy sizes match the strategy; rollback alarms fit; the timeout outlasts the waits."""
    aws = _aws(config)
    if aws is None or aws.endpoint.deployment is None:
        return
    endpoint = aws.endpoint
    settings = aws.endpoint.deployment
    for option, strategy, value in (
        ("canaryPercent", "canary", settings.canary_percent),
        ("linearStepPercent", "linear", settings.linear_step_percent),
    ):
        if settings.strategy == strategy and value is None:
            yield ConfigError(_endpoint_key("deployment", option), MISSING, f"is required when strategy is {strategy}")
        elif settings.strategy != strategy and value is not None:
            yield ConfigError(
                _endpoint_key("deployment", option),
                value,
                f"only applies to strategy {strategy}, but strategy is {settings.strategy}",
            )
    if settings.rollback_alarms and not settings.rollback_on_alarms:
        yield ConfigError(
            _endpoint_key("deployment", "rollbackAlarms"),
            settings.rollback_alarms,
            "lists alarms, but rollbackOnAlarms is false: nothing would watch them",
        )
    if settings.rollback_on_alarms:
        limit = aws_limits().rollback_alarms
        total = STACK_ROLLBACK_ALARM_COUNT + len(settings.rollback_alarms)
        if total not in limit:
            yield ConfigError(
                _endpoint_key("deployment", "rollbackAlarms"),
                settings.rollback_alarms,
                f"makes {total} rollback alarms with the stack's own {STACK_ROLLBACK_ALARM_COUNT}; they are "
                f"combined in the endpoint's one composite rollback alarm, which keeps SageMaker's limit of "
                f"{limit.text} ({limit.source}), so list at most "
                f"{int(limit.maximum or 0) - STACK_ROLLBACK_ALARM_COUNT}",
            )
    if settings.maximum_execution_timeout_seconds is not None:
        waiting = settings.waiting_seconds
        if settings.maximum_execution_timeout_seconds <= waiting:
            yield ConfigError(
                _endpoint_key("deployment", "maximumExecutionTimeoutSeconds"),
                settings.maximum_execution_timeout_seconds,
                f"does not outlast the deployment's own waiting ({settings.traffic_steps} x waitIntervalSeconds + "
                f"terminationWaitSeconds = {waiting} s): every rollout would time out and roll back",
            )
    if settings.strategy != "all_at_once":
        for index, variant in enumerate(endpoint.variants):
            if variant.instance_family == "ml.inf1":
                yield ConfigError(
                    _endpoint_key("deployment", "strategy"),
                    settings.strategy,
                    f"cannot shift traffic gradually to variants[{index}] ({variant.instance_type}): SageMaker "
                    "falls back to all-at-once for Inf1 instances; use all_at_once",
                )


# --- autoscaling --------------------------------------------------------------------------------------


def autoscaling(config: StackConfig) -> Iterator[ConfigError]:
    """Bounds and target fit the mode; bounds are ordered; schedules are consistent."""
    aws = _aws(config)
    scaling = aws.endpoint.autoscaling if aws is not None else None
    if aws is None or scaling is None:
        return
    endpoint = aws.endpoint
    if endpoint.mode == "serverless":
        yield from _serverless_scaling(endpoint, scaling)
    else:
        yield from _instance_scaling(endpoint, scaling)
    names: set[str] = set()
    for index, schedule in enumerate(scaling.schedules):
        key = ("autoscaling", "schedules", index)
        if schedule.name in names:
            yield ConfigError(_endpoint_key(*key, "name"), schedule.name, "repeats an earlier schedule's name")
        names.add(schedule.name)
        if schedule.min_capacity is None and schedule.max_capacity is None:
            yield ConfigError(_endpoint_key(*key), MISSING, "changes nothing: set minCapacity, maxCapacity or both")
        if (
            schedule.min_capacity is not None
            and schedule.max_capacity is not None
            and schedule.min_capacity > schedule.max_capacity
        ):
            yield ConfigError(
                _endpoint_key(*key, "maxCapacity"),
                schedule.max_capacity,
                f"is below the same schedule's minCapacity ({schedule.min_capacity})",
            )
        if endpoint.mode != "serverless" and schedule.min_capacity == 0:
            yield ConfigError(
                _endpoint_key(*key, "minCapacity"),
                0,
                "would leave the endpoint without instances; real-time and async variants need at least 1",
            )


def _targets(scaling: AutoscalingSettings) -> dict[str, float | None]:
    return {
        "targetInvocationsPerInstance": scaling.target_invocations_per_instance,
        "targetConcurrentRequestsPerModel": scaling.target_concurrent_requests_per_model,
        "targetBacklogPerInstance": scaling.target_backlog_per_instance,
        "targetProvisionedConcurrencyUtilization": scaling.target_provisioned_concurrency_utilization,
    }


def _one_target(mode: str, scaling: AutoscalingSettings, allowed: tuple[str, ...]) -> Iterator[ConfigError]:
    targets = _targets(scaling)
    for name, value in targets.items():
        if value is not None and name not in allowed:
            yield ConfigError(
                _endpoint_key("autoscaling", name),
                value,
                f"does not apply to mode {mode}; use {' or '.join(allowed)}",
            )
    chosen = [name for name in allowed if targets[name] is not None]
    if not chosen:
        yield ConfigError(
            _endpoint_key("autoscaling", allowed[0]),
            MISSING,
            f"is required: a {mode} endpoint scales on {' or '.join(allowed)} (exactly one)",
        )
    elif len(chosen) > 1:
        yield ConfigError(
            _endpoint_key("autoscaling", chosen[1]),
            targets[chosen[1]],
            f"is set together with {chosen[0]}: choose exactly one scaling target",
        )


def _instance_scaling(endpoint: EndpointSettings, scaling: AutoscalingSettings) -> Iterator[ConfigError]:
    allowed = {
        "realtime": ("targetInvocationsPerInstance", "targetConcurrentRequestsPerModel"),
        "async": ("targetInvocationsPerInstance", "targetBacklogPerInstance"),
    }[endpoint.mode]
    yield from _one_target(endpoint.mode, scaling, allowed)
    for name, value in (
        ("minProvisionedConcurrency", scaling.min_provisioned_concurrency),
        ("maxProvisionedConcurrency", scaling.max_provisioned_concurrency),
    ):
        if value is not None:
            yield ConfigError(
                _endpoint_key("autoscaling", name),
                value,
                f"applies to serverless endpoints only; mode {endpoint.mode} scales minInstances-maxInstances",
            )
    low, high = scaling.min_instances, scaling.max_instances
    for name, value in (("minInstances", low), ("maxInstances", high)):
        if value is None:
            yield ConfigError(_endpoint_key("autoscaling", name), MISSING, f"is required for mode {endpoint.mode}")
    if low is None or high is None:
        return
    if low > high:
        yield ConfigError(
            _endpoint_key("autoscaling", "maxInstances"), high, f"is below minInstances ({low}): min must be <= max"
        )
        return
    for index, variant in enumerate(endpoint.variants):
        if variant.serverless is None and not low <= variant.initial_instance_count <= high:
            yield ConfigError(
                _endpoint_key("variants", index, "initialInstanceCount"),
                variant.initial_instance_count,
                f"is outside autoscaling's {low}-{high}: autoscaling would resize the variant right after "
                "every deployment",
            )


def _serverless_scaling(endpoint: EndpointSettings, scaling: AutoscalingSettings) -> Iterator[ConfigError]:
    yield from _one_target("serverless", scaling, ("targetProvisionedConcurrencyUtilization",))
    for name, value in (("minInstances", scaling.min_instances), ("maxInstances", scaling.max_instances)):
        if value is not None:
            yield ConfigError(
                _endpoint_key("autoscaling", name),
                value,
                "does not apply to serverless endpoints: they scale provisioned concurrency "
                "(minProvisionedConcurrency-maxProvisionedConcurrency)",
            )
    low, high = scaling.min_provisioned_concurrency, scaling.max_provisioned_concurrency
    for name, value in (("minProvisionedConcurrency", low), ("maxProvisionedConcurrency", high)):
        if value is None:
            yield ConfigError(_endpoint_key("autoscaling", name), MISSING, "is required for mode serverless")
    if low is None or high is None:
        return
    if low > high:
        yield ConfigError(
            _endpoint_key("autoscaling", "maxProvisionedConcurrency"),
            high,
            f"is below minProvisionedConcurrency ({low}): min must be <= max",
        )
        return
    for index, variant in enumerate(endpoint.variants):
        if variant.serverless is None:
            continue
        key = ("variants", index, "serverless")
        if variant.serverless.provisioned_concurrency is None:
            yield ConfigError(
                _endpoint_key(*key, "provisionedConcurrency"),
                MISSING,
                "is required to autoscale a serverless variant (only provisioned concurrency scales)",
            )
        elif not low <= variant.serverless.provisioned_concurrency <= high:
            yield ConfigError(
                _endpoint_key(*key, "provisionedConcurrency"),
                variant.serverless.provisioned_concurrency,
                f"is outside autoscaling's {low}-{high}",
            )
        if high > variant.serverless.max_concurrency:
            yield ConfigError(
                _endpoint_key("autoscaling", "maxProvisionedConcurrency"),
                high,
                f"exceeds variants[{index}].serverless.maxConcurrency ({variant.serverless.max_concurrency})",
            )


# --- environment and tags -----------------------------------------------------------------------------


def environment(config: StackConfig) -> Iterator[ConfigError]:
    """prod: two instances per variant and guarded rollouts; staging and prod: autoscaling."""
    aws = _aws(config)
    if aws is None:
        return
    endpoint = aws.endpoint
    instance_based = endpoint.mode != "serverless"
    if config.is_prod and instance_based:
        # Per variant: SageMaker spreads a variant's instances over Availability Zones, so a variant with one
        # instance loses all of its share of the traffic when that zone (or instance) goes.
        scaling = endpoint.autoscaling
        if scaling is not None and scaling.min_instances is not None:
            if scaling.min_instances < 2:
                yield ConfigError(
                    _endpoint_key("autoscaling", "minInstances"),
                    scaling.min_instances,
                    "is too few for prod: each production variant needs at least 2 instances to survive "
                    "an instance or Availability Zone failure",
                )
        else:
            for index, variant in enumerate(endpoint.variants):
                if variant.initial_instance_count < 2:
                    yield ConfigError(
                        _endpoint_key("variants", index, "initialInstanceCount"),
                        variant.initial_instance_count,
                        "is too few for prod: each production variant needs at least 2 instances to survive "
                        "an instance or Availability Zone failure",
                    )
    if config.is_prod:
        if endpoint.deployment is None:
            yield ConfigError(
                _endpoint_key("deployment"),
                MISSING,
                "is required in prod: set a blue/green strategy with rollbackOnAlarms: true",
            )
        elif not endpoint.deployment.rollback_on_alarms:
            yield ConfigError(
                _endpoint_key("deployment", "rollbackOnAlarms"),
                False,
                "must be true in prod: a bad model must roll back on its own",
            )
    if not config.is_dev and endpoint.mode == "realtime" and endpoint.autoscaling is None:
        yield ConfigError(
            _endpoint_key("autoscaling"),
            MISSING,
            f"is required for a real-time endpoint in {config.environment} (only dev may run at a fixed size)",
        )


def tag_count(config: StackConfig) -> Iterator[ConfigError]:
    """User tags plus the stack's own fit SageMaker's per-resource tag limit."""
    if _aws(config) is None:
        return
    limit = aws_limits().tags
    total = len(config.resource_tags)
    if total not in limit:
        own = len(config.standard_tags)
        yield ConfigError(
            f"{PROJECT}:tags",
            config.tags,
            f"makes {total} tags with the stack's own {own}; AWS allows {limit.text} per resource "
            f"({limit.source}), so set at most {int(limit.maximum or 0) - own}",
        )


#: CloudWatch evaluates at most 10 metrics in one metric-math alarm (a hard limit); the rollback
#: alarm reads two per production variant (5xx errors and p99 model latency).
MAX_METRICS_PER_ALARM: Final = 10
METRICS_PER_ROLLBACK_VARIANT: Final = 2
MAX_ROLLBACK_VARIANTS: Final = MAX_METRICS_PER_ALARM // METRICS_PER_ROLLBACK_VARIANT


def rollback_alarm_fits(config: StackConfig) -> Iterator[ConfigError]:
    """The stack's one rollback alarm can watch every production variant."""
    aws = config.aws if config.cloud == "aws" else None
    deployment = aws.endpoint.deployment if aws else None
    if aws is None or deployment is None or not deployment.rollback_on_alarms:
        return
    count = len(aws.endpoint.variants)
    if count > MAX_ROLLBACK_VARIANTS:
        yield ConfigError(
            _key("endpoint", "variants"),
            aws.endpoint.variants,
            f"has {count} production variants, but the stack's rollback alarm can watch at most "
            f"{MAX_ROLLBACK_VARIANTS} (it reads {METRICS_PER_ROLLBACK_VARIANT} metrics per variant and CloudWatch "
            f"allows {MAX_METRICS_PER_ALARM} per alarm); use fewer variants or set deployment.rollbackOnAlarms: false",
        )


def async_scaling_metric(config: StackConfig) -> Iterator[ConfigError]:
    """Async endpoints scale on their backlog: SageMaker publishes no InvocationsPerInstance for them."""
    aws = config.aws if config.cloud == "aws" else None
    scaling = aws.endpoint.autoscaling if aws else None
    if aws is None or scaling is None or aws.endpoint.mode != "async":
        return
    if scaling.target_invocations_per_instance is not None:
        yield ConfigError(
            _key("endpoint", "autoscaling", "targetInvocationsPerInstance"),
            scaling.target_invocations_per_instance,
            "cannot scale an async endpoint: SageMaker does not publish Invocations or InvocationsPerInstance "
            "for asynchronous endpoints, so the policy would never act; use targetBacklogPerInstance",
        )


def data_capture_content(config: StackConfig) -> Iterator[ConfigError]:
    """Enabled data capture captures something (SageMaker needs at least one capture option)."""
    aws = config.aws if config.cloud == "aws" else None
    capture = aws.endpoint.data_capture if aws else None
    if capture is None or not capture.enabled:
        return
    if not capture.capture_requests and not capture.capture_responses:
        yield ConfigError(
            _key("endpoint", "dataCapture"),
            MISSING,
            "captures nothing: captureRequests and captureResponses are both false; set one of them, or enabled: false",
        )


def package_in_store(config: StackConfig) -> Iterator[ConfigError]:
    """The pinned package lives in the store's bucket: the role may read and decrypt that store only."""
    aws = config.aws if config.cloud == "aws" else None
    if aws is None or aws.store.bucket_name is None:
        return
    bucket = config.package.ref.location.bucket
    if bucket != aws.store.bucket_name:
        yield ConfigError(
            f"{PROJECT}:package.uri",
            config.package.uri,
            f"is in bucket {bucket!r}, but {_key('store', 'bucketName')} is {aws.store.bucket_name!r}: "
            "the endpoint role may read and decrypt the stack's store only; push the package there",
        )


AWS_RULES = (
    store,
    package_location,
    variant_kinds,
    serverless_exclusions,
    mode_sections,
    variant_names_and_weights,
    instance_families,
    deployment,
    autoscaling,
    environment,
    tag_count,
    rollback_alarm_fits,
    async_scaling_metric,
    data_capture_content,
    package_in_store,
    *AWS_ROLLOUT_RULES,
)
