"""The SageMaker endpoint serving the pinned package, and everything it needs to run safely.

One component: execution role (least privilege, :mod:`infra.aws.iam`), log group, model,
endpoint configuration, endpoint with blue/green rollouts and auto-rollback, autoscaling
(:mod:`infra.aws.autoscaling`), alarms and a dashboard (:mod:`infra.aws.monitoring`).

Update safety rests on names: the model and the endpoint configuration are auto-named (every
one of their properties forces replacement, so a change creates a *new* config next to the
old one), the endpoint keeps its configured name and points at the new config's name, which
SageMaker applies in place as a blue/green deployment. Variant names come from the config and
stay put, which is what lets SageMaker match old and new fleets.

Superseded models and configs are *retained* (``retain_on_delete``), not deleted: when SageMaker
rolls an update back, the endpoint is ``InService`` on the old config and the provider reports
success (terraform-provider-aws issues 48997 and 46663: ``waitEndpointInService`` only waits for
``InService`` and never compares the config), so Pulumi would delete the config and model the
endpoint still runs on. ``model-deploy-verify`` fails such a deploy, and ``model-deploy-cleanup``
deletes what is superseded once the endpoint is verified on the declared config.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final, Protocol

import pulumi
from pulumi_aws import cloudwatch, iam, sagemaker

from infra.aws.autoscaling import VariantScaling, add_autoscaling, scaling_gate
from infra.aws.capacity import carried_variants, config_fingerprint, initial_counts, stash_input
from infra.aws.iam import EndpointAccess, endpoint_role_policy, sagemaker_trust_policy
from infra.aws.monitoring import (
    AlarmTarget,
    dashboard_body,
    rollback_alarm,
    rollback_alarm_name,
    rollback_signals_alarm,
    variant_alarms,
)
from infra.aws.naming import (
    CONFIG_KIND,
    MAX_CHILD_PREFIX,
    MODEL_KIND,
    EndpointPrefixes,
    child_name,
    endpoint_log_group,
    execution_role_path,
    invoke_url,
    partition,
    s3_uri,
)
from infra.config import (
    PROJECT,
    AsyncSettings,
    DataCaptureSettings,
    DeploymentSettings,
    EndpointSettings,
    StackConfig,
    VariantSettings,
)
from infra.config.aws_limits import has_local_instance_storage

TYPE: Final = f"{PROJECT}:aws:SageMakerEndpoint"

MIB: Final = 1024 * 1024
#: Serverless endpoints take request bodies up to 4 MB (real-time: 6 MB, the server's own default).
SERVERLESS_MAX_REQUEST_BYTES: Final = 4 * MIB
#: Async payloads come from S3 and may be up to 1 GB.
ASYNC_MAX_REQUEST_BYTES: Final = 1024 * MIB
#: "The maximum request and response payload size for serverless invocations is 4 MB" (SageMaker,
#: Invoke a serverless endpoint); real-time endpoints: 6 MB, the server's own default.
SERVERLESS_MAX_RESPONSE_BYTES: Final = 4 * MIB
#: Async answers go to S3, not back through InvokeEndpoint: up to the 1 GB async payload size.
ASYNC_MAX_RESPONSE_BYTES: Final = 1024 * MIB
#: Async requests may run up to an hour; the server gives up just before SageMaker does.
ASYNC_REQUEST_TIMEOUT_SECONDS: Final = 3590

_TRAFFIC_ROUTING: Final = {"all_at_once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}


class StoreOutputs(Protocol):
    """What the endpoint needs from the artifact store (an :class:`~infra.aws.ArtifactStore`)."""

    @property
    def bucket_name(self) -> pulumi.Output[str]:
        """The store's bucket."""
        ...

    @property
    def kms_key_arn(self) -> pulumi.Output[str]:
        """The key that encrypts the bucket."""
        ...

    @property
    def repository_arn(self) -> pulumi.Output[str]:
        """The repository the serving image is pulled from."""
        ...


def has_instance_storage(instance_type: str) -> bool:
    """Whether ``instance_type``'s volume is local instance storage (no KMS key allowed)."""
    return has_local_instance_storage(instance_type)


def encrypts_volumes_with_store_key(endpoint: EndpointSettings) -> bool:
    """Whether the endpoint config names the store key for its volumes.

    Yes, unless a variant runs on instance storage. Serverless endpoints take the key too (it
    encrypts the image copy SageMaker keeps for them).
    """
    return not any(
        variant.instance_type is not None and has_instance_storage(variant.instance_type)
        for variant in endpoint.all_variants
    )


