"""GCP bootstrap: APIs, state bucket and secrets key, Workload Identity pool, per-environment service accounts."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Final

import pulumi

from infra.bootstrap.config import GITHUB_OIDC_URL, IDENTITY_PREFIX, PROJECT, READONLY, BootstrapConfig, variable

#: Project roles of a deploy service account, and why each is needed (the GCP program's resources).
GCP_DEPLOY_ROLES: Final[Mapping[str, str]] = {
    "roles/run.admin": "Cloud Run services of the serving image (create, update traffic, delete)",
    "roles/aiplatform.user": "Vertex AI endpoints and model deployments",
    "roles/storage.admin": "the artifact bucket (IAM, lifecycle, versioning); the state bucket is granted apart",
    "roles/artifactregistry.admin": "the image repository and its IAM bindings",
    "roles/iam.serviceAccountUser": "deploy Cloud Run / Vertex with the runtime service account (actAs)",
    "roles/iam.serviceAccountAdmin": "the runtime service account the GCP program creates (infra/gcp/iam.py)",
}
#: Project roles of the read-only (preview / drift) service account.
GCP_READONLY_ROLES: Final[Mapping[str, str]] = {
    "roles/run.viewer": "read Cloud Run services",
    "roles/aiplatform.viewer": "read Vertex AI endpoints",
    "roles/artifactregistry.reader": "read the image repository",
    "roles/iam.serviceAccountViewer": "read the runtime service account",
    "roles/storage.objectViewer": "read the artifact store objects",
}


#: APIs enabled in the project, and who calls them. monitoring.googleapis.com is not among them:
#: the GCP program declares no alert policy or dashboard yet (add it together with those).
#: serviceusage.googleapis.com, which enables the others, is on in every project.
GCP_SERVICES: Final[Mapping[str, str]] = {
    "run.googleapis.com": "Cloud Run services (infra/gcp/cloud_run.py)",
    "aiplatform.googleapis.com": "Vertex AI endpoints and model deployments (infra/gcp/vertex*.py)",
    "artifactregistry.googleapis.com": "the image repository; model-deploy-promote's digest check",
    "storage.googleapis.com": "the package bucket and the Pulumi state bucket",
    "iam.googleapis.com": "service accounts (runtime and deploy) and the Workload Identity pool",
    "iamcredentials.googleapis.com": "GitHub Actions impersonating the deploy accounts; identity tokens for verify",
    "sts.googleapis.com": "exchanging GitHub's OIDC tokens (Workload Identity Federation)",
    "cloudkms.googleapis.com": "the stack-secrets key; the optional CMEK of the package bucket and Vertex",
    "cloudresourcemanager.googleapis.com": "project IAM bindings of the deploy accounts (get/setIamPolicy)",
    "logging.googleapis.com": "container and request logs of Cloud Run and Vertex AI",
}
SECRETS_KEY_RING: Final = "model-deploy"
SECRETS_KEY: Final = "pulumi-secrets"
#: Rotation of the stack-secrets key: a new primary version every 90 days (old ones still decrypt).
SECRETS_KEY_ROTATION: Final = f"{90 * 24 * 3600}s"
#: Deploys create stacks (wrapping a new data key: encrypt) and read them; previews only read.
SECRETS_DEPLOY_ROLE: Final = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
SECRETS_READONLY_ROLE: Final = "roles/cloudkms.cryptoKeyDecrypter"


def attribute_condition(repository: str) -> str:
    """The pool provider's CEL condition: tokens of any other repository are refused at the exchange."""
    return f"assertion.repository == '{repository}'"


def _principal(pool_name: str, subject: str) -> str:
    return f"principal://iam.googleapis.com/{pool_name}/subject/{subject}"


