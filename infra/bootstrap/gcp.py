"""GCP bootstrap: APIs, state bucket and secrets key, Workload Identity pool, per-environment service accounts.

Isolation is by project: each environment deploys into a project of its own (:func:`check_topology`),
where its deploy account holds the roles the GCP program needs; in the bootstrap's project (state,
key, pool, the accounts themselves) no pipeline identity holds a project role. On the state bucket
each deploy account may write only its own stack's objects (an IAM condition on the object name);
the read-only account reads everything and writes nothing, and only pull requests and the default
branch may use it. ``tests/infra/test_gcp_access.py`` proves all of it with the offline evaluator
(``infra/access``) over every committed stack.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Final

import pulumi

from infra.bootstrap.config import GITHUB_OIDC_URL, IDENTITY_PREFIX, PROJECT, READONLY, BootstrapConfig, variable
from infra.config.errors import MISSING, ConfigError

#: Predefined roles of a deploy service account, granted in its environment's own project only
#: (never the bootstrap's: :func:`check_topology`), and why each is needed (the GCP program's resources).
#: Permission contents: darkbitio/gcp-iam-role-permissions (IAM roles.get dump), see infra/access/gcp_roles.json.
GCP_DEPLOY_ROLES: Final[Mapping[str, str]] = {
    "roles/run.admin": "Cloud Run services (create, update, delete, invoker IAM); run.routes.invoke for verify",
    "roles/aiplatform.user": "Vertex AI endpoints and model deployments; predict for verify",
    "roles/storage.admin": "the artifact bucket (create, IAM, lifecycle, versioning) and promotion's pushes into it",
    "roles/artifactregistry.admin": "the image repository and its IAM bindings; promotion's digest check",
}
#: The runtime (serving) service accounts the GCP program creates (infra/gcp/iam.py): create, read,
#: update, delete and attach them (actAs), but never change any account's IAM policy, keys or tokens,
#: which roles/iam.serviceAccountAdmin (setIamPolicy) and serviceAccountTokenCreator would allow.
#: A custom role because no predefined role has create without setIamPolicy. Scoping it to the
#: runtime accounts by name is not possible: IAM service accounts are not among the resource types
#: that accept conditional role bindings (https://cloud.google.com/iam/help/conditions/resource-policies)
#: nor among the services that recognize resource attributes in conditions
#: (https://cloud.google.com/iam/docs/conditions-resource-attributes), and the accounts do not exist
#: before the stack creates them; so the project is the scope, and the project is the environment's own.
RUNTIME_ACCOUNTS_ROLE_ID: Final = "modelDeployRuntimeAccounts"
RUNTIME_ACCOUNTS_PERMISSIONS: Final = (
    "iam.serviceAccounts.actAs",
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.update",
)
#: Predefined roles of the read-only (preview / drift) service account, in every environment project.
GCP_READONLY_ROLES: Final[Mapping[str, str]] = {
    "roles/run.viewer": "read Cloud Run services and their IAM policies",
    "roles/aiplatform.viewer": "read Vertex AI endpoints",
    "roles/artifactregistry.reader": "read the image repository",
    "roles/iam.serviceAccountViewer": "read the runtime service account",
}
#: What refreshing the store needs beyond those roles (defect 9): the bucket itself (storage.buckets.get,
#: which roles/storage.objectViewer lacks), the IAM members on it and on the repository (getIamPolicy).
#: No predefined read-only role has storage.buckets.getIamPolicy (roles/storage.objectViewer,
#: legacyBucketReader, bucketViewer lack it; the roles that have it also have setIamPolicy or are broad
#: project-wide auditor roles); artifactregistry.reader lacks repositories.getIamPolicy (role data:
#: darkbitio/gcp-iam-role-permissions). Provider reads: terraform-provider-google
#: resource_storage_bucket.go (Buckets.Get) and the IAM member resources (getIamPolicy on refresh).
REFRESH_ROLE_ID: Final = "modelDeployRefresh"
REFRESH_PERMISSIONS: Final = (
    "artifactregistry.repositories.getIamPolicy",
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
)
#: The stacks' Pulumi project and stack names: the state objects each deploy account may write.
STACK_PROJECT: Final = "model-deploy"


def stack_name(environment: str) -> str:
    """The GCP stack of ``environment`` (``Pulumi.gcp-<environment>.yaml``, the deploy workflow's matrix)."""
    return f"gcp-{environment}"


def state_object_prefixes(stack: str) -> tuple[str, ...]:
    """Object-name prefixes of one stack's state in the DIY backend (``gs://bucket``, no path).

    Layout from pulumi/pulumi ``pkg/backend/diy`` (state.go, lock.go): the checkpoint
    ``.pulumi/stacks/<project>/<stack>.json`` (and ``.json.bak``, ``.json.gz``, ``.pulumi-tags``),
    ``.pulumi/history/<project>/<stack>/``, ``.pulumi/backups/<project>/<stack>/`` and the locks
    ``.pulumi/locks/organization/<project>/<stack>/``.
    """
    return (
        f".pulumi/stacks/{STACK_PROJECT}/{stack}.",
        f".pulumi/history/{STACK_PROJECT}/{stack}/",
        f".pulumi/backups/{STACK_PROJECT}/{stack}/",
        f".pulumi/locks/organization/{STACK_PROJECT}/{stack}/",
    )


#: Read by every backend operation (pulumi/pulumi pkg/backend/diy/meta.go); written once, by whoever
#: first logs in to an empty bucket: the administrator, in the README's step 2.
STATE_META_OBJECT: Final = ".pulumi/meta.yaml"
#: A stack's own state objects: get, create, delete (overwrite = create + delete, objects/insert docs).
STATE_WRITER_ROLE: Final = "roles/storage.objectUser"
#: Listing is checked on the bucket, not on object names, so a name condition cannot grant it
#: (objects.list is authorized against projects/_/buckets/<bucket>); this legacy role is list +
#: bucket metadata, no object content and no write.
STATE_LISTER_ROLE: Final = "roles/storage.legacyBucketReader"
#: Previews read every stack's state; they never take the lock (pulumi/pulumi
#: pkg/backend/diy/backend.go: Preview does not call Lock, and writes no checkpoint on a dry run).
STATE_READER_ROLE: Final = "roles/storage.objectViewer"


def state_condition(bucket: str, prefixes: Sequence[str]) -> str:
    """CEL: the object names under ``prefixes`` in ``bucket`` (Cloud Storage's resource.name format).

    Format ``projects/_/buckets/<bucket>/objects/<name>``: https://cloud.google.com/iam/docs/conditions-resource-attributes
    (Cloud Storage); conditions on a bucket's policy need uniform bucket-level access, which the state
    bucket has (https://cloud.google.com/iam/help/conditions/resource-policies, footnote 1).
    """
    return " || ".join(f"resource.name.startsWith('projects/_/buckets/{bucket}/objects/{p}')" for p in prefixes)


def check_topology(config: BootstrapConfig) -> None:
    """Refuse layouts in which a deploy account's project roles would reach another identity's resources.

    A deploy account holds project-level roles in its environment's project (service accounts, buckets
    and Cloud Run services cannot be scoped by name before they exist, above). In the bootstrap's
    project those roles would reach the state bucket, the secrets key and every deploy account (dev
    could grant itself token-creator on prod's); in a project shared by two environments, each other's
    resources. So each environment needs its own project, the layout of Google's enterprise
    foundations blueprint (development, nonproduction and production environments with their own
    projects: terraform-google-modules/terraform-example-foundation, 2-environments); raise a
    one-line ConfigError otherwise.
    """
    settings = config.gcp
    assert settings is not None
    seen: dict[str, str] = {}
    for environment in config.environments:
        project = settings.project_of(environment)
        key = f"{PROJECT}:gcp.environmentProjects.{environment}"
        if project == settings.project:
            raise ConfigError(
                key,
                MISSING if environment not in settings.environment_projects else project,
                f"must be a project of its own, not the bootstrap's project {settings.project!r} (state bucket, "
                "secrets key, deploy accounts): a deploy account's project roles there could take over the others",
            )
        if project in seen:
            raise ConfigError(
                key,
                project,
                f"is also {seen[project]}'s project: environments sharing a project could change each other's "
                "resources; give each environment its own project",
            )
        seen[project] = environment


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
    from pulumi_gcp import iam, kms, projects, serviceaccount, storage

    settings = config.gcp
    assert settings is not None  # BootstrapConfig requires the section of its cloud
    check_topology(config)  # before anything is declared
    project = settings.project
    labels = {"project": "model-deploy", "managed-by": PROJECT}

    def in_project(name: str, where: str) -> str:
        """Logical names in the bootstrap's own project stay short (and as they always were)."""
        return name if where == project else f"{name}-{where}"

    services = [
        projects.Service(
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

    bucket = storage.Bucket(
        "state-bucket",
        name=settings.state_bucket_name,
        project=project,
        location=settings.location,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning=storage.BucketVersioningArgs(enabled=True),
        force_destroy=False,
        labels=labels,
        opts=pulumi.ResourceOptions(protect=True, depends_on=services),
    )
    # Losing this key loses every stack's secrets: protected, and the provider refuses to delete it too.
    key_ring = kms.KeyRing(
        "secrets-key-ring",
        name=SECRETS_KEY_RING,
        project=project,
        location=settings.kms_location,
        opts=pulumi.ResourceOptions(protect=True, depends_on=services),
    )
    secrets_key = kms.CryptoKey(
        "secrets-key",
        name=SECRETS_KEY,
        key_ring=key_ring.id,
        purpose="ENCRYPT_DECRYPT",
        rotation_period=SECRETS_KEY_ROTATION,
        deletion_policy="PREVENT",
        labels=labels,
        opts=pulumi.ResourceOptions(protect=True),
    )
    pool = iam.WorkloadIdentityPool(
        "github-pool",
        project=project,
        workload_identity_pool_id="github-model-deploy",
        display_name="GitHub model-deploy",
        description=f"GitHub Actions of {config.github_repository}",
        opts=after_apis,
    )
    provider = iam.WorkloadIdentityPoolProvider(
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
        oidc=iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_OIDC_URL),
        opts=after_apis,
    )

    def account(name: str, members: Sequence[pulumi.Input[str]], *, what: str) -> serviceaccount.Account:
        created = serviceaccount.Account(
            f"{name}-account",
            project=project,
            account_id=f"{IDENTITY_PREFIX}{name}",
            display_name=f"model-deploy {name} (GitHub Actions)",
            description=what,
            opts=after_apis,
        )
        # The only way to use the account: from GitHub Actions jobs with these OIDC subjects. The role
        # also lets them mint the account's identity tokens (iam.serviceAccounts.getOpenIdToken), which
        # model-deploy-verify-gcp uses for private Cloud Run services (infra/gcp_id_token.py).
        for index, member in enumerate(members):
            serviceaccount.IAMMember(
                f"{name}-workload-identity" if index == 0 else f"{name}-{index}-workload-identity",
                service_account_id=created.name,
                role="roles/iam.workloadIdentityUser",
                member=member,
            )
        return created

    def project_roles(name: str, member: pulumi.Input[str], roles: Sequence[str], where: str) -> None:
        for role_name in roles:
            short = role_name.rsplit("/", 1)[-1].replace(".", "-")
            projects.IAMMember(
                in_project(f"{name}-{short}", where),
                project=where,
                role=role_name,
                member=member,
                opts=after_apis,
            )

    def custom_role(role_id: str, where: str, title: str, permissions: Sequence[str]) -> str:
        projects.IAMCustomRole(
            in_project(f"role-{role_id}", where),
            project=where,
            role_id=role_id,
            title=title,
            permissions=list(permissions),
            stage="GA",
            opts=after_apis,
        )
        return f"projects/{where}/roles/{role_id}"

    bucket_name = settings.state_bucket_name
    outputs: dict[str, pulumi.Input[str]] = {}
    for environment in config.environments:
        where = settings.project_of(environment)  # its own project (check_topology)
        # Exactly the jobs of this repository that run in the GitHub environment (google.subject = sub).
        subject = config.environment_subject(environment)
        created = account(
            environment,
            [pool.name.apply(functools.partial(_principal, subject=subject))],
            what=f"Deploys model-deploy {environment} from {config.github_repository} (environment {environment})",
        )
        member = created.member
        runtime_accounts = custom_role(
            RUNTIME_ACCOUNTS_ROLE_ID,
            where,
            "model-deploy runtime service accounts",
            RUNTIME_ACCOUNTS_PERMISSIONS,
        )
        project_roles(environment, member, [*GCP_DEPLOY_ROLES, runtime_accounts], where)
        # State: its own stack's objects only (a condition on the object name), listing the bucket,
        # and reading the backend's meta.yaml; nothing of another environment's stacks.
        stack = stack_name(environment)
        storage.BucketIAMMember(
            f"{environment}-state",
            bucket=bucket.name,
            role=STATE_WRITER_ROLE,
            member=member,
            condition=storage.BucketIAMMemberConditionArgs(
                title=f"state of {stack}",
                description=f"The Pulumi state objects of stack {stack} only",
                expression=state_condition(bucket_name, state_object_prefixes(stack)),
            ),
        )
        storage.BucketIAMMember(
            f"{environment}-state-meta",
            bucket=bucket.name,
            role=STATE_READER_ROLE,
            member=member,
            condition=storage.BucketIAMMemberConditionArgs(
                title="backend metadata",
                description="The DIY backend's .pulumi/meta.yaml",
                expression=f"resource.name == 'projects/_/buckets/{bucket_name}/objects/{STATE_META_OBJECT}'",
            ),
        )
        storage.BucketIAMMember(f"{environment}-state-list", bucket=bucket.name, role=STATE_LISTER_ROLE, member=member)
        # On the secrets key only: no project-wide KMS role, so no other key is reachable.
        kms.CryptoKeyIAMMember(
            f"{environment}-secrets-key", crypto_key_id=secrets_key.id, role=SECRETS_DEPLOY_ROLE, member=member
        )
        outputs[f"GCP_SERVICE_ACCOUNT_{variable(environment)}"] = created.email

    # Pull-request previews and drift checks on the default branch, like the AWS read-only role.
    readonly = account(
        READONLY,
        [pool.name.apply(functools.partial(_principal, subject=subject)) for subject in config.readonly_subjects],
        what=f"Previews and drift checks of {config.github_repository} (pull requests, main)",
    )
    for where in dict.fromkeys(settings.project_of(environment) for environment in config.environments):
        refresh = custom_role(REFRESH_ROLE_ID, where, "model-deploy refresh (read bucket and IAM)", REFRESH_PERMISSIONS)
        project_roles(READONLY, readonly.member, [*GCP_READONLY_ROLES, refresh], where)
    # Every stack's state, read-only: previews never lock (above), so nothing here writes.
    storage.BucketIAMMember(f"{READONLY}-state", bucket=bucket.name, role=STATE_READER_ROLE, member=readonly.member)
    kms.CryptoKeyIAMMember(
        f"{READONLY}-secrets-key", crypto_key_id=secrets_key.id, role=SECRETS_READONLY_ROLE, member=readonly.member
    )
    outputs["GCP_SERVICE_ACCOUNT_READONLY"] = readonly.email
    outputs["GCP_WORKLOAD_IDENTITY_PROVIDER"] = provider.name
    outputs["PULUMI_BACKEND_URL_GCP"] = bucket.name.apply(lambda name: f"gs://{name}")
    # secrets_key.id is projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>, what gcpkms:// takes.
    outputs["PULUMI_SECRETS_PROVIDER_GCP"] = secrets_key.id.apply(lambda key_id: f"gcpkms://{key_id}")
    return outputs
