"""Application Auto Scaling for a SageMaker endpoint: one scalable target and policy per variant.

Ordering is the hard part, and three rules govern it:

* a scalable target can only be registered for a variant that exists, so every target
  depends on the endpoint (which also makes ``pulumi destroy`` deregister it first:
  SageMaker refuses to delete an endpoint with a registered target);
* SageMaker refuses to update an endpoint when the update changes the instance type of (or
  removes) a variant that is a scalable target: the target must be gone *before* the update;
* in Pulumi, the target is registered after the endpoint, so its own replacement would come
  too late.

The third is solved with a *scaling gate*: a ``pulumi.Stash`` holding the capacity each
scaled variant runs on, registered before the endpoint (the endpoint depends on it), replaced
delete-before-replace whenever that capacity changes. Every target takes its ``resource_id``
from the gate, so the engine must delete the old targets (and their policies and schedules)
before it can delete the old gate, which happens before the endpoint update starts. After the
update, the targets are registered again for the new variants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi
from pulumi_aws import appautoscaling, sagemaker

from infra.config import AutoscalingSettings, EndpointSettings, VariantSettings

SERVICE_NAMESPACE: Final = "sagemaker"
INSTANCE_DIMENSION: Final = "sagemaker:variant:DesiredInstanceCount"
PROVISIONED_CONCURRENCY_DIMENSION: Final = "sagemaker:variant:DesiredProvisionedConcurrency"
INVOCATIONS_PER_INSTANCE: Final = "SageMakerVariantInvocationsPerInstance"
CONCURRENT_REQUESTS_PER_MODEL: Final = "SageMakerVariantConcurrentRequestsPerModelHighResolution"
PROVISIONED_CONCURRENCY_UTILIZATION: Final = "SageMakerVariantProvisionedConcurrencyUtilization"
#: Async endpoints publish their queue per instance under the endpoint only (no VariantName).
BACKLOG_PER_INSTANCE: Final = "ApproximateBacklogSizePerInstance"


def resource_id(endpoint_name: str, variant_name: str) -> str:
    """Application Auto Scaling's id of a SageMaker variant."""
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def scaled_variants(endpoint: EndpointSettings) -> tuple[VariantSettings, ...]:
    """The variants that get a scalable target: every production variant (shadow variants keep their size)."""
    return endpoint.variants if endpoint.autoscaling is not None else ()


def _capacity(variant: VariantSettings) -> str:
    if variant.serverless is not None:
        return f"serverless:{variant.serverless.memory_size_mb}MB"
    return variant.instance_type or "?"


def gate_fingerprint(endpoint: EndpointSettings) -> dict[str, str]:
    """``{variant: capacity}`` of the scaled variants: what the gate replaces its targets on."""
    return {variant.name: _capacity(variant) for variant in scaled_variants(endpoint)}


def scaling_gate(name: str, endpoint: EndpointSettings, *, parent: pulumi.Resource) -> pulumi.Stash:
    """The gate described in the module docstring (create it before the endpoint, which depends on it)."""
    fingerprint = gate_fingerprint(endpoint)
    return pulumi.Stash(
        name,
        input=fingerprint,
        opts=pulumi.ResourceOptions(
            parent=parent,
            replacement_trigger=fingerprint,
            delete_before_replace=True,
        ),
    )


@dataclass(frozen=True)
class Bounds:
    """What one variant's target scales and between which values."""

    dimension: str
    minimum: int
    maximum: int


def bounds(endpoint: EndpointSettings, scaling: AutoscalingSettings) -> Bounds:
    """Instances for real-time and async variants; provisioned concurrency for serverless ones."""
    if endpoint.mode == "serverless":
        low, high = scaling.min_provisioned_concurrency, scaling.max_provisioned_concurrency
        dimension = PROVISIONED_CONCURRENCY_DIMENSION
    else:
        low, high = scaling.min_instances, scaling.max_instances
        dimension = INSTANCE_DIMENSION
    # Validation requires both bounds for the endpoint's mode.
    assert low is not None and high is not None
    return Bounds(dimension, low, high)