def container_environment(config: StackConfig) -> dict[str, str]:
    """The serving container's environment (see ``inference/config.py`` for what each variable does)."""
    endpoint = config.require_aws().endpoint
    environment = {
        # The server checks the package it serves against the digest the stack pins.
        "MODEL_PACKAGE_DIGEST": config.package.digest,
        # A SAGEMAKER_* variable marks the platform even if SageMaker leaves SAGEMAKER_BIND_TO_PORT
        # unset; 20 is INFO in the numeric levels SageMaker's own containers use.
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        **config.serving.environment(),
    }
    limit = {"serverless": SERVERLESS_MAX_REQUEST_BYTES, "async": ASYNC_MAX_REQUEST_BYTES}.get(endpoint.mode)
    if limit is not None:
        # The mode's own body limit, or a smaller one from the stack: SageMaker refuses larger bodies anyway.
        wanted = config.serving.max_request_bytes
        environment["MODEL_SERVER_MAX_REQUEST_BYTES"] = str(limit if wanted is None else min(wanted, limit))
    response_limit = {"serverless": SERVERLESS_MAX_RESPONSE_BYTES, "async": ASYNC_MAX_RESPONSE_BYTES}.get(endpoint.mode)
    if response_limit is not None:
        wanted = config.serving.max_response_bytes
        environment["MODEL_SERVER_MAX_RESPONSE_BYTES"] = str(
            response_limit if wanted is None else min(wanted, response_limit)
        )
    if endpoint.mode == "async":
        environment.setdefault("MODEL_SERVER_REQUEST_TIMEOUT_S", str(ASYNC_REQUEST_TIMEOUT_SECONDS))
    return environment


def primary_container(config: StackConfig) -> sagemaker.ModelPrimaryContainerArgs:
    """The image by digest and the package by URI, in the layout it was pushed in."""
    package = config.package
    archive = package.layout == "archive"
    return sagemaker.ModelPrimaryContainerArgs(
        image=str(package.image_ref),
        mode="SingleModel",
        environment=container_environment(config),
        model_data_url=package.uri if archive else None,
        # The uncompressed layout: the package's files under their prefix, downloaded as they are.
        model_data_source=(
            None
            if archive
            else sagemaker.ModelPrimaryContainerModelDataSourceArgs(
                s3_data_sources=[
                    sagemaker.ModelPrimaryContainerModelDataSourceS3DataSourceArgs(
                        s3_uri=package.prefix_uri,
                        s3_data_type="S3Prefix",
                        compression_type="None",
                    )
                ]
            )
        ),
    )


def _variant_args(
    variant: VariantSettings, model_name: pulumi.Input[str], count: pulumi.Input[int] | None = None
) -> sagemaker.EndpointConfigurationProductionVariantArgs:
    """One production variant; ``count`` overrides the configured instance count (a carried live count)."""
    serverless = variant.serverless
    return sagemaker.EndpointConfigurationProductionVariantArgs(
        variant_name=variant.name,
        model_name=model_name,
        initial_variant_weight=variant.weight,
        instance_type=variant.instance_type,
        initial_instance_count=(count if count is not None else variant.initial_instance_count)
        if serverless is None
        else None,
        serverless_config=(
            sagemaker.EndpointConfigurationProductionVariantServerlessConfigArgs(
                memory_size_in_mb=serverless.memory_size_mb,
                max_concurrency=serverless.max_concurrency,
                provisioned_concurrency=serverless.provisioned_concurrency,
            )
            if serverless is not None
            else None
        ),
    )


def _count_of(variant_name: str) -> Callable[[Mapping[str, int]], int]:
    def count(counts: Mapping[str, int]) -> int:
        return counts[variant_name]

    return count


def _shadow_args(
    variant: VariantSettings, model_name: pulumi.Input[str]
) -> sagemaker.EndpointConfigurationShadowProductionVariantArgs:
    return sagemaker.EndpointConfigurationShadowProductionVariantArgs(
        variant_name=variant.name,
        model_name=model_name,
        initial_variant_weight=variant.weight,
        instance_type=variant.instance_type,
        initial_instance_count=variant.initial_instance_count,
    )


def _data_capture_args(
    capture: DataCaptureSettings, destination: pulumi.Input[str], kms_key_arn: pulumi.Input[str]
) -> sagemaker.EndpointConfigurationDataCaptureConfigArgs:
    modes = [mode for mode, on in (("Input", capture.capture_requests), ("Output", capture.capture_responses)) if on]
    return sagemaker.EndpointConfigurationDataCaptureConfigArgs(
        enable_capture=capture.enabled,
        initial_sampling_percentage=capture.sampling_percentage,
        destination_s3_uri=destination,
        kms_key_id=kms_key_arn,
        capture_options=[
            sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(capture_mode=mode) for mode in modes
        ],
    )


