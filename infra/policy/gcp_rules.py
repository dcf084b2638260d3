"""The policy pack's GCP rules, each a plain resource validation function (see :mod:`infra.policy.rules`).

Every rule here is a resource rule, so a violation stops the resource before it is created
or updated: all the properties they check are on one resource (a Cloud Storage bucket, unlike
an S3 bucket, carries its own access settings). Type tokens and property names are
pulumi-gcp 10's (checked against its SDK); properties arrive under their wire names
(``uniformBucketLevelAccess``) and messages name the Python argument
(``uniform_bucket_level_access``), because that is what the reader of a violation edits.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pulumi_policy import ReportViolation, ResourceValidationArgs

from infra.config.gcp_settings import DECOMMISSION_LABEL
from infra.policy.gcp_iam import PUBLIC_MEMBERS, IamPolicyDataError, grants, iam_kind
from infra.policy.props import as_list, as_mapping, get, truthy
from infra.policy.settings import (
    CLOUD_RUN_INGRESS_ALL,
    PRODUCTION,
    ResolvedEnvironment,
    allowed_ingress,
    config_strings,
    required_label_keys,
    resolve_environment,
)

# --- resource types (pulumi-gcp 10 tokens) ------------------------------------------------------

BUCKET: Final = "gcp:storage/bucket:Bucket"
REPOSITORY: Final = "gcp:artifactregistry/repository:Repository"
SERVICE: Final = "gcp:cloudrunv2/service:Service"
AI_ENDPOINT: Final = "gcp:vertex/aiEndpoint:AiEndpoint"
#: Resources that must carry the stack's labels even when the program passes none: every type
#: the GCP program creates that takes ``labels``. Any other GCP resource is checked when it sets some.
LABELLED_TYPES: Final = frozenset({BUCKET, REPOSITORY, SERVICE, AI_ENDPOINT})
#: Cloud Run's IAM resources: v2's, and v1's, which grant on the same services.
CLOUD_RUN_IAM_TYPES: Final = frozenset(
    {
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
        "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
        "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy",
        "gcp:cloudrun/iamMember:IamMember",
        "gcp:cloudrun/iamBinding:IamBinding",
        "gcp:cloudrun/iamPolicy:IamPolicy",
    }
)
#: Cloud Storage ACL resources listing ``ROLE:entity`` pairs (``role_entities``).
ROLE_ENTITY_ACL_TYPES: Final = frozenset(
    {
        "gcp:storage/bucketACL:BucketACL",
        "gcp:storage/defaultObjectACL:DefaultObjectACL",
        "gcp:storage/objectACL:ObjectACL",
    }
)
#: Cloud Storage ACL resources granting one ``entity`` a role.
ENTITY_ACL_TYPES: Final = frozenset(
    {
        "gcp:storage/bucketAccessControl:BucketAccessControl",
        "gcp:storage/objectAccessControl:ObjectAccessControl",
        "gcp:storage/defaultObjectAccessControl:DefaultObjectAccessControl",
    }
)
#: Canned ACL properties, wire name -> the Python argument a message names.
PREDEFINED_ACL_PROPERTIES: Final = {"predefinedAcl": "predefined_acl", "defaultAcl": "default_acl"}
#: Canned ACLs (Cloud Storage JSON API names) that grant allUsers or allAuthenticatedUsers.
PUBLIC_PREDEFINED_ACLS: Final = frozenset({"publicRead", "publicReadWrite", "authenticatedRead"})

INVOKER_ROLE: Final = "roles/run.invoker"
#: IAM's basic (formerly "primitive") roles: thousands of permissions on every service of the project.
BASIC_ROLES: Final = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
#: An image reference pinned by digest (a tag before the digest is allowed; the registry ignores it).
DIGEST_REFERENCE_RE: Final = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


# --- Cloud Storage ------------------------------------------------------------------------------


def gcs_bucket_uniform_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A bucket has uniform bucket-level access: IAM alone decides access, no object ACLs."""
    if args.resource_type != BUCKET:
        return
    value = get(args.props, "uniformBucketLevelAccess")
    if not truthy(value):
        report_violation(
            f"{args.name!r} {_sets('uniform_bucket_level_access', value)}: set it to True, so IAM alone grants "
            "access (object ACLs, which no policy can see, are off)",
            None,
        )


