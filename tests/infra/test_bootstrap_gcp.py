"""The GCP bootstrap's identities (issue 10): one project per environment, grants scoped to what each job does.

What these identities may and may not do is proven by the evaluator in ``test_gcp_access.py``;
these tests pin the declarations themselves: the refused layouts, the roles, the state condition.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.bootstrap.gcp import (
    RUNTIME_ACCOUNTS_PERMISSIONS,
    RUNTIME_ACCOUNTS_ROLE_ID,
    state_condition,
    state_object_prefixes,
)
from infra.config import ConfigError
from tests.infra.gcp_access import BOOTSTRAP_PROJECT, STATE_BUCKET, bootstrap_values
from tests.infra.mocks import Deployment, RecordingMonitor
from tests.infra.test_bootstrap import POOL, REPO, BootstrapMocks, bootstrap

PROJECTS = {"dev": "acme-ml-dev", "staging": "acme-ml-staging", "prod": "acme-ml-prod"}
ACCOUNT = "serviceAccount:github-model-deploy-{}@acme-ml-ops.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def run() -> Deployment:
    return bootstrap(bootstrap_values(PROJECTS))


def _refused(values: dict[str, Any]) -> tuple[str, list[str]]:
    from infra.bootstrap import deploy, from_pulumi
    from tests.infra.mocks import run_program

    monitor = RecordingMonitor(BootstrapMocks())

    def program() -> None:
        deploy(from_pulumi())

    config = {f"model-deploy-bootstrap:{key}": value for key, value in values.items()}
    with pytest.raises(Exception) as caught:
        run_program(config, stack="bootstrap", program=program, monitor=monitor)
    error: BaseException = caught.value
    while not isinstance(error, ConfigError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, ConfigError), repr(caught.value)
    return str(error), [resource.type for resource in monitor.registered]


def test_a_deploy_account_in_the_bootstrap_project_is_refused() -> None:
    # The default layout before issue 10: every environment in the project of the state, the key and
    # prod's deploy account, where dev's project roles let it grant itself token-creator on prod's.
    message, declared = _refused(
        {"githubRepository": REPO, "cloud": "gcp", "gcp": {"project": "acme-ml", "stateBucketName": STATE_BUCKET}}
    )
    assert message.startswith("model-deploy-bootstrap:gcp.environmentProjects.dev: ")
    assert "not the bootstrap's project 'acme-ml'" in message
    assert "\n" not in message
    assert declared == []  # refused before anything is declared


def test_environments_sharing_a_project_are_refused() -> None:
    values = bootstrap_values({"dev": "acme-ml-nonprod", "staging": "acme-ml-nonprod", "prod": "acme-ml-prod"})
    message, declared = _refused(values)
    assert message.startswith("model-deploy-bootstrap:gcp.environmentProjects.staging: 'acme-ml-nonprod'")
    assert "also dev's project" in message
    assert declared == []


def _project_roles(run: Deployment) -> dict[str, set[tuple[str, str]]]:
    roles: dict[str, set[tuple[str, str]]] = {}
    for binding in run.of_type("gcp:projects/iAMMember:IAMMember"):
        roles.setdefault(binding.inputs["member"], set()).add((binding.inputs["project"], binding.inputs["role"]))
    return roles


def test_deploy_accounts_hold_roles_in_their_own_project_only_and_no_iam_admin(run: Deployment) -> None:
    roles = _project_roles(run)
    for environment, project in PROJECTS.items():
        granted = roles[ACCOUNT.format(environment)]
        assert {where for where, _ in granted} == {project}
        names = {role for _, role in granted}
        assert names == {
            "roles/run.admin",
            "roles/aiplatform.user",
            "roles/storage.admin",
            "roles/artifactregistry.admin",
            f"projects/{project}/roles/{RUNTIME_ACCOUNTS_ROLE_ID}",
        }
    everything = {role for granted in roles.values() for _, role in granted}
    assert not everything & {
        "roles/iam.serviceAccountAdmin",
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
        "roles/resourcemanager.projectIamAdmin",
        "roles/owner",
        "roles/editor",
    }
    # Nobody the bootstrap creates holds any role on the bootstrap's own project.
    assert all(where != BOOTSTRAP_PROJECT for granted in roles.values() for where, _ in granted)


def test_runtime_account_role_creates_and_attaches_but_never_changes_iam(run: Deployment) -> None:
    custom = [
        r
        for r in run.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")
        if r.inputs["roleId"] == RUNTIME_ACCOUNTS_ROLE_ID
    ]
    assert {role.inputs["project"] for role in custom} == set(PROJECTS.values())
    for role in custom:
        assert set(role.inputs["permissions"]) == set(RUNTIME_ACCOUNTS_PERMISSIONS)
    assert "iam.serviceAccounts.setIamPolicy" not in RUNTIME_ACCOUNTS_PERMISSIONS
    assert not [p for p in RUNTIME_ACCOUNTS_PERMISSIONS if "Key" in p or "Token" in p or "sign" in p]


def test_each_deploy_account_writes_only_its_own_stacks_state(run: Deployment) -> None:
    state = [
        b for b in run.of_type("gcp:storage/bucketIAMMember:BucketIAMMember") if b.inputs["bucket"] == STATE_BUCKET
    ]
    for environment in PROJECTS:
        mine: dict[str, Any] = {
            b.inputs["role"]: b.inputs.get("condition")
            for b in state
            if b.inputs["member"] == ACCOUNT.format(environment)
        }
        assert set(mine) == {
            "roles/storage.objectUser",
            "roles/storage.objectViewer",
            "roles/storage.legacyBucketReader",
        }
        expression = mine["roles/storage.objectUser"]["expression"]
        assert expression == state_condition(STATE_BUCKET, state_object_prefixes(f"gcp-{environment}"))
        assert f"/objects/.pulumi/stacks/model-deploy/gcp-{environment}.'" in expression
        assert f"/objects/.pulumi/locks/organization/model-deploy/gcp-{environment}/'" in expression
        assert mine["roles/storage.objectViewer"]["expression"].endswith("/objects/.pulumi/meta.yaml'")
        assert mine["roles/storage.legacyBucketReader"] is None  # listing is authorized on the bucket
    readonly = {
        b.inputs["role"]: b.inputs.get("condition") for b in state if b.inputs["member"] == ACCOUNT.format("readonly")
    }
    assert readonly == {"roles/storage.objectViewer": None}  # previews read, never lock


def test_readonly_is_trusted_by_subject_for_pull_requests_and_main(run: Deployment) -> None:
    members = {
        b.inputs["member"]
        for b in run.of_type("gcp:serviceaccount/iAMMember:IAMMember")
        if b.inputs["serviceAccountId"].endswith("github-model-deploy-readonly@acme-ml-ops.iam.gserviceaccount.com")
    }
    assert members == {
        f"principal://iam.googleapis.com/{POOL}/subject/repo:{REPO}:pull_request",
        f"principal://iam.googleapis.com/{POOL}/subject/repo:{REPO}:ref:refs/heads/main",
    }


def test_readonly_can_read_the_stores_bucket_and_iam_policies(run: Deployment) -> None:
    roles = _project_roles(run)[ACCOUNT.format("readonly")]
    assert {where for where, _ in roles} == set(PROJECTS.values())
    refresh = [
        r for r in run.of_type("gcp:projects/iAMCustomRole:IAMCustomRole") if r.inputs["roleId"] == "modelDeployRefresh"
    ]
    assert len(refresh) == 3
    assert set(refresh[0].inputs["permissions"]) == {
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "artifactregistry.repositories.getIamPolicy",
    }


def test_outputs_still_name_every_account(run: Deployment) -> None:
    for name in ("DEV", "STAGING", "PROD", "READONLY"):
        assert (
            run.outputs[f"GCP_SERVICE_ACCOUNT_{name}"]
            == f"github-model-deploy-{name.lower()}@acme-ml-ops.iam.gserviceaccount.com"
        )
