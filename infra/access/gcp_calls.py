"""What the pipelines ask Google for: the IAM permissions behind each Pulumi GCP resource, the state and verify.

The per-resource table says, for each Pulumi type the GCP program declares, which permissions
the Google provider's create / read (refresh, preview) / update / delete calls need and on which
resource. Sources (gathered for issue 10):

* the provider's calls: hashicorp/terraform-provider-google @ e03b7622 (pulumi-gcp wraps the
  generated beta provider from the same Magic Modules templates): ``resource_storage_bucket.go``,
  ``resource_cloud_run_v2_service.go`` (+ ``cloud_run_v2_operation.go``),
  ``resource_artifact_registry_repository.go``, ``resource_google_service_account.go`` and the IAM
  member resources (``iam_*.go``: read-modify-write, so getIamPolicy + setIamPolicy on create and
  delete, getIamPolicy on read);
* method -> permission: the REST references' "IAM Permissions" sections (crawled in
  iann0036/iam-dataset @ 2073fa52 ``gcp/map.json``), for Cloud Storage the JSON API pages
  (https://cloud.google.com/storage/docs/access-control/iam-json);
* ``iam.serviceAccounts.actAs`` on the runtime account for a Cloud Run create/update:
  https://cloud.google.com/run/docs/configuring/services/service-identity.

Left out, because no source confirms a permission: Artifact Registry's operation polling (the
provider polls ``projects/*/locations/*/operations/*``; no permission is documented for it).
A type missing from :data:`RESOURCE_CALLS` raises :class:`UnmodelledResource`, so a new resource
in the program cannot slip past the evaluator.

The Pulumi DIY backend on Cloud Storage (pulumi/pulumi ``pkg/backend/diy``): every operation lists
and reads (``storage.objects.list`` on the bucket, ``storage.objects.get``), reads ``.pulumi/meta.yaml``;
``up`` / ``refresh`` / ``destroy`` lock (write and delete a lock object), write the checkpoint
(overwrite: ``objects.insert`` of an existing name needs ``storage.objects.create`` and
``storage.objects.delete``, https://cloud.google.com/storage/docs/json_api/v1/objects/insert), its
``.bak``, history and backups. ``preview`` does not lock and writes nothing (``backend.go``:
``Preview`` never calls ``Lock``; checkpoints, history and backups only when not a dry run).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

Operation = Literal["create", "read", "update", "delete"]
Target = Literal["project", "self", "bucket", "repository", "service", "service_account", "endpoint"]
#: The Vertex AI model deployment (``infra/gcp/vertex_provider.py``): a Pulumi dynamic resource, whose
#: type token (``pulumi-python:dynamic:Resource``) is the same for every dynamic provider.
VERTEX_MODEL_DEPLOYMENT: Final = "model-deploy:gcp:VertexModelDeployment"
_DYNAMIC: Final = "pulumi-python:dynamic:Resource"


class UnmodelledResource(ValueError):
    """A declared resource type has no entry in the permission table."""


#: Pulumi type -> operation -> (permission, on which resource).
RESOURCE_CALLS: Final[Mapping[str, Mapping[Operation, tuple[tuple[str, Target], ...]]]] = {
    "gcp:storage/bucket:Bucket": {
        # Buckets.Insert on the project, then Buckets.Get (poll + Read).
        "create": (("storage.buckets.create", "project"), ("storage.buckets.get", "self")),
        "read": (("storage.buckets.get", "self"),),  # projection=noAcl: no getIamPolicy
        "update": (("storage.buckets.update", "self"), ("storage.buckets.get", "self")),
        # Delete lists object versions first (errors tolerated) and then deletes the bucket.
        "delete": (("storage.buckets.delete", "self"),),
    },
    "gcp:storage/bucketIAMMember:BucketIAMMember": {
        "create": (("storage.buckets.getIamPolicy", "bucket"), ("storage.buckets.setIamPolicy", "bucket")),
        "read": (("storage.buckets.getIamPolicy", "bucket"),),
        "update": (),  # every input forces a replacement
        "delete": (("storage.buckets.getIamPolicy", "bucket"), ("storage.buckets.setIamPolicy", "bucket")),
    },
    "gcp:artifactregistry/repository:Repository": {
        "create": (("artifactregistry.repositories.create", "project"), ("artifactregistry.repositories.get", "self")),
        "read": (("artifactregistry.repositories.get", "self"),),
        "update": (("artifactregistry.repositories.update", "self"), ("artifactregistry.repositories.get", "self")),
        "delete": (("artifactregistry.repositories.delete", "self"),),
    },
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": {
        "create": (
            ("artifactregistry.repositories.getIamPolicy", "repository"),
            ("artifactregistry.repositories.setIamPolicy", "repository"),
        ),
        "read": (("artifactregistry.repositories.getIamPolicy", "repository"),),
        "update": (),
        "delete": (
            ("artifactregistry.repositories.getIamPolicy", "repository"),
            ("artifactregistry.repositories.setIamPolicy", "repository"),
        ),
    },
    "gcp:cloudrunv2/service:Service": {
        "create": (
            ("run.services.create", "project"),
            ("run.operations.get", "project"),
            ("run.services.get", "self"),
            ("iam.serviceAccounts.actAs", "service_account"),
        ),
        "read": (("run.services.get", "self"),),
        "update": (
            ("run.services.update", "self"),
            ("run.services.get", "self"),
            ("run.operations.get", "project"),
            ("iam.serviceAccounts.actAs", "service_account"),
        ),
        # With deletion protection on, the provider refuses before calling Google (prod: README step 6).
        "delete": (("run.services.delete", "self"), ("run.operations.get", "project")),
    },
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": {
        "create": (("run.services.getIamPolicy", "service"), ("run.services.setIamPolicy", "service")),
        "read": (("run.services.getIamPolicy", "service"),),
        "update": (),
        "delete": (("run.services.getIamPolicy", "service"), ("run.services.setIamPolicy", "service")),
    },
    "gcp:vertex/aiEndpoint:AiEndpoint": {
        "create": (("aiplatform.endpoints.create", "project"), ("aiplatform.endpoints.get", "self")),
        "read": (("aiplatform.endpoints.get", "self"),),
        "update": (("aiplatform.endpoints.update", "self"), ("aiplatform.endpoints.get", "self")),
        "delete": (("aiplatform.endpoints.delete", "self"),),
    },
    # infra/gcp/vertex_provider.py (a dynamic provider; its read, used by refresh, gets the endpoint and model) over
    # the aiplatform v1 clients in infra/gcp/vertex_client.py: UploadModel, GetModel, UpdateModel
    # (labels), DeleteModel, GetEndpoint, DeployModel, MutateDeployedModel, UndeployModel,
    # UpdateEndpoint (traffic split). DeployModel with a service account needs actAs on it ("Users
    # deploying the Model must have the iam.serviceAccounts.actAs permission on this service
    # account": DeployedModel.service_account in google/cloud/aiplatform/v1/endpoint.proto).
    # MutateDeployedModel has no documented permission; it is assumed to be aiplatform.endpoints.update
    # (every aiplatform.endpoints.* write is in roles/aiplatform.user, so the proof holds for any of them).
    VERTEX_MODEL_DEPLOYMENT: {
        "create": (
            ("aiplatform.models.upload", "project"),
            ("aiplatform.models.get", "project"),
            ("aiplatform.endpoints.get", "endpoint"),
            ("aiplatform.endpoints.deploy", "endpoint"),
            ("iam.serviceAccounts.actAs", "service_account"),
        ),
        "read": (("aiplatform.endpoints.get", "endpoint"), ("aiplatform.models.get", "project")),
        "update": (
            ("aiplatform.models.upload", "project"),
            ("aiplatform.models.update", "project"),
            ("aiplatform.models.delete", "project"),
            ("aiplatform.endpoints.get", "endpoint"),
            ("aiplatform.endpoints.deploy", "endpoint"),
            ("aiplatform.endpoints.undeploy", "endpoint"),
            ("aiplatform.endpoints.update", "endpoint"),
            ("iam.serviceAccounts.actAs", "service_account"),
        ),
        "delete": (("aiplatform.endpoints.undeploy", "endpoint"), ("aiplatform.models.delete", "project")),
    },
    "gcp:serviceaccount/account:Account": {
        "create": (("iam.serviceAccounts.create", "project"), ("iam.serviceAccounts.get", "self")),
        "read": (("iam.serviceAccounts.get", "self"),),
        "update": (("iam.serviceAccounts.get", "self"), ("iam.serviceAccounts.update", "self")),
        "delete": (("iam.serviceAccounts.delete", "self"),),
    },
}

#: Writes, for the negative checks: every permission of the table's create/update/delete calls that
#: is not a read, plus what would take over an identity or a policy.
TAKEOVER_PERMISSIONS: Final = (
    "iam.serviceAccounts.setIamPolicy",
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.getOpenIdToken",
    "iam.serviceAccounts.signBlob",
    "iam.serviceAccounts.signJwt",
    "iam.serviceAccounts.implicitDelegation",
    "iam.serviceAccounts.actAs",
    "iam.serviceAccounts.update",
    "iam.serviceAccounts.delete",
    "iam.serviceAccountKeys.create",
)
READ_VERBS: Final = frozenset({"get", "list", "getIamPolicy"})


def is_write(permission: str) -> bool:
    """Whether ``permission`` changes something (its verb is not a read)."""
    return permission.rsplit(".", 1)[-1] not in READ_VERBS


@dataclass(frozen=True)
class Declared:
    """One resource a program declared: its Pulumi type and its inputs / resolved state."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    state: Mapping[str, Any]

    def value(self, key: str) -> Any:
        return self.state.get(key, self.inputs.get(key))


