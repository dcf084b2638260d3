"""A Cloud Run v2 service serving the pinned package with the pinned image, under its own service account.

The package reaches the container one of two ways (``cloudRun.packageDelivery``):

* ``mount``: a read-only Cloud Storage volume at ``/opt/ml/model``, narrowed to the package's
  ``<name>/<digest>/`` prefix with Cloud Storage FUSE's ``only-dir`` mount option (the package
  must be pushed uncompressed; the config rules check it);
* ``fetch``: ``AIP_STORAGE_URI`` names the package and the entrypoint downloads and verifies it
  at start, as on Vertex AI.

Nobody may invoke the service unless listed in ``cloudRun.invokers``, or ``cloudRun.public`` is set.
"""

from __future__ import annotations

from typing import Final

import pulumi
from pulumi_gcp import cloudrunv2

from infra.config import PROJECT, CloudRunSettings, StackConfig
from infra.config.gcp_settings import CLOUD_RUN_INGRESS, DECOMMISSION_LABEL
from infra.gcp.iam import ServingIdentity
from infra.gcp.naming import (
    CONTAINER_PORT,
    HEALTH_ROUTE,
    MODEL_DIR,
    PREDICT_ROUTE,
    member_slug,
    service_account_id,
)

TYPE: Final = f"{PROJECT}:gcp:CloudRunService"
INVOKER_ROLE: Final = "roles/run.invoker"
PUBLIC_MEMBER: Final = "allUsers"
PACKAGE_VOLUME: Final = "model-package"
# Cloud Storage volumes and GPUs need the second-generation execution environment.
GEN2: Final = "EXECUTION_ENVIRONMENT_GEN2"
# Startup: loading a model (and for fetch, downloading it) can take minutes; 10 s x 60 allows ten.
STARTUP_PERIOD_SECONDS: Final = 10
STARTUP_FAILURE_THRESHOLD: Final = 60
LIVENESS_PERIOD_SECONDS: Final = 30
LIVENESS_FAILURE_THRESHOLD: Final = 3
PROBE_TIMEOUT_SECONDS: Final = 5


def container_environment(config: StackConfig, settings: CloudRunSettings) -> dict[str, str]:
    """The serving container's environment: routes, the digest, and for fetch where the package is."""
    env = {
        "AIP_HEALTH_ROUTE": HEALTH_ROUTE,
        "AIP_PREDICT_ROUTE": PREDICT_ROUTE,
        "MODEL_PACKAGE_DIGEST": config.package.digest,
        **config.serving.environment(),
    }
    if settings.package_delivery == "fetch":
        env["AIP_STORAGE_URI"] = config.package.uri
    return env


def deletion_protection(config: StackConfig, settings: CloudRunSettings) -> bool:
    """``cloudRun.deletionProtection``, else on in prod."""
    return settings.deletion_protection if settings.deletion_protection is not None else config.is_prod


def service_labels(config: StackConfig) -> dict[str, str]:
    """The service's own labels: the stack's, plus ``decommission: <stack>`` when it is being decommissioned.

    The policy pack lets a prod service without deletion protection through only with that label
    naming the stack (``cloud-run-deletion-protection-in-prod``). Only on the service, not on the
    revision template, whose every change rolls out a new revision (Cloud Run v2 ``Service.template``).
    """
    labels = dict(config.resource_labels)
    if config.require_gcp().decommissioning(config.stack):
        labels[DECOMMISSION_LABEL] = config.stack
    return labels