def _async_args(
    settings: AsyncSettings, store: StoreOutputs, prefixes: EndpointPrefixes
) -> sagemaker.EndpointConfigurationAsyncInferenceConfigArgs:
    """Results and failures under the endpoint's own prefixes of the store, encrypted with its key."""
    notify = settings.success_topic_arn is not None or settings.error_topic_arn is not None
    return sagemaker.EndpointConfigurationAsyncInferenceConfigArgs(
        output_config=sagemaker.EndpointConfigurationAsyncInferenceConfigOutputConfigArgs(
            s3_output_path=store.bucket_name.apply(lambda bucket: s3_uri(bucket, prefixes.async_output)),
            s3_failure_path=store.bucket_name.apply(lambda bucket: s3_uri(bucket, prefixes.async_failure)),
            kms_key_id=store.kms_key_arn,
            notification_config=(
                sagemaker.EndpointConfigurationAsyncInferenceConfigOutputConfigNotificationConfigArgs(
                    success_topic=settings.success_topic_arn,
                    error_topic=settings.error_topic_arn,
                )
                if notify
                else None
            ),
        ),
        client_config=(
            sagemaker.EndpointConfigurationAsyncInferenceConfigClientConfigArgs(
                max_concurrent_invocations_per_instance=settings.max_concurrent_invocations_per_instance
            )
            if settings.max_concurrent_invocations_per_instance is not None
            else None
        ),
    )


def deployment_config(
    settings: DeploymentSettings | None, rollback_alarm_name: pulumi.Input[str]
) -> sagemaker.EndpointDeploymentConfigArgs | None:
    """Blue/green traffic shifting, rolled back by the one alarm ``rollback_alarm_name`` (``None``: no config).

    The auto-rollback block names the same alarm whatever the settings say (rollback on or off,
    which alarms count): in the Terraform AWS provider's ``internal/service/sagemaker/endpoint.go``,
    ``deployment_config.auto_rollback_configuration`` is ``ForceNew``, so any change to it would
    replace the endpoint. The blue/green policy beside it is not ForceNew and updates in place.
    """
    if settings is None:
        return None
    sm = sagemaker
    routing = sm.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs(
        type=_TRAFFIC_ROUTING[settings.strategy],
        wait_interval_in_seconds=settings.wait_interval_seconds,
        canary_size=(
            sm.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationCanarySizeArgs(
                type="CAPACITY_PERCENT", value=settings.canary_percent
            )
            if settings.strategy == "canary" and settings.canary_percent is not None
            else None
        ),
        linear_step_size=(
            sm.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationLinearStepSizeArgs(
                type="CAPACITY_PERCENT", value=settings.linear_step_percent
            )
            if settings.strategy == "linear" and settings.linear_step_percent is not None
            else None
        ),
    )
    rollback = sm.EndpointDeploymentConfigAutoRollbackConfigurationArgs(
        alarms=[sm.EndpointDeploymentConfigAutoRollbackConfigurationAlarmArgs(alarm_name=rollback_alarm_name)]
    )
    return sm.EndpointDeploymentConfigArgs(
        blue_green_update_policy=sm.EndpointDeploymentConfigBlueGreenUpdatePolicyArgs(
            traffic_routing_configuration=routing,
            maximum_execution_timeout_in_seconds=settings.maximum_execution_timeout_seconds,
            termination_wait_in_seconds=settings.termination_wait_seconds,
        ),
        auto_rollback_configuration=rollback,
    )