@dataclass(frozen=True)
class Need:
    """One permission a command needs on one resource, and why."""

    permission: str
    resource: str
    why: str


def bucket_resource(bucket: str) -> str:
    """Cloud Storage's IAM resource name of a bucket."""
    return f"projects/_/buckets/{bucket}"


def object_resource(bucket: str, name: str) -> str:
    """Cloud Storage's IAM resource name of an object."""
    return f"projects/_/buckets/{bucket}/objects/{name}"


def service_account_resource(email: str) -> str:
    """A service account's IAM resource name (its project is the one in its email)."""
    project = email.split("@", 1)[1].split(".", 1)[0]
    return f"projects/{project}/serviceAccounts/{email}"


def resource_name(resource: Declared, target: Target) -> str:
    """The IAM resource ``target`` of ``resource`` names."""
    kind = resource.type
    project = str(resource.value("project") or "")
    if target == "project":
        return f"projects/{project}"
    if kind == "gcp:storage/bucket:Bucket" or target == "bucket":
        return bucket_resource(str(resource.value("name") if target == "self" else resource.value("bucket")))
    if kind == "gcp:artifactregistry/repository:Repository" or target == "repository":
        repository = resource.value("repositoryId") if target == "self" else resource.value("repository")
        return f"projects/{project}/locations/{resource.value('location')}/repositories/{repository}"
    if kind == "gcp:cloudrunv2/service:Service" and target == "service_account":
        return service_account_resource(str(resource.value("template")["serviceAccount"]))
    if kind == "gcp:cloudrunv2/service:Service" or target == "service":
        return f"projects/{project}/locations/{resource.value('location')}/services/{resource.value('name')}"
    if kind == "gcp:serviceaccount/account:Account":
        return service_account_resource(str(resource.value("email")))
    if kind == "gcp:vertex/aiEndpoint:AiEndpoint":
        return f"projects/{project}/locations/{resource.value('location')}/endpoints/{resource.value('name')}"
    if kind == VERTEX_MODEL_DEPLOYMENT and target == "endpoint":
        return str(resource.value("endpoint"))
    if kind == VERTEX_MODEL_DEPLOYMENT and target == "service_account":
        return service_account_resource(str(resource.value("service_account")))
    raise UnmodelledResource(f"{kind} {resource.name}: no resource name for target {target}")