class CloudRunService(pulumi.ComponentResource):
    """The service, its serving identity and its invoker grants.

    Outputs: :attr:`service_name`, :attr:`service_url`, :attr:`service_account_email`.
    """

    service_name: pulumi.Output[str]
    service_url: pulumi.Output[str]
    service_account_email: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        bucket_name: pulumi.Input[str],
        repository_name: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Declare the Cloud Run service of ``config`` reading from ``bucket_name`` and ``repository_name``."""
        super().__init__(TYPE, name, None, opts)
        gcp_config = config.require_gcp()
        settings = gcp_config.cloud_run
        assert settings is not None  # the rules require cloudRun for target cloudrun
        child = pulumi.ResourceOptions(parent=self)
        identity = ServingIdentity(
            f"{name}-identity",
            config,
            account_id=service_account_id(settings.service_name, "run-sa"),
            bucket_name=bucket_name,
            repository_name=repository_name,
            opts=child,
        )
        labels = config.resource_labels
        package = config.package
        limits = {"cpu": settings.cpu, "memory": settings.memory}
        volumes: list[cloudrunv2.ServiceTemplateVolumeArgs] = []
        mounts: list[cloudrunv2.ServiceTemplateContainerVolumeMountArgs] = []
        if settings.package_delivery == "mount":
            volumes.append(
                cloudrunv2.ServiceTemplateVolumeArgs(
                    name=PACKAGE_VOLUME,
                    gcs=cloudrunv2.ServiceTemplateVolumeGcsArgs(
                        bucket=bucket_name,
                        read_only=True,
                        # Only the pinned package, at the mount's root, as SageMaker would unpack it.
                        mount_options=[f"only-dir={package.ref.location.prefix}"],
                    ),
                )
            )
            mounts.append(cloudrunv2.ServiceTemplateContainerVolumeMountArgs(name=PACKAGE_VOLUME, mount_path=MODEL_DIR))
        node_selector = None
        if settings.gpu is not None:
            limits["nvidia.com/gpu"] = str(settings.gpu.count)
            node_selector = cloudrunv2.ServiceTemplateNodeSelectorArgs(accelerator=settings.gpu.type)
        probe_get = cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(path=HEALTH_ROUTE, port=CONTAINER_PORT)
        service = cloudrunv2.Service(
            f"{name}-service",
            name=settings.service_name,
            project=gcp_config.project,
            location=gcp_config.region,
            # The provider refuses to delete the service while its *state* says protected (pulumi-gcp
            # cloudrunv2.Service deletion_protection: "the command will fail if this field is not set
            # to false in Terraform state"), so turning it off takes an `up` before the destroy.
            deletion_protection=deletion_protection(config, settings),
            ingress=CLOUD_RUN_INGRESS[settings.ingress],
            labels=service_labels(config),
            template=cloudrunv2.ServiceTemplateArgs(
                service_account=identity.email,
                labels=labels,
                execution_environment=GEN2 if settings.millicpu >= 1000 else None,
                max_instance_request_concurrency=settings.concurrency,
                timeout=f"{settings.timeout_seconds}s",
                scaling=cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=settings.min_instances, max_instance_count=settings.max_instances
                ),
                node_selector=node_selector,
                # Zonal redundancy reserves GPU capacity in other zones: worth its price in prod only.
                gpu_zonal_redundancy_disabled=(not config.is_prod) if settings.gpu is not None else None,
                volumes=volumes or None,
                containers=[
                    cloudrunv2.ServiceTemplateContainerArgs(
                        name="serve",
                        image=package.image,
                        ports=cloudrunv2.ServiceTemplateContainerPortsArgs(name="http1", container_port=CONTAINER_PORT),
                        envs=[
                            cloudrunv2.ServiceTemplateContainerEnvArgs(name=key, value=value)
                            for key, value in container_environment(config, settings).items()
                        ],
                        resources=cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits=limits,
                            # GPU instances must keep their CPU allocated (instance-based billing).
                            cpu_idle=settings.gpu is None,
                            startup_cpu_boost=True,
                        ),
                        volume_mounts=mounts or None,
                        startup_probe=cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                            http_get=probe_get,
                            period_seconds=STARTUP_PERIOD_SECONDS,
                            timeout_seconds=PROBE_TIMEOUT_SECONDS,
                            failure_threshold=STARTUP_FAILURE_THRESHOLD,
                        ),
                        liveness_probe=cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
                            http_get=cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                                path=HEALTH_ROUTE, port=CONTAINER_PORT
                            ),
                            period_seconds=LIVENESS_PERIOD_SECONDS,
                            timeout_seconds=PROBE_TIMEOUT_SECONDS,
                            failure_threshold=LIVENESS_FAILURE_THRESHOLD,
                        ),
                    )
                ],
            ),
            # The first revision must be able to read the package and pull the image.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[identity]),
        )
        members = ([PUBLIC_MEMBER] if settings.public else []) + list(settings.invokers)
        for member in members:
            cloudrunv2.ServiceIamMember(
                f"{name}-invoker-{'public' if member == PUBLIC_MEMBER else member_slug(member)}",
                project=gcp_config.project,
                location=gcp_config.region,
                name=service.name,
                role=INVOKER_ROLE,
                member=member,
                opts=child,
            )
        self.service_name = service.name
        self.service_url = service.uri
        self.service_account_email = identity.email
        self.register_outputs(
            {
                "serviceName": self.service_name,
                "serviceUrl": self.service_url,
                "serviceAccountEmail": self.service_account_email,
            }
        )
