"""The GCP program, run for real (``infra/__main__.py``) under Pulumi's mocks with the real pulumi_gcp SDK."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import pulumi
import pytest

from tests.infra.mocks import Deployment, run_program
from tests.infra.test_gcp_config import DIGEST, IMAGE, cloud_run_dev, vertex_dev

BUCKET = "gcp:storage/bucket:Bucket"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
ACCOUNT = "gcp:serviceaccount/account:Account"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
REPOSITORY_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
SERVICE = "gcp:cloudrunv2/service:Service"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
KEY_MEMBER = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
SERVICE_IDENTITY = "gcp:projects/serviceIdentity:ServiceIdentity"
VERTEX_MODEL = "pulumi-python:dynamic:Resource"
STORAGE_AGENT_LOOKUP = "gcp:storage/getProjectServiceAccount:getProjectServiceAccount"
RUN_SA = "serviceAccount:digits-dev-run-sa@acme-ml.iam.gserviceaccount.com"
KMS_KEY = "projects/acme-ml/locations/europe-west4/keyRings/ml/cryptoKeys/models"
KEY_USER_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
# The Google service agents of project acme-ml (number 123456789012 in the mocks): the lookups name the stack's project.
STORAGE_AGENT = "serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com"
VERTEX_AGENT = "serviceAccount:service-123456789012@gcp-sa-aiplatform.iam.gserviceaccount.com"
# Resource types that take labels (service accounts and IAM members do not).
LABELLED = (BUCKET, REPOSITORY, SERVICE)

Values = dict[str, Any]


def _run(values: Values) -> Deployment:
    return run_program(copy.deepcopy(values), stack=values["model-deploy:environment"])


def cpu_fetch() -> Values:
    values = cloud_run_dev()
    values["model-deploy:package"]["uri"] = f"gs://acme-models/models/digits/{DIGEST}/model.tar.gz"
    values["model-deploy:gcp"]["cloudRun"].update(
        cpu="2", memory="4Gi", minInstances=1, maxInstances=5, concurrency=8, invokers=["group:ml@example.com"]
    )
    return values


def gpu_mount() -> Values:
    values = cloud_run_dev()
    values["model-deploy:gcp"]["cloudRun"].update(
        gpu={"type": "nvidia-l4"}, packageDelivery="mount", cpu="8", memory="32Gi"
    )
    return values


def _container(service: Any) -> dict[str, Any]:
    [container] = service.inputs["template"]["containers"]
    return dict(container)


def _env(service: Any) -> dict[str, str]:
    return {env["name"]: env["value"] for env in _container(service)["envs"]}


def _assert_serving_identity_grants(deployment: Deployment, member: str) -> None:
    [bucket_member] = deployment.of_type(BUCKET_MEMBER)
    [repository_member] = deployment.of_type(REPOSITORY_MEMBER)
    assert (bucket_member.inputs["bucket"], bucket_member.inputs["role"], bucket_member.inputs["member"]) == (
        "acme-models",
        "roles/storage.objectViewer",
        member,
    )
    assert {key: repository_member.inputs[key] for key in ("repository", "location", "project", "role", "member")} == {
        "repository": "model-serve",
        "location": "europe-west4",
        "project": "acme-ml",
        "role": "roles/artifactregistry.reader",
        "member": member,
    }
    # Nothing is granted at project level.
    assert not [r for r in deployment.resources if "projectIamMember" in r.type or "IAMBinding" in r.type]


def test_cloud_run_cpu_fetch() -> None:
    deployment = _run(cpu_fetch())
    service = deployment.one(SERVICE)
    template = service.inputs["template"]
    assert service.inputs["name"] == "digits-dev" and service.inputs["location"] == "europe-west4"
    assert service.inputs["deletionProtection"] is False
    assert service.inputs["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert template["serviceAccount"] == "digits-dev-run-sa@acme-ml.iam.gserviceaccount.com"
    assert template["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 5}
    assert template["maxInstanceRequestConcurrency"] == 8 and template["timeout"] == "300s"
    assert "volumes" not in template and "nodeSelector" not in template
    container = _container(service)
    assert container["image"] == IMAGE
    assert container["ports"] == {"name": "http1", "containerPort": 8080}
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert _env(service) == {
        "AIP_HEALTH_ROUTE": "/health",
        "AIP_PREDICT_ROUTE": "/predict",
        "MODEL_PACKAGE_DIGEST": DIGEST,
        "AIP_STORAGE_URI": f"gs://acme-models/models/digits/{DIGEST}/model.tar.gz",
    }
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": 8080} and startup["failureThreshold"] >= 30
    assert liveness["httpGet"] == {"path": "/health", "port": 8080}
    _assert_serving_identity_grants(deployment, RUN_SA)
    [invoker] = deployment.of_type(INVOKER)
    assert (invoker.inputs["role"], invoker.inputs["member"], invoker.inputs["name"]) == (
        "roles/run.invoker",
        "group:ml@example.com",
        "digits-dev",
    )
    # The first revision must find its grants in place.
    assert service.depends_on(deployment.one(BUCKET_MEMBER)) and service.depends_on(deployment.one(REPOSITORY_MEMBER))
    assert deployment.outputs["serviceUrl"].startswith("https://digits-dev-")
    assert {
        key: deployment.outputs[key] for key in ("bucketName", "repositoryUrl", "packageDigest", "serviceAccountEmail")
    } == {
        "bucketName": "acme-models",
        "repositoryUrl": "europe-west4-docker.pkg.dev/acme-ml/model-serve",
        "packageDigest": DIGEST,
        "serviceAccountEmail": "digits-dev-run-sa@acme-ml.iam.gserviceaccount.com",
    }


def test_cloud_run_ingress_behind_a_load_balancer() -> None:
    values = cpu_fetch()
    values["model-deploy:gcp"]["cloudRun"]["ingress"] = "internal-and-cloud-load-balancing"
    service = _run(values).one(SERVICE)
    assert service.inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"


def test_cloud_run_gpu_mount() -> None:
    service = (deployment := _run(gpu_mount())).one(SERVICE)
    template = service.inputs["template"]
    assert template["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert template["gpuZonalRedundancyDisabled"] is True  # dev: best-effort GPU capacity
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    assert template["volumes"] == [
        {
            "name": "model-package",
            "gcs": {"bucket": "acme-models", "readOnly": True, "mountOptions": [f"only-dir=models/digits/{DIGEST}"]},
        }
    ]
    container = _container(service)
    assert container["volumeMounts"] == [{"name": "model-package", "mountPath": "/opt/ml/model"}]
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["cpuIdle"] is False
    assert "AIP_STORAGE_URI" not in _env(service)
    assert not deployment.of_type(INVOKER)  # private, and nobody listed


def test_public_service_grants_all_users_only_when_asked() -> None:
    values = cpu_fetch()
    values["model-deploy:gcp"]["cloudRun"]["public"] = True
    members = {r.inputs["member"] for r in _run(values).of_type(INVOKER)}
    assert members == {"allUsers", "group:ml@example.com"}
    for deployment in (_run(cpu_fetch()), _run(gpu_mount())):
        assert all(r.inputs.get("member") not in ("allUsers", "allAuthenticatedUsers") for r in deployment.resources)


def test_prod_protects_service_and_store() -> None:
    values = gpu_mount()
    values["model-deploy:environment"] = "prod"
    values["model-deploy:gitRevision"] = "3f2c1e9"
    values["model-deploy:gcp"]["store"].update(kmsKeyName=KMS_KEY)
    deployment = _run(values)
    service = deployment.one(SERVICE)
    assert service.inputs["deletionProtection"] is True
    assert service.inputs["template"]["gpuZonalRedundancyDisabled"] is False
    bucket, repository = deployment.one(BUCKET), deployment.one(REPOSITORY)
    assert bucket.protect and repository.protect and bucket.inputs["forceDestroy"] is False
    assert bucket.inputs["encryption"] == {"defaultKmsKeyName": KMS_KEY}
    # Without the grant no package in the bucket can be read: it goes only with the bucket.
    assert deployment.one(KEY_MEMBER).protect
    for resource in (r for r in deployment.resources if r.type in LABELLED):
        assert resource.inputs["labels"]["environment"] == "prod"
        assert resource.inputs["labels"]["git-revision"] == "3f2c1e9"


def test_a_decommissioned_prod_stack_lets_destroy_through_and_keeps_its_store() -> None:
    values = gpu_mount()
    values["model-deploy:environment"] = "prod"  # and the stack is named prod (see _run)
    values["model-deploy:gcp"]["store"].update(kmsKeyName=KMS_KEY)
    values["model-deploy:gcp"]["cloudRun"]["deletionProtection"] = False
    values["model-deploy:gcp"]["decommission"] = "prod"
    deployment = _run(values)

    service = deployment.one(SERVICE)
    assert service.inputs["deletionProtection"] is False
    # What the policy pack reads; only on the service, so the template (a new revision) is untouched.
    assert service.inputs["labels"]["decommission"] == "prod"
    assert "decommission" not in service.inputs["template"]["labels"]
    # Destroy is no longer stopped by `protect`, but forgets the store instead of deleting it.
    for kept in (deployment.one(BUCKET), deployment.one(REPOSITORY), deployment.one(KEY_MEMBER)):
        assert (kept.protect, kept.retain_on_delete) == (False, True), kept.name
    assert deployment.one(BUCKET).inputs["forceDestroy"] is False


def test_protected_prod_store_is_not_retained_on_delete() -> None:
    values = gpu_mount()
    values["model-deploy:environment"] = "prod"
    deployment = _run(values)
    assert "decommission" not in deployment.one(SERVICE).inputs["labels"]
    assert (deployment.one(BUCKET).protect, deployment.one(BUCKET).retain_on_delete) == (True, False)


def _key_grants(deployment: Deployment) -> dict[str, Any]:
    """The CMEK grants by member, each checked to be the key-user role on the configured key."""
    grants = deployment.of_type(KEY_MEMBER)
    for grant in grants:
        assert (grant.inputs["cryptoKeyId"], grant.inputs["role"]) == (KMS_KEY, KEY_USER_ROLE)
        assert "condition" not in grant.inputs
    by_member = {grant.inputs["member"]: grant for grant in grants}
    assert len(by_member) == len(grants), "one grant per service agent"
    return by_member


def _assert_no_wider_kms_grant(deployment: Deployment) -> None:
    """No KMS role on a key ring, the project, or any key but the configured one."""
    assert not [r for r in deployment.resources if r.type.startswith("gcp:kms/") and r.type != KEY_MEMBER]
    assert not [r for r in deployment.resources if "projectIamMember" in r.type or "IAMBinding" in r.type]
    assert not [r for r in deployment.resources if "IAMPolicy" in r.type]


def test_cmek_bucket_lets_the_storage_agent_use_that_key_first() -> None:
    values = cpu_fetch()
    values["model-deploy:gcp"]["store"]["kmsKeyName"] = KMS_KEY
    deployment = _run(values)
    grants = _key_grants(deployment)
    assert list(grants) == [STORAGE_AGENT]
    grant, bucket = grants[STORAGE_AGENT], deployment.one(BUCKET)
    assert bucket.inputs["encryption"] == {"defaultKmsKeyName": KMS_KEY}
    # Cloud Storage refuses the bucket until its service agent may use the key.
    assert bucket.depends_on(grant)
    assert grant.parent == deployment.one("model-deploy:gcp:GcsArtifactStore").urn
    assert STORAGE_AGENT_LOOKUP in deployment.calls
    assert not grant.protect  # dev
    # Cloud Run is given no key here, so neither its agent nor Vertex AI's is involved.
    assert not deployment.of_type(SERVICE_IDENTITY)
    _assert_no_wider_kms_grant(deployment)


def test_vertex_cmek_lets_the_vertex_agent_use_that_key_before_endpoint_and_model() -> None:
    pytest.importorskip("infra.gcp.vertex")
    values = vertex_dev()
    values["model-deploy:gcp"]["store"]["kmsKeyName"] = KMS_KEY
    deployment = _run(values)
    grants = _key_grants(deployment)
    assert set(grants) == {STORAGE_AGENT, VERTEX_AGENT}
    # The agent is created (generateServiceIdentity) in the stack's project and the grant names it.
    agent = deployment.one(SERVICE_IDENTITY)
    assert (agent.inputs["service"], agent.inputs["project"]) == ("aiplatform.googleapis.com", "acme-ml")
    assert grants[VERTEX_AGENT].property_depends_on("member", agent)
    endpoint, model = deployment.one("gcp:vertex/aiEndpoint:AiEndpoint"), deployment.one(VERTEX_MODEL)
    assert endpoint.inputs["encryptionSpec"] == {"kmsKeyName": KMS_KEY}
    assert model.inputs["kms_key_name"] == KMS_KEY
    assert endpoint.depends_on(grants[VERTEX_AGENT]) and model.depends_on(grants[VERTEX_AGENT])
    assert deployment.one(BUCKET).depends_on(grants[STORAGE_AGENT])
    _assert_no_wider_kms_grant(deployment)


def test_referenced_store_gets_no_grant_but_the_vertex_endpoint_still_does() -> None:
    values = cpu_fetch()
    values["model-deploy:gcp"]["store"].update(create=False, kmsKeyName=KMS_KEY)
    deployment = _run(values)
    # The existing bucket's owner grants its own key; the stack does not even look the agent up.
    assert not deployment.of_type(KEY_MEMBER) and STORAGE_AGENT_LOOKUP not in deployment.calls
    pytest.importorskip("infra.gcp.vertex")
    values = vertex_dev()
    values["model-deploy:gcp"]["store"].update(create=False, kmsKeyName=KMS_KEY)
    deployment = _run(values)
    # The stack creates the CMEK endpoint and model itself, so it grants Vertex AI's agent.
    assert list(_key_grants(deployment)) == [VERTEX_AGENT]
    assert STORAGE_AGENT_LOOKUP not in deployment.calls


def test_without_a_key_nothing_touches_kms() -> None:
    deployments = [_run(cpu_fetch()), _run(gpu_mount())]
    if importlib.util.find_spec("infra.gcp.vertex") is not None:
        deployments.append(_run(vertex_dev()))
    for deployment in deployments:
        assert not [r for r in deployment.resources if r.type.startswith("gcp:kms/")]
        assert not deployment.of_type(SERVICE_IDENTITY)
        assert STORAGE_AGENT_LOOKUP not in deployment.calls


def test_created_store_settings_and_labels() -> None:
    deployment = _run(cpu_fetch())
    bucket = deployment.one(BUCKET)
    inputs = bucket.inputs
    assert inputs["name"] == "acme-models" and inputs["location"] == "europe-west4"
    assert inputs["uniformBucketLevelAccess"] is True and inputs["publicAccessPrevention"] == "enforced"
    assert inputs["versioning"] == {"enabled": True}
    assert inputs["softDeletePolicy"] == {"retentionDurationSeconds": 7 * 86400}
    assert inputs["lifecycleRules"] == [
        {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 30, "withState": "ARCHIVED"}}
    ]
    assert "encryption" not in inputs and not bucket.protect
    repository = deployment.one(REPOSITORY).inputs
    assert repository["format"] == "DOCKER" and repository["dockerConfig"] == {"immutableTags": True}
    assert repository["cleanupPolicies"] == [
        {"id": "keep-recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 10}},
        {
            "id": "delete-untagged",
            "action": "DELETE",
            "condition": {"tagState": "UNTAGGED", "olderThan": f"{30 * 86400}s"},
        },
    ]
    expected = {
        "environment": "dev",
        "stack": "dev",
        "model": "digits",
        "model-version": "1_0_0",
        "package-digest": DIGEST[:63],
        "managed-by": "model-deploy",
    }
    labelled = [r for r in deployment.resources if r.type in LABELLED]
    assert len(labelled) == 3
    for resource in labelled:
        assert resource.inputs["labels"] == expected, resource.type
    assert deployment.one(SERVICE).inputs["template"]["labels"] == expected


def test_reference_mode_store_creates_no_bucket_or_repository() -> None:
    values = cpu_fetch()
    values["model-deploy:gcp"]["store"]["create"] = False
    deployment = _run(values)
    assert not deployment.of_type(BUCKET) and not deployment.of_type(REPOSITORY)
    _assert_serving_identity_grants(deployment, RUN_SA)
    assert deployment.outputs["bucketName"] == "acme-models"
    assert deployment.outputs["repositoryUrl"] == "europe-west4-docker.pkg.dev/acme-ml/model-serve"


def test_vertex_gets_its_own_identity_with_the_same_narrow_grants() -> None:
    pytest.importorskip("infra.gcp.vertex")
    deployment = _run(vertex_dev())
    [account] = deployment.of_type(ACCOUNT)
    assert account.inputs["accountId"] == "digits-dev-vertex-sa"
    _assert_serving_identity_grants(deployment, "serviceAccount:digits-dev-vertex-sa@acme-ml.iam.gserviceaccount.com")
    assert not deployment.of_type(SERVICE)


def test_serving_settings_reach_cloud_run_and_vertex_containers() -> None:
    serving = {"workers": "auto", "maxBatchSize": "auto"}
    wanted = {"MODEL_SERVER_WORKERS": "auto", "MODEL_SERVER_MAX_BATCH_SIZE": "auto"}
    values = cpu_fetch()
    values["model-deploy:serving"] = serving
    env = _env(_run(values).one(SERVICE))
    assert wanted.items() <= env.items() and env["MODEL_PACKAGE_DIGEST"] == DIGEST
    pytest.importorskip("infra.gcp.vertex")
    values = vertex_dev()
    values["model-deploy:serving"] = serving
    model = _run(values).one(VERTEX_MODEL)
    assert model.inputs["env"] == {"MODEL_PACKAGE_DIGEST": DIGEST, **wanted}


def test_bad_gcp_config_stops_the_program_with_one_line() -> None:
    values = gpu_mount()
    values["model-deploy:gcp"]["cloudRun"]["memory"] = "8Gi"
    with pytest.raises(pulumi.RunError) as raised:
        _run(values)
    assert str(raised.value).startswith("model-deploy:gcp.cloudRun.memory: '8Gi' is too little for a GPU")


def test_vertex_batch_jobs_let_the_runtime_account_create_objects_under_the_output_prefix_only() -> None:
    pytest.importorskip("infra.gcp.vertex")
    values = vertex_dev()
    values["model-deploy:gcp"]["vertex"]["batchJobs"] = True
    deployment = _run(values)
    member = "serviceAccount:digits-dev-vertex-sa@acme-ml.iam.gserviceaccount.com"
    writers = [m for m in deployment.of_type(BUCKET_MEMBER) if m.inputs["role"] == "roles/storage.objectCreator"]
    [writer] = writers
    assert (writer.inputs["bucket"], writer.inputs["member"]) == ("acme-models", member)
    assert writer.inputs["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/acme-models/objects/batch/dev/output/")'
    )
    assert deployment.outputs["batchInputUri"] == "gs://acme-models/batch/dev/input/"
    assert deployment.outputs["batchOutputUri"] == "gs://acme-models/batch/dev/output/"
    # Without batchJobs: no writer, no batch outputs.
    plain = _run(vertex_dev())
    assert not [m for m in plain.of_type(BUCKET_MEMBER) if m.inputs["role"] == "roles/storage.objectCreator"]
    assert "batchInputUri" not in plain.outputs