def gcs_bucket_public_access_prevention_enforced(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """A bucket enforces public access prevention, whatever the organisation policy says."""
    if args.resource_type != BUCKET:
        return
    value = get(args.props, "publicAccessPrevention")
    if value != "enforced":
        report_violation(
            f"{args.name!r} {_sets('public_access_prevention', value)}: set it to 'enforced', so no IAM grant "
            "or ACL can make objects public ('inherited', the default, leaves that to the organisation policy)",
            None,
        )


def gcs_bucket_versioning(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A bucket keeps object versions, so an overwritten or deleted package can be restored."""
    if args.resource_type != BUCKET:
        return
    value = get(args.props, "versioning", "enabled")
    if not truthy(value):
        report_violation(
            f"{args.name!r} {_sets('versioning.enabled', value)}: set "
            "versioning=gcp.storage.BucketVersioningArgs(enabled=True), so an overwritten or deleted package "
            "can be restored",
            None,
        )


def gcs_bucket_no_force_destroy_in_prod(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """In prod, a bucket does not set ``force_destroy`` (``pulumi destroy`` would empty it)."""
    if args.resource_type != BUCKET or not truthy(get(args.props, "forceDestroy")):
        return
    environment = _environment(args, "whether force_destroy is allowed", report_violation)
    if environment is not None and environment.name == PRODUCTION:
        report_violation(
            f"{args.name!r} sets force_destroy True in {PRODUCTION} (from {environment.source}): set it to False "
            "(the default); `pulumi destroy` would delete every package version in the bucket",
            None,
        )


# --- Artifact Registry --------------------------------------------------------------------------


def artifact_registry_immutable_docker(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A repository is a Docker repository whose tags cannot be moved to another image."""
    if args.resource_type != REPOSITORY:
        return
    repository_format = get(args.props, "format")
    # The provider compares the format case-insensitively; the API spells it DOCKER.
    if not isinstance(repository_format, str) or repository_format.upper() != "DOCKER":
        report_violation(
            f"{args.name!r} {_sets('format', repository_format)}: set format 'DOCKER' (repositories here hold "
            "serving images only)",
            None,
        )
    immutable = get(args.props, "dockerConfig", "immutableTags")
    if not truthy(immutable):
        report_violation(
            f"{args.name!r} {_sets('docker_config.immutable_tags', immutable)}: set "
            "docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True), so a tag can "
            "never be moved to another image",
            None,
        )


# --- Cloud Run ----------------------------------------------------------------------------------


def cloud_run_image_pinned_by_digest(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every container of a Cloud Run service runs an image pinned by digest (``...@sha256:<64 hex>``)."""
    if args.resource_type != SERVICE:
        return
    for index, container in enumerate(as_list(get(args.props, "template", "containers"))):
        image = get(container, "image")
        if isinstance(image, str) and DIGEST_REFERENCE_RE.match(image):
            continue
        label = get(container, "name") or f"#{index + 1}"
        report_violation(
            f"{args.name!r}: container {label!r} runs image {image!r}, which is not pinned by digest: set "
            f"template.containers[{index}].image to <registry>/<repository>/<image>@sha256:<64 hex digits>, "
            "so every revision runs the image the stack pins",
            None,
        )


def cloud_run_deletion_protection_in_prod(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """In prod, a Cloud Run service keeps deletion protection (pulumi-gcp's default) on, unless decommissioned.

    A decommissioned stack's service carries the label ``decommission`` naming the stack it is in
    (what ``model-deploy:gcp.decommission`` makes the program write, and config validation accepts
    only together with ``deletionProtection: false``); a label naming another stack does not count.
    """
    if args.resource_type != SERVICE:
        return
    value = get(args.props, "deletionProtection")
    if value is None or truthy(value):
        return  # unset is the provider's default: protected
    environment = _environment(args, "whether deletion protection may be off", report_violation)
    if environment is None or environment.name != PRODUCTION:
        return
    stack = _stack(args.urn)
    decommission = get(as_mapping(get(args.props, "labels")) or {}, DECOMMISSION_LABEL)
    if decommission is not None and decommission == stack:
        return
    named = f" (its label {DECOMMISSION_LABEL!r} names stack {decommission!r})" if decommission is not None else ""
    report_violation(
        f"{args.name!r} sets deletion_protection False in {PRODUCTION} (from {environment.source}){named}: set it to "
        "True (or leave it unset: the provider's default is True), so `pulumi destroy` cannot delete the "
        f"production service; to decommission stack {stack!r}, set model-deploy:gcp.decommission: {stack} too",
        None,
    )


def cloud_run_allowed_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A Cloud Run service's ingress is one the stack's environment allows (policy config ``allowedIngress``)."""
    if args.resource_type != SERVICE:
        return
    value = get(args.props, "ingress")
    environment = _environment(args, "its ingress", report_violation)
    if environment is None:
        return
    allowed = allowed_ingress(args.get_config(), environment.name)
    if allowed is None:
        report_violation(
            f"{args.name!r}: no ingress settings are allowed for environment {environment.name!r} "
            f"(from {environment.source}); set policy config allowedIngress.{environment.name}",
            None,
        )
        return
    setting = value or CLOUD_RUN_INGRESS_ALL
    if setting not in allowed:
        shown = f"sets ingress {value!r}" if value else f"leaves ingress unset, i.e. {CLOUD_RUN_INGRESS_ALL}"
        report_violation(
            f"{args.name!r} {shown}, which is not allowed in {environment.name} (from {environment.source}); "
            f"allowed: {', '.join(allowed) or 'none'}",
            None,
        )


def cloud_run_public_invoker(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Anyone may invoke a Cloud Run service only in the environments the policy config lists.

    A service is public through a ``roles/run.invoker`` grant to ``allUsers`` or
    ``allAuthenticatedUsers`` (the program's ``cloudRun.public``), or with
    ``invoker_iam_disabled``. The environment comes from the policy config or the stack tag
    only: IAM members carry no labels, and making a service public is for whoever runs the
    pipeline to allow, not the program being checked.
    """
    if args.resource_type in CLOUD_RUN_IAM_TYPES:
        try:
            found = [
                f"grants {INVOKER_ROLE} to {member} ({grant.members_at})"
                for grant in grants(args.resource_type, args.props)
                if grant.role == INVOKER_ROLE
                for member in grant.members
                if member in PUBLIC_MEMBERS
            ]
        except IamPolicyDataError:
            return  # gcp-no-public-members reports it
    elif args.resource_type == SERVICE and truthy(get(args.props, "invokerIamDisabled")):
        found = ["sets invoker_iam_disabled True (no invoker check at all)"]
    else:
        return
    if not found:
        return
    config = args.get_config()
    public_environments = config_strings(config, "publicEnvironments")
    environment = resolve_environment(config, args.stack_tags)
    if environment is not None and environment.name in public_environments:
        return
    allowed = f"in {', '.join(public_environments)}" if public_environments else "in no environment"
    if environment is None and public_environments:
        verdict = (
            f"which is allowed {allowed} (policy config publicEnvironments), but the stack's environment is "
            "unknown: set the policy config 'environment' or the stack tag 'environment'"
        )
    else:
        where = f" in {environment.name} (from {environment.source})" if environment is not None else ""
        verdict = (
            f"which is not allowed{where}: public services are allowed {allowed} (policy config "
            "publicEnvironments); name the callers in cloudRun.invokers instead"
        )
    for what in found:
        report_violation(f"{args.name!r} {what}, so anyone may invoke the service, {verdict}", None)


# --- IAM and ACLs -------------------------------------------------------------------------------


def gcp_no_public_members(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No IAM grant or Cloud Storage ACL gives ``allUsers`` or ``allAuthenticatedUsers`` anything.

    Cloud Run invoker grants are the exception, decided by ``cloud-run-public-invoker``.
    """
    kind = args.resource_type
    if iam_kind(kind) is not None:
        try:
            for grant in grants(kind, args.props):
                if kind in CLOUD_RUN_IAM_TYPES and grant.role == INVOKER_ROLE:
                    continue
                for member in grant.members:
                    if member in PUBLIC_MEMBERS:
                        report_violation(
                            f"{args.name!r} grants {grant.role} to {member} ({grant.members_at}), "
                            f"{_anyone(member)}; grant it to named principals (serviceAccount:, group:, user:) instead",
                            None,
                        )
        except IamPolicyDataError as exc:
            report_violation(f"{args.name!r}: policy_data {exc}, so it cannot be checked", None)
    elif kind in ROLE_ENTITY_ACL_TYPES | ENTITY_ACL_TYPES:
        entries: list[tuple[str, str, str]] = []  # (where, role, entity)
        if kind in ROLE_ENTITY_ACL_TYPES:
            for entry in map(str, as_list(get(args.props, "roleEntities"))):
                role, _, entity = entry.partition(":")  # "READER:allUsers"
                entries.append((f"role_entities {entry!r}", role, entity))
        else:
            entries.append(("entity", str(get(args.props, "role")), str(get(args.props, "entity"))))
        for where, role, entity in entries:
            if entity in PUBLIC_MEMBERS:
                report_violation(
                    f"{args.name!r} gives {entity} {role} ({where}), {_anyone(entity)}; use IAM on a bucket with "
                    "uniform bucket-level access instead of ACLs",
                    None,
                )
        for wire, python in PREDEFINED_ACL_PROPERTIES.items():
            canned = get(args.props, wire)
            if canned in PUBLIC_PREDEFINED_ACLS:
                report_violation(
                    f"{args.name!r} sets {python} {canned!r}, which makes objects public; use 'private' or "
                    "'projectPrivate'",
                    None,
                )


def gcp_no_basic_roles(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No IAM grant uses a basic role (``roles/owner``, ``roles/editor``, ``roles/viewer``)."""
    if iam_kind(args.resource_type) is None:
        return
    try:
        found = [grant for grant in grants(args.resource_type, args.props, members=False) if grant.role in BASIC_ROLES]
    except IamPolicyDataError:
        return  # gcp-no-public-members reports it
    for grant in found:
        report_violation(
            f"{args.name!r} grants the basic role {grant.role} ({grant.role_at}): grant a predefined role "
            "(roles/storage.objectViewer, roles/run.invoker, ...) or a custom role with only the permissions "
            "needed; basic roles carry thousands of permissions on every service of the project",
            None,
        )


# --- labels -------------------------------------------------------------------------------------


def gcp_required_labels(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every labelled GCP resource carries the stack's labels (its own ``labels`` or the provider's default labels)."""
    if not args.resource_type.startswith("gcp:"):
        return
    if args.resource_type not in LABELLED_TYPES and get(args.props, "labels") is None:
        return
    labels = _effective_labels(args)
    missing = [key for key in required_label_keys(args.get_config()) if not labels.get(key)]
    if missing:
        report_violation(
            f"{args.name!r} lacks the labels {', '.join(missing)}: pass the stack's resource labels "
            "(StackConfig.resource_labels) as labels, or set them as the gcp provider's default_labels",
            None,
        )


# --- helpers ------------------------------------------------------------------------------------


def _stack(urn: str) -> str:
    """The stack a resource is in: ``urn:pulumi:<stack>::<project>::<type>::<name>``."""
    return urn.removeprefix("urn:pulumi:").split("::", 1)[0]


def _sets(python_name: str, value: Any) -> str:
    """``leaves x unset`` or ``sets x <value>``: how a message states a property's current value."""
    return f"leaves {python_name} unset" if value is None else f"sets {python_name} {value!r}"


def _anyone(member: str) -> str:
    return "which makes it public" if member == "allUsers" else "which opens it to anyone with a Google account"


def _effective_labels(args: ResourceValidationArgs) -> dict[str, Any]:
    """The resource's labels over its provider's ``default_labels`` (what GCP will put on it)."""
    labels: dict[str, Any] = {}
    if args.provider is not None:
        labels.update(as_mapping(get(args.provider.props, "defaultLabels")) or {})
    labels.update(as_mapping(get(args.props, "labels")) or {})
    return labels


def _environment(
    args: ResourceValidationArgs, what: str, report_violation: ReportViolation
) -> ResolvedEnvironment | None:
    """The stack's environment (policy config, stack tag, then the resource's label); reported if unknown."""
    environment = resolve_environment(args.get_config(), args.stack_tags, _effective_labels(args), kind="label")
    if environment is None:
        report_violation(
            f"{args.name!r}: cannot tell the stack's environment, so {what} cannot be checked; set the policy "
            "config 'environment', the stack tag 'environment', or the resource label 'environment'",
            None,
        )
    return environment
