"""CloudWatch alarms and the dashboard of one SageMaker endpoint.

Every metric is scoped by ``EndpointName`` *and* ``VariantName``: SageMaker publishes the
per-variant series only, so an alarm without the variant dimension watches nothing.

Error rates use the ``Average`` of ``Invocation5XXErrors`` / ``Invocation4XXErrors``: SageMaker
sends 1 for each failed request and 0 for each other one, so the average is the failed share.
That is the same number as errors / ``Invocations``, but also works for asynchronous endpoints
(which publish no ``Invocations``) and costs one metric instead of two, which keeps the
rollback alarm within CloudWatch's ten metrics per alarm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from infra.config import AlarmSettings, EndpointMode
from infra.config.aws_rules import MAX_ROLLBACK_VARIANTS

NAMESPACE: Final = "AWS/SageMaker"
#: Instance metrics (CPU, memory, disk) live in their own namespace.
INSTANCE_NAMESPACE: Final = "/aws/sagemaker/Endpoints"
PERIOD_SECONDS: Final = 60
#: ModelLatency is published in microseconds; the config speaks milliseconds.
MICROSECONDS_PER_MILLISECOND: Final = 1000


def latency_threshold_us(milliseconds: float) -> float:
    """A ``ModelLatency`` threshold in the metric's unit (microseconds)."""
    return milliseconds * MICROSECONDS_PER_MILLISECOND


def _number(value: float) -> str:
    # Metric math takes plain decimals: "1e+06" (what str() may give) is not one.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _dimensions(endpoint_name: str, variant_name: str) -> dict[str, str]:
    return {"EndpointName": endpoint_name, "VariantName": variant_name}


@dataclass(frozen=True)
class AlarmTarget:
    """What every alarm of one endpoint shares."""

    endpoint_name: str
    settings: AlarmSettings
    tags: Mapping[str, str]

    @property
    def actions(self) -> list[str]:
        """Notify the configured topic on ALARM and on OK (so an incident also gets its all-clear)."""
        return [self.settings.sns_topic_arn] if self.settings.sns_topic_arn else []


def _rate_alarm(
    resource_name: str,
    target: AlarmTarget,
    variant_name: str,
    *,
    metric_name: str,
    what: str,
    threshold_percent: float,
    parent: pulumi.Resource,
) -> aws.cloudwatch.MetricAlarm:
    settings = target.settings
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=f"{target.endpoint_name}-{variant_name}-{what}-rate",
        alarm_description=(
            f"{what} responses above {_number(threshold_percent)}% of requests on variant {variant_name} of "
            f"endpoint {target.endpoint_name} for {settings.evaluation_periods} minutes"
        ),
        comparison_operator="GreaterThanThreshold",
        threshold=threshold_percent,
        evaluation_periods=settings.evaluation_periods,
        datapoints_to_alarm=settings.evaluation_periods,
        # No traffic is not an error rate: an idle variant stays OK.
        treat_missing_data="notBreaching",
        metric_queries=[
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="failed",
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=NAMESPACE,
                    metric_name=metric_name,
                    dimensions=_dimensions(target.endpoint_name, variant_name),
                    stat="Average",
                    period=PERIOD_SECONDS,
                ),
                return_data=False,
            ),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="rate",
                expression="failed * 100",
                label=f"{what} rate (%)",
                return_data=True,
            ),
        ],
        alarm_actions=target.actions,
        ok_actions=target.actions,
        tags=dict(target.tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def variant_alarms(
    name: str, target: AlarmTarget, variant_name: str, *, parent: pulumi.Resource
) -> list[aws.cloudwatch.MetricAlarm]:
    """5xx rate, 4xx rate and p99 model latency of one variant."""
    settings = target.settings
    prefix = f"{name}-{variant_name}"
    latency = aws.cloudwatch.MetricAlarm(
        f"{prefix}-p99-latency",
        name=f"{target.endpoint_name}-{variant_name}-p99-model-latency",
        alarm_description=(
            f"p99 ModelLatency above {_number(settings.model_latency_p99_ms)} ms on variant {variant_name} of "
            f"endpoint {target.endpoint_name} for {settings.evaluation_periods} minutes"
        ),
        namespace=NAMESPACE,
        metric_name="ModelLatency",
        dimensions=_dimensions(target.endpoint_name, variant_name),
        extended_statistic="p99",
        period=PERIOD_SECONDS,
        comparison_operator="GreaterThanThreshold",
        threshold=latency_threshold_us(settings.model_latency_p99_ms),
        evaluation_periods=settings.evaluation_periods,
        datapoints_to_alarm=settings.evaluation_periods,
        treat_missing_data="notBreaching",
        alarm_actions=target.actions,
        ok_actions=target.actions,
        tags=dict(target.tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return [
        _rate_alarm(
            f"{prefix}-5xx-rate",
            target,
            variant_name,
            metric_name="Invocation5XXErrors",
            what="5xx",
            threshold_percent=settings.error_rate_5xx_percent,
            parent=parent,
        ),
        _rate_alarm(
            f"{prefix}-4xx-rate",
            target,
            variant_name,
            metric_name="Invocation4XXErrors",
            what="4xx",
            threshold_percent=settings.error_rate_4xx_percent,
            parent=parent,
        ),
        latency,
    ]


def rollback_expression(variant_count: int, settings: AlarmSettings) -> str:
    """1 while any variant's 5xx rate or p99 latency is over its threshold, else 0.

    ``IF`` turns each series into a 0/1 breach signal; ``MAX`` over the array gives one series,
    which is what an alarm must watch. Metric ids: ``e<i>`` (5xx share), ``l<i>`` (p99 latency).
    """
    errors = _number(settings.error_rate_5xx_percent)
    latency = _number(latency_threshold_us(settings.model_latency_p99_ms))
    signals = [
        signal
        for index in range(variant_count)
        for signal in (f"IF(e{index} * 100 > {errors}, 1, 0)", f"IF(l{index} > {latency}, 1, 0)")
    ]
    return f"MAX([{', '.join(signals)}])"


def rollback_alarm(
    resource_name: str, target: AlarmTarget, variant_names: Sequence[str], *, parent: pulumi.Resource
) -> aws.cloudwatch.MetricAlarm:
    """The stack's one rollback alarm: errors or latency of any production variant.

    SageMaker watches it during blue/green deployments and shifts traffic back when it fires.
    """
    if not 1 <= len(variant_names) <= MAX_ROLLBACK_VARIANTS:
        raise ValueError(f"the rollback alarm watches 1-{MAX_ROLLBACK_VARIANTS} variants, got {len(variant_names)}")
    settings = target.settings
    queries: list[aws.cloudwatch.MetricAlarmMetricQueryArgs] = []
    for index, variant in enumerate(variant_names):
        dimensions = _dimensions(target.endpoint_name, variant)
        queries.append(
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"e{index}",
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=NAMESPACE,
                    metric_name="Invocation5XXErrors",
                    dimensions=dimensions,
                    stat="Average",
                    period=PERIOD_SECONDS,
                ),
                return_data=False,
            )
        )
        queries.append(
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"l{index}",
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=NAMESPACE,
                    metric_name="ModelLatency",
                    dimensions=dimensions,
                    stat="p99",
                    period=PERIOD_SECONDS,
                ),
                return_data=False,
            )
        )
    queries.append(
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="breach",
            expression=rollback_expression(len(variant_names), settings),
            label="any variant over its 5xx-rate or p99-latency threshold",
            return_data=True,
        )
    )
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=f"{target.endpoint_name}-rollback",
        alarm_description=(
            f"Rolls back deployments of endpoint {target.endpoint_name}: a production variant's 5xx rate is above "
            f"{_number(settings.error_rate_5xx_percent)}% or its p99 ModelLatency above "
            f"{_number(settings.model_latency_p99_ms)} ms for {settings.evaluation_periods} minutes"
        ),
        comparison_operator="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=settings.evaluation_periods,
        datapoints_to_alarm=settings.evaluation_periods,
        treat_missing_data="notBreaching",
        metric_queries=queries,
        alarm_actions=target.actions,
        ok_actions=target.actions,
        tags=dict(target.tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )


