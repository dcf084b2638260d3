"""Proofs, by the offline evaluator, that the GCP pipelines can do their job and nothing else.

For every committed ``Pulumi.gcp-*.yaml`` and the bootstrap's grants (:mod:`tests.infra.gcp_access`):

* the stack's own deploy identity has every permission that ``pulumi up`` (create and update),
  ``refresh``, ``destroy``, ``model-deploy-verify-gcp`` and promotion into the stack need: 0 denied;
* no environment's identity can write another environment's resources or state, or the bootstrap's
  identities, state bucket, secrets key or any project's IAM policy: 0 allowed;
* the read-only identity can preview and refresh every stack, and write nothing: 0 allowed writes;
* who may act as each identity: the GitHub environment's jobs for a deploy account, pull requests
  and the default branch for the read-only one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from infra.access.gcp_calls import (
    Need,
    bucket_resource,
    is_write,
    object_resource,
    resource_name,
    resource_needs,
    service_account_resource,
    stack_writes,
    state_needs,
)
from infra.access.gcp_policy import Principal, evaluate, granted_permissions
from tests.infra.gcp_access import STATE_BUCKET, GcpWorld, Stack, gcp_world, github_claims, vertex_world

STACKS = ["gcp-dev", "gcp-staging", "gcp-prod"]
ENVIRONMENTS = ("dev", "staging", "prod")
PULUMI_PROJECT = "model-deploy"


@pytest.fixture(scope="module")
def world() -> GcpWorld:
    return gcp_world()


def denied(world: GcpWorld, principal: Principal, needs: Iterable[Need]) -> list[str]:
    return [
        f"{need.permission} on {need.resource} ({need.why}): {decision.reason}"
        for need in needs
        if not (decision := evaluate(world.policies, principal, need.permission, need.resource))
    ]


def allowed(world: GcpWorld, principal: Principal, needs: Iterable[Need]) -> list[str]:
    return [
        f"{need.permission} on {need.resource} ({need.why}): {decision.reason}"
        for need in needs
        if (decision := evaluate(world.policies, principal, need.permission, need.resource))
    ]


def _package(stack: Stack) -> tuple[str, str]:
    uri = str(stack.config["model-deploy:package"]["uri"]).removeprefix("gs://")
    bucket, _, name = uri.partition("/")
    return bucket, name


def _service(stack: Stack) -> str:
    [service] = [r for r in stack.resources if r.type == "gcp:cloudrunv2/service:Service"]
    return f"projects/{stack.project}/locations/{service.value('location')}/services/{service.value('name')}"


def _repository(stack: Stack) -> str:
    [repository] = [r for r in stack.resources if r.type == "gcp:artifactregistry/repository:Repository"]
    return resource_name(repository, "self")


def deploy_needs(world: GcpWorld, stack: Stack) -> Iterator[Need]:
    """``up`` (first and later), ``refresh``, ``destroy``, then verify and promotion into this stack."""
    yield from resource_needs(stack.resources, ("create", "read", "update", "delete"))
    yield from state_needs(STATE_BUCKET, PULUMI_PROJECT, stack.name, write=True)
    for permission in ("cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt"):
        yield Need(permission, world.secrets_key(), "stack secrets (gcpkms://)")
    bucket, package = _package(stack)
    # model-deploy-verify-gcp: the package (model_package/stores/gcs.py: get_blob, then download), the
    # service with the account's identity token.
    yield Need("storage.objects.get", object_resource(bucket, package), "verify: pull the package")
    yield Need("run.routes.invoke", _service(stack), "verify: health and smoke prediction")
    # model-deploy-promote into this stack: its digest check (GetDockerImage) and the copy into its bucket
    # (get_blob, then an upload with ifGenerationMatch=0: objects.insert).
    yield Need("artifactregistry.dockerimages.get", _repository(stack), "promote: GetDockerImage")
    yield Need("storage.objects.create", object_resource(bucket, package), "promote: push the package")
    yield Need("storage.objects.get", object_resource(bucket, package), "promote: check what is there")


@pytest.mark.parametrize("name", STACKS)
def test_each_stack_deploy_identity_is_allowed_everything_it_needs(world: GcpWorld, name: str) -> None:
    stack = world.stacks[name]
    assert denied(world, world.deploy_identity(stack.environment), deploy_needs(world, stack)) == []


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_only_the_environments_jobs_can_act_as_its_deploy_account(world: GcpWorld, environment: str) -> None:
    account = service_account_resource(world.bootstrap_outputs[f"GCP_SERVICE_ACCOUNT_{environment.upper()}"])
    own = world.provider.principal(github_claims(f"environment:{environment}", environment=environment))
    assert own is not None
    # Impersonation (the auth action) and identity tokens (verify) both come from workloadIdentityUser.
    for permission in ("iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken"):
        assert evaluate(world.policies, own, permission, account), permission
    others = [
        github_claims("pull_request", ref="refs/pull/7/merge"),
        github_claims("ref:refs/heads/main", ref="refs/heads/main"),
        *(github_claims(f"environment:{e}", environment=e) for e in ENVIRONMENTS if e != environment),
    ]
    for claims in others:
        principal = world.provider.principal(claims)
        assert principal is not None
        assert not evaluate(world.policies, principal, "iam.serviceAccounts.getAccessToken", account), claims["sub"]
    # Another repository's token never becomes a principal (the provider's attribute condition).
    assert world.provider.principal({"sub": "repo:evil/fork:environment:prod", "repository": "evil/fork"}) is None


def cross_environment_writes(world: GcpWorld, environment: str) -> Iterator[Need]:
    """What ``environment``'s identity must never do: other stacks, their state, the bootstrap."""
    for stack in world.stacks.values():
        if stack.environment != environment:
            yield from stack_writes(stack.resources)
            for need in state_needs(STATE_BUCKET, PULUMI_PROJECT, stack.name, write=True):
                if is_write(need.permission):
                    yield need
    yield from bootstrap_writes(world)


