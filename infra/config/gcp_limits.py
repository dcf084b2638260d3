"""Published GCP limits the stack config is checked against, each with the page it comes from.

Unlike botocore for AWS, no installed SDK describes Cloud Run's or Cloud Storage's limits, so
most values here are copied from Google's documentation (the page is cited next to each).
Where an SDK does ship the data it is read from there instead:

* Vertex AI regions: ``google.cloud.aiplatform.constants.base.SUPPORTED_REGIONS``;
* Vertex AI accelerator names: ``google.cloud.aiplatform_v1.types.AcceleratorType``.

pulumi_gcp ships neither a region list nor a Cloud Run limit table (checked: its schemas take
free strings), so Cloud Run's regions are hard-coded below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Final

# --- regions ----------------------------------------------------------------------------------

#: Cloud Run (services) regions, from https://cloud.google.com/run/docs/locations (Tier 1 and Tier 2).
CLOUD_RUN_REGIONS: Final = frozenset(
    {
        "africa-south1",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-north1",
        "europe-north2",
        "europe-southwest1",
        "europe-west1",
        "europe-west10",
        "europe-west12",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "me-central1",
        "me-central2",
        "me-west1",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "southamerica-east1",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
    }
)

#: Regions where Cloud Run services can attach a GPU, from
#: https://cloud.google.com/run/docs/configuring/services/gpu ("Supported regions"; asia-south1 is
#: invitation-only there, listed so an invited project is not refused).
CLOUD_RUN_GPU_REGIONS: Final = frozenset(
    {"us-central1", "europe-west1", "europe-west4", "asia-southeast1", "asia-south1"}
)


@cache
def vertex_regions() -> frozenset[str]:
    """Regions google-cloud-aiplatform knows Vertex AI in (its ``SUPPORTED_REGIONS``, without ``global``)."""
    from google.cloud.aiplatform.constants import base  # slow to import: only when a stack is checked

    return frozenset(region for region in base.SUPPORTED_REGIONS if region != "global")


def regions() -> frozenset[str]:
    """Every region a GCP stack may name (a target's own list is checked by the rules)."""
    return CLOUD_RUN_REGIONS | vertex_regions()


# --- Cloud Run resources ------------------------------------------------------------------------
# https://cloud.google.com/run/docs/configuring/services/cpu and .../services/memory-limits

#: Whole CPUs a Cloud Run instance may have (values below 1 are given in millicores).
CLOUD_RUN_WHOLE_CPUS: Final = (1, 2, 4, 6, 8)
#: Fractional CPU: 0.08 up to 1 (the page allows increments of 0.01; millicores are finer, Cloud Run rounds).
CLOUD_RUN_MIN_MILLICPU: Final = 80
#: Second-generation execution environment (needed by Cloud Storage volumes and GPUs) minimum and the maximum.
CLOUD_RUN_MIN_MEMORY_MIB: Final = 512
CLOUD_RUN_MAX_MEMORY_MIB: Final = 32 * 1024
#: "Required minimum CPUs" of the memory-limits page: more than <memory> needs at least <cpus>.
CLOUD_RUN_MEMORY_MIN_CPUS: Final = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
#: "CPU and memory" of the CPU page: <cpus> need at least <memory MiB>.
CLOUD_RUN_CPU_MIN_MEMORY_MIB: Final = ((8, 4 * 1024), (6, 4 * 1024), (4, 2 * 1024))
#: Below 1 CPU (CPU page): at least 0.5 CPU for more than 512 MiB, at least 1 CPU for more than 1 GiB,
#: concurrency 1 and the first-generation environment.
CLOUD_RUN_HALF_CPU_MAX_MEMORY_MIB: Final = 512
CLOUD_RUN_SUB_CPU_MAX_MEMORY_MIB: Final = 1024
#: https://cloud.google.com/run/docs/about-concurrency: "maximum concurrency ... up to 1000".
CLOUD_RUN_MAX_CONCURRENCY: Final = 1000
#: https://cloud.google.com/run/docs/configuring/request-timeout: up to 60 minutes for services.
CLOUD_RUN_MAX_TIMEOUT_SECONDS: Final = 3600

#: Cloud Run GPU types (https://cloud.google.com/run/docs/configuring/services/gpu): the config value
#: is the node-selector accelerator name.
CLOUD_RUN_GPU_TYPES: Final = ("nvidia-l4", "nvidia-rtx-pro-6000")
#: The same page: one GPU per instance, at least 4 CPU and 16 GiB of memory.
CLOUD_RUN_GPU_COUNT: Final = 1
CLOUD_RUN_GPU_MIN_CPUS: Final = 4
CLOUD_RUN_GPU_MIN_MEMORY_MIB: Final = 16 * 1024


# --- names ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcpNameRule:
    """A GCP resource-name rule: a regex, its length bounds and how to say it, with the page it comes from."""

    pattern: re.Pattern[str]
    minimum: int
    maximum: int
    text: str
    source: str

    def problem(self, value: str) -> str | None:
        """Why ``value`` breaks the rule (worded to follow "it"), or ``None``."""
        if not self.minimum <= len(value) <= self.maximum:
            return f"must be {self.minimum}-{self.maximum} characters long, not {len(value)} ({self.source})"
        if not self.pattern.match(value):
            return f"must be {self.text} ({self.source})"
        return None


#: https://cloud.google.com/resource-manager/docs/creating-managing-projects ("Project ID requirements").
PROJECT_ID: Final = GcpNameRule(
    re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$"),
    6,
    30,
    "lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen",
    "GCP project ID rules",
)
#: https://cloud.google.com/artifact-registry/docs/repositories/create-repos ("repository names").
REPOSITORY_ID: Final = GcpNameRule(
    re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$"),
    1,
    63,
    "lowercase letters, digits and hyphens, starting with a letter and ending with a letter or digit",
    "Artifact Registry repository names",
)
#: https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services (service id: 49 characters
#: at most, so revision names derived from it fit DNS labels).
CLOUD_RUN_SERVICE_NAME: Final = GcpNameRule(
    re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$"),
    1,
    49,
    "lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen",
    "Cloud Run service names",
)
#: Vertex AI display names: up to 128 UTF-8 characters (Endpoint.display_name in the aiplatform v1 API).
VERTEX_DISPLAY_NAME: Final = GcpNameRule(
    re.compile(r"^\S(.*\S)?$"), 1, 128, "without leading or trailing spaces", "Vertex AI display names"
)
#: https://cloud.google.com/iam/docs/service-accounts-create ("account ID": 6-30 characters).
SERVICE_ACCOUNT_ID: Final = GcpNameRule(
    re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$"),
    6,
    30,
    "lowercase letters, digits and hyphens, starting with a letter",
    "service account IDs",
)
#: https://cloud.google.com/kms/docs/resource-hierarchy (key resource names).
KMS_KEY_NAME_RE: Final = re.compile(
    r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/keyRings/[A-Za-z0-9_-]{1,63}"
    r"/cryptoKeys/[A-Za-z0-9_-]{1,63}$"
)
#: https://cloud.google.com/iam/docs/principal-identifiers (the members an IAM binding may name here).
INVOKER_MEMBER_RE: Final = re.compile(r"^(?:user|serviceAccount|group):[^@\s]+@[^@\s]+\.[^@\s]+$|^domain:[a-z0-9.-]+$")

# --- Cloud Storage ---------------------------------------------------------------------------------

#: https://cloud.google.com/storage/docs/soft-delete: 0 (off) or 7 to 90 days.
SOFT_DELETE_MIN_DAYS: Final = 7
SOFT_DELETE_MAX_DAYS: Final = 90

# --- labels -----------------------------------------------------------------------------------------
# https://cloud.google.com/resource-manager/docs/labels-overview ("Requirements for labels").

LABEL_MAX_CHARS: Final = 63
MAX_LABELS: Final = 64
LABEL_KEY_RE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE: Final = re.compile(r"^[a-z0-9_-]{0,63}$")

# --- Vertex AI machines -------------------------------------------------------------------------
# https://cloud.google.com/vertex-ai/docs/predictions/configure-compute ("Machine types" and "GPUs").
# The page's tables pair machine series with the GPUs they take; the regional availability of each
# (machine, GPU) pair is a separate, changing table that is not encoded: Vertex checks it at deploy.


@cache
def accelerator_types() -> tuple[str, ...]:
    """Vertex accelerator names, from ``google.cloud.aiplatform_v1.types.AcceleratorType`` (not UNSPECIFIED)."""
    from google.cloud.aiplatform_v1.types import AcceleratorType

    # proto-plus enums are IntEnums at run time, which its stubs do not say.
    return tuple(member.name for member in AcceleratorType if member.value != 0)  # type: ignore[attr-defined]


#: Machine series (the part of the type before the first size suffix) Vertex prediction accepts, with
#: the accelerators each may carry; an empty tuple means CPU only.
VERTEX_MACHINE_SERIES: Final[dict[str, tuple[str, ...]]] = {
    "n1-standard": ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100"),
    "n1-highmem": ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100"),
    "n1-highcpu": ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100"),
    "n2-standard": (),
    "n2-highmem": (),
    "n2-highcpu": (),
    "n2d-standard": (),
    "n2d-highmem": (),
    "n2d-highcpu": (),
    "c2-standard": (),
    "c2d-standard": (),
    "c2d-highmem": (),
    "c2d-highcpu": (),
    "c3-standard": (),
    "c3-highcpu": (),
    "c3-highmem": (),
    "e2-standard": (),
    "e2-highmem": (),
    "e2-highcpu": (),
    "g2-standard": ("NVIDIA_L4",),
    "g4-standard": ("NVIDIA_RTX_PRO_6000",),
    "a2-highgpu": ("NVIDIA_TESLA_A100",),
    "a2-megagpu": ("NVIDIA_TESLA_A100",),
    "a2-ultragpu": ("NVIDIA_A100_80GB",),
    "a3-highgpu": ("NVIDIA_H100_80GB",),
    "a3-megagpu": ("NVIDIA_H100_MEGA_80GB",),
    "a3-ultragpu": ("NVIDIA_H200_141GB",),
    "a4-highgpu": ("NVIDIA_B200",),
    "ct5lp-hightpu": ("TPU_V5_LITEPOD",),
}
#: Series whose accelerators are part of the machine: the type says how many (``a2-highgpu-2g`` has 2),
#: and Vertex rejects another count.
VERTEX_FIXED_GPU_SERIES: Final = frozenset(
    {"a2-highgpu", "a2-megagpu", "a2-ultragpu", "a3-highgpu", "a3-megagpu", "a3-ultragpu", "a4-highgpu"}
)
#: g2-standard sizes and their fixed L4 count (https://cloud.google.com/compute/docs/gpus#l4-gpus).
G2_GPU_COUNTS: Final = {4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}
#: Counts an n1 machine may attach of one GPU model (https://cloud.google.com/compute/docs/gpus).
N1_GPU_COUNTS: Final = (1, 2, 4, 8)
VERTEX_MACHINE_TYPE_RE: Final = re.compile(r"^(?P<series>[a-z][a-z0-9]*-[a-z]+)-(?P<size>[0-9]+)(?P<suffix>[a-z]*)$")


def label_key(key: str) -> str:
    """``key`` as a valid GCP label key: lowercase, other characters as ``_``, starting with a letter."""
    text = re.sub(r"[^a-z0-9_-]", "_", key.lower())
    if not text[:1].isalpha():
        text = "k" + text
    return text[:LABEL_MAX_CHARS]


def label_value(value: str) -> str:
    """``value`` as a valid GCP label value: lowercase, other characters as ``_``, at most 63 characters.

    A package digest (64 hex characters) loses its last character: 63 still identify it.
    """
    return re.sub(r"[^a-z0-9_-]", "_", value.lower())[:LABEL_MAX_CHARS]
