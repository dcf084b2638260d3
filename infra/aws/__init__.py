"""The AWS half of the program: an artifact store and a SageMaker endpoint, as Pulumi components."""

from infra.aws.artifact_store import ArtifactStore, StoreNames
from infra.aws.endpoint import SageMakerEndpoint, StoreOutputs, container_environment
from infra.aws.iam import (
    EndpointAccess,
    artifact_bucket_policy,
    endpoint_role_policy,
    kms_key_policy,
    sagemaker_trust_policy,
    wildcard_grants,
)
from infra.aws.program import deploy

__all__ = [
    "ArtifactStore",
    "EndpointAccess",
    "SageMakerEndpoint",
    "StoreNames",
    "StoreOutputs",
    "artifact_bucket_policy",
    "container_environment",
    "deploy",
    "endpoint_role_policy",
    "kms_key_policy",
    "sagemaker_trust_policy",
    "wildcard_grants",
]
