"""The bootstrap program (``infra/bootstrap``) under Pulumi's mocks: state backends, OIDC trust, scoped IAM."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from infra.bootstrap import deploy, from_pulumi, parse_config
from infra.config import ConfigError
from tests.infra.bootstrap_runs import OIDC_ARN, POOL, BootstrapMocks, bootstrap
from tests.infra.mocks import ACCOUNT_ID, Deployment, RecordingMonitor, json_input, run_program

REPO = "acme/model-deploy"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


AWS = {"githubRepository": REPO, "cloud": "aws", "aws": {"stateBucketName": "acme-pulumi-state"}}
# Each environment in its own project: the bootstrap refuses deploy accounts in its own or a shared project.
GCP_PROJECTS = {"dev": "acme-ml-dev", "staging": "acme-ml-staging", "prod": "acme-ml-prod"}
GCP = {
    "githubRepository": REPO,
    "cloud": "gcp",
    "gcp": {"project": "acme-ml", "stateBucketName": "acme-pulumi-state", "environmentProjects": GCP_PROJECTS},
}


@pytest.fixture(scope="module")
def aws_run() -> Deployment:
    return bootstrap(AWS)


@pytest.fixture(scope="module")
def gcp_run() -> Deployment:
    return bootstrap(GCP)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- AWS --------------------------------------------------------------------------------------------


def test_aws_state_bucket_is_versioned_encrypted_and_private(aws_run: Deployment) -> None:
    bucket = aws_run.one("aws:s3/bucket:Bucket", "state-bucket")
    assert bucket.inputs["bucket"] == "acme-pulumi-state"
    assert bucket.protect
    versioning = aws_run.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    (rule,) = aws_run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs["rules"]
    key = aws_run.one("aws:kms/key:Key", "state-key")
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == key.state["arn"]
    block = aws_run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[flag] is True
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    policy = json_input(aws_run.one("aws:s3/bucketPolicy:BucketPolicy"), "policy")
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert aws_run.outputs["PULUMI_BACKEND_URL_AWS"] == "s3://acme-pulumi-state"


def test_aws_state_bucket_is_hardened_as_the_artifact_store_is(aws_run: Deployment) -> None:
    # Both buckets hold what every deployment depends on; they once were two copies of the same
    # resources and drifted (the state bucket accepted SSE-C uploads and kept abandoned uploads).
    from tests.infra.aws_stacks import minimal_dev

    store = run_program(minimal_dev(), stack="dev")

    def hardening(run: Deployment) -> dict[str, Any]:
        def settings(type_: str) -> dict[str, Any]:
            return {name: value for name, value in run.one(type_).inputs.items() if name != "bucket"}

        (rule,) = settings(ENCRYPTION)["rules"]
        (lifecycle,) = settings(LIFECYCLE)["rules"]
        return {
            "ownership": settings("aws:s3/bucketOwnershipControls:BucketOwnershipControls"),
            "public_access": settings("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"),
            "versioning": settings("aws:s3/bucketVersioning:BucketVersioning"),
            "encryption": {
                **rule,
                "applyServerSideEncryptionByDefault": rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"],
            },
            "abandoned_uploads": lifecycle["abortIncompleteMultipartUpload"],
            "key_rotation": run.one("aws:kms/key:Key").inputs["enableKeyRotation"],
            "key_deletion_window": run.one("aws:kms/key:Key").inputs["deletionWindowInDays"],
        }

    assert hardening(aws_run) == hardening(store)

    def denials(run: Deployment) -> dict[str, Any]:
        policy = json_input(run.one("aws:s3/bucketPolicy:BucketPolicy"), "policy")
        return {statement["Sid"]: statement for statement in policy["Statement"] if statement["Effect"] == "Deny"}

    state, artifacts = denials(aws_run), denials(store)
    assert (
        state.keys()
        == artifacts.keys()
        == {"DenyInsecureTransport", "DenyNonKmsEncryption", "DenyOtherOrUnnamedKmsKeys"}
    )
    named = state["DenyOtherOrUnnamedKmsKeys"]["Condition"]["StringNotEquals"]
    assert named == {"s3:x-amz-server-side-encryption-aws-kms-key-id": aws_run.one("aws:kms/key:Key").state["arn"]}
    (state_rule,) = aws_run.one(LIFECYCLE).inputs["rules"]
    # Pulumi writes the state object at every step of an update: old versions are recoveries, for a while.
    assert state_rule["noncurrentVersionExpiration"]["noncurrentDays"] == 90
    assert aws_run.one(LIFECYCLE).depends_on(aws_run.one("aws:s3/bucketVersioning:BucketVersioning"))


def test_aws_secrets_key_rotates(aws_run: Deployment) -> None:
    key = aws_run.one("aws:kms/key:Key", "state-key")
    assert key.inputs["enableKeyRotation"] is True
    assert (
        aws_run.outputs["PULUMI_SECRETS_PROVIDER_AWS"]
        == f"awskms:///{key.state['arn']}?region=eu-west-1"  # by ARN: roles of other accounts use it too
    )


def test_aws_github_oidc_provider(aws_run: Deployment) -> None:
    provider = aws_run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert provider["url"] == "https://token.actions.githubusercontent.com"
    assert provider["clientIdLists"] == ["sts.amazonaws.com"]


def test_aws_reuses_an_existing_github_oidc_provider() -> None:
    # IAM allows one provider per URL per account: with oidcProvider existing the bootstrap creates
    # none, looks the account's up by GitHub's URL, and the roles trust that one.
    run = bootstrap({**AWS, "aws": {**AWS["aws"], "oidcProvider": "existing"}})
    assert run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    assert "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider" in run.calls
    for role in ("dev", "staging", "prod", "readonly"):
        trust = json_input(run.one("aws:iam/role:Role", f"{role}-role"), "assumeRolePolicy")
        assert [s["Principal"] for s in trust["Statement"]] == [{"Federated": OIDC_ARN}]


@pytest.mark.parametrize(
    ("role", "subjects"),
    [
        ("dev", [f"repo:{REPO}:environment:dev"]),
        ("staging", [f"repo:{REPO}:environment:staging"]),
        ("prod", [f"repo:{REPO}:environment:prod"]),
        ("readonly", [f"repo:{REPO}:pull_request", f"repo:{REPO}:ref:refs/heads/main"]),
    ],
)
def test_aws_trust_policy_is_this_repository_and_environment(
    aws_run: Deployment, role: str, subjects: list[str]
) -> None:
    trust = json_input(aws_run.one("aws:iam/role:Role", f"{role}-role"), "assumeRolePolicy")
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Federated": OIDC_ARN}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement["Condition"]
    assert set(condition) <= {"StringEquals", "StringLike"}
    assert condition["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    found = [
        subject
        for operator in condition.values()
        for subject in _as_list(operator.get("token.actions.githubusercontent.com:sub", []))
    ]
    assert sorted(found) == sorted(subjects)
    assert all("*" not in subject and "?" not in subject for subject in found)
    assert aws_run.outputs[f"AWS_ROLE_ARN_{role.upper()}"].endswith(f":role/github-model-deploy-{role}")


def test_aws_role_policies_have_no_wildcard_actions(aws_run: Deployment) -> None:
    policies = aws_run.of_type("aws:iam/rolePolicy:RolePolicy")
    assert len(policies) == 4
    for policy in policies:
        for statement in json_input(policy, "policy")["Statement"]:
            assert statement["Effect"] == "Allow"
            for action in _as_list(statement["Action"]):
                assert "*" not in action, (policy.name, action)
            assert "NotAction" not in statement and "NotResource" not in statement


def test_aws_deploy_role_passes_only_its_environments_roles_to_sagemaker(aws_run: Deployment) -> None:
    statements = json_input(aws_run.one("aws:iam/rolePolicy:RolePolicy", "prod-policy"), "policy")["Statement"]
    by_action = {action: s for s in statements for action in _as_list(s["Action"])}
    passrole = by_action["iam:PassRole"]
    assert passrole["Resource"] == [f"arn:aws:iam::{ACCOUNT_ID}:role/model-deploy/prod/*"]
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert by_action["iam:PutRolePolicy"]["Resource"] == [f"arn:aws:iam::{ACCOUNT_ID}:role/model-deploy/prod/*"]
    # The deploy roles themselves are outside the path they manage: none can rewrite its own policy.
    assert "/model-deploy/" not in aws_run.outputs["AWS_ROLE_ARN_PROD"]


@pytest.mark.parametrize("role", ["dev", "staging", "prod"])
def test_aws_deploy_roles_can_push_the_serving_image(aws_run: Deployment, role: str) -> None:
    # The image workflow pushes with dev's role; promotion copies the image with the target's.
    statements = json_input(aws_run.one("aws:iam/rolePolicy:RolePolicy", f"{role}-policy"), "policy")["Statement"]
    by_action = {action: s for s in statements for action in _as_list(s["Action"])}
    for action in (
        "ecr:GetAuthorizationToken",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:BatchCheckLayerAvailability",
    ):
        assert action in by_action, action
    assert by_action["ecr:PutImage"]["Resource"] == [f"arn:aws:ecr:*:{ACCOUNT_ID}:repository/*"]
    readonly = json_input(aws_run.one("aws:iam/rolePolicy:RolePolicy", "readonly-policy"), "policy")["Statement"]
    assert not {a for s in readonly for a in _as_list(s["Action"])} & {"ecr:PutImage", "ecr:UploadLayerPart"}


def test_environments_are_configurable() -> None:
    run = bootstrap({**AWS, "environments": ["dev", "prod"]})
    assert {role.name for role in run.of_type("aws:iam/role:Role")} == {"dev-role", "prod-role", "readonly-role"}
    assert "AWS_ROLE_ARN_STAGING" not in run.outputs


# --- GCP --------------------------------------------------------------------------------------------


def test_gcp_state_bucket(gcp_run: Deployment) -> None:
    bucket = gcp_run.one("gcp:storage/bucket:Bucket", "state-bucket").inputs
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}
    assert gcp_run.outputs["PULUMI_BACKEND_URL_GCP"] == "gs://acme-pulumi-state"


def test_gcp_provider_accepts_only_this_repository(gcp_run: Deployment) -> None:
    provider = gcp_run.one("gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider").inputs
    assert provider["attributeCondition"] == f"assertion.repository == '{REPO}'"
    assert provider["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    mapping = provider["attributeMapping"]
    assert mapping["attribute.repository"] == "assertion.repository"
    assert mapping["attribute.environment"] == "assertion.environment"
    assert gcp_run.outputs["GCP_WORKLOAD_IDENTITY_PROVIDER"] == f"{POOL}/providers/github"


@pytest.mark.parametrize(
    ("name", "member"),
    [
        ("prod", f"principal://iam.googleapis.com/{POOL}/subject/repo:{REPO}:environment:prod"),
        ("staging", f"principal://iam.googleapis.com/{POOL}/subject/repo:{REPO}:environment:staging"),
        ("readonly", f"principal://iam.googleapis.com/{POOL}/subject/repo:{REPO}:pull_request"),
    ],
)
def test_gcp_workload_identity_user(gcp_run: Deployment, name: str, member: str) -> None:
    binding = gcp_run.one("gcp:serviceaccount/iAMMember:IAMMember", f"{name}-workload-identity").inputs
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert binding["member"] == member
    email = gcp_run.outputs[f"GCP_SERVICE_ACCOUNT_{name.upper()}"]
    assert email == f"github-model-deploy-{name}@acme-ml.iam.gserviceaccount.com"
    assert binding["serviceAccountId"].endswith(email)


def test_gcp_project_roles_are_limited(gcp_run: Deployment) -> None:
    allowed = {
        "roles/run.admin",
        "roles/aiplatform.user",
        "roles/storage.admin",
        "roles/artifactregistry.admin",
        "roles/run.viewer",
        "roles/aiplatform.viewer",
        "roles/artifactregistry.reader",
        "roles/iam.serviceAccountViewer",
        *(
            f"projects/{p}/roles/{r}"
            for p in GCP_PROJECTS.values()
            for r in ("modelDeployRuntimeAccounts", "modelDeployRefresh")
        ),
    }
    roles = {binding.inputs["role"] for binding in gcp_run.of_type("gcp:projects/iAMMember:IAMMember")}
    assert roles <= allowed
    assert not roles & {
        "roles/owner",
        "roles/editor",
        "roles/iam.securityAdmin",
        "roles/resourcemanager.projectIamAdmin",
        "roles/iam.serviceAccountAdmin",
        "roles/iam.serviceAccountUser",
    }


GCP_APIS = {
    "run.googleapis.com",
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "logging.googleapis.com",
}
SECRETS_KEY_ID = "projects/acme-ml/locations/global/keyRings/model-deploy/cryptoKeys/pulumi-secrets"


def test_gcp_enables_the_apis_and_never_disables_them(gcp_run: Deployment) -> None:
    services = gcp_run.of_type("gcp:projects/service:Service")
    assert {service.inputs["service"] for service in services} == GCP_APIS
    for service in services:
        assert service.inputs["project"] in ("acme-ml", *GCP_PROJECTS.values())
        # Destroying the bootstrap must leave every API on: running services depend on them.
        assert service.inputs["disableOnDestroy"] is False, service.name
        assert service.inputs.get("disableDependentServices") is not True, service.name
    # The bootstrap's own resources wait for their APIs.
    by_api = {s.inputs["service"]: s for s in services if s.inputs["project"] == "acme-ml"}
    assert gcp_run.one("gcp:iam/workloadIdentityPool:WorkloadIdentityPool").depends_on(by_api["iam.googleapis.com"])
    assert gcp_run.one("gcp:kms/keyRing:KeyRing").depends_on(by_api["cloudkms.googleapis.com"])
    assert gcp_run.one("gcp:storage/bucket:Bucket", "state-bucket").depends_on(by_api["storage.googleapis.com"])


def test_gcp_secrets_key_rotates_and_cannot_be_destroyed(gcp_run: Deployment) -> None:
    ring = gcp_run.one("gcp:kms/keyRing:KeyRing")
    assert ring.inputs == {"name": "model-deploy", "project": "acme-ml", "location": "global"}
    assert ring.protect
    key = gcp_run.one("gcp:kms/cryptoKey:CryptoKey")
    assert key.inputs["keyRing"] == "projects/acme-ml/locations/global/keyRings/model-deploy"
    assert key.inputs["purpose"] == "ENCRYPT_DECRYPT"
    assert key.inputs["rotationPeriod"] == "7776000s"  # 90 days
    assert key.inputs["deletionPolicy"] == "PREVENT"
    assert key.protect
    assert gcp_run.outputs["PULUMI_SECRETS_PROVIDER_GCP"] == f"gcpkms://{SECRETS_KEY_ID}"


def test_gcp_secrets_key_iam_is_on_the_key_only_for_the_pipeline_accounts(gcp_run: Deployment) -> None:
    bindings = gcp_run.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert all(binding.inputs["cryptoKeyId"] == SECRETS_KEY_ID for binding in bindings)
    members = {binding.inputs["member"]: binding.inputs["role"] for binding in bindings}
    assert len(members) == len(bindings)  # one role per account
    account = "serviceAccount:github-model-deploy-{}@acme-ml.iam.gserviceaccount.com"
    assert members == {
        account.format("dev"): "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        account.format("staging"): "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        account.format("prod"): "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        # Previews and drift checks decrypt the stack's data key; they never create a stack.
        account.format("readonly"): "roles/cloudkms.cryptoKeyDecrypter",
    }
    # Nothing reaches KMS more widely: no key-ring or project-level KMS grant.
    assert not gcp_run.of_type("gcp:kms/keyRingIAMMember:KeyRingIAMMember")
    project_roles = {binding.inputs["role"] for binding in gcp_run.of_type("gcp:projects/iAMMember:IAMMember")}
    assert not {role for role in project_roles if role.startswith("roles/cloudkms.")}


def test_gcp_kms_location_is_configurable() -> None:
    run = bootstrap({**GCP, "gcp": {**GCP["gcp"], "kmsLocation": "europe-west4"}})
    assert run.one("gcp:kms/keyRing:KeyRing").inputs["location"] == "europe-west4"
    assert run.outputs["PULUMI_SECRETS_PROVIDER_GCP"].startswith(
        "gcpkms://projects/acme-ml/locations/europe-west4/keyRings/model-deploy/cryptoKeys/"
    )


def test_gcp_environments_in_their_own_projects() -> None:
    projects = {"dev": "acme-ml-dev", "staging": "acme-ml-staging", "prod": "acme-ml-prod"}
    run = bootstrap({**GCP, "gcp": {**GCP["gcp"], "environmentProjects": projects}})
    enabled = {(s.inputs["project"], s.inputs["service"]) for s in run.of_type("gcp:projects/service:Service")}
    assert enabled == {(project, api) for project in ("acme-ml", *projects.values()) for api in GCP_APIS}
    grants: dict[str, set[str]] = {}
    for binding in run.of_type("gcp:projects/iAMMember:IAMMember"):
        account = binding.inputs["member"].split(":")[1].split("@")[0].removeprefix("github-model-deploy-")
        grants.setdefault(account, set()).add(binding.inputs["project"])
    # Each deploy account holds roles in its own environment's project only; previews read all three.
    assert grants == {**{env: {project} for env, project in projects.items()}, "readonly": set(projects.values())}
    # State, key and identities stay in the bootstrap's project; every account may lock the state.
    assert run.one("gcp:storage/bucket:Bucket", "state-bucket").inputs["project"] == "acme-ml"
    state = {b.inputs["member"] for b in run.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")}
    assert state == {
        f"serviceAccount:github-model-deploy-{n}@acme-ml.iam.gserviceaccount.com" for n in [*projects, "readonly"]
    }


# --- the outputs are the repository variables the workflows read -------------------------------------

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_every_variable_output_is_read_by_a_workflow(aws_run: Deployment, gcp_run: Deployment, cloud: str) -> None:
    text = "\n".join(path.read_text() for path in sorted(WORKFLOWS.glob("*.yml")))
    read = set(re.findall(r"vars\.([A-Z0-9_]+)", text))
    # vars[format('AWS_ROLE_ARN_{0}', inputs.credentials)] with `credentials: STAGING` in a caller.
    for prefix in re.findall(r"format\('([A-Z0-9_]+)\{0\}'", text):
        read |= {prefix + suffix for suffix in re.findall(r"credentials: ([A-Z]+)", text)}
    # pulumi-stack.yml turns READONLY into READONLY_<ENV> for AWS, <ENV> from the stack name.
    if 'echo "variable=READONLY_${environment^^}"' in text:
        read |= {f"AWS_ROLE_ARN_READONLY_{env.upper()}" for env in re.findall(r"stack: aws-([a-z0-9]+)", text)}
    outputs = (aws_run if cloud == "aws" else gcp_run).outputs
    variables = {name for name in outputs if name.isupper()}
    assert f"PULUMI_SECRETS_PROVIDER_{cloud.upper()}" in variables
    assert variables <= read, f"outputs no workflow reads: {sorted(variables - read)}"


# --- config errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"cloud": "aws", "aws": {"stateBucketName": "b-b-b"}}, "model-deploy-bootstrap:githubRepository"),
        ({**AWS, "githubRepository": "acme/*"}, "model-deploy-bootstrap:githubRepository"),
        ({**AWS, "githubRepository": "model-deploy"}, "model-deploy-bootstrap:githubRepository"),
        ({**AWS, "cloud": "azure"}, "model-deploy-bootstrap:cloud"),
        ({**AWS, "environments": ["dev", "Prod!"]}, "model-deploy-bootstrap:environments"),
        ({**AWS, "environments": ["readonly"]}, "model-deploy-bootstrap:environments"),
        ({**AWS, "environments": []}, "model-deploy-bootstrap:environments"),
        ({**AWS, "aws": {"stateBucketName": "Bad_Bucket"}}, "model-deploy-bootstrap:aws.stateBucketName"),
        ({**AWS, "aws": {}}, "model-deploy-bootstrap:aws.stateBucketName"),
        ({**AWS, "aws": {"stateBucketName": "okay-bucket", "extra": 1}}, "model-deploy-bootstrap:aws.extra"),
        ({"githubRepository": REPO, "cloud": "gcp"}, "model-deploy-bootstrap:gcp"),
        ({**GCP, "gcp": {"stateBucketName": "okay-bucket"}}, "model-deploy-bootstrap:gcp.project"),
        ({**GCP, "gcp": {**GCP["gcp"], "kmsLocation": "Europe West"}}, "model-deploy-bootstrap:gcp.kmsLocation"),
        (
            {**GCP, "gcp": {**GCP["gcp"], "environmentProjects": {"qa": "acme-ml-qa"}}},
            "model-deploy-bootstrap:gcp.environmentProjects.qa",
        ),
        (
            {**GCP, "gcp": {**GCP["gcp"], "environmentProjects": {"dev": "Acme Dev"}}},
            "model-deploy-bootstrap:gcp.environmentProjects.dev",
        ),
        ({**AWS, "region": "x"}, "model-deploy-bootstrap:region"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(values)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{key}:"), text


def test_config_defaults() -> None:
    config = parse_config(AWS)
    assert config.environments == ("dev", "staging", "prod")
    assert config.environment_subject("prod") == f"repo:{REPO}:environment:prod"


def test_bad_config_declares_nothing() -> None:
    monitor = RecordingMonitor(BootstrapMocks())
    with pytest.raises(Exception, match=r"model-deploy-bootstrap:aws.stateBucketName"):
        run_program(
            {
                "model-deploy-bootstrap:githubRepository": REPO,
                "model-deploy-bootstrap:cloud": "aws",
                "model-deploy-bootstrap:aws": {},
            },
            stack="bootstrap",
            program=lambda: print(deploy(from_pulumi())),
            monitor=monitor,
        )
    assert monitor.registered == []
