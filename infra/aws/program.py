"""The AWS program: the store, the endpoint, and the stack outputs, from one validated config."""

from __future__ import annotations

import os
from typing import Any

import pulumi
from pulumi_aws.get_caller_identity import get_caller_identity_output

from infra.aws.artifact_store import ArtifactStore
from infra.aws.capacity import live_counts_from_environment
from infra.aws.endpoint import SageMakerEndpoint
from infra.aws.naming import EndpointPrefixes, s3_uri
from infra.config import StackConfig


def deploy(config: StackConfig) -> dict[str, pulumi.Input[Any]]:
    """Declare the AWS stack of ``config`` and return its outputs (export them as they are).

    ``config`` has passed every rule in :mod:`infra.config` (including what these components
    cannot build), so nothing here can fail on configuration half-way through.
    """
    endpoint_settings = config.require_aws().endpoint
    # The deploying account scopes the trust policy, the key policy and the role's log ARNs. Read
    # through the provider (an invoke, not a resource), so the stack needs no account in its config.
    account_id = get_caller_identity_output().account_id
    store = ArtifactStore("artifacts", config, account_id=account_id)
    # Set by the deploy job only (infra.aws.capacity): read here, at the program's edge.
    live_counts = live_counts_from_environment(os.environ)
    endpoint = SageMakerEndpoint(
        endpoint_settings.name, config, store=store, account_id=account_id, live_instance_counts=live_counts
    )
    outputs: dict[str, pulumi.Input[Any]] = {
        "endpointName": endpoint.endpoint_name,
        "endpointArn": endpoint.endpoint_arn,
        "endpointConfigName": endpoint.endpoint_config_name,
        "invokeUrl": endpoint.invoke_url,
        "roleArn": endpoint.role_arn,
        "bucketName": store.bucket_name,
        "repositoryUrl": store.repository_url,
        # Pushes that ask for SSE-KMS must name this key (the bucket policy refuses any other).
        "kmsKeyArn": store.kms_key_arn,
        "packageDigest": config.package.digest,
        "packageUri": config.package.uri,
        "region": config.region,
        "dashboardName": endpoint.dashboard_name,
    }
    if endpoint_settings.batch_jobs:
        # model-deploy-batch reads and writes only here: the execution role's batch grants (infra/aws/iam.py).
        prefixes = EndpointPrefixes.for_endpoint(endpoint_settings.name)
        outputs["batchInputUri"] = store.bucket_name.apply(lambda bucket: s3_uri(bucket, prefixes.batch_input))
        outputs["batchOutputUri"] = store.bucket_name.apply(lambda bucket: s3_uri(bucket, prefixes.batch_output))
    if endpoint.rollback_alarm_name is not None:
        outputs["rollbackAlarmName"] = endpoint.rollback_alarm_name
    return outputs
