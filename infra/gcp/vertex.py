"""The Vertex AI endpoint serving the pinned package (GCP target ``vertex``).

One component: the endpoint (``gcp.vertex.AiEndpoint``, CMEK when the store has a key) and the
model uploaded and deployed on it by :class:`~infra.gcp.vertex_provider.VertexModelDeployment`
(no Pulumi or Terraform resource does that). The endpoint's traffic split is left to the
deployment resource: declaring it on the endpoint too would have two owners fight over it.
With a key, the project's Vertex AI service agent is granted the use of that key before either
is created, whatever the store mode: unlike the bucket, this component creates what it encrypts.
"""

from __future__ import annotations

from typing import Final

import pulumi
from pulumi_gcp import vertex as vertex_ai

from infra.config import MISSING, PROJECT, ConfigError, StackConfig
from infra.gcp.cmek import grant_key_use, vertex_service_agent
from infra.gcp.vertex_provider import VertexModelDeployment, VertexModelDeploymentArgs

TYPE: Final = f"{PROJECT}:gcp:VertexEndpoint"
SERVING_PORT: Final = 8080
HEALTH_ROUTE: Final = "/health"
PREDICT_ROUTE: Final = "/predict"


def artifact_path(config: StackConfig) -> str:
    """``<store prefix>/<name>/<digest>/``: the package's prefix inside its bucket.

    Vertex copies everything under the artifact URI and hands the copy to the container as
    ``AIP_STORAGE_URI``, which the server downloads (the uncompressed layout).
    """
    return config.package.prefix_uri.removeprefix("gs://").split("/", 1)[1]


def predict_url(region: str, endpoint_resource_name: str) -> str:
    """The endpoint's REST predict URL."""
    return f"https://{region}-aiplatform.googleapis.com/v1/{endpoint_resource_name}:predict"


class VertexEndpoint(pulumi.ComponentResource):
    """A Vertex AI endpoint with ``config.package`` uploaded and deployed on it."""

    endpoint_id: pulumi.Output[str]
    endpoint_resource_name: pulumi.Output[str]
    deployed_model_id: pulumi.Output[str]
    model_resource_name: pulumi.Output[str]
    predict_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        bucket_name: pulumi.Input[str],
        service_account_email: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Declare the endpoint of ``config``; the package is read from ``bucket_name`` as ``service_account_email``."""
        super().__init__(TYPE, name, None, opts)
        gcp_config = config.require_gcp()
        vertex = gcp_config.vertex
        if vertex is None:
            raise ConfigError(f"{PROJECT}:gcp.vertex", MISSING, "is required when gcp.target is vertex")
        project, region = gcp_config.project, gcp_config.region
        labels = config.resource_labels
        kms_key_name = gcp_config.store.kms_key_name
        package = config.package
        key_grants: list[pulumi.Resource] = []
        if kms_key_name:
            # Vertex AI refuses to create an endpoint or upload a model with a key its service agent cannot use.
            key_grants.append(
                grant_key_use(
                    f"{name}-key-user",
                    key_name=kms_key_name,
                    member=vertex_service_agent(f"{name}-service-agent", project, parent=self),
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        after_grants = pulumi.ResourceOptions(parent=self, depends_on=key_grants)

        # Taking over an existing endpoint and deployment: the endpoint with Pulumi's import option (the
        # Google provider reads it; the import fails if it differs from what is declared here), the
        # deployment with the provider's import_id (Pulumi cannot import a dynamic resource).
        imported = vertex.import_from
        endpoint_import = (
            f"projects/{project}/locations/{region}/endpoints/{imported.endpoint_id}" if imported else None
        )
        endpoint = vertex_ai.AiEndpoint(
            f"{name}-endpoint",
            project=project,
            location=region,
            display_name=vertex.endpoint_name,
            description=f"{package.name} {package.version} ({PROJECT} {config.stack})",
            labels=labels,
            encryption_spec=(
                vertex_ai.AiEndpointEncryptionSpecArgs(kms_key_name=kms_key_name) if kms_key_name else None
            ),
            opts=pulumi.ResourceOptions.merge(after_grants, pulumi.ResourceOptions(import_=endpoint_import)),
        )
        endpoint_resource_name = pulumi.Output.concat(
            "projects/", project, "/locations/", region, "/endpoints/", endpoint.name
        )
        path = artifact_path(config)
        deployment = VertexModelDeployment(
            f"{name}-model",
            VertexModelDeploymentArgs(
                project=project,
                region=region,
                endpoint=endpoint_resource_name,
                # The digest is in the name, so each package is told apart in the console.
                display_name=f"{package.name}-{package.digest[:12]}",
                image=str(package.image_ref),
                artifact_uri=pulumi.Output.from_input(bucket_name).apply(lambda bucket: f"gs://{bucket}/{path}"),
                ports=[SERVING_PORT],
                health_route=HEALTH_ROUTE,
                predict_route=PREDICT_ROUTE,
                # The server checks the package it serves against the digest the stack pins.
                env={"MODEL_PACKAGE_DIGEST": package.digest, **config.serving.environment()},
                labels=labels,
                kms_key_name=kms_key_name,
                machine_type=vertex.machine_type,
                accelerator_type=vertex.accelerator_type,
                accelerator_count=vertex.accelerator_count,
                min_replicas=vertex.min_replicas,
                max_replicas=vertex.max_replicas,
                cpu_utilization_target=vertex.cpu_utilization_target,
                accelerator_duty_cycle_target=vertex.accelerator_duty_cycle_target,
                service_account=service_account_email,
                traffic_percent=vertex.traffic_percent,
                timeout_seconds=float(vertex.deploy_timeout_seconds),
                import_id=(
                    f"{endpoint_import}/deployedModels/{imported.deployed_model_id}"
                    if endpoint_import and imported
                    else None
                ),
            ),
            opts=after_grants,
        )

        self.endpoint_id = endpoint.name
        self.endpoint_resource_name = endpoint_resource_name
        self.deployed_model_id = deployment.deployed_model_id
        self.model_resource_name = deployment.model_resource_name
        self.predict_url = endpoint_resource_name.apply(lambda resource: predict_url(region, resource))
        self.register_outputs(
            {
                "endpoint_id": self.endpoint_id,
                "endpoint_resource_name": self.endpoint_resource_name,
                "deployed_model_id": self.deployed_model_id,
                "model_resource_name": self.model_resource_name,
                "predict_url": self.predict_url,
            }
        )
