"""The GCP half of the program: a bucket and repository, and a Cloud Run service or Vertex AI endpoint."""

from infra.gcp.cloud_run import CloudRunService, container_environment, deletion_protection
from infra.gcp.iam import BUCKET_READER_ROLE, REPOSITORY_READER_ROLE, ServingIdentity
from infra.gcp.program import deploy
from infra.gcp.storage import GcsArtifactStore

__all__ = [
    "BUCKET_READER_ROLE",
    "REPOSITORY_READER_ROLE",
    "CloudRunService",
    "GcsArtifactStore",
    "ServingIdentity",
    "container_environment",
    "deletion_protection",
    "deploy",
]