def deploy_gcp(config: BootstrapConfig) -> dict[str, pulumi.Input[str]]:
    """State bucket, Workload Identity pool/provider for GitHub, and one service account per environment."""
    import pulumi_gcp as gcp

    settings = config.gcp
    assert settings is not None  # BootstrapConfig requires the section of its cloud
    project = settings.project
    labels = {"project": "model-deploy", "managed-by": PROJECT}

    def in_project(name: str, where: str) -> str:
        """Logical names in the bootstrap's own project stay short (and as they always were)."""
        return name if where == project else f"{name}-{where}"

    services = [
        gcp.projects.Service(
            in_project(f"api-{api.split('.')[0]}", where),
            project=where,
            service=api,
            # Destroying the bootstrap must never turn off an API that a running service uses.
            disable_on_destroy=False,
            disable_dependent_services=False,
        )
        for where in settings.projects
        for api in GCP_SERVICES
    ]
    after_apis = pulumi.ResourceOptions(depends_on=services)

    bucket = gcp.storage.Bucket(
        "state-bucket",
        name=settings.state_bucket_name,
        project=project,
        location=settings.location,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning=gcp.storage.BucketVersioningArgs(enabled=True),
        force_destroy=False,
        labels=labels,
        opts=pulumi.ResourceOptions(protect=True, depends_on=services),
    )
    # Losing this key loses every stack's secrets: protected, and the provider refuses to delete it too.
    key_ring = gcp.kms.KeyRing(
        "secrets-key-ring",
        name=SECRETS_KEY_RING,
        project=project,
        location=settings.kms_location,
        opts=pulumi.ResourceOptions(protect=True, depends_on=services),
    )
    secrets_key = gcp.kms.CryptoKey(
        "secrets-key",
        name=SECRETS_KEY,
        key_ring=key_ring.id,
        purpose="ENCRYPT_DECRYPT",
        rotation_period=SECRETS_KEY_ROTATION,
        deletion_policy="PREVENT",
        labels=labels,
        opts=pulumi.ResourceOptions(protect=True),
    )
    pool = gcp.iam.WorkloadIdentityPool(
        "github-pool",
        project=project,
        workload_identity_pool_id="github-model-deploy",
        display_name="GitHub model-deploy",
        description=f"GitHub Actions of {config.github_repository}",
        opts=after_apis,
    )
    provider = gcp.iam.WorkloadIdentityPoolProvider(
        "github-provider",
        project=project,
        workload_identity_pool_id=pool.workload_identity_pool_id,
        workload_identity_pool_provider_id="github",
        display_name="GitHub Actions OIDC",
        attribute_mapping={
            "google.subject": "assertion.sub",
            "attribute.repository": "assertion.repository",
            "attribute.environment": "assertion.environment",
            "attribute.ref": "assertion.ref",
        },
        attribute_condition=attribute_condition(config.github_repository),
        oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_OIDC_URL),
        opts=after_apis,
    )

    def account(
        name: str,
        member: pulumi.Input[str],
        *,
        roles: Mapping[str, str],
        projects: Sequence[str],
        secrets_role: str,
        what: str,
    ) -> gcp.serviceaccount.Account:
        created = gcp.serviceaccount.Account(
            f"{name}-account",
            project=project,
            account_id=f"{IDENTITY_PREFIX}{name}",
            display_name=f"model-deploy {name} (GitHub Actions)",
            description=what,
            opts=after_apis,
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=created.name,
            role="roles/iam.workloadIdentityUser",
            member=member,
        )
        for where in projects:
            for role_name in roles:
                gcp.projects.IAMMember(
                    in_project(f"{name}-{role_name.removeprefix('roles/').replace('.', '-')}", where),
                    project=where,
                    role=role_name,
                    member=created.member,
                    opts=after_apis,
                )
        # Every operation takes a lock in the state bucket and reads (deploys: writes) the state.
        gcp.storage.BucketIAMMember(
            f"{name}-state",
            bucket=bucket.name,
            role="roles/storage.objectAdmin",
            member=created.member,
        )
        # On the secrets key only: no project-wide KMS role, so no other key is reachable.
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-secrets-key",
            crypto_key_id=secrets_key.id,
            role=secrets_role,
            member=created.member,
        )
        return created

    outputs: dict[str, pulumi.Input[str]] = {}
    for environment in config.environments:
        # Exactly the jobs of this repository that run in the GitHub environment (google.subject = sub).
        subject = config.environment_subject(environment)
        member = pool.name.apply(functools.partial(_principal, subject=subject))
        created = account(
            environment,
            member,
            roles=GCP_DEPLOY_ROLES,
            projects=[settings.project_of(environment)],
            secrets_role=SECRETS_DEPLOY_ROLE,
            what=f"Deploys model-deploy {environment} from {config.github_repository} (environment {environment})",
        )
        outputs[f"GCP_SERVICE_ACCOUNT_{variable(environment)}"] = created.email
    readonly = account(
        READONLY,
        pool.name.apply(
            lambda pool_name: (
                f"principalSet://iam.googleapis.com/{pool_name}/attribute.repository/{config.github_repository}"
            )
        ),
        roles=GCP_READONLY_ROLES,
        # Previews and drift checks read every environment's resources.
        projects=tuple(dict.fromkeys(settings.project_of(environment) for environment in config.environments)),
        secrets_role=SECRETS_READONLY_ROLE,
        what=f"Previews and drift checks of {config.github_repository}",
    )
    outputs["GCP_SERVICE_ACCOUNT_READONLY"] = readonly.email
    outputs["GCP_WORKLOAD_IDENTITY_PROVIDER"] = provider.name
    outputs["PULUMI_BACKEND_URL_GCP"] = bucket.name.apply(lambda name: f"gs://{name}")
    # secrets_key.id is projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>, what gcpkms:// takes.
    outputs["PULUMI_SECRETS_PROVIDER_GCP"] = secrets_key.id.apply(lambda key_id: f"gcpkms://{key_id}")
    return outputs
