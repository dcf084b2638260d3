"""The offline GCP IAM evaluator itself: hierarchy, roles, conditions, federated principals, deny by default."""

from __future__ import annotations

import pytest

from infra.access.gcp_policy import (
    Policies,
    Principal,
    Role,
    UnsupportedPolicy,
    WorkloadIdentityProvider,
    evaluate,
    granted_permissions,
    predefined_roles,
)

DEV = Principal.service_account("deploy-dev@ops.iam.gserviceaccount.com")
PROD = Principal.service_account("deploy-prod@ops.iam.gserviceaccount.com")
BUCKET = "projects/_/buckets/state"
POOL = "projects/1/locations/global/workloadIdentityPools/github"


def _policies() -> Policies:
    policies = Policies(bucket_projects={BUCKET: "projects/ops"})
    policies.grant(
        BUCKET,
        "roles/storage.objectUser",
        "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com",
        "resource.name.startsWith('projects/_/buckets/state/objects/.pulumi/stacks/p/dev.') || "
        "resource.name.startsWith('projects/_/buckets/state/objects/.pulumi/locks/organization/p/dev/')",
    )
    return policies


def test_nothing_is_allowed_without_a_binding() -> None:
    decision = evaluate(Policies(), DEV, "run.services.create", "projects/dev")
    assert not decision
    assert "no binding" in decision.reason


def test_project_bindings_reach_the_projects_resources_and_no_other_project() -> None:
    policies = Policies()
    policies.grant("projects/dev", "roles/run.admin", "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com")
    service = "projects/dev/locations/europe-west4/services/digits"
    decision = evaluate(policies, DEV, "run.services.update", service)
    assert decision and "inherited from projects/dev" in decision.reason
    assert not evaluate(policies, DEV, "run.services.update", "projects/prod/locations/europe-west4/services/digits")
    assert not evaluate(policies, PROD, "run.services.update", service)
    assert not evaluate(policies, DEV, "resourcemanager.projects.setIamPolicy", "projects/dev")


def test_an_object_prefix_condition_grants_those_objects_only() -> None:
    policies = _policies()
    mine = f"{BUCKET}/objects/.pulumi/stacks/p/dev.json"
    assert evaluate(policies, DEV, "storage.objects.create", mine)
    assert evaluate(
        policies, DEV, "storage.objects.delete", f"{BUCKET}/objects/.pulumi/locks/organization/p/dev/1.json"
    )
    assert not evaluate(policies, DEV, "storage.objects.create", f"{BUCKET}/objects/.pulumi/stacks/p/prod.json")
    assert not evaluate(policies, DEV, "storage.objects.create", f"{BUCKET}/objects/.pulumi/stacks/p/dev2.json")
    # Listing is authorized on the bucket, whose name no object prefix matches.
    assert not evaluate(policies, DEV, "storage.objects.list", BUCKET)


def test_bucket_bindings_are_inherited_by_objects_and_project_bindings_by_buckets() -> None:
    policies = Policies(bucket_projects={BUCKET: "projects/ops"})
    policies.grant(
        "projects/ops", "roles/storage.objectViewer", "serviceAccount:deploy-prod@ops.iam.gserviceaccount.com"
    )
    assert evaluate(policies, PROD, "storage.objects.get", f"{BUCKET}/objects/a")
    assert not evaluate(policies, PROD, "storage.objects.create", f"{BUCKET}/objects/a")
    with pytest.raises(UnsupportedPolicy, match="no project known for bucket"):
        evaluate(policies, PROD, "storage.objects.get", "projects/_/buckets/elsewhere/objects/a")


def test_predefined_role_contents_match_googles_role_data() -> None:
    roles = predefined_roles()
    # Defect 9: the object viewer cannot read the bucket or its IAM policy.
    assert "storage.buckets.get" not in roles["roles/storage.objectViewer"].permissions
    assert "storage.buckets.getIamPolicy" not in roles["roles/storage.objectViewer"].permissions
    assert {"storage.buckets.get", "storage.objects.list"} <= roles["roles/storage.legacyBucketReader"].permissions
    assert "iam.serviceAccounts.getOpenIdToken" in roles["roles/iam.workloadIdentityUser"].permissions
    assert "iam.serviceAccounts.setIamPolicy" in roles["roles/iam.serviceAccountAdmin"].permissions
    assert "run.routes.invoke" in roles["roles/run.admin"].permissions


def test_custom_roles_and_unknown_roles() -> None:
    policies = Policies()
    policies.define_role("projects/dev/roles/accounts", ["iam.serviceAccounts.create"])
    policies.grant(
        "projects/dev", "projects/dev/roles/accounts", "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com"
    )
    assert evaluate(policies, DEV, "iam.serviceAccounts.create", "projects/dev")
    assert not evaluate(
        policies, DEV, "iam.serviceAccounts.setIamPolicy", "projects/dev/serviceAccounts/a@dev.iam.gserviceaccount.com"
    )
    policies.grant("projects/dev", "roles/made.up", "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com")
    with pytest.raises(UnsupportedPolicy, match=r"roles/made\.up"):
        evaluate(policies, DEV, "run.services.get", "projects/dev")