# --- dashboard ------------------------------------------------------------------------------------

Widget = dict[str, Any]


def _metric_widget(title: str, metrics: list[list[Any]], region: str, *, y_label: str, y: int) -> Widget:
    return {
        "type": "metric",
        "x": 0,
        "y": y,
        "width": 24,
        "height": 6,
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "period": PERIOD_SECONDS,
            "metrics": metrics,
            "yAxis": {"left": {"label": y_label, "showUnits": False}},
        },
    }


def dashboard_body(
    endpoint_name: str,
    region: str,
    mode: EndpointMode,
    variant_names: Sequence[str],
    alarm_arns: Sequence[pulumi.Input[str]],
) -> dict[str, Any]:
    """The dashboard's JSON document (alarm ARNs may be Outputs: serialize with ``Output.json_dumps``)."""
    traffic: list[list[Any]] = []
    rates: list[list[Any]] = []
    latency: list[list[Any]] = []
    instances: list[list[Any]] = []
    for index, variant in enumerate(variant_names):
        dims = ["EndpointName", endpoint_name, "VariantName", variant]
        if mode != "async":  # async endpoints publish no Invocations
            traffic.append([NAMESPACE, "Invocations", *dims, {"stat": "Sum", "label": f"{variant} invocations"}])
        for kind in ("5XX", "4XX"):
            metric_id = f"{kind.lower()}{index}"
            rates.append(
                [NAMESPACE, f"Invocation{kind}Errors", *dims, {"id": metric_id, "stat": "Average", "visible": False}]
            )
            rates.append([{"expression": f"{metric_id} * 100", "label": f"{variant} {kind} (%)"}])
        for stat in ("p50", "p99"):
            latency.append([NAMESPACE, "ModelLatency", *dims, {"stat": stat, "label": f"{variant} {stat}"}])
        if mode != "serverless":  # serverless variants have no instances to watch
            for metric in ("CPUUtilization", "MemoryUtilization"):
                instances.append(
                    [INSTANCE_NAMESPACE, metric, *dims, {"stat": "Average", "label": f"{variant} {metric}"}]
                )
    if mode == "async":
        for metric in ("ApproximateBacklogSize", "ApproximateAgeOfOldestRequest"):
            traffic.append([NAMESPACE, metric, "EndpointName", endpoint_name, {"stat": "Average"}])

    widgets: list[Widget] = [
        {
            "type": "alarm",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 3,
            "properties": {"title": f"{endpoint_name} alarms", "alarms": list(alarm_arns)},
        }
    ]
    rows = [
        ("Traffic" if mode != "async" else "Backlog", traffic, "count"),
        ("Error rates (Average of the 0/1 error metrics x 100)", rates, "%"),
        ("ModelLatency (microseconds)", latency, "µs"),
        ("Instance utilization", instances, "%"),
    ]
    y = 3
    for title, metrics, unit in rows:
        if metrics:
            widgets.append(_metric_widget(title, metrics, region, y_label=unit, y=y))
            y += 6
    return {"widgets": widgets}
