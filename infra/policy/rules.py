"""The policy pack's AWS rules, each a plain validation function (GCP's are in :mod:`infra.policy.gcp_rules`).

A resource rule has the signature of ``pulumi_policy.ResourceValidation``
(``(args: ResourceValidationArgs, report_violation) -> None``) and returns at once for
resource types it does not check; a stack rule is a ``StackValidation`` over all of the
stack's resources, for properties that span resources (a bucket and its encryption
configuration are separate resources in pulumi-aws). ``infra.policy.policies`` wraps them
into ``Policy`` objects; the tests call them directly with real ``ResourceValidationArgs``.

Properties arrive under their wire names (``kmsKeyArn``); messages name the Python
argument (``kms_key_arn``) because that is what the reader of a violation edits.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pulumi_policy import PolicyResource, ReportViolation, ResourceValidationArgs, StackValidationArgs

from infra.config import instance_family
from infra.policy.iam_documents import (
    PolicyDocumentError,
    Statement,
    parse_policy_document,
    unscopable_action,
)
from infra.policy.props import UNKNOWN, as_list, as_mapping, get, get_or_unknown, truthy
from infra.policy.settings import (
    allowed_families,
    config_strings,
    has_local_storage,
    required_tag_keys,
    resolve_environment,
)

# --- resource types (pulumi-aws 7 tokens; the V2 spellings are the aliases older stacks still carry) ---

BUCKET_TYPES: Final = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
ENCRYPTION_TYPES: Final = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
PUBLIC_ACCESS_BLOCK: Final = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_PUBLIC_ACCESS_BLOCK: Final = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
BUCKET_POLICY: Final = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACL_TYPES: Final = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
OBJECT_TYPES: Final = frozenset({"aws:s3/bucketObject:BucketObject", "aws:s3/bucketObjectv2:BucketObjectv2"})
IDENTITY_POLICY_TYPES: Final = frozenset(
    {
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/groupPolicy:GroupPolicy",
    }
)
ROLE: Final = "aws:iam/role:Role"
ATTACHMENT_TYPES: Final = frozenset(
    {
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
        "aws:iam/policyAttachment:PolicyAttachment",
    }
)
EXCLUSIVE_ATTACHMENT_TYPES: Final = frozenset(
    {
        "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
        "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive",
        "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive",
    }
)
ENDPOINT_CONFIGURATION: Final = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT: Final = "aws:sagemaker/endpoint:Endpoint"
SCALABLE_TARGET: Final = "aws:appautoscaling/target:Target"

#: Server-side encryption algorithms that use KMS.
KMS_ALGORITHMS: Final = frozenset({"aws:kms", "aws:kms:dsse"})
#: The public access block settings, wire name -> the Python argument a message names.
PUBLIC_ACCESS_SETTINGS: Final = {
    "blockPublicAcls": "block_public_acls",
    "blockPublicPolicy": "block_public_policy",
    "ignorePublicAcls": "ignore_public_acls",
    "restrictPublicBuckets": "restrict_public_buckets",
}
#: Canned ACLs that grant access to everyone (or to every AWS account, which is the same thing).
PUBLIC_CANNED_ACLS: Final = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GRANTEE_URIS: Final = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    }
)
#: AWS-managed policies no role of ours may carry: every ``*FullAccess``, and the two broader ones.
FULL_ACCESS_POLICY_RE: Final = re.compile(
    r"^arn:aws[a-z-]*:iam::aws:policy/(?:[^/]+/)*(?P<name>[^/]*FullAccess[^/]*|AdministratorAccess|PowerUserAccess)$"
)
#: The scalable dimension of an instance-based variant's autoscaling target.
INSTANCE_COUNT_DIMENSION: Final = "sagemaker:variant:DesiredInstanceCount"


# --- S3 -----------------------------------------------------------------------------------------


def s3_encryption_uses_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A bucket's default encryption is SSE-KMS with a customer-managed key.

    Checks ``aws.s3.BucketServerSideEncryptionConfiguration`` and the deprecated inline
    ``server_side_encryption_configuration`` of ``aws.s3.Bucket``.
    """
    if args.resource_type in ENCRYPTION_TYPES:
        rules = as_list(get(args.props, "rules"))
    elif args.resource_type in BUCKET_TYPES and get(args.props, "serverSideEncryptionConfiguration") is not None:
        inline = get(args.props, "serverSideEncryptionConfiguration")
        rules = as_list(get(inline, "rule")) + as_list(get(inline, "rules"))
    else:
        return
    defaults = [get(rule, "applyServerSideEncryptionByDefault") for rule in rules]
    defaults = [default for default in defaults if default is not None]
    if not defaults:
        report_violation(
            f"{args.name!r} sets no apply_server_side_encryption_by_default: set sse_algorithm 'aws:kms' "
            "and kms_master_key_id to the store's customer-managed key",
            None,
        )
        return
    for default in defaults:
        algorithm = get(default, "sseAlgorithm")
        if algorithm not in KMS_ALGORITHMS:
            report_violation(
                f"{args.name!r} encrypts with sse_algorithm {algorithm!r}; use 'aws:kms' with the store's "
                "customer-managed key (SSE-S3 keys cannot be scoped in IAM or audited in CloudTrail)",
                None,
            )
        elif not get(default, "kmsMasterKeyId"):
            report_violation(
                f"{args.name!r} uses SSE-KMS without kms_master_key_id, i.e. the AWS-managed aws/s3 key; "
                "set the store's customer-managed key (its policy and rotation are yours, and roles can be "
                "scoped to it)",
                None,
            )