def bootstrap_writes(world: GcpWorld) -> Iterator[Need]:
    """Taking over any pipeline identity, the state bucket, the secrets key or a project's IAM policy."""
    yield from stack_writes([r for r in world.bootstrap if r.type == "gcp:serviceaccount/account:Account"])
    state = bucket_resource(STATE_BUCKET)
    for permission in ("storage.buckets.setIamPolicy", "storage.buckets.update", "storage.buckets.delete"):
        yield Need(permission, state, "the state bucket")
    key = world.secrets_key()
    for permission in ("cloudkms.cryptoKeys.setIamPolicy", "cloudkms.cryptoKeys.update"):
        yield Need(permission, key, "the secrets key")
    projects = {f"projects/{stack.project}" for stack in world.stacks.values()} | {
        f"projects/{world.bootstrap[0].value('project')}"
    }
    for project in sorted(projects):
        yield Need("resourcemanager.projects.setIamPolicy", project, "project IAM")
        yield Need("iam.roles.update", project, "custom roles")


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_no_environment_can_write_another_or_the_bootstrap(world: GcpWorld, environment: str) -> None:
    assert allowed(world, world.deploy_identity(environment), cross_environment_writes(world, environment)) == []


def test_dev_cannot_make_itself_token_creator_on_prods_account(world: GcpWorld) -> None:
    prod = service_account_resource(world.bootstrap_outputs["GCP_SERVICE_ACCOUNT_PROD"])
    dev = world.deploy_identity("dev")
    assert not evaluate(world.policies, dev, "iam.serviceAccounts.setIamPolicy", prod)
    assert not evaluate(world.policies, dev, "iam.serviceAccounts.getAccessToken", prod)


def readonly_needs(world: GcpWorld) -> Iterator[Need]:
    for stack in world.stacks.values():
        yield from resource_needs(stack.resources, ("read",))  # preview, preview --refresh (drift)
        yield from state_needs(STATE_BUCKET, PULUMI_PROJECT, stack.name, write=False)
    yield Need("cloudkms.cryptoKeyVersions.useToDecrypt", world.secrets_key(), "stack secrets")


def test_readonly_can_preview_and_refresh_every_stack(world: GcpWorld) -> None:
    assert denied(world, world.readonly, readonly_needs(world)) == []


def test_readonly_writes_nothing(world: GcpWorld) -> None:
    writes = [need for environment in ENVIRONMENTS for need in cross_environment_writes(world, environment)]
    own_state = [
        need
        for stack in world.stacks.values()
        for need in state_needs(STATE_BUCKET, PULUMI_PROJECT, stack.name, write=True)
        if is_write(need.permission)
    ]
    assert allowed(world, world.readonly, [*writes, *own_state]) == []
    # And no write permission of the resource's own service on anything it reads (the stacks' resources,
    # the state objects, the key): nothing the table above could have missed.
    for resource in sorted({need.resource for need in readonly_needs(world)}):
        service = _service_of(resource)
        granted = granted_permissions(world.policies, world.readonly, resource)
        service_writes = {
            p
            for p in granted
            if p.startswith(service)
            and not p.rsplit(".", 1)[-1].startswith(("get", "list", "download", "read", "export"))
        }
        assert service_writes <= {"cloudkms.cryptoKeyVersions.useToDecrypt"}, resource