def classify(resource: Declared) -> Declared:
    """``resource``, with our Vertex AI dynamic resource given its own type (dynamic types all look alike)."""
    if resource.type == _DYNAMIC and {"endpoint", "artifact_uri", "service_account"} <= set(resource.inputs):
        return replace(resource, type=VERTEX_MODEL_DEPLOYMENT)
    return resource


def resource_needs(resources: list[Declared], operations: tuple[Operation, ...]) -> Iterator[Need]:
    """The permissions ``operations`` on every resource need (components and providers skipped)."""
    for resource in map(classify, resources):
        calls = RESOURCE_CALLS.get(resource.type)
        if calls is None:
            raise UnmodelledResource(
                f"{resource.type} ({resource.name}) is not in infra/access/gcp_calls.py: add its permissions, "
                "with their source"
            )
        for operation in operations:
            for permission, target in calls[operation]:
                yield Need(permission, resource_name(resource, target), f"{operation} {resource.name}")


def state_needs(bucket: str, project: str, stack: str, *, write: bool) -> Iterator[Need]:
    """What one Pulumi operation on ``stack`` asks of the state bucket (``write``: up/refresh/destroy)."""
    why = f"state of {stack}"
    yield Need("storage.objects.list", bucket_resource(bucket), why)
    yield Need("storage.objects.get", object_resource(bucket, ".pulumi/meta.yaml"), why)
    checkpoint = f".pulumi/stacks/{project}/{stack}.json"
    yield Need("storage.objects.get", object_resource(bucket, checkpoint), why)
    if not write:
        return
    lock = f".pulumi/locks/organization/{project}/{stack}/00000000-0000-4000-8000-000000000000.json"
    written = (
        lock,
        checkpoint,
        f"{checkpoint}.bak",
        f".pulumi/history/{project}/{stack}/{stack}-1764921600000000000.history.json",
        f".pulumi/history/{project}/{stack}/{stack}-1764921600000000000.checkpoint.json",
        f".pulumi/backups/{project}/{stack}/{stack}.1764921600000000000.json",
    )
    for name in written:
        for permission in ("storage.objects.create", "storage.objects.delete", "storage.objects.get"):
            yield Need(permission, object_resource(bucket, name), why)


def stack_writes(resources: list[Declared]) -> Iterator[Need]:
    """Every write the table lists for these resources, plus identity takeovers on their service accounts."""
    for need in resource_needs(resources, ("create", "update", "delete")):
        if is_write(need.permission):
            yield need
    for resource in resources:
        if resource.type == "gcp:serviceaccount/account:Account":
            for permission in TAKEOVER_PERMISSIONS:
                yield Need(permission, resource_name(resource, "self"), f"take over {resource.name}")
        if resource.type == "gcp:storage/bucket:Bucket":
            bucket = str(resource.value("name"))
            for permission in ("storage.objects.create", "storage.objects.delete"):
                yield Need(permission, object_resource(bucket, "models/x/model.tar.gz"), f"write into {bucket}")


__all__ = [
    "RESOURCE_CALLS",
    "TAKEOVER_PERMISSIONS",
    "VERTEX_MODEL_DEPLOYMENT",
    "Declared",
    "Need",
    "UnmodelledResource",
    "bucket_resource",
    "classify",
    "is_write",
    "object_resource",
    "resource_name",
    "resource_needs",
    "service_account_resource",
    "stack_writes",
    "state_needs",
]