def s3_bucket_encryption_present(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every bucket has an ``aws.s3.BucketServerSideEncryptionConfiguration`` (or inline SSE-KMS).

    A stack rule because pulumi-aws declares a bucket's encryption as a separate resource:
    a bucket without one falls back to SSE-S3, which the resource rules cannot see.
    """
    encryption = [resource for resource in args.resources if resource.resource_type in ENCRYPTION_TYPES]
    for bucket in _buckets(args):
        if any(_targets_bucket(config, bucket) for config in encryption) or _inline_kms(bucket):
            continue
        report_violation(
            f"bucket {bucket.name!r} has no aws.s3.BucketServerSideEncryptionConfiguration: add one with "
            "sse_algorithm 'aws:kms' and the store's customer-managed key (without it S3 uses SSE-S3)",
            bucket.urn,
        )


def s3_public_access_block_all_on(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A bucket (or account) public access block sets all four settings to true."""
    if args.resource_type not in (PUBLIC_ACCESS_BLOCK, ACCOUNT_PUBLIC_ACCESS_BLOCK):
        return
    off = [python for wire, python in PUBLIC_ACCESS_SETTINGS.items() if not truthy(get(args.props, wire))]
    if off:
        report_violation(
            f"{args.name!r} leaves {', '.join(off)} off: set all four of "
            f"{', '.join(PUBLIC_ACCESS_SETTINGS.values())} to True (a model store is never public)",
            None,
        )


def s3_bucket_public_access_block_present(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every bucket has an ``aws.s3.BucketPublicAccessBlock`` (or the stack blocks the whole account)."""
    if any(resource.resource_type == ACCOUNT_PUBLIC_ACCESS_BLOCK for resource in args.resources):
        return
    blocks = [resource for resource in args.resources if resource.resource_type == PUBLIC_ACCESS_BLOCK]
    for bucket in _buckets(args):
        if not any(_targets_bucket(block, bucket) for block in blocks):
            report_violation(
                f"bucket {bucket.name!r} has no aws.s3.BucketPublicAccessBlock: add one with block_public_acls, "
                "block_public_policy, ignore_public_acls and restrict_public_buckets all True",
                bucket.urn,
            )


def s3_no_public_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No bucket policy, ACL or object ACL makes objects readable by anyone."""
    kind = args.resource_type
    if kind not in BUCKET_TYPES | BUCKET_ACL_TYPES | OBJECT_TYPES | {BUCKET_POLICY}:
        return
    acl = get(args.props, "acl")
    if acl in PUBLIC_CANNED_ACLS:
        report_violation(f"{args.name!r} sets the canned ACL {acl!r}, which makes objects public; remove it", None)
    grants = as_list(get(args.props, "grants")) + as_list(get(args.props, "accessControlPolicy", "grants"))
    for grant in grants:
        uri = get(grant, "uri") or get(grant, "grantee", "uri")
        if uri in PUBLIC_GRANTEE_URIS:
            group = str(uri).rsplit("/", 1)[-1]
            report_violation(f"{args.name!r} grants access to the {group} group, which makes objects public", None)
    document = get(args.props, "policy")
    if kind in BUCKET_TYPES | {BUCKET_POLICY} and document:
        try:
            statements = parse_policy_document(document)
        except PolicyDocumentError as exc:
            report_violation(f"{args.name!r}: the bucket policy {exc}, so it cannot be checked", None)
            return
        for statement in statements:
            if statement.allows and statement.has_public_principal and not statement.restricted_by_condition:
                actions = ", ".join(statement.actions or statement.not_actions) or "no actions"
                report_violation(
                    f"{args.name!r}: {statement.label} of the bucket policy allows anyone (Principal '*') to "
                    f"{actions}; name the principals, or add a condition on aws:SourceArn, aws:SourceAccount, "
                    "aws:SourceVpce or aws:PrincipalOrgID",
                    None,
                )


# --- IAM ----------------------------------------------------------------------------------------


def iam_no_wildcard_actions(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No identity policy allows ``*`` or ``<service>:*``, or every action but a few (``NotAction``)."""
    for label, statements in _identity_policies(args, report_violation):
        for statement in statements:
            if not statement.allows:
                continue  # a wildcard Deny only takes permissions away
            wildcards = statement.wildcard_actions()
            if wildcards:
                report_violation(
                    f"{label}: {statement.label} allows {', '.join(repr(a) for a in wildcards)}; grant the "
                    "specific actions the role calls (least privilege)",
                    None,
                )
            if statement.not_actions:
                report_violation(
                    f"{label}: {statement.label} allows every action except {', '.join(statement.not_actions)} "
                    "(NotAction with Allow); list the actions to allow instead",
                    None,
                )


def iam_no_wildcard_resources(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No identity policy allows an action on ``Resource: "*"`` unless IAM cannot scope that action.

    The exceptions are :data:`infra.policy.iam_documents.RESOURCE_WILDCARD_ACTIONS`, plus the
    policy config's ``additionalWildcardResourceActions``.
    """
    extra = config_strings(args.get_config(), "additionalWildcardResourceActions")
    for label, statements in _identity_policies(args, None):
        for statement in statements:
            if not statement.allows or not statement.on_every_resource:
                continue
            scope = "NotResource (every resource but a few)" if statement.not_resources else "Resource '*'"
            if statement.not_actions:
                offending = ["every action except " + ", ".join(statement.not_actions)]
            else:
                offending = [action for action in statement.actions if not unscopable_action(action, extra)]
            if offending:
                report_violation(
                    f"{label}: {statement.label} allows {', '.join(offending)} on {scope}; scope it to the ARNs "
                    "the role uses (Resource '*' is only for actions IAM cannot scope, such as "
                    "ecr:GetAuthorizationToken: infra.policy.iam_documents.RESOURCE_WILDCARD_ACTIONS)",
                    None,
                )


def iam_no_full_access_managed_policies(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No role, user or group gets an AWS-managed ``*FullAccess`` (or Administrator/PowerUser) policy."""
    kind = args.resource_type
    if kind in ATTACHMENT_TYPES:
        arns = as_list(get(args.props, "policyArn"))
    elif kind in EXCLUSIVE_ATTACHMENT_TYPES:
        arns = as_list(get(args.props, "policyArns"))
    elif kind == ROLE:
        arns = as_list(get(args.props, "managedPolicyArns"))
    else:
        return
    for arn in arns:
        match = FULL_ACCESS_POLICY_RE.match(str(arn))
        if match:
            report_violation(
                f"{args.name!r} attaches the AWS-managed policy {match.group('name')} ({arn}); write a policy "
                "with the specific actions and resources the role needs instead",
                None,
            )


# --- SageMaker ----------------------------------------------------------------------------------


def sagemaker_endpoint_kms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """An endpoint configuration with instance-based variants encrypts their volumes with a KMS key.

    Instance types with local NVMe storage are the exception: their storage is encrypted in
    hardware, and SageMaker refuses ``KmsKeyId`` for the whole configuration if any variant
    uses one. Serverless variants have no volume to encrypt.
    """
    if args.resource_type != ENDPOINT_CONFIGURATION:
        return
    instance_types = [instance_type for _, instance_type in _instance_variants(args.props, shadow=True)]
    if not instance_types or get(args.props, "kmsKeyArn"):
        return
    extra = config_strings(args.get_config(), "localStorageFamilies")
    if any(has_local_storage(instance_type, extra) for instance_type in instance_types):
        return
    report_violation(
        f"{args.name!r} runs instance variants ({', '.join(sorted(set(instance_types)))}) without kms_key_arn: set "
        "it to the store's customer-managed key so the ML storage volumes are encrypted with it",
        None,
    )


def sagemaker_allowed_instance_families(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every variant's instance type belongs to a family the stack's environment may use."""
    if args.resource_type != ENDPOINT_CONFIGURATION:
        return
    variants = list(_instance_variants(args.props, shadow=True))
    if not variants:
        return
    config = args.get_config()
    environment = resolve_environment(config, args.stack_tags, _effective_tags(args))
    if environment is None:
        report_violation(
            f"{args.name!r}: cannot tell the stack's environment, so its instance types cannot be checked; "
            "set the policy config 'environment', the stack tag 'environment', or the resource tag 'environment'",
            None,
        )
        return
    allowed = allowed_families(config, environment.name)
    if allowed is None:
        report_violation(
            f"{args.name!r}: no instance families are allowed for environment {environment.name!r} "
            f"(from {environment.source}); set policy config allowedInstanceFamilies.{environment.name}",
            None,
        )
        return
    for variant, instance_type in variants:
        family = instance_family(instance_type)
        if family not in allowed:
            report_violation(
                f"{args.name!r}: variant {variant!r} uses {instance_type} (family {family}), which is not allowed "
                f"in {environment.name} (from {environment.source}); allowed families: {', '.join(allowed)}",
                None,
            )


def sagemaker_autoscaling_outside_dev(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Outside dev, every instance-based production variant of every endpoint has a scalable target.

    The target must be ``endpoint/<endpoint>/variant/<variant>`` with dimension
    ``sagemaker:variant:DesiredInstanceCount`` in namespace ``sagemaker``. While the
    endpoint's name or a target's resource id is not known yet (preview of a new stack),
    a target that depends on the endpoint counts for one of its variants.
    """
    endpoints = [resource for resource in args.resources if resource.resource_type == ENDPOINT]
    if not endpoints:
        return
    config = args.get_config()
    environment = resolve_environment(config, args.stack_tags, _first_tags(endpoints))
    if environment is not None and environment.name == "dev":
        return
    if environment is None:
        report_violation(
            "cannot tell the stack's environment, so autoscaling cannot be checked; set the policy config "
            "'environment', the stack tag 'environment', or the endpoints' tag 'environment'",
            None,
        )
        return
    configurations = [resource for resource in args.resources if resource.resource_type == ENDPOINT_CONFIGURATION]
    targets = [resource for resource in args.resources if _is_instance_count_target(resource)]
    known_ids = {get_or_unknown(target.props, "resourceId") for target in targets}
    for endpoint in endpoints:
        configuration = next((c for c in configurations if _configures(c, endpoint)), None)
        if configuration is None:
            continue  # the configuration lives outside this stack; nothing here to compare with
        endpoint_name = get_or_unknown(endpoint.props, "name")
        dependent_targets = sum(1 for target in targets if _depends_on(target, endpoint, "resourceId"))
        missing = []
        for variant, _ in _instance_variants(configuration.props, shadow=False):
            resource_id = f"endpoint/{endpoint_name}/variant/{variant}"
            if isinstance(endpoint_name, str) and resource_id in known_ids:
                continue
            if (endpoint_name is UNKNOWN or UNKNOWN in known_ids) and dependent_targets > 0:
                dependent_targets -= 1
                continue
            missing.append(resource_id)
        if missing:
            report_violation(
                f"endpoint {endpoint.name!r} ({environment.name}, from {environment.source}) has no "
                f"aws.appautoscaling.Target for {', '.join(missing)}: outside dev every instance-based variant "
                f"needs one (service_namespace 'sagemaker', scalable_dimension '{INSTANCE_COUNT_DIMENSION}') "
                "with a target-tracking policy",
                endpoint.urn,
            )


def sagemaker_prod_endpoint_not_replaceable(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A prod endpoint is protected and names only its own, stable rollback alarm.

    Replacing a named endpoint deletes it before creating the new one: an outage. Two things
    make a change replace it: its name, and its ``deployment_config.auto_rollback_configuration``,
    both ``ForceNew`` in the Terraform AWS provider (``internal/service/sagemaker/endpoint.go``).
    So in prod the auto-rollback block must name exactly ``<endpoint>-rollback`` (the composite
    alarm whose rule carries every other alarm and changes in place), and the endpoint must be
    ``protect``-ed: the engine then fails any update that would replace it ("any deployment that
    would delete it (including a replacement) fails", Pulumi docs, "Protecting against undesired
    changes"). A policy sees only the new state; protection is what refuses a rename.
    """
    if args.resource_type != ENDPOINT:
        return
    environment = resolve_environment(args.get_config(), args.stack_tags, _effective_tags(args))
    if environment is None:
        report_violation(
            f"{args.name!r}: cannot tell the stack's environment, so replacement safety cannot be checked; set "
            "the policy config 'environment', the stack tag 'environment', or the resource tag 'environment'",
            None,
        )
        return
    if environment.name != "prod":
        return
    if not args.opts.protect:
        report_violation(
            f"{args.name!r} is a prod endpoint without protect (environment from {environment.source}): replacing a "
            "named endpoint deletes it first, an outage; declare it with ResourceOptions(protect=True) so the engine "
            "refuses any change that would replace it",
            None,
        )
    endpoint_name = get_or_unknown(args.props, "name")
    expected = f"{endpoint_name}-rollback" if isinstance(endpoint_name, str) else "<endpoint>-rollback"
    alarms = as_list(get_or_unknown(args.props, "deploymentConfig", "autoRollbackConfiguration", "alarms"))
    names = [get_or_unknown(alarm, "alarmName") for alarm in alarms]
    if UNKNOWN in names:
        return  # the composite alarm's name is known only after it exists (first preview)
    # While the endpoint's name is unknown (a new stack's preview), only the count can be checked.
    stable = names == [expected] if isinstance(endpoint_name, str) else len(names) == 1
    if not stable:
        shown = ", ".join(str(name) for name in names) or "none"
        report_violation(
            f"{args.name!r} (prod) rolls back on alarms [{shown}]: the auto-rollback block is ForceNew in the AWS "
            "provider, so every change to this list replaces the endpoint (an outage); name exactly one alarm, "
            f"the composite {expected!r}, and put the other alarms in its rule",
            None,
        )


# --- tags ---------------------------------------------------------------------------------------


def aws_required_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every taggable AWS resource carries the stack's tags (its own ``tags`` or the provider's default tags)."""
    taggable = accepts_tags(args.resource_type)
    if taggable is False or (taggable is None and get(args.props, "tags") is None):
        return
    tags = _effective_tags(args)
    required = required_tag_keys(args.get_config())
    missing = [key for key in required if not tags.get(key)]
    if missing:
        report_violation(
            f"{args.name!r} lacks the tags {', '.join(missing)}: pass the stack's resource tags "
            "(StackConfig.resource_tags) to every taggable resource",
            None,
        )


@functools.cache
def accepts_tags(resource_type: str) -> bool | None:
    """Whether pulumi-aws's resource class for ``resource_type`` takes a ``tags`` argument.

    ``None`` when the type is not an AWS resource class this pulumi-aws knows (a newer
    provider than the SDK installed here); ``False`` for non-AWS types (components, providers).
    Asking the SDK keeps the rule right for every resource type without a hand-kept list.
    """
    package, _, rest = resource_type.partition(":")
    if package != "aws":
        return False
    module_path, _, class_name = rest.partition(":")
    module_name = module_path.split("/", 1)[0]
    candidates = (
        ["pulumi_aws"] if module_name == "index" else [f"pulumi_aws.{module_name}", f"pulumi_aws.{module_name}_"]
    )
    for candidate in candidates:  # Python keywords get a trailing underscore: lambda -> lambda_
        try:
            cls = getattr(importlib.import_module(candidate), class_name)
        except (ImportError, AttributeError):
            continue
        init = getattr(cls, "_internal_init", None)
        if init is None:
            return None
        return "tags" in inspect.signature(init).parameters
    return None


# --- helpers ------------------------------------------------------------------------------------


def _buckets(args: StackValidationArgs) -> list[PolicyResource]:
    return [resource for resource in args.resources if resource.resource_type in BUCKET_TYPES]


def _targets_bucket(companion: PolicyResource, bucket: PolicyResource) -> bool:
    """Whether a bucket-level resource (encryption, public access block) configures ``bucket``."""
    if _depends_on(companion, bucket, "bucket"):
        return True
    target = get_or_unknown(companion.props, "bucket")
    return isinstance(target, str) and target in (get_or_unknown(bucket.props, "bucket"), bucket.name)


def _inline_kms(bucket: PolicyResource) -> bool:
    inline = get_or_unknown(bucket.props, "serverSideEncryptionConfiguration")
    if inline is UNKNOWN or inline is None:
        return False
    rules = as_list(get_or_unknown(inline, "rule")) + as_list(get_or_unknown(inline, "rules"))
    return any(
        get_or_unknown(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") in KMS_ALGORITHMS for rule in rules
    )


def _depends_on(resource: PolicyResource, dependency: PolicyResource, prop: str) -> bool:
    return any(dep.urn == dependency.urn for dep in resource.property_dependencies.get(prop, []))


def _configures(configuration: PolicyResource, endpoint: PolicyResource) -> bool:
    if any(dep.urn == configuration.urn for dep in endpoint.property_dependencies.get("endpointConfigName", [])):
        return True
    wanted = get_or_unknown(endpoint.props, "endpointConfigName")
    return isinstance(wanted, str) and wanted == get_or_unknown(configuration.props, "name")


def _is_instance_count_target(resource: PolicyResource) -> bool:
    return (
        resource.resource_type == SCALABLE_TARGET
        and get_or_unknown(resource.props, "serviceNamespace") == "sagemaker"
        and get_or_unknown(resource.props, "scalableDimension") == INSTANCE_COUNT_DIMENSION
    )


def _first_tags(resources: list[PolicyResource]) -> Mapping[str, Any] | None:
    for resource in resources:
        # Outputs carry tagsAll (the provider's default tags included); inputs only tags.
        for key in ("tagsAll", "tags"):
            tags = as_mapping(get_or_unknown(resource.props, key))
            if tags:
                return tags
    return None


def _instance_variants(props: Mapping[str, Any], *, shadow: bool) -> Iterator[tuple[str, str]]:
    """``(variant name, instance type)`` of the instance-based (not serverless) variants."""
    keys = ("productionVariants", "shadowProductionVariants") if shadow else ("productionVariants",)
    for key in keys:
        for variant in as_list(get(props, key)):
            instance_type = get(variant, "instanceType")
            if isinstance(instance_type, str) and instance_type and get(variant, "serverlessConfig") is None:
                yield str(get(variant, "variantName") or "?"), instance_type


def _effective_tags(args: ResourceValidationArgs) -> dict[str, Any]:
    """The resource's tags over its provider's ``default_tags`` (what AWS will put on it)."""
    tags: dict[str, Any] = {}
    if args.provider is not None:
        default_tags = as_mapping(get(args.provider.props, "defaultTags"))
        tags.update(as_mapping(get(default_tags, "tags")) or {})
    tags.update(as_mapping(get(args.props, "tags")) or {})
    return tags


def _identity_policies(
    args: ResourceValidationArgs, report_violation: ReportViolation | None
) -> Iterator[tuple[str, list[Statement]]]:
    """``(label, statements)`` of each identity policy the resource declares.

    Unparsable documents are reported once (by the caller that passes ``report_violation``)
    and skipped by the others.
    """
    documents: list[tuple[str, Any]] = []
    if args.resource_type in IDENTITY_POLICY_TYPES:
        documents.append((f"policy {args.name!r}", get(args.props, "policy")))
    elif args.resource_type == ROLE:
        for inline in as_list(get(args.props, "inlinePolicies")):
            documents.append((f"inline policy {get(inline, 'name')!r} of role {args.name!r}", get(inline, "policy")))
    for label, document in documents:
        if not document:
            continue
        try:
            yield label, parse_policy_document(document)
        except PolicyDocumentError as exc:
            if report_violation is not None:
                report_violation(f"{label} {exc}, so it cannot be checked", None)
