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
from pulumi_aws import cloudwatch

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
) -> cloudwatch.MetricAlarm:
    settings = target.settings
    return cloudwatch.MetricAlarm(
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
            cloudwatch.MetricAlarmMetricQueryArgs(
                id="failed",
                metric=cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=NAMESPACE,
                    metric_name=metric_name,
                    dimensions=_dimensions(target.endpoint_name, variant_name),
                    stat="Average",
                    period=PERIOD_SECONDS,
                ),
                return_data=False,
            ),
            cloudwatch.MetricAlarmMetricQueryArgs(
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
) -> list[cloudwatch.MetricAlarm]:
    """5xx rate, 4xx rate and p99 model latency of one variant."""
    settings = target.settings
    prefix = f"{name}-{variant_name}"
    latency = cloudwatch.MetricAlarm(
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


def rollback_alarm_name(endpoint_name: str) -> str:
    """The one alarm the endpoint's auto-rollback names, for the endpoint's whole life."""
    return f"{endpoint_name}-rollback"


def rollback_signals_name(endpoint_name: str) -> str:
    """The stack's own metric alarm over the production variants' errors and latency."""
    return f"{endpoint_name}-rollback-signals"


def rollback_rule(alarm_names: Sequence[str]) -> str:
    """The composite alarm's rule: in ALARM while any of ``alarm_names`` is; ``FALSE`` (never) for none.

    ``TRUE``/``FALSE`` and ``ALARM("name")`` are CloudWatch's composite-alarm rule syntax
    (CloudWatch API reference, PutCompositeAlarm ``AlarmRule``).
    """
    if not alarm_names:
        return "FALSE"
    return " OR ".join(f'ALARM("{name}")' for name in alarm_names)


def rollback_signals_alarm(
    resource_name: str, target: AlarmTarget, variant_names: Sequence[str], *, parent: pulumi.Resource
) -> cloudwatch.MetricAlarm:
    """The stack's metric alarm behind rollbacks: errors or latency of any production variant.

    It notifies nobody itself; the composite rollback alarm that includes it does. Its name is
    fixed, so a replacement deletes the old alarm first (two alarms cannot share a name).
    """
    if not 1 <= len(variant_names) <= MAX_ROLLBACK_VARIANTS:
        raise ValueError(f"the rollback alarm watches 1-{MAX_ROLLBACK_VARIANTS} variants, got {len(variant_names)}")
    settings = target.settings
    queries: list[cloudwatch.MetricAlarmMetricQueryArgs] = []
    for index, variant in enumerate(variant_names):
        dimensions = _dimensions(target.endpoint_name, variant)
        queries.append(
            cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"e{index}",
                metric=cloudwatch.MetricAlarmMetricQueryMetricArgs(
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
            cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"l{index}",
                metric=cloudwatch.MetricAlarmMetricQueryMetricArgs(
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
        cloudwatch.MetricAlarmMetricQueryArgs(
            id="breach",
            expression=rollback_expression(len(variant_names), settings),
            label="any variant over its 5xx-rate or p99-latency threshold",
            return_data=True,
        )
    )
    return cloudwatch.MetricAlarm(
        resource_name,
        name=rollback_signals_name(target.endpoint_name),
        alarm_description=(
            f"Errors or latency of endpoint {target.endpoint_name}: a production variant's 5xx rate is above "
            f"{_number(settings.error_rate_5xx_percent)}% or its p99 ModelLatency above "
            f"{_number(settings.model_latency_p99_ms)} ms for {settings.evaluation_periods} minutes"
        ),
        comparison_operator="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=settings.evaluation_periods,
        datapoints_to_alarm=settings.evaluation_periods,
        treat_missing_data="notBreaching",
        metric_queries=queries,
        tags=dict(target.tags),
        # ``alarm_name`` is ForceNew in the Terraform provider (cloudwatch/metric_alarm.go), and
        # the name is fixed: create-before-delete would collide with the old alarm.
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True),
    )


def rollback_alarm(
    resource_name: str,
    target: AlarmTarget,
    watched: Sequence[pulumi.Input[str]],
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> cloudwatch.CompositeAlarm:
    """The composite alarm the endpoint's auto-rollback names: any of ``watched`` in ALARM (none: never).

    The endpoint's ``deployment_config.auto_rollback_configuration`` is ForceNew in the Terraform
    AWS provider (``internal/service/sagemaker/endpoint.go``), so changing the alarms it names
    would replace the endpoint (an outage: the name is fixed, so the old one goes first). The
    endpoint therefore always names this one alarm; what rolls back is this alarm's rule, which
    the provider updates in place (``alarm_rule`` is not ForceNew in ``cloudwatch/composite_alarm.go``).
    """
    rule = pulumi.Output.all(*watched).apply(lambda names: rollback_rule([str(name) for name in names]))
    return cloudwatch.CompositeAlarm(
        resource_name,
        alarm_name=rollback_alarm_name(target.endpoint_name),
        alarm_description=(
            f"Rolls back deployments of endpoint {target.endpoint_name} while any alarm in its rule is in ALARM "
            "(a rule of FALSE: rollback is off)"
        ),
        alarm_rule=rule,
        actions_enabled=True,
        alarm_actions=target.actions,
        ok_actions=target.actions,
        tags=dict(target.tags),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
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
