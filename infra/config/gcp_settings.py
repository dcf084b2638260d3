"""``model-deploy:gcp``: the package bucket, image repository and Cloud Run service or Vertex endpoint.

Names and bounds come from :mod:`infra.config.gcp_limits` (each with its documented source);
rules relating several values live in :mod:`infra.config.gcp_rules`.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field

from infra.config import gcp_limits
from infra.config.errors import did_you_mean
from infra.config.fields import ConfigModel, at_least, between, bucket_name_problem, fail
from infra.config.gcp_limits import GcpNameRule


def _gcp_named(rule: GcpNameRule, what: str) -> AfterValidator:
    def check(value: str) -> str:
        problem = rule.problem(value)
        if problem:
            fail(f"is not a valid {what}: it {problem}")
        return value

    return AfterValidator(check)


def _check_gcp_region(value: str) -> str:
    known = gcp_limits.regions()
    if value not in known:
        fail(f"is not a Cloud Run or Vertex AI region{did_you_mean(value, known)}")
    return value


def _check_gcs_bucket(value: str) -> str:
    reason = bucket_name_problem("gs", value)
    if reason:
        fail(
            f"is not a valid Cloud Storage bucket name: {reason} (https://cloud.google.com/storage/docs/buckets#naming)"
        )
    return value


def _check_kms_key_name(value: str) -> str:
    if not gcp_limits.KMS_KEY_NAME_RE.match(value):
        fail(
            "is not a Cloud KMS key name: expected "
            "projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>"
        )
    return value


def _check_soft_delete(value: int) -> int:
    low, high = gcp_limits.SOFT_DELETE_MIN_DAYS, gcp_limits.SOFT_DELETE_MAX_DAYS
    if value != 0 and not low <= value <= high:
        fail(f"is not a soft-delete retention: use 0 (off) or {low}-{high} days (Cloud Storage soft delete)")
    return value


def parse_cpu(value: str) -> int:
    """A Cloud Run CPU limit (``"2"`` or ``"500m"``) in millicores; raises ``ValueError``."""
    match = re.fullmatch(r"([0-9]+)(m?)", value)
    if match is None:
        raise ValueError(value)
    return int(match.group(1)) * (1 if match.group(2) else 1000)


def parse_memory(value: str) -> int:
    """A Cloud Run memory limit (``"512Mi"``, ``"16Gi"``) in MiB; raises ``ValueError``."""
    match = re.fullmatch(r"([0-9]+)(Mi|Gi)", value)
    if match is None:
        raise ValueError(value)
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def _check_cpu(value: str) -> str:
    whole = ", ".join(f'"{cpus}"' for cpus in gcp_limits.CLOUD_RUN_WHOLE_CPUS)
    allowed = f"use {whole}, or {gcp_limits.CLOUD_RUN_MIN_MILLICPU}m-1000m for less than one CPU (Cloud Run CPU limits)"
    try:
        millicpu = parse_cpu(value)
    except ValueError:
        fail(f"is not a CPU limit: {allowed}")
    if millicpu % 1000 == 0 and millicpu // 1000 in gcp_limits.CLOUD_RUN_WHOLE_CPUS:
        return value
    if gcp_limits.CLOUD_RUN_MIN_MILLICPU <= millicpu <= 1000:
        return value
    fail(f"is not an allowed CPU limit: {allowed}")


def _check_memory_limit(value: str) -> str:
    low, high = gcp_limits.CLOUD_RUN_MIN_MEMORY_MIB, gcp_limits.CLOUD_RUN_MAX_MEMORY_MIB
    try:
        mib = parse_memory(value)
    except ValueError:
        fail('is not a memory limit: use <n>Mi or <n>Gi, like "512Mi" or "16Gi"')
    if not low <= mib <= high:
        fail(f"is out of range: Cloud Run memory must be {low}Mi-{high // 1024}Gi (Cloud Run memory limits)")
    return value


def _check_invoker(value: str) -> str:
    if value in ("allUsers", "allAuthenticatedUsers"):
        fail("is a public principal: set cloudRun.public: true to allow unauthenticated calls instead")
    if not gcp_limits.INVOKER_MEMBER_RE.match(value):
        fail("is not an IAM principal: use user:<email>, serviceAccount:<email>, group:<email> or domain:<domain>")
    return value


def _check_accelerator_type(value: str) -> str:
    known = gcp_limits.accelerator_types()
    if value not in known:
        fail(f"is not a Vertex AI accelerator type (aiplatform_v1 AcceleratorType){did_you_mean(value, known)}")
    return value


def _check_machine_type(value: str) -> str:
    match = gcp_limits.VERTEX_MACHINE_TYPE_RE.match(value)
    series = match.group("series") if match else value
    if match is None or series not in gcp_limits.VERTEX_MACHINE_SERIES:
        known = sorted(gcp_limits.VERTEX_MACHINE_SERIES)
        fail(
            "is not a Vertex AI prediction machine type (<series>-<size>, like n1-standard-4 or g2-standard-8)"
            + (did_you_mean(series, known) or f"; series: {', '.join(known)}")
        )
    return value


ProjectId = Annotated[str, _gcp_named(gcp_limits.PROJECT_ID, "GCP project ID")]
GcsBucketName = Annotated[str, AfterValidator(_check_gcs_bucket)]
Percent = Annotated[int, between(1, 100, "a percentage")]
GcpRegion = Annotated[str, AfterValidator(_check_gcp_region)]
GcpTarget = Literal["cloudrun", "vertex"]
PackageDelivery = Literal["mount", "fetch"]
CloudRunIngress = Literal["all", "internal", "internal-and-cloud-load-balancing"]
#: Cloud Run v2's ingress values for ``cloudRun.ingress``.
CLOUD_RUN_INGRESS: dict[str, str] = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
CloudRunGpuType = Literal["nvidia-l4", "nvidia-rtx-pro-6000"]


class RepositorySettings(ConfigModel):
    """``model-deploy:gcp.store.repository``: the Artifact Registry Docker repository of the serving image."""

    name: Annotated[str, _gcp_named(gcp_limits.REPOSITORY_ID, "Artifact Registry repository id")] = Field(
        description="repository id (the image must be in it)"
    )
    keep_recent_versions: Annotated[int, at_least(1, "the versions kept")] = Field(
        default=10, description="cleanup keeps this many most recent versions of each image"
    )
    delete_untagged_after_days: Annotated[int, at_least(1, "the age")] = Field(
        default=30, description="cleanup deletes untagged versions older than this"
    )


class GcsStoreSettings(ConfigModel):
    """``model-deploy:gcp.store``: the package bucket and the image repository."""

    create: bool = Field(default=True, description="create the bucket and repository (false: reference existing ones)")
    bucket_name: GcsBucketName | None = Field(
        default=None, description="bucket name (defaults to the pinned package's bucket, which must be it)"
    )
    kms_key_name: Annotated[str, AfterValidator(_check_kms_key_name)] | None = Field(
        default=None, description="Cloud KMS key for the bucket's default encryption (CMEK)"
    )
    noncurrent_version_days: Annotated[int, at_least(1, "the age")] = Field(
        default=30, description="days before noncurrent object versions are deleted"
    )
    soft_delete_days: Annotated[int, AfterValidator(_check_soft_delete)] = Field(
        default=7, description="soft-delete retention: 0 (off) or 7-90 days"
    )
    force_destroy: bool = Field(
        default=False, description="let `pulumi destroy` delete a non-empty bucket (never in prod)"
    )
    repository: RepositorySettings = Field(description="the Docker repository")


class CloudRunGpuSettings(ConfigModel):
    """``model-deploy:gcp.cloudRun.gpu``: one GPU per instance."""

    type: CloudRunGpuType = Field(description="nvidia-l4 or nvidia-rtx-pro-6000")
    count: int = Field(default=1, description="GPUs per instance (Cloud Run allows 1)")


class CloudRunSettings(ConfigModel):
    """``model-deploy:gcp.cloudRun``: the Cloud Run v2 service (target cloudrun)."""

    service_name: Annotated[str, _gcp_named(gcp_limits.CLOUD_RUN_SERVICE_NAME, "Cloud Run service name")] = Field(
        description="service name (<= 49 characters)"
    )
    cpu: Annotated[str, AfterValidator(_check_cpu)] = Field(
        default="1", description='"1", "2", "4", "6", "8" or "80m"-"1000m"'
    )
    memory: Annotated[str, AfterValidator(_check_memory_limit)] = Field(default="512Mi", description='"512Mi"-"32Gi"')
    gpu: CloudRunGpuSettings | None = Field(default=None, description="attach a GPU")
    min_instances: Annotated[int, at_least(0, "an instance count")] = Field(default=0, description="warm instances")
    max_instances: Annotated[int, at_least(1, "an instance count")] = Field(default=10, description="scale-out bound")
    concurrency: Annotated[int, between(1, gcp_limits.CLOUD_RUN_MAX_CONCURRENCY, "Cloud Run concurrency")] = Field(
        default=80, description="requests per instance at once"
    )
    timeout_seconds: Annotated[
        int, between(1, gcp_limits.CLOUD_RUN_MAX_TIMEOUT_SECONDS, "the Cloud Run request timeout")
    ] = Field(default=300, description="request timeout")
    public: bool = Field(default=False, description="let anyone call the service (allUsers invoker)")
    invokers: tuple[Annotated[str, AfterValidator(_check_invoker)], ...] = Field(
        default=(), description="principals granted roles/run.invoker"
    )
    package_delivery: PackageDelivery = Field(
        default="fetch", description="mount (Cloud Storage volume at /opt/ml/model) or fetch (AIP_STORAGE_URI)"
    )
    deletion_protection: bool | None = Field(default=None, description="refuse deletion (default: true in prod)")
    ingress: CloudRunIngress = Field(
        default="all",
        description="who can reach the URL at all (IAM still applies): all, internal (VPC), "
        "or internal-and-cloud-load-balancing (behind an external HTTPS load balancer)",
    )

    @property
    def millicpu(self) -> int:
        """The CPU limit in millicores."""
        return parse_cpu(self.cpu)

    @property
    def memory_mib(self) -> int:
        """The memory limit in MiB."""
        return parse_memory(self.memory)


def _check_numeric_id(value: str) -> str:
    if not value.isascii() or not value.isdigit():
        fail("is not a Vertex AI id: use its digits, as the console and `gcloud ai endpoints describe` show it")
    return value


NumericId = Annotated[str, AfterValidator(_check_numeric_id)]


class VertexImportSettings(ConfigModel):
    """``model-deploy:gcp.vertex.importFrom``: an existing endpoint and deployed model the stack takes over."""

    endpoint_id: NumericId = Field(description="the endpoint's id (projects/…/endpoints/<id>)")
    deployed_model_id: NumericId = Field(description="the id of the model deployed on it")


class VertexSettings(ConfigModel):
    """``model-deploy:gcp.vertex``: the Vertex AI endpoint and deployed model (target vertex)."""

    endpoint_name: Annotated[str, _gcp_named(gcp_limits.VERTEX_DISPLAY_NAME, "Vertex AI endpoint name")] = Field(
        description="endpoint display name"
    )
    machine_type: Annotated[str, AfterValidator(_check_machine_type)] = Field(description="e.g. n1-standard-4")
    accelerator_type: Annotated[str, AfterValidator(_check_accelerator_type)] | None = Field(
        default=None, description="e.g. NVIDIA_TESLA_T4 (aiplatform AcceleratorType)"
    )
    accelerator_count: Annotated[int, at_least(0, "an accelerator count")] = Field(
        default=0, description="accelerators per replica"
    )
    min_replicas: Annotated[int, at_least(1, "a replica count")] = Field(default=1, description="lower bound")
    max_replicas: Annotated[int, at_least(1, "a replica count")] = Field(default=1, description="upper bound")
    cpu_utilization_target: Percent | None = Field(default=None, description="autoscaling CPU target, %")
    accelerator_duty_cycle_target: Percent | None = Field(
        default=None, description="autoscaling accelerator duty-cycle target, %"
    )
    traffic_percent: Percent = Field(default=100, description="share of traffic the new model gets")
    deploy_timeout_seconds: Annotated[int, at_least(1, "a timeout")] = Field(
        default=1800, description="give up on a deployment after this long"
    )
    import_from: VertexImportSettings | None = Field(
        default=None, description="take over this existing endpoint and deployed model instead of creating them"
    )
    batch_jobs: bool = Field(
        default=False,
        description="model-deploy-batch may run batch prediction jobs with the model: the runtime account may "
        "write batch/<stack>/output/ of the store",
    )


#: The label a decommissioned stack's Cloud Run service carries (value: the stack's name), which
#: the policy pack's ``cloud-run-deletion-protection-in-prod`` reads (see ``GcpConfig.decommission``).
DECOMMISSION_LABEL: Final = "decommission"


class GcpConfig(ConfigModel):
    """``model-deploy:gcp``: everything the GCP program declares."""

    project: ProjectId = Field(description="GCP project id")
    region: GcpRegion = Field(description="region of the bucket, repository and service or endpoint")
    target: GcpTarget = Field(description="cloudrun or vertex")
    store: GcsStoreSettings = Field(description="package bucket and image repository")
    cloud_run: CloudRunSettings | None = Field(default=None, description="Cloud Run service (target cloudrun)")
    vertex: VertexSettings | None = Field(default=None, description="Vertex AI endpoint (target vertex)")
    decommission: str | None = Field(
        default=None,
        description="this stack's own name, to let `pulumi destroy` remove a prod stack (README: destroying a "
        "GCP prod stack); with target cloudrun, cloudRun.deletionProtection: false too",
    )

    def decommissioning(self, stack: str) -> bool:
        """Whether ``decommission`` names ``stack``: only then is a prod stack's protection lifted."""
        return self.decommission is not None and self.decommission == stack

    @property
    def registry_host(self) -> str:
        """``<region>-docker.pkg.dev``: the Artifact Registry Docker host of the region."""
        return f"{self.region}-docker.pkg.dev"

    @property
    def repository_url(self) -> str:
        """``<region>-docker.pkg.dev/<project>/<repository>``."""
        return f"{self.registry_host}/{self.project}/{self.store.repository.name}"
