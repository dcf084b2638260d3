"""The GCP program: the store, the Cloud Run service or Vertex AI endpoint, and the stack outputs."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.config import StackConfig
from infra.gcp.cloud_run import CloudRunService
from infra.gcp.iam import ServingIdentity
from infra.gcp.naming import service_account_id
from infra.gcp.storage import GcsArtifactStore


def batch_prefix(stack: str, kind: str) -> str:
    """``batch/<stack>/<kind>``: where model-deploy-batch jobs of a Vertex stack read and write."""
    return f"batch/{stack}/{kind}"


def deploy(config: StackConfig) -> dict[str, pulumi.Input[Any]]:
    """Declare the GCP stack of ``config`` and return its outputs (export them as they are).

    ``config`` has passed every rule in :mod:`infra.config`, so nothing here can fail on
    configuration half-way through.
    """
    gcp_config = config.require_gcp()
    store = GcsArtifactStore("artifacts", config)
    outputs: dict[str, pulumi.Input[Any]] = {
        "target": gcp_config.target,
        "project": gcp_config.project,
        "region": gcp_config.region,
        "bucketName": store.bucket_name,
        "repositoryUrl": store.repository_url,
        "packageDigest": config.package.digest,
        "packageUri": config.package.uri,
    }
    if gcp_config.target == "cloudrun":
        settings = gcp_config.cloud_run
        assert settings is not None  # the rules require it
        service = CloudRunService(
            settings.service_name, config, bucket_name=store.bucket_name, repository_name=store.repository_name
        )
        outputs.update(
            serviceName=service.service_name,
            serviceUrl=service.service_url,
            serviceAccountEmail=service.service_account_email,
        )
        return outputs
    # Imported here: the Vertex component pulls in google-cloud-aiplatform, which Cloud Run stacks never need.
    from infra.gcp.vertex import VertexEndpoint

    vertex = gcp_config.vertex
    assert vertex is not None  # the rules require it
    identity = ServingIdentity(
        "vertex-identity",
        config,
        account_id=service_account_id(f"{config.package.name}-{config.stack}", "vertex-sa"),
        bucket_name=store.bucket_name,
        repository_name=store.repository_name,
        batch_output_prefix=batch_prefix(config.stack, "output") if vertex.batch_jobs else None,
    )
    if vertex.batch_jobs:
        # model-deploy-batch reads input here (the account reads the whole bucket) and writes output here only.
        outputs["batchInputUri"] = pulumi.Output.concat(
            "gs://", store.bucket_name, f"/{batch_prefix(config.stack, 'input')}/"
        )
        outputs["batchOutputUri"] = pulumi.Output.concat(
            "gs://", store.bucket_name, f"/{batch_prefix(config.stack, 'output')}/"
        )
    endpoint = VertexEndpoint(
        "vertex-endpoint",
        config,
        bucket_name=store.bucket_name,
        service_account_email=identity.email,
        opts=pulumi.ResourceOptions(depends_on=[identity]),
    )
    outputs.update(
        endpointId=endpoint.endpoint_id,
        endpointResourceName=endpoint.endpoint_resource_name,
        deployedModelId=endpoint.deployed_model_id,
        modelResourceName=endpoint.model_resource_name,
        predictUrl=endpoint.predict_url,
        serviceAccountEmail=identity.email,
    )
    return outputs