class SageMakerEndpoint(pulumi.ComponentResource):
    """A SageMaker endpoint serving ``config.package``, with its role, scaling, alarms and dashboard."""

    endpoint_name: pulumi.Output[str]
    endpoint_arn: pulumi.Output[str]
    endpoint_config_name: pulumi.Output[str]
    model_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    invoke_url: pulumi.Output[str]
    rollback_alarm_name: pulumi.Output[str] | None
    """The composite alarm the endpoint's auto-rollback names (``None`` without a deployment section)."""
    alarm_names: list[pulumi.Output[str]]
    scaling: list[VariantScaling]
    dashboard_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        store: StoreOutputs,
        account_id: pulumi.Input[str],
        live_instance_counts: Mapping[str, int] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Declare the endpoint of ``config``; ``store`` holds the package, ``account_id`` is the deploying account.

        ``live_instance_counts`` (``{variant: DesiredInstanceCount}`` read from the endpoint before
        ``pulumi up``; ``None`` outside a deploy) is what a new config starts autoscaled variants at
        (:mod:`infra.aws.capacity`).
        """
        super().__init__(TYPE, name, None, opts)
        prefix = name[:MAX_CHILD_PREFIX]
        aws_config = config.require_aws()
        endpoint = aws_config.endpoint
        region = config.region
        tags = config.resource_tags
        child = pulumi.ResourceOptions(parent=self)
        prefixes = EndpointPrefixes.for_endpoint(endpoint.name)
        log_group_name = endpoint_log_group(endpoint.name)

        # --- identity ---------------------------------------------------------------------------
        role = iam.Role(
            f"{prefix}-role",
            # Auto-named under the environment's path, which is all the deploy role may touch
            # (a changed path replaces the role: ``path`` is ForceNew in the Terraform provider's
            # internal/service/iam/role.go, and the model that uses it follows, blue/green).
            path=execution_role_path(config.environment),
            description=f"SageMaker execution role of endpoint {endpoint.name} ({PROJECT} {config.stack})",
            assume_role_policy=pulumi.Output.from_input(account_id).apply(
                lambda account: json.dumps(sagemaker_trust_policy(account))
            ),
            tags=tags,
            opts=child,
        )
        async_settings = endpoint.async_settings
        topics = tuple(
            topic
            for topic in (
                async_settings.success_topic_arn if async_settings else None,
                async_settings.error_topic_arn if async_settings else None,
            )
            if topic
        )
        package_location = config.package.ref.location
        vpc = endpoint.vpc

        def policy_json(values: list[str]) -> str:
            account, bucket, key_arn, repository_arn = values
            access = EndpointAccess(
                partition=partition(region),
                region=region,
                account_id=account,
                endpoint_name=endpoint.name,
                package_bucket=package_location.bucket,
                package_prefix=package_location.prefix,
                store_bucket=bucket,
                kms_key_arn=key_arn,
                repository_arn=repository_arn,
                log_group_name=log_group_name,
                prefixes=prefixes,
                data_capture=endpoint.data_capture is not None and endpoint.data_capture.enabled,
                asynchronous=async_settings is not None,
                notification_topic_arns=topics,
                subnet_ids=vpc.subnet_ids if vpc else (),
                security_group_ids=vpc.security_group_ids if vpc else (),
                rollback_alarm_name=rollback_alarm_name(endpoint.name) if endpoint.deployment is not None else None,
                batch_jobs=endpoint.batch_jobs,
            )
            return json.dumps(endpoint_role_policy(access))

        role_policy = iam.RolePolicy(
            f"{prefix}-role-policy",
            role=role.id,
            policy=pulumi.Output.all(account_id, store.bucket_name, store.kms_key_arn, store.repository_arn).apply(
                policy_json
            ),
            opts=child,
        )
        log_group = cloudwatch.LogGroup(
            f"{prefix}-logs",
            name=log_group_name,
            retention_in_days=aws_config.log_retention_days,
            tags=tags,
            opts=child,
        )

        # --- model and configuration -------------------------------------------------------------
        # Kept in AWS when Pulumi replaces or deletes them (the module docstring says why): "Pulumi will
        # not call through to the resource provider's Delete method when deleting or replacing the
        # resource" (Pulumi docs, resource option retainOnDelete).
        model = sagemaker.Model(
            child_name(name, MODEL_KIND),
            execution_role_arn=role.arn,
            primary_container=primary_container(config),
            enable_network_isolation=endpoint.network_isolation,
            vpc_config=(
                sagemaker.ModelVpcConfigArgs(
                    subnets=list(vpc.subnet_ids), security_group_ids=list(vpc.security_group_ids)
                )
                if vpc
                else None
            ),
            tags=tags,
            # CreateModel checks that the role can read the package: the policy must be in place first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy], retain_on_delete=True),
        )
        capture = endpoint.data_capture
        counts: dict[str, pulumi.Output[int]] = {}
        carried = carried_variants(config)
        if carried:
            carried_capacity = pulumi.Stash(
                f"{prefix}-carried-capacity",
                input=stash_input(config, live_instance_counts),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # A new value only when a new endpoint config is created (see infra.aws.capacity).
                    replacement_trigger=config_fingerprint(config),
                    ignore_changes=None if live_instance_counts is not None else ["input"],
                ),
            )
            saved = carried_capacity.output.apply(lambda value: initial_counts(config, value or {}))
            counts = {variant.name: saved.apply(_count_of(variant.name)) for variant in carried}
        endpoint_config = sagemaker.EndpointConfiguration(
            # No name: each change is a new, auto-named config, created before the old one is deleted.
            child_name(name, CONFIG_KIND),
            production_variants=[
                _variant_args(variant, model.name, counts.get(variant.name)) for variant in endpoint.variants
            ],
            shadow_production_variants=(
                [_shadow_args(endpoint.shadow_variant, model.name)] if endpoint.shadow_variant else None
            ),
            kms_key_arn=store.kms_key_arn if encrypts_volumes_with_store_key(endpoint) else None,
            data_capture_config=(
                _data_capture_args(
                    capture,
                    store.bucket_name.apply(lambda bucket: s3_uri(bucket, prefixes.data_capture)),
                    store.kms_key_arn,
                )
                if capture is not None
                else None
            ),
            async_inference_config=(
                _async_args(async_settings, store, prefixes) if async_settings is not None else None
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )

        # --- alarms the rollout depends on --------------------------------------------------------
        alarm_target = AlarmTarget(endpoint_name=endpoint.name, settings=endpoint.alarms, tags=tags)
        deployment = endpoint.deployment
        signals: cloudwatch.MetricAlarm | None = None
        rollback: cloudwatch.CompositeAlarm | None = None
        if deployment is not None:
            watched: list[pulumi.Input[str]] = []
            if deployment.rollback_on_alarms:
                signals = rollback_signals_alarm(
                    f"{prefix}-rollback-alarm", alarm_target, [v.name for v in endpoint.variants], parent=self
                )
                watched = [signals.name, *deployment.rollback_alarms]
            rollback = rollback_alarm(f"{prefix}-rollback", alarm_target, watched, parent=self)

        # --- the endpoint ---------------------------------------------------------------------------
        gate = (
            scaling_gate(f"{prefix}-scaling-gate", endpoint, parent=self) if endpoint.autoscaling is not None else None
        )
        endpoint_resource = sagemaker.Endpoint(
            f"{prefix}-endpoint",
            name=endpoint.name,
            endpoint_config_name=endpoint_config.name,
            deployment_config=deployment_config(deployment, rollback.alarm_name if rollback is not None else ""),
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Replacing a fixed-name endpoint deletes it first (an outage). In prod the engine
                # refuses any update that would replace it: "any deployment that would delete it
                # (including a replacement) fails" (Pulumi docs, "Protecting against undesired changes").
                protect=config.is_prod,
                # The log group exists before SageMaker writes to it (otherwise SageMaker creates one
                # the stack does not own, without retention); the scaling gate is settled before updates.
                depends_on=[log_group, *([gate] if gate is not None else [])],
            ),
        )
        self.scaling = (
            add_autoscaling(prefix, endpoint, endpoint_resource=endpoint_resource, gate=gate, tags=tags, parent=self)
            if gate is not None
            else []
        )

        # --- monitoring ------------------------------------------------------------------------------
        alarms = [
            alarm
            for variant in endpoint.all_variants
            for alarm in variant_alarms(prefix, alarm_target, variant.name, parent=self)
        ]
        if signals is not None:
            alarms.insert(0, signals)
        dashboard = cloudwatch.Dashboard(
            f"{prefix}-dashboard",
            # Dashboards carry no tags (no Tags in PutDashboard's Terraform resource), so the name is
            # what the deploy role is scoped by: model-deploy-<environment>-… (infra/bootstrap/aws_policies.py).
            dashboard_name=f"{PROJECT}-{config.environment}-{endpoint.name}-{region}",
            dashboard_body=pulumi.Output.json_dumps(
                dashboard_body(
                    endpoint.name,
                    region,
                    endpoint.mode,
                    [variant.name for variant in endpoint.all_variants],
                    [*([rollback.arn] if rollback is not None else []), *(alarm.arn for alarm in alarms)],
                )
            ),
            opts=child,
        )

        self.endpoint_name = endpoint_resource.name
        self.endpoint_arn = endpoint_resource.arn
        self.endpoint_config_name = endpoint_config.name
        self.model_name = model.name
        self.role_arn = role.arn
        self.invoke_url = endpoint_resource.name.apply(lambda endpoint_name: invoke_url(region, endpoint_name))
        self.rollback_alarm_name = rollback.alarm_name if rollback is not None else None
        self.alarm_names = [
            *([rollback.alarm_name] if rollback is not None else []),
            *(alarm.name for alarm in alarms),
        ]
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs(
            {
                "endpointName": self.endpoint_name,
                "endpointArn": self.endpoint_arn,
                "endpointConfigName": self.endpoint_config_name,
                "modelName": self.model_name,
                "roleArn": self.role_arn,
                "invokeUrl": self.invoke_url,
                "dashboardName": self.dashboard_name,
            }
        )