def _service_of(resource: str) -> str:
    for marker, service in (
        ("projects/_/buckets/", "storage."),
        ("/services/", "run."),
        ("/repositories/", "artifactregistry."),
        ("/serviceAccounts/", "iam."),
        ("/cryptoKeys/", "cloudkms."),
    ):
        if marker in resource:
            return service
    raise AssertionError(f"no service for {resource}")


def test_readonly_is_trusted_for_pull_requests_and_the_default_branch_only(world: GcpWorld) -> None:
    account = service_account_resource(world.bootstrap_outputs["GCP_SERVICE_ACCOUNT_READONLY"])
    trusted = [
        github_claims("pull_request", ref="refs/pull/7/merge"),
        github_claims("ref:refs/heads/main", ref="refs/heads/main"),
    ]
    for claims in trusted:
        principal = world.provider.principal(claims)
        assert principal is not None and evaluate(
            world.policies, principal, "iam.serviceAccounts.getAccessToken", account
        ), claims["sub"]
    untrusted = [
        github_claims("ref:refs/heads/feature", ref="refs/heads/feature"),
        github_claims("ref:refs/tags/v1", ref="refs/tags/v1"),
        github_claims("environment:dev", environment="dev"),
    ]
    for claims in untrusted:
        principal = world.provider.principal(claims)
        assert principal is not None
        assert not evaluate(world.policies, principal, "iam.serviceAccounts.getAccessToken", account), claims["sub"]


@pytest.mark.parametrize("name", STACKS)
def test_the_serving_identity_can_read_its_package_and_image_and_nothing_of_other_stacks(
    world: GcpWorld, name: str
) -> None:
    stack = world.stacks[name]
    [account] = [r for r in stack.resources if r.type == "gcp:serviceaccount/account:Account"]
    serving = Principal.service_account(str(account.value("email")))
    bucket, package = _package(stack)
    needs = [
        Need("storage.objects.get", object_resource(bucket, package), "fetch the package (AIP_STORAGE_URI)"),
        Need("artifactregistry.repositories.downloadArtifacts", _repository(stack), "pull the image"),
    ]
    assert denied(world, serving, needs) == []
    for other in world.stacks.values():
        if other.name != name:
            other_bucket, other_package = _package(other)
            assert not evaluate(
                world.policies, serving, "storage.objects.get", object_resource(other_bucket, other_package)
            )
            assert allowed(world, serving, stack_writes(other.resources)) == []
    assert allowed(world, serving, stack_writes(stack.resources)) == []  # it reads; it never writes


# --- the same proofs for Vertex AI stacks ---------------------------------------------------------


def _endpoint(stack: Stack) -> str:
    [endpoint] = [r for r in stack.resources if r.type == "gcp:vertex/aiEndpoint:AiEndpoint"]
    return resource_name(endpoint, "self")


@pytest.mark.parametrize("name", STACKS)
def test_vertex_stacks_deploy_identity_is_allowed_everything_it_needs(name: str) -> None:
    world = vertex_world()
    stack = world.stacks[name]
    bucket, package = _package(stack)
    needs = [
        *resource_needs(stack.resources, ("create", "read", "update", "delete")),
        *state_needs(STATE_BUCKET, PULUMI_PROJECT, stack.name, write=True),
        # model-deploy-verify-gcp on Vertex: GetEndpoint, then Predict with the bundled example.
        Need("aiplatform.endpoints.get", _endpoint(stack), "verify: deployed model and traffic"),
        Need("aiplatform.endpoints.predict", _endpoint(stack), "verify: smoke prediction"),
        Need("storage.objects.get", object_resource(bucket, package), "verify: pull the package"),
    ]
    assert denied(world, world.deploy_identity(stack.environment), needs) == []


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_vertex_stacks_no_environment_can_write_another(environment: str) -> None:
    world = vertex_world()
    assert allowed(world, world.deploy_identity(environment), cross_environment_writes(world, environment)) == []


def test_vertex_stacks_readonly_previews_and_writes_nothing() -> None:
    world = vertex_world()
    assert denied(world, world.readonly, readonly_needs(world)) == []
    writes = [need for environment in ENVIRONMENTS for need in cross_environment_writes(world, environment)]
    assert allowed(world, world.readonly, writes) == []