def test_an_incomplete_role_table_cannot_prove_a_denial() -> None:
    policies = Policies()
    policies.custom_roles["roles/partial"] = Role("roles/partial", frozenset({"a.b.get"}), complete=False)
    policies.grant("projects/dev", "roles/partial", "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com")
    assert evaluate(policies, DEV, "a.b.get", "projects/dev")
    with pytest.raises(UnsupportedPolicy, match="incomplete"):
        evaluate(policies, DEV, "a.b.delete", "projects/dev")


@pytest.mark.parametrize(
    ("condition", "name", "expected"),
    [
        ("resource.name == 'projects/_/buckets/b'", "projects/_/buckets/b", True),
        ("resource.name != 'projects/_/buckets/b'", "projects/_/buckets/b", False),
        ("!(resource.name.startsWith('projects/_/buckets/b/objects/x'))", "projects/_/buckets/b/objects/y", True),
        (
            "resource.type == 'storage.googleapis.com/Object' && resource.name.startsWith(\"projects/_/buckets/b/\")",
            "projects/_/buckets/b/objects/y",
            True,
        ),
        ("resource.type == 'storage.googleapis.com/Object'", "projects/_/buckets/b", False),
        ("false || (true && resource.name.startsWith('projects/_/buckets/b'))", "projects/_/buckets/b", True),
    ],
)
def test_conditions(condition: str, name: str, expected: bool) -> None:
    policies = Policies(bucket_projects={"projects/_/buckets/b": "projects/p"})
    policies.grant(
        "projects/_/buckets/b",
        "roles/storage.objectViewer",
        "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com",
        condition,
    )
    assert bool(evaluate(policies, DEV, "storage.objects.get", name)) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "resource.name.endsWith('x')",  # a function not modelled
        "request.time < timestamp('2030-01-01T00:00:00Z')",  # an attribute not modelled
        "resource.name.startsWith('a'",  # malformed
    ],
)
def test_conditions_it_cannot_read_are_refused_not_guessed(condition: str) -> None:
    policies = Policies(bucket_projects={"projects/_/buckets/b": "projects/p"})
    policies.grant(
        "projects/_/buckets/b",
        "roles/storage.objectViewer",
        "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com",
        condition,
    )
    with pytest.raises(UnsupportedPolicy):
        evaluate(policies, DEV, "storage.objects.get", "projects/_/buckets/b/objects/o")


def test_resource_conditions_outside_cloud_storage_are_refused() -> None:
    policies = Policies()
    policies.grant(
        "projects/p",
        "roles/run.admin",
        "serviceAccount:deploy-dev@ops.iam.gserviceaccount.com",
        "resource.name.startsWith('x')",
    )
    with pytest.raises(UnsupportedPolicy, match="Cloud Storage only"):
        evaluate(policies, DEV, "run.services.get", "projects/p/locations/r/services/s")


def test_federated_principals_follow_the_providers_mapping_and_condition() -> None:
    provider = WorkloadIdentityProvider(
        POOL,
        {
            "google.subject": "assertion.sub",
            "attribute.repository": "assertion.repository",
            "attribute.ref": "assertion.ref",
        },
        "assertion.repository == 'acme/model-deploy'",
    )
    claims = {
        "sub": "repo:acme/model-deploy:pull_request",
        "repository": "acme/model-deploy",
        "ref": "refs/pull/1/merge",
    }
    principal = provider.principal(claims)
    assert principal is not None
    assert f"principal://iam.googleapis.com/{POOL}/subject/repo:acme/model-deploy:pull_request" in principal.members
    assert f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/acme/model-deploy" in principal.members
    assert provider.principal({**claims, "repository": "evil/fork"}) is None
    account = "projects/ops/serviceAccounts/readonly@ops.iam.gserviceaccount.com"
    policies = Policies()
    policies.grant(
        account,
        "roles/iam.workloadIdentityUser",
        f"principal://iam.googleapis.com/{POOL}/subject/repo:acme/model-deploy:pull_request",
    )
    assert evaluate(policies, principal, "iam.serviceAccounts.getAccessToken", account)
    feature = provider.principal({**claims, "sub": "repo:acme/model-deploy:ref:refs/heads/feature"})
    assert feature is not None
    assert not evaluate(policies, feature, "iam.serviceAccounts.getAccessToken", account)
    with pytest.raises(UnsupportedPolicy, match="only assertion"):
        WorkloadIdentityProvider(POOL, {"google.subject": "assertion.sub + 'x'"}).principal(claims)


def test_granted_permissions_apply_conditions() -> None:
    policies = _policies()
    assert "storage.objects.create" in granted_permissions(policies, DEV, f"{BUCKET}/objects/.pulumi/stacks/p/dev.json")
    assert granted_permissions(policies, DEV, f"{BUCKET}/objects/.pulumi/stacks/p/prod.json") == frozenset()