def target_tracking(
    endpoint: EndpointSettings, scaling: AutoscalingSettings
) -> appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs:
    """The target-tracking configuration for the one target the config chose."""
    predefined: str | None = None
    customized: appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs | None
    customized = None
    if scaling.target_provisioned_concurrency_utilization is not None:
        value = scaling.target_provisioned_concurrency_utilization
        predefined = PROVISIONED_CONCURRENCY_UTILIZATION
    elif scaling.target_concurrent_requests_per_model is not None:
        # High resolution: evaluated every 10 s, so bursts are met in seconds rather than minutes.
        value = scaling.target_concurrent_requests_per_model
        predefined = CONCURRENT_REQUESTS_PER_MODEL
    elif scaling.target_backlog_per_instance is not None:
        value = scaling.target_backlog_per_instance
        customized = appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs(
            namespace="AWS/SageMaker",
            metric_name=BACKLOG_PER_INSTANCE,
            dimensions=[
                appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationDimensionArgs(
                    name="EndpointName", value=endpoint.name
                )
            ],
            statistic="Average",
        )
    elif scaling.target_invocations_per_instance is not None:
        value = scaling.target_invocations_per_instance
        predefined = INVOCATIONS_PER_INSTANCE
    else:  # validation requires exactly one target
        raise ValueError(f"endpoint {endpoint.name!r} has autoscaling without a scaling target")
    return appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
        target_value=value,
        predefined_metric_specification=(
            appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type=predefined
            )
            if predefined is not None
            else None
        ),
        customized_metric_specification=customized,
        scale_in_cooldown=scaling.scale_in_cooldown_seconds,
        scale_out_cooldown=scaling.scale_out_cooldown_seconds,
    )


def _resource_id_of(variant_name: str) -> Callable[[list[Any]], str]:
    def format_id(values: list[Any]) -> str:
        return resource_id(str(values[0]), variant_name)

    return format_id


@dataclass(frozen=True)
class VariantScaling:
    """The autoscaling resources of one variant."""

    target: appautoscaling.Target
    policy: appautoscaling.Policy
    schedules: tuple[appautoscaling.ScheduledAction, ...]


def add_autoscaling(
    name: str,
    endpoint: EndpointSettings,
    *,
    endpoint_resource: sagemaker.Endpoint,
    gate: pulumi.Stash,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> list[VariantScaling]:
    """Targets, policies and scheduled actions for every scaled variant of ``endpoint``."""
    scaling = endpoint.autoscaling
    if scaling is None:
        return []
    limits = bounds(endpoint, scaling)
    tracking = target_tracking(endpoint, scaling)
    result: list[VariantScaling] = []
    for variant in scaled_variants(endpoint):
        prefix = f"{name}-{variant.name}"
        # The gate's output carries no value the id needs; reading it makes the id depend on the gate.
        variant_id = pulumi.Output.all(endpoint_resource.name, gate.output).apply(_resource_id_of(variant.name))
        target = appautoscaling.Target(
            f"{prefix}-target",
            service_namespace=SERVICE_NAMESPACE,
            resource_id=variant_id,
            scalable_dimension=limits.dimension,
            min_capacity=limits.minimum,
            max_capacity=limits.maximum,
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[endpoint_resource]),
        )
        policy = appautoscaling.Policy(
            f"{prefix}-policy",
            name=f"{endpoint.name}-{variant.name}-target-tracking",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration=tracking,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        schedules = tuple(
            appautoscaling.ScheduledAction(
                f"{prefix}-schedule-{schedule.name}",
                name=schedule.name,
                service_namespace=target.service_namespace,
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                schedule=schedule.schedule,
                timezone=schedule.timezone,
                scalable_target_action=appautoscaling.ScheduledActionScalableTargetActionArgs(
                    min_capacity=schedule.min_capacity,
                    max_capacity=schedule.max_capacity,
                ),
                opts=pulumi.ResourceOptions(parent=parent),
            )
            for schedule in scaling.schedules
        )
        result.append(VariantScaling(target, policy, schedules))
    return result