def test_readonly_reads_every_stacks_history_and_outputs_for_the_plan_and_the_promotion_check(
    world: GcpWorld,
) -> None:
    # deploy.yml's plan (`pulumi stack history`) and preview.yml's promotion check (`pulumi stack
    # output` of gcp-staging) run with GCP_SERVICE_ACCOUNT_READONLY: the checkpoint, the history
    # objects (pulumi/pulumi pkg/backend/diy: history/<project>/<stack>/<stack>-<time>.history.json)
    # and the secrets key.
    needs = [
        need
        for stack in world.stacks.values()
        for need in [
            *state_needs(STATE_BUCKET, PULUMI_PROJECT, stack.name, write=False),
            Need(
                "storage.objects.get",
                object_resource(
                    STATE_BUCKET,
                    f".pulumi/history/{PULUMI_PROJECT}/{stack.name}/{stack.name}-1764921600000000000.history.json",
                ),
                f"history of {stack.name}",
            ),
        ]
    ]
    needs.append(Need("cloudkms.cryptoKeyVersions.useToDecrypt", world.secrets_key(), "stack secrets"))
    assert denied(world, world.readonly, needs) == []


# --- model-deploy-batch on a Vertex stack (dev enables batchJobs) -------------------------------------


def _batch_needs(stack: Stack) -> list[Need]:
    """What ``model-deploy-batch`` asks for with the deploy identity (infra/batch/gcp_jobs.py ``run_gcp_job``).

    Permissions of JobService.CreateBatchPredictionJob / Get / Cancel and of naming a service account
    for the job (https://cloud.google.com/vertex-ai/docs/general/access-control: aiplatform.batchPredictionJobs.*;
    iam.serviceAccounts.actAs on the account the job runs as: https://cloud.google.com/vertex-ai/docs/general/custom-service-account);
    the input and output are listed and read with the caller's rights.
    """
    bucket, _ = _package(stack)
    [account] = [r for r in stack.resources if r.type == "gcp:serviceaccount/account:Account"]
    location = f"projects/{stack.project}/locations/{stack.config['model-deploy:gcp']['region']}"
    job = f"{location}/batchPredictionJobs/1"
    return [
        Need("aiplatform.batchPredictionJobs.create", location, "batch: create the job"),
        Need("aiplatform.batchPredictionJobs.get", job, "batch: follow the job"),
        Need("aiplatform.batchPredictionJobs.cancel", job, "batch: the way out on Ctrl-C"),
        Need("iam.serviceAccounts.actAs", service_account_resource(str(account.value("email"))), "batch: run as it"),
        Need("storage.objects.list", bucket_resource(bucket), "batch: list input and output"),
        Need("storage.objects.get", object_resource(bucket, f"batch/{stack.name}/input/a.jsonl"), "batch: count"),
        Need(
            "storage.objects.get",
            object_resource(bucket, f"batch/{stack.name}/output/prediction-x/prediction.results-00000-of-00001"),
            "batch: check the predictions",
        ),
    ]


def test_vertex_batch_jobs_are_allowed_to_their_environments_deploy_identity_only() -> None:
    world = vertex_world()
    stack = world.stacks["gcp-dev"]
    assert denied(world, world.deploy_identity("dev"), _batch_needs(stack)) == []
    creates = [need for need in _batch_needs(stack) if need.permission.endswith((".create", ".cancel", ".actAs"))]
    for other in ("staging", "prod"):
        assert allowed(world, world.deploy_identity(other), creates) == []
    assert allowed(world, world.readonly, creates) == []


def test_the_vertex_serving_identity_writes_batch_output_under_its_own_prefix_only() -> None:
    world = vertex_world()
    stack = world.stacks["gcp-dev"]
    bucket, package = _package(stack)
    [account] = [r for r in stack.resources if r.type == "gcp:serviceaccount/account:Account"]
    serving = Principal.service_account(str(account.value("email")))
    output = object_resource(bucket, "batch/gcp-dev/output/prediction-x/prediction.results-00000-of-00001")
    assert evaluate(world.policies, serving, "storage.objects.create", output)
    assert evaluate(
        world.policies, serving, "storage.objects.get", object_resource(bucket, "batch/gcp-dev/input/a.jsonl")
    )
    for elsewhere in ("batch/gcp-dev/input/a.jsonl", package, "batch/gcp-dev/outputs-not/x"):
        assert not evaluate(world.policies, serving, "storage.objects.create", object_resource(bucket, elsewhere))
    assert not evaluate(world.policies, serving, "storage.objects.delete", output)  # objectCreator cannot overwrite
    for other in ("gcp-staging", "gcp-prod"):
        other_bucket, _ = _package(world.stacks[other])
        target = object_resource(other_bucket, f"batch/{other}/output/x")
        assert not evaluate(world.policies, serving, "storage.objects.create", target)
