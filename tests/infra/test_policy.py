"""The policy pack's rules, called the way the policy engine calls them.

Each rule gets real ``pulumi_policy`` argument objects whose properties are wrapped in the
engine's own unknown-checking proxies (``Mapping``/``Sequence``, not ``dict``/``list``, and
camelCase wire names), with passing and failing resources; the assertions are on the
violation text, which is all a user sees when ``pulumi preview`` refuses a stack. The last
tests start the pack as the CLI would and talk to it over the analyzer gRPC protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "pulumi_policy",
    reason="pulumi-policy pins protobuf 5.29, which TensorFlow and ONNX cannot share: "
    "./dev.sh test runs this module in .venv-policy",
)

import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from infra.config import StackConfig, load_stack_config
from infra.policy import RULES, build_policies, gcp_rules, rules
from infra.policy.iam_documents import RESOURCE_WILDCARD_ACTIONS
from infra.policy.settings import (
    DEFAULT_ALLOWED_INGRESS,
    DEFAULT_ALLOWED_INSTANCE_FAMILIES,
    REQUIRED_LABEL_KEYS,
    REQUIRED_TAG_KEYS,
)
from tests.infra.decommission_cases import CASES, STACK, DecommissionCase

POLICY_DIR = Path(__file__).resolve().parents[2] / "infra" / "policy"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DIGEST = "0123456789abcdef" * 4
TAGS = {
    "environment": "dev",
    "stack": "dev",
    "model": "digits",
    "model-version": "1.0.0",
    "package-digest": DIGEST,
    "managed-by": "model-deploy",
}


class Violations:
    """A ``report_violation`` that records what it is told."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.urns: list[str | None] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        assert "\n" not in message, "a violation is one line"
        self.messages.append(message)
        self.urns.append(urn)

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def one(self) -> str:
        assert len(self.messages) == 1, self.messages
        return self.messages[0]


def _urn(resource_type: str, name: str) -> str:
    return f"urn:pulumi:dev::model-deploy::{resource_type}::{name}"


def _opts(*, protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def check(
    rule: Any,
    resource_type: str,
    props: Mapping[str, Any],
    *,
    name: str = "res",
    config: Mapping[str, Any] | None = None,
    stack_tags: Mapping[str, str] | None = None,
    provider_props: Mapping[str, Any] | None = None,
    provider_type: str = "pulumi:providers:aws",
    protect: bool = False,
) -> Violations:
    """Run a resource rule on one resource as the engine would; return what it reported."""
    provider = None
    if provider_props is not None:
        provider = PolicyProviderResource(
            provider_type, unknown_checking_proxy(dict(provider_props)), _urn(provider_type, "p"), "p"
        )
    args = ResourceValidationArgs(
        resource_type,
        unknown_checking_proxy(json.loads(json.dumps(props))),
        _urn(resource_type, name),
        name,
        _opts(protect=protect),
        provider,
        dict(config or {}),
        dict(stack_tags or {}),
    )
    violations = Violations()
    rule(args, violations)
    return violations


def resource(
    resource_type: str, name: str, props: Mapping[str, Any], depends: Mapping[str, list[PolicyResource]] | None = None
) -> PolicyResource:
    """A stack resource (its outputs) with property dependencies, as the engine builds them."""
    deps = dict(depends or {})
    return PolicyResource(
        resource_type,
        unknown_checking_proxy(json.loads(json.dumps(props))),
        _urn(resource_type, name),
        name,
        _opts(),
        None,
        None,
        [dep for group in deps.values() for dep in group],
        deps,
    )


def check_stack(
    rule: Any,
    resources: list[PolicyResource],
    *,
    config: Mapping[str, Any] | None = None,
    stack_tags: Mapping[str, str] | None = None,
) -> Violations:
    violations = Violations()
    rule(StackValidationArgs(resources, dict(config or {}), dict(stack_tags or {})), violations)
    return violations


def doc(*statements: Mapping[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


BUCKET = "aws:s3/bucket:Bucket"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
TARGET = "aws:appautoscaling/target:Target"
ALL_ON = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}


# --- the pack -----------------------------------------------------------------------------------


def test_the_pack_lists_every_rule_once_and_all_are_mandatory() -> None:
    policies = build_policies()
    names = [policy.name for policy in policies]
    assert len(names) == len(set(names)) == 25
    assert all(policy.enforcement_level is EnforcementLevel.MANDATORY for policy in policies)
    stack = {policy.name for policy in policies if isinstance(policy, StackValidationPolicy)}
    assert stack == {
        "s3-bucket-encryption-present",
        "s3-bucket-public-access-block-present",
        "sagemaker-autoscaling-outside-dev",
    }
    assert all(isinstance(policy, ResourceValidationPolicy) for policy in policies if policy.name not in stack)
    families = next(policy for policy in policies if policy.name == "sagemaker-allowed-instance-families")
    assert families.config_schema is not None
    assert set(families.config_schema.properties) == {"environment", "allowedInstanceFamilies"}
    public = next(policy for policy in policies if policy.name == "cloud-run-public-invoker")
    assert public.config_schema is not None
    assert set(public.config_schema.properties) == {"environment", "publicEnvironments"}
    assert [spec.name for spec in RULES] == names


def test_pulumi_policy_yaml_names_the_pack_and_its_runtime() -> None:
    settings = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert settings["name"] == "model-deploy-policies"
    assert settings["runtime"]["name"] == "python"
    assert (POLICY_DIR / settings["runtime"]["options"]["virtualenv"]).resolve() == Path(sys.prefix).resolve()


def test_the_example_policy_config_matches_the_schemas() -> None:
    example = json.loads((POLICY_DIR / "config.example.json").read_text())
    schemas = {policy.name: policy.config_schema for policy in build_policies()}
    for policy_name, settings in example.items():
        schema = schemas[policy_name]
        assert schema is not None, policy_name
        assert set(settings) <= set(schema.properties), policy_name
    assert example["aws-required-tags"]["requiredTags"] == list(REQUIRED_TAG_KEYS)
    assert example["gcp-required-labels"]["requiredLabels"] == list(REQUIRED_LABEL_KEYS)
    # The example must not refuse the committed GCP stacks: Cloud Run ingress defaults to all traffic.
    assert all(
        "INGRESS_TRAFFIC_ALL" in allowed for allowed in example["cloud-run-allowed-ingress"]["allowedIngress"].values()
    )


# --- S3 encryption ------------------------------------------------------------------------------


def test_every_bucket_needs_an_encryption_configuration() -> None:
    store = resource(BUCKET, "store", {"bucket": "acme-models"})
    logs = resource(BUCKET, "logs", {"bucket": "acme-logs"})
    by_dependency = resource(ENCRYPTION, "store-sse", {"bucket": "acme-models"}, {"bucket": [store]})
    assert not check_stack(rules.s3_bucket_encryption_present, [store, by_dependency])
    by_name = resource(ENCRYPTION, "logs-sse", {"bucket": "acme-logs"})
    assert not check_stack(rules.s3_bucket_encryption_present, [logs, by_name])

    violations = check_stack(rules.s3_bucket_encryption_present, [store, logs, by_dependency])
    assert violations.one == (
        "bucket 'logs' has no aws.s3.BucketServerSideEncryptionConfiguration: add one with sse_algorithm 'aws:kms' "
        "and the store's customer-managed key (without it S3 uses SSE-S3)"
    )
    assert violations.urns == [logs.urn]


def test_inline_sse_kms_counts_but_the_sse_s3_default_does_not() -> None:
    def bucket(algorithm: str) -> PolicyResource:
        inline = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}}]}
        return resource(BUCKET, "store", {"bucket": "b", "serverSideEncryptionConfiguration": inline})

    assert not check_stack(rules.s3_bucket_encryption_present, [bucket("aws:kms")])
    # S3 reports AES256 for every bucket since 2023; that is not the SSE-KMS the store needs.
    assert len(check_stack(rules.s3_bucket_encryption_present, [bucket("AES256")])) == 1


def test_default_encryption_must_be_kms_with_a_customer_managed_key() -> None:
    def rules_with(**default: Any) -> dict[str, Any]:
        return {"bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": default, "bucketKeyEnabled": True}]}

    assert not check(rules.s3_encryption_uses_kms, ENCRYPTION, rules_with(sseAlgorithm="aws:kms", kmsMasterKeyId=KEY))
    assert check(
        rules.s3_encryption_uses_kms, ENCRYPTION, rules_with(sseAlgorithm="AES256"), name="store-sse"
    ).one.startswith(
        "'store-sse' encrypts with sse_algorithm 'AES256'; use 'aws:kms' with the store's customer-managed"
    )
    assert "without kms_master_key_id, i.e. the AWS-managed aws/s3 key" in (
        check(rules.s3_encryption_uses_kms, ENCRYPTION, rules_with(sseAlgorithm="aws:kms")).one
    )
    assert "sets no apply_server_side_encryption_by_default" in (
        check(rules.s3_encryption_uses_kms, ENCRYPTION, {"bucket": "b", "rules": [{"bucketKeyEnabled": True}]}).one
    )
    assert not check(rules.s3_encryption_uses_kms, PAB, ALL_ON)  # other types are not this rule's business


# --- S3 public access ---------------------------------------------------------------------------


def test_every_bucket_needs_a_public_access_block() -> None:
    store = resource(BUCKET, "store", {"bucket": "acme-models"})
    block = resource(PAB, "store-pab", {"bucket": "acme-models", **ALL_ON}, {"bucket": [store]})
    assert not check_stack(rules.s3_bucket_public_access_block_present, [store, block])
    violations = check_stack(rules.s3_bucket_public_access_block_present, [store])
    assert violations.one.startswith("bucket 'store' has no aws.s3.BucketPublicAccessBlock: add one with")
    account = resource("aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock", "account", ALL_ON)
    assert not check_stack(rules.s3_bucket_public_access_block_present, [store, account])


def test_public_access_blocks_set_all_four_settings() -> None:
    assert not check(rules.s3_public_access_block_all_on, PAB, {"bucket": "b", **ALL_ON})
    # Providers sometimes hand booleans over as strings.
    assert not check(rules.s3_public_access_block_all_on, PAB, {k: "true" for k in ALL_ON})
    partial = {"bucket": "b", "blockPublicAcls": True, "ignorePublicAcls": True, "blockPublicPolicy": False}
    assert check(rules.s3_public_access_block_all_on, PAB, partial, name="store-pab").one == (
        "'store-pab' leaves block_public_policy, restrict_public_buckets off: set all four of block_public_acls, "
        "block_public_policy, ignore_public_acls, restrict_public_buckets to True (a model store is never public)"
    )


def test_bucket_policies_that_let_anyone_in_are_refused() -> None:
    deny_plain_http = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    role_read = {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/endpoint"},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::b/*",
    }
    vpce_only = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::b/*",
        "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}},
    }
    policy = "aws:s3/bucketPolicy:BucketPolicy"
    assert not check(rules.s3_no_public_access, policy, {"bucket": "b", "policy": doc(deny_plain_http, role_read)})
    assert not check(rules.s3_no_public_access, policy, {"bucket": "b", "policy": doc(vpce_only)})

    public = {"Sid": "Website", "Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "s3:GetObject"}
    assert check(
        rules.s3_no_public_access, policy, {"policy": doc(deny_plain_http, public)}, name="store-policy"
    ).one == (
        "'store-policy': statement 'Website' of the bucket policy allows anyone (Principal '*') to s3:GetObject; "
        "name the principals, or add a condition on aws:SourceArn, aws:SourceAccount, aws:SourceVpce or "
        "aws:PrincipalOrgID"
    )
    # ...IfExists passes callers that omit the key, and a /0 range is everyone: neither restricts.
    if_exists = {**vpce_only, "Condition": {"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1a2b3c4d"}}}
    anywhere = {**vpce_only, "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}
    assert len(check(rules.s3_no_public_access, policy, {"policy": doc(if_exists, anywhere)})) == 2


def test_public_acls_on_buckets_and_objects_are_refused() -> None:
    acl = "aws:s3/bucketAcl:BucketAcl"
    assert check(rules.s3_no_public_access, acl, {"bucket": "b", "acl": "public-read"}, name="store-acl").one == (
        "'store-acl' sets the canned ACL 'public-read', which makes objects public; remove it"
    )
    grant = {
        "grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"},
        "permission": "READ",
    }
    assert check(rules.s3_no_public_access, acl, {"bucket": "b", "accessControlPolicy": {"grants": [grant]}}).one == (
        "'res' grants access to the AllUsers group, which makes objects public"
    )
    obj = "aws:s3/bucketObjectv2:BucketObjectv2"
    assert "'authenticated-read'" in check(rules.s3_no_public_access, obj, {"acl": "authenticated-read"}).one
    assert not check(rules.s3_no_public_access, acl, {"bucket": "b", "acl": "private"})
    assert not check(rules.s3_no_public_access, obj, {"acl": "bucket-owner-full-control"})


# --- IAM ----------------------------------------------------------------------------------------

READ_PACKAGE = {
    "Sid": "ReadPackage",
    "Effect": "Allow",
    "Action": ["s3:GetObject"],
    "Resource": f"arn:aws:s3:::acme-models/packages/digits/{DIGEST}/*",
}


def test_wildcard_actions_are_refused() -> None:
    deny_all = {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert not check(rules.iam_no_wildcard_actions, ROLE_POLICY, {"policy": doc(READ_PACKAGE, deny_all)})

    everything = {"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"}
    assert check(rules.iam_no_wildcard_actions, ROLE_POLICY, {"policy": doc(everything)}, name="endpoint").one == (
        "policy 'endpoint': statement 'Admin' allows '*'; grant the specific actions the role calls (least privilege)"
    )
    service = {"Effect": "Allow", "Action": ["s3:GetObject", "SageMaker:*"], "Resource": "arn:aws:s3:::b/*"}
    assert "statement #2 allows 'SageMaker:*'" in (
        check(rules.iam_no_wildcard_actions, ROLE_POLICY, {"policy": doc(READ_PACKAGE, service)}).one
    )
    not_action = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    assert "allows every action except iam:* (NotAction with Allow)" in (
        check(rules.iam_no_wildcard_actions, "aws:iam/policy:Policy", {"policy": doc(not_action)}).one
    )


def test_inline_role_policies_are_checked_and_broken_documents_reported() -> None:
    role = "aws:iam/role:Role"
    inline = [{"name": "store", "policy": doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b"})}]
    assert check(rules.iam_no_wildcard_actions, role, {"inlinePolicies": inline}, name="endpoint-role").one == (
        "inline policy 'store' of role 'endpoint-role': statement #1 allows 's3:*'; grant the specific actions the "
        "role calls (least privilege)"
    )
    assert check(rules.iam_no_wildcard_actions, ROLE_POLICY, {"policy": "{not json"}, name="p").one == (
        "policy 'p' is not a JSON object with a Statement list, so it cannot be checked"
    )


def test_resource_wildcards_only_for_actions_that_cannot_be_scoped() -> None:
    unscopable = {
        "Effect": "Allow",
        "Action": ["ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "ec2:DescribeSubnets", "ec2:Describe*"],
        "Resource": "*",
    }
    assert not check(rules.iam_no_wildcard_resources, ROLE_POLICY, {"policy": doc(READ_PACKAGE, unscopable)})

    read_anything = {
        "Sid": "Read",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "ecr:GetAuthorizationToken"],
        "Resource": "*",
    }
    message = check(rules.iam_no_wildcard_resources, ROLE_POLICY, {"policy": doc(read_anything)}, name="endpoint").one
    assert message.startswith(
        "policy 'endpoint': statement 'Read' allows s3:GetObject on Resource '*'; scope it to the ARNs the role uses"
    )
    assert message.endswith(
        "(Resource '*' is only for actions IAM cannot scope, such as ecr:GetAuthorizationToken: "
        "infra.policy.iam_documents.RESOURCE_WILDCARD_ACTIONS)"
    )
    # "ec2:*" is not "ec2:Describe*": the allow-list is matched against the action as written.
    ec2_all = {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}
    assert (
        "allows ec2:* on Resource '*'"
        in check(rules.iam_no_wildcard_resources, ROLE_POLICY, {"policy": doc(ec2_all)}).one
    )
    not_resource = {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::secrets/*"}
    assert "on NotResource (every resource but a few)" in (
        check(rules.iam_no_wildcard_resources, ROLE_POLICY, {"policy": doc(not_resource)}).one
    )
    logs = {"Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"}
    assert len(check(rules.iam_no_wildcard_resources, ROLE_POLICY, {"policy": doc(logs)})) == 1
    extra = {"additionalWildcardResourceActions": ["logs:Describe*"]}
    assert not check(rules.iam_no_wildcard_resources, ROLE_POLICY, {"policy": doc(logs)}, config=extra)


def test_the_resource_wildcard_allow_list_documents_each_reason() -> None:
    assert "ecr:GetAuthorizationToken" in RESOURCE_WILDCARD_ACTIONS
    assert all(reason for reason in RESOURCE_WILDCARD_ACTIONS.values())


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess",
        "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        "arn:aws:iam::aws:policy/AWSLambda_FullAccess",
        "arn:aws:iam::aws:policy/AdministratorAccess",
        "arn:aws-us-gov:iam::aws:policy/service-role/AmazonEC2ContainerRegistryFullAccess",
    ],
)
def test_aws_managed_full_access_policies_are_refused(arn: str) -> None:
    attachment = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    name = arn.rsplit("/", 1)[-1]
    assert check(
        rules.iam_no_full_access_managed_policies, attachment, {"role": "r", "policyArn": arn}, name="a"
    ).one == (
        f"'a' attaches the AWS-managed policy {name} ({arn}); write a policy with the specific actions and "
        "resources the role needs instead"
    )
    assert len(check(rules.iam_no_full_access_managed_policies, "aws:iam/role:Role", {"managedPolicyArns": [arn]})) == 1


def test_scoped_and_customer_managed_policies_may_be_attached() -> None:
    attachment = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    for arn in (
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        "arn:aws:iam::123456789012:policy/AmazonS3FullAccess",  # the account's own policy, whatever its name
    ):
        assert not check(rules.iam_no_full_access_managed_policies, attachment, {"role": "r", "policyArn": arn})


# --- SageMaker ----------------------------------------------------------------------------------


def variant(name: str = "primary", instance_type: str | None = "ml.m5.large", **extra: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"variantName": name, "modelName": "digits", **extra}
    if instance_type:
        props["instanceType"] = instance_type
        props["initialInstanceCount"] = 1
    return props


def test_instance_variants_need_a_volume_kms_key() -> None:
    assert not check(rules.sagemaker_endpoint_kms, CONFIG, {"productionVariants": [variant()], "kmsKeyArn": KEY})
    assert check(
        rules.sagemaker_endpoint_kms, CONFIG, {"productionVariants": [variant()]}, name="digits-config"
    ).one == (
        "'digits-config' runs instance variants (ml.m5.large) without kms_key_arn: set it to the store's "
        "customer-managed key so the ML storage volumes are encrypted with it"
    )
    shadow = {
        "productionVariants": [variant(kmsKeyArn=None)],
        "shadowProductionVariants": [variant("shadow", "ml.c5.xlarge")],
    }
    assert "(ml.c5.xlarge, ml.m5.large)" in check(rules.sagemaker_endpoint_kms, CONFIG, shadow).one


def test_serverless_and_local_storage_variants_need_no_volume_key() -> None:
    serverless = variant(instance_type=None, serverlessConfig={"memorySizeInMb": 2048, "maxConcurrency": 5})
    assert not check(rules.sagemaker_endpoint_kms, CONFIG, {"productionVariants": [serverless]})
    # SageMaker refuses KmsKeyId when any variant has local NVMe storage (encrypted in hardware).
    for instance_type in ("ml.g5.xlarge", "ml.m5d.large", "ml.g4dn.xlarge", "ml.p4d.24xlarge"):
        assert not check(
            rules.sagemaker_endpoint_kms, CONFIG, {"productionVariants": [variant(instance_type=instance_type)]}
        )
    newer = {"productionVariants": [variant(instance_type="ml.g9.xlarge")]}  # a family this list does not know yet
    assert len(check(rules.sagemaker_endpoint_kms, CONFIG, newer)) == 1
    assert not check(rules.sagemaker_endpoint_kms, CONFIG, newer, config={"localStorageFamilies": ["ml.g9"]})


def test_instance_families_follow_the_environment() -> None:
    dev = {"productionVariants": [variant(instance_type="ml.m5.large")], "tags": TAGS}
    assert not check(rules.sagemaker_allowed_instance_families, CONFIG, dev)

    gpu = {"productionVariants": [variant(instance_type="ml.g5.xlarge")], "tags": TAGS}
    assert check(rules.sagemaker_allowed_instance_families, CONFIG, gpu, name="digits-config").one == (
        "'digits-config': variant 'primary' uses ml.g5.xlarge (family ml.g5), which is not allowed in dev "
        "(from tag 'environment'); allowed families: ml.t2, ml.m5, ml.c5, ml.m6i, ml.c6i"
    )
    # The stack tag (set by whoever runs the pipeline) outranks the program's own resource tag...
    assert not check(rules.sagemaker_allowed_instance_families, CONFIG, gpu, stack_tags={"environment": "prod"})
    # ...and the policy config outranks both.
    message = check(
        rules.sagemaker_allowed_instance_families,
        CONFIG,
        gpu,
        stack_tags={"environment": "prod"},
        config={"environment": "staging", "allowedInstanceFamilies": {"staging": ["ml.c6i"]}},
    ).one
    assert "not allowed in staging (from policy config 'environment'); allowed families: ml.c6i" in message
    assert not check(
        rules.sagemaker_allowed_instance_families, CONFIG, gpu, config={"allowedInstanceFamilies": {"dev": ["ml.g5"]}}
    )
    burstable = {"productionVariants": [variant(instance_type="ml.t2.medium")], "tags": {**TAGS, "environment": "prod"}}
    assert "family ml.t2" in check(rules.sagemaker_allowed_instance_families, CONFIG, burstable).one


def test_the_environment_may_come_from_provider_default_tags() -> None:
    gpu = {"productionVariants": [variant(instance_type="ml.g5.xlarge")]}
    provider = {"defaultTags": {"tags": {**TAGS, "environment": "prod"}}}
    assert not check(rules.sagemaker_allowed_instance_families, CONFIG, gpu, provider_props=provider)


def test_instance_families_need_a_known_environment() -> None:
    untagged = {"productionVariants": [variant()]}
    assert check(rules.sagemaker_allowed_instance_families, CONFIG, untagged, name="c").one == (
        "'c': cannot tell the stack's environment, so its instance types cannot be checked; set the policy config "
        "'environment', the stack tag 'environment', or the resource tag 'environment'"
    )
    assert check(rules.sagemaker_allowed_instance_families, CONFIG, untagged, config={"environment": "qa"}).one == (
        "'res': no instance families are allowed for environment 'qa' (from policy config 'environment'); "
        "set policy config allowedInstanceFamilies.qa"
    )
    assert set(DEFAULT_ALLOWED_INSTANCE_FAMILIES) == {"dev", "staging", "prod"}


def endpoint_stack(
    environment: str | None, variants: list[dict[str, Any]], target_ids: list[str], *, dimension: str | None = None
) -> list[PolicyResource]:
    tags = {**TAGS, "environment": environment} if environment else {}
    config = resource(
        CONFIG, "digits-config", {"name": "digits-config-1a2b3c", "productionVariants": variants, "tags": tags}
    )
    endpoint = resource(
        ENDPOINT, "digits", {"name": "digits", "endpointConfigName": "digits-config-1a2b3c", "tags": tags},
        {"endpointConfigName": [config]},
    )  # fmt: skip
    targets = [
        resource(
            TARGET,
            f"target-{index}",
            {
                "serviceNamespace": "sagemaker",
                "scalableDimension": dimension or "sagemaker:variant:DesiredInstanceCount",
                "resourceId": target_id,
                "minCapacity": 2,
                "maxCapacity": 6,
            },
        )
        for index, target_id in enumerate(target_ids)
    ]
    return [config, endpoint, *targets]


def test_non_dev_stacks_autoscale_every_instance_variant() -> None:
    rule = rules.sagemaker_autoscaling_outside_dev
    assert not check_stack(rule, endpoint_stack("prod", [variant()], ["endpoint/digits/variant/primary"]))
    assert not check_stack(rule, endpoint_stack("dev", [variant()], []))

    stack = endpoint_stack("staging", [variant("a"), variant("b")], ["endpoint/digits/variant/a"])
    violations = check_stack(rule, stack)
    assert violations.one == (
        "endpoint 'digits' (staging, from tag 'environment') has no aws.appautoscaling.Target for "
        "endpoint/digits/variant/b: outside dev every instance-based variant needs one (service_namespace "
        "'sagemaker', scalable_dimension 'sagemaker:variant:DesiredInstanceCount') with a target-tracking policy"
    )
    assert violations.urns == [stack[1].urn]
    # A target on another dimension does not scale instances.
    wrong = endpoint_stack(
        "prod",
        [variant()],
        ["endpoint/digits/variant/primary"],
        dimension="sagemaker:variant:DesiredProvisionedConcurrency",
    )
    assert len(check_stack(rule, wrong)) == 1
    # Serverless variants scale on their own; the environment may also come from the policy config.
    serverless = variant(instance_type=None, serverlessConfig={"memorySizeInMb": 2048, "maxConcurrency": 5})
    assert not check_stack(rule, endpoint_stack("prod", [serverless], []))
    assert len(check_stack(rule, endpoint_stack("dev", [variant()], []), config={"environment": "prod"})) == 1


def test_autoscaling_during_preview_counts_targets_that_depend_on_the_endpoint() -> None:
    config = resource(CONFIG, "digits-config", {"productionVariants": [variant()]})
    endpoint = resource(
        ENDPOINT,
        "digits",
        {"name": UNKNOWN_STRING_VALUE, "tags": {**TAGS, "environment": "prod"}},
        {"endpointConfigName": [config]},
    )
    target = resource(
        TARGET,
        "target",
        {
            "serviceNamespace": "sagemaker",
            "scalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "resourceId": UNKNOWN_STRING_VALUE,
        },
        {"resourceId": [endpoint]},
    )
    assert not check_stack(rules.sagemaker_autoscaling_outside_dev, [config, endpoint, target])
    assert len(check_stack(rules.sagemaker_autoscaling_outside_dev, [config, endpoint])) == 1


def test_autoscaling_needs_a_known_environment() -> None:
    untagged = endpoint_stack(None, [variant()], [])
    assert check_stack(rules.sagemaker_autoscaling_outside_dev, untagged).one.startswith(
        "cannot tell the stack's environment, so autoscaling cannot be checked"
    )


# --- replacement safety ---------------------------------------------------------------------------


def prod_endpoint(*alarm_names: str, name: str = "digits-prod", environment: str | None = "prod") -> dict[str, Any]:
    """An endpoint's inputs as the program declares them, rolling back on ``alarm_names``."""
    tags = {**TAGS, "environment": environment} if environment else {}
    return {
        "name": name,
        "endpointConfigName": "digits-config-1234567",
        "deploymentConfig": {
            "blueGreenUpdatePolicy": {
                "trafficRoutingConfiguration": {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 0}
            },
            "autoRollbackConfiguration": {"alarms": [{"alarmName": alarm} for alarm in alarm_names]},
        },
        "tags": tags,
    }


def test_a_prod_endpoint_is_protected_and_names_only_its_stable_rollback_alarm() -> None:
    rule = rules.sagemaker_prod_endpoint_not_replaceable
    assert not check(rule, ENDPOINT, prod_endpoint("digits-prod-rollback"), name="digits", protect=True)
    unprotected = check(rule, ENDPOINT, prod_endpoint("digits-prod-rollback"), name="digits")
    assert unprotected.one == (
        "'digits' is a prod endpoint without protect (environment from tag 'environment'): replacing a named "
        "endpoint deletes it first, an outage; declare it with ResourceOptions(protect=True) so the engine refuses "
        "any change that would replace it"
    )
    listed = check(rule, ENDPOINT, prod_endpoint("digits-prod-rollback", "kpi"), name="digits", protect=True)
    assert listed.one == (
        "'digits' (prod) rolls back on alarms [digits-prod-rollback, kpi]: the auto-rollback block is ForceNew in "
        "the AWS provider, so every change to this list replaces the endpoint (an outage); name exactly one alarm, "
        "the composite 'digits-prod-rollback', and put the other alarms in its rule"
    )
    assert "[none]" in check(rule, ENDPOINT, prod_endpoint(), name="digits", protect=True).one
    assert "[digits-prod-5xx]" in check(rule, ENDPOINT, prod_endpoint("digits-prod-5xx"), name="d", protect=True).one


def test_replacement_safety_applies_to_prod_only_and_needs_a_known_environment() -> None:
    rule = rules.sagemaker_prod_endpoint_not_replaceable
    assert not check(rule, ENDPOINT, prod_endpoint("a", "b", environment="staging"), name="digits")
    assert len(check(rule, ENDPOINT, prod_endpoint("a", environment="dev"), config={"environment": "prod"})) == 2
    assert check(rule, ENDPOINT, prod_endpoint("a", environment=None), name="digits").one.startswith(
        "'digits': cannot tell the stack's environment, so replacement safety cannot be checked"
    )
    # A new stack's preview: names not known yet, so only the count of alarms can be checked.
    unknown = prod_endpoint(UNKNOWN_STRING_VALUE, name=UNKNOWN_STRING_VALUE)
    assert not check(rule, ENDPOINT, unknown, name="digits", protect=True)
    assert not check(rule, ENDPOINT, prod_endpoint(UNKNOWN_STRING_VALUE), name="digits", protect=True)


def test_the_programs_prod_endpoint_passes_the_replacement_rule() -> None:
    from tests.infra.mocks import run_program
    from tests.infra.test_aws_program import prod_canary

    deployment = run_program(prod_canary(), stack="prod")
    endpoint = deployment.one(ENDPOINT)
    violations = check(
        rules.sagemaker_prod_endpoint_not_replaceable,
        ENDPOINT,
        endpoint.inputs,
        name=endpoint.name,
        protect=endpoint.protect,
    )
    assert not violations


# --- tags ---------------------------------------------------------------------------------------


def test_taggable_resources_carry_the_stack_tags() -> None:
    assert not check(rules.aws_required_tags, BUCKET, {"bucket": "b", "tags": TAGS})
    partial = {key: value for key, value in TAGS.items() if key not in ("package-digest", "model")}
    assert check(rules.aws_required_tags, CONFIG, {"tags": partial}, name="digits-config").one == (
        "'digits-config' lacks the tags model, package-digest: pass the stack's resource tags "
        "(StackConfig.resource_tags) to every taggable resource"
    )
    assert "lacks the tags environment, stack, model" in check(rules.aws_required_tags, "aws:kms/key:Key", {}).one


def test_provider_default_tags_count() -> None:
    # Provider configuration reaches the engine as JSON text (older engines) or as an object.
    as_text = {"defaultTags": json.dumps({"tags": TAGS})}
    assert not check(rules.aws_required_tags, BUCKET, {"bucket": "b"}, provider_props=as_text)
    as_object = {"defaultTags": {"tags": {k: v for k, v in TAGS.items() if k != "stack"}}}
    assert (
        "lacks the tags stack:" in check(rules.aws_required_tags, BUCKET, {"bucket": "b"}, provider_props=as_object).one
    )


def test_untaggable_and_non_aws_resources_are_skipped() -> None:
    assert not check(rules.aws_required_tags, PAB, ALL_ON)
    assert not check(rules.aws_required_tags, ROLE_POLICY, {"policy": doc(READ_PACKAGE)})
    assert not check(rules.aws_required_tags, "model-deploy:aws:Endpoint", {})
    assert not check(rules.aws_required_tags, "pulumi:providers:aws", {"region": "eu-west-1"})
    assert rules.accepts_tags("aws:lambda/function:Function") is True  # module lambda_ in Python
    assert rules.accepts_tags("aws:appautoscaling/policy:Policy") is False
    assert rules.accepts_tags("aws:futureservice/thing:Thing") is None


def stack_config() -> StackConfig:
    """A real (AWS) stack config; its ``resource_tags`` and ``resource_labels`` are what the program sets."""
    return load_stack_config(
        {
            "model-deploy:environment": "dev",
            "model-deploy:cloud": "aws",
            "aws:region": "eu-west-1",
            "model-deploy:package": {
                "name": "digits",
                "version": "1.0.0",
                "uri": f"s3://acme-models/packages/digits/{DIGEST}/model.tar.gz",
                "digest": DIGEST,
                "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/model-serve@sha256:" + "ab" * 32,
            },
            "model-deploy:aws": {
                "endpoint": {"name": "digits-dev", "variants": [{"name": "primary", "instanceType": "ml.m5.large"}]}
            },
        },
        stack="dev",
    )


def test_required_tags_are_what_the_stack_config_sets() -> None:
    stack = stack_config()
    assert set(REQUIRED_TAG_KEYS) <= set(stack.resource_tags)
    assert not check(rules.aws_required_tags, CONFIG, {"tags": stack.resource_tags})
    assert not check(rules.aws_required_tags, CONFIG, {"tags": {"team": "ml"}}, config={"requiredTags": ["team"]})


# --- GCP ----------------------------------------------------------------------------------------

GCS_BUCKET = "gcp:storage/bucket:Bucket"
AR_REPOSITORY = "gcp:artifactregistry/repository:Repository"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
RUN_INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
GCP_PROVIDER = "pulumi:providers:gcp"
GCP_IMAGE = "europe-west4-docker.pkg.dev/acme-ml-prod/model-serve/serve@sha256:" + "4f" * 32
RUN_SA = "serviceAccount:digits-prod-run-sa@acme-ml-prod.iam.gserviceaccount.com"
LABELS = {
    "environment": "prod",
    "stack": "gcp-prod",
    "model": "digits",
    "model-version": "1_0_0",
    "package-digest": DIGEST[:63],
    "managed-by": "model-deploy",
}


def with_changes(props: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``props`` with ``changes`` applied; a change to ``None`` removes the property (leaves it unset)."""
    changed = {**props, **changes}
    return {key: value for key, value in changed.items() if value is not None}


def gcs_bucket(**changes: Any) -> dict[str, Any]:
    """A bucket's inputs as the GCP program declares them for the prod stack."""
    props = {
        "name": "acme-ml-prod-models",
        "location": "europe-west4",
        "uniformBucketLevelAccess": True,
        "publicAccessPrevention": "enforced",
        "versioning": {"enabled": True},
        "softDeletePolicy": {"retentionDurationSeconds": 2592000},
        "forceDestroy": False,
        "labels": LABELS,
    }
    return with_changes(props, changes)


def ar_repository(**changes: Any) -> dict[str, Any]:
    props = {
        "repositoryId": "model-serve",
        "location": "europe-west4",
        "format": "DOCKER",
        "dockerConfig": {"immutableTags": True},
        "labels": LABELS,
    }
    return with_changes(props, changes)


def run_service(*, image: str = GCP_IMAGE, **changes: Any) -> dict[str, Any]:
    props = {
        "name": "digits-prod",
        "location": "europe-west4",
        "deletionProtection": True,
        "ingress": "INGRESS_TRAFFIC_ALL",
        "labels": LABELS,
        "template": {
            "serviceAccount": RUN_SA.removeprefix("serviceAccount:"),
            "containers": [{"name": "serve", "image": image, "ports": {"name": "http1", "containerPort": 8080}}],
        },
    }
    return with_changes(props, changes)


def invoker(member: str) -> dict[str, Any]:
    return {"name": "digits-prod", "location": "europe-west4", "role": "roles/run.invoker", "member": member}


def iam_policy(*bindings: tuple[str, list[str]]) -> str:
    """``policy_data`` as ``gcp.organizations.get_iam_policy`` renders it."""
    return json.dumps({"bindings": [{"role": role, "members": members} for role, members in bindings]})


def test_buckets_use_uniform_bucket_level_access() -> None:
    rule = gcp_rules.gcs_bucket_uniform_access
    assert not check(rule, GCS_BUCKET, gcs_bucket())
    assert check(rule, GCS_BUCKET, gcs_bucket(uniformBucketLevelAccess=False), name="artifacts-bucket").one == (
        "'artifacts-bucket' sets uniform_bucket_level_access False: set it to True, so IAM alone grants access "
        "(object ACLs, which no policy can see, are off)"
    )
    assert check(rule, GCS_BUCKET, gcs_bucket(uniformBucketLevelAccess=None)).one.startswith(
        "'res' leaves uniform_bucket_level_access unset: set it to True"
    )
    assert not check(rule, "aws:s3/bucket:Bucket", {"bucket": "b"})  # other types are not this rule's business


def test_buckets_enforce_public_access_prevention() -> None:
    rule = gcp_rules.gcs_bucket_public_access_prevention_enforced
    assert not check(rule, GCS_BUCKET, gcs_bucket())
    assert check(rule, GCS_BUCKET, gcs_bucket(publicAccessPrevention="inherited"), name="store").one == (
        "'store' sets public_access_prevention 'inherited': set it to 'enforced', so no IAM grant or ACL can make "
        "objects public ('inherited', the default, leaves that to the organisation policy)"
    )
    # Unset is the provider's "inherited".
    assert "'store' leaves public_access_prevention unset: set it to 'enforced'" in (
        check(rule, GCS_BUCKET, gcs_bucket(publicAccessPrevention=None), name="store").one
    )


def test_buckets_keep_object_versions() -> None:
    rule = gcp_rules.gcs_bucket_versioning
    assert not check(rule, GCS_BUCKET, gcs_bucket())
    assert check(rule, GCS_BUCKET, gcs_bucket(versioning={"enabled": False}), name="store").one == (
        "'store' sets versioning.enabled False: set versioning=gcp.storage.BucketVersioningArgs(enabled=True), so "
        "an overwritten or deleted package can be restored"
    )
    assert check(rule, GCS_BUCKET, gcs_bucket(versioning=None)).one.startswith(
        "'res' leaves versioning.enabled unset: set versioning="
    )


def test_prod_buckets_do_not_force_destroy() -> None:
    rule = gcp_rules.gcs_bucket_no_force_destroy_in_prod
    assert not check(rule, GCS_BUCKET, gcs_bucket())
    doomed = gcs_bucket(forceDestroy=True)
    assert check(rule, GCS_BUCKET, doomed, name="store").one == (
        "'store' sets force_destroy True in prod (from label 'environment'): set it to False (the default); "
        "`pulumi destroy` would delete every package version in the bucket"
    )
    dev = gcs_bucket(forceDestroy=True, labels={**LABELS, "environment": "dev"})
    assert not check(rule, GCS_BUCKET, dev)
    # The stack tag (set by whoever runs the pipeline) outranks the program's own label.
    assert (
        "in prod (from stack tag 'environment')" in check(rule, GCS_BUCKET, dev, stack_tags={"environment": "prod"}).one
    )
    unlabelled = gcs_bucket(forceDestroy=True, labels=None)
    assert check(rule, GCS_BUCKET, unlabelled, name="store").one == (
        "'store': cannot tell the stack's environment, so whether force_destroy is allowed cannot be checked; set "
        "the policy config 'environment', the stack tag 'environment', or the resource label 'environment'"
    )
    assert not check(rule, GCS_BUCKET, gcs_bucket(labels=None))  # force_destroy off is fine anywhere


def test_repositories_are_docker_with_immutable_tags() -> None:
    rule = gcp_rules.artifact_registry_immutable_docker
    assert not check(rule, AR_REPOSITORY, ar_repository())
    assert not check(rule, AR_REPOSITORY, ar_repository(format="docker"))  # the provider ignores the case
    assert check(rule, AR_REPOSITORY, ar_repository(dockerConfig={"immutableTags": False}), name="repo").one == (
        "'repo' sets docker_config.immutable_tags False: set "
        "docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True), so a tag can never "
        "be moved to another image"
    )
    violations = check(rule, AR_REPOSITORY, ar_repository(format="PYTHON", dockerConfig=None), name="repo")
    assert violations.messages == [
        "'repo' sets format 'PYTHON': set format 'DOCKER' (repositories here hold serving images only)",
        "'repo' leaves docker_config.immutable_tags unset: set "
        "docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True), so a tag can never "
        "be moved to another image",
    ]


def test_cloud_run_images_are_pinned_by_digest() -> None:
    rule = gcp_rules.cloud_run_image_pinned_by_digest
    assert not check(rule, RUN_SERVICE, run_service())
    # A tag before the digest is allowed: the registry resolves the digest and ignores the tag.
    assert not check(rule, RUN_SERVICE, run_service(image=GCP_IMAGE.replace("serve@", "serve:1.0.0@")))
    tagged = "europe-west4-docker.pkg.dev/acme-ml-prod/model-serve/serve:latest"
    assert check(rule, RUN_SERVICE, run_service(image=tagged), name="digits-prod-service").one == (
        f"'digits-prod-service': container 'serve' runs image '{tagged}', which is not pinned by digest: set "
        "template.containers[0].image to <registry>/<repository>/<image>@sha256:<64 hex digits>, so every "
        "revision runs the image the stack pins"
    )
    service = run_service()
    service["template"]["containers"].append({"image": GCP_IMAGE[:-1]})  # a sidecar with a cut digest
    assert "container '#2' runs image" in check(rule, RUN_SERVICE, service).one


def test_prod_cloud_run_services_keep_deletion_protection() -> None:
    rule = gcp_rules.cloud_run_deletion_protection_in_prod
    assert not check(rule, RUN_SERVICE, run_service())
    assert not check(rule, RUN_SERVICE, run_service(deletionProtection=None))  # the provider's default is True
    assert check(rule, RUN_SERVICE, run_service(deletionProtection=False), name="svc").one == (
        "'svc' sets deletion_protection False in prod (from label 'environment'): set it to True (or leave it "
        "unset: the provider's default is True), so `pulumi destroy` cannot delete the production service; "
        "to decommission stack 'dev', set model-deploy:gcp.decommission: dev too"
    )
    dev = run_service(deletionProtection=False, labels={**LABELS, "environment": "dev"})
    assert not check(rule, RUN_SERVICE, dev)
    # The environment may come from the provider's default labels (as JSON text or an object).
    unlabelled = run_service(deletionProtection=False, labels=None)
    for default_labels in ({"environment": "prod"}, json.dumps({"environment": "prod"})):
        provider = {"defaultLabels": default_labels}
        assert len(check(rule, RUN_SERVICE, unlabelled, provider_props=provider, provider_type=GCP_PROVIDER)) == 1


def test_a_decommissioned_prod_service_may_drop_deletion_protection_only_for_its_own_stack() -> None:
    rule = gcp_rules.cloud_run_deletion_protection_in_prod
    # The test URNs are in stack 'dev' (whatever the environment label says).
    decommissioned = run_service(deletionProtection=False, labels={**LABELS, "decommission": "dev"})
    assert not check(rule, RUN_SERVICE, decommissioned)
    copied = run_service(deletionProtection=False, labels={**LABELS, "decommission": "gcp-prod"})
    assert "(its label 'decommission' names stack 'gcp-prod')" in check(rule, RUN_SERVICE, copied).one
    # The label alone changes nothing: a protected service stays protected.
    assert not check(rule, RUN_SERVICE, run_service(labels={**LABELS, "decommission": "gcp-prod"}))


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_policy_agrees_with_validation_on_an_unprotected_prod_service(case: DecommissionCase) -> None:
    # Validation's verdict on the same table: test_gcp_config.py::test_validation_agrees_with_the_policy_pack.
    service = run_service(deletionProtection=case.deletion_protection, labels=case.service_labels(LABELS))
    args = ResourceValidationArgs(
        RUN_SERVICE,
        unknown_checking_proxy(service),
        f"urn:pulumi:{STACK}::model-deploy::{RUN_SERVICE}::svc",
        "svc",
        _opts(),
        None,
        {},
        {},
    )
    violations = Violations()
    gcp_rules.cloud_run_deletion_protection_in_prod(args, violations)
    assert (not violations) == case.allowed


def test_cloud_run_ingress_follows_the_environment() -> None:
    rule = gcp_rules.cloud_run_allowed_ingress
    # By default every ingress is allowed everywhere: the program declares INGRESS_TRAFFIC_ALL and has no option.
    assert set(DEFAULT_ALLOWED_INGRESS) == {"dev", "staging", "prod"}
    assert not check(rule, RUN_SERVICE, run_service())
    behind_lb = {"allowedIngress": {"prod": ["INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"]}}
    assert not check(rule, RUN_SERVICE, run_service(ingress="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"), config=behind_lb)
    assert check(rule, RUN_SERVICE, run_service(), name="svc", config=behind_lb).one == (
        "'svc' sets ingress 'INGRESS_TRAFFIC_ALL', which is not allowed in prod (from label 'environment'); "
        "allowed: INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    )
    assert check(rule, RUN_SERVICE, run_service(ingress=None), config=behind_lb).one.startswith(
        "'res' leaves ingress unset, i.e. INGRESS_TRAFFIC_ALL, which is not allowed in prod"
    )
    # Other environments keep the default.
    assert not check(rule, RUN_SERVICE, run_service(labels={**LABELS, "environment": "dev"}), config=behind_lb)
    assert check(rule, RUN_SERVICE, run_service(), config={"environment": "qa"}).one == (
        "'res': no ingress settings are allowed for environment 'qa' (from policy config 'environment'); "
        "set policy config allowedIngress.qa"
    )


def test_public_cloud_run_invokers_need_the_policy_config() -> None:
    rule = gcp_rules.cloud_run_public_invoker
    assert not check(rule, RUN_INVOKER, invoker("group:ml-platform@example.com"))
    assert not check(rule, RUN_SERVICE, run_service())
    # What `cloudRun.public: true` declares is refused unless the policy config allows the environment.
    assert check(rule, RUN_INVOKER, invoker("allUsers"), name="digits-dev-invoker-public").one == (
        "'digits-dev-invoker-public' grants roles/run.invoker to allUsers (member), so anyone may invoke the "
        "service, which is not allowed: public services are allowed in no environment (policy config "
        "publicEnvironments); name the callers in cloudRun.invokers instead"
    )
    dev_only = {"publicEnvironments": ["dev"]}
    assert not check(rule, RUN_INVOKER, invoker("allUsers"), config=dev_only, stack_tags={"environment": "dev"})
    assert "which is not allowed in prod (from policy config 'environment'): public services are allowed in dev" in (
        check(rule, RUN_INVOKER, invoker("allUsers"), config={**dev_only, "environment": "prod"}).one
    )
    assert check(rule, RUN_INVOKER, invoker("allAuthenticatedUsers"), config=dev_only).one.endswith(
        "which is allowed in dev (policy config publicEnvironments), but the stack's environment is unknown: set "
        "the policy config 'environment' or the stack tag 'environment'"
    )
    # Turning the invoker check off is as public as an allUsers grant; the program's own labels do not allow it.
    open_service = run_service(invokerIamDisabled=True, labels={**LABELS, "environment": "dev"})
    assert check(rule, RUN_SERVICE, open_service, config=dev_only).one.startswith(
        "'res' sets invoker_iam_disabled True (no invoker check at all), so anyone may invoke the service"
    )
    binding = {"name": "digits-prod", "role": "roles/run.invoker", "members": [RUN_SA, "allAuthenticatedUsers"]}
    assert "grants roles/run.invoker to allAuthenticatedUsers (members)" in (
        check(rule, "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding", binding).one
    )
    v1_policy = {"service": "digits-prod", "policyData": iam_policy(("roles/run.invoker", ["allUsers"]))}
    assert "grants roles/run.invoker to allUsers (policy_data binding #1)" in (
        check(rule, "gcp:cloudrun/iamPolicy:IamPolicy", v1_policy).one
    )


def test_no_iam_grant_or_acl_is_public() -> None:
    rule = gcp_rules.gcp_no_public_members
    reader = {"bucket": "acme-ml-prod-models", "role": "roles/storage.objectViewer", "member": RUN_SA}
    assert not check(rule, BUCKET_MEMBER, reader)
    assert check(rule, BUCKET_MEMBER, {**reader, "member": "allUsers"}, name="reader").one == (
        "'reader' grants roles/storage.objectViewer to allUsers (member), which makes it public; grant it to named "
        "principals (serviceAccount:, group:, user:) instead"
    )
    binding = {
        "repository": "model-serve",
        "role": "roles/artifactregistry.reader",
        "members": ["allAuthenticatedUsers"],
    }
    assert "to allAuthenticatedUsers (members), which opens it to anyone with a Google account" in (
        check(rule, "gcp:artifactregistry/repositoryIamBinding:RepositoryIamBinding", binding).one
    )
    project_policy = {"project": "acme-ml-prod", "policyData": iam_policy(("roles/run.viewer", ["allUsers"]))}
    assert "grants roles/run.viewer to allUsers (policy_data binding #1)" in (
        check(rule, "gcp:projects/iAMPolicy:IAMPolicy", project_policy).one
    )
    # Public Cloud Run invokers are cloud-run-public-invoker's to decide; any other public Cloud Run role is refused.
    assert not check(rule, RUN_INVOKER, invoker("allUsers"))
    assert len(check(rule, RUN_INVOKER, {**invoker("allUsers"), "role": "roles/run.developer"})) == 1
    assert check(rule, "gcp:storage/bucketIAMPolicy:BucketIAMPolicy", {"policyData": "{oops"}, name="p").one == (
        "'p': policy_data is not the JSON of an IAM policy (gcp.organizations.get_iam_policy(...).policy_data), "
        "so it cannot be checked"
    )


def test_public_cloud_storage_acls_are_refused() -> None:
    rule = gcp_rules.gcp_no_public_members
    acl = "gcp:storage/bucketACL:BucketACL"
    assert not check(rule, acl, {"bucket": "b", "roleEntities": ["OWNER:project-owners-123", "READER:group-ml@x.com"]})
    assert check(rule, acl, {"bucket": "b", "roleEntities": ["READER:allUsers"]}, name="acl").one == (
        "'acl' gives allUsers READER (role_entities 'READER:allUsers'), which makes it public; use IAM on a bucket "
        "with uniform bucket-level access instead of ACLs"
    )
    assert check(rule, acl, {"bucket": "b", "predefinedAcl": "publicRead"}, name="acl").one == (
        "'acl' sets predefined_acl 'publicRead', which makes objects public; use 'private' or 'projectPrivate'"
    )
    assert (
        "sets default_acl 'authenticatedRead'"
        in check(rule, acl, {"bucket": "b", "defaultAcl": "authenticatedRead"}).one
    )
    control = {"bucket": "b", "role": "READER", "entity": "allAuthenticatedUsers"}
    assert "gives allAuthenticatedUsers READER (entity)" in (
        check(rule, "gcp:storage/objectAccessControl:ObjectAccessControl", {**control, "object": "o"}).one
    )


def test_basic_roles_are_refused() -> None:
    rule = gcp_rules.gcp_no_basic_roles
    assert not check(rule, PROJECT_MEMBER, {"project": "acme-ml-prod", "role": "roles/run.invoker", "member": RUN_SA})
    assert check(
        rule, PROJECT_MEMBER, {"project": "acme-ml-prod", "role": "roles/editor", "member": RUN_SA}, name="deployer"
    ).one == (
        "'deployer' grants the basic role roles/editor (role): grant a predefined role (roles/storage.objectViewer, "
        "roles/run.invoker, ...) or a custom role with only the permissions needed; basic roles carry thousands of "
        "permissions on every service of the project"
    )
    owners = {"project": "acme-ml-prod", "role": "roles/owner", "members": ["group:ml-platform@example.com"]}
    assert "the basic role roles/owner (role)" in check(rule, "gcp:projects/iAMBinding:IAMBinding", owners).one
    folder = {
        "folder": "folders/123",
        "policyData": iam_policy(("roles/browser", [RUN_SA]), ("roles/viewer", [RUN_SA])),
    }
    assert "the basic role roles/viewer (policy_data binding #2)" in (
        check(rule, "gcp:folder/iAMPolicy:IAMPolicy", folder).one
    )
    # The role is known during preview even when the member (a new service account's email) is not.
    pending = {"project": "acme-ml-prod", "role": "roles/editor", "member": UNKNOWN_STRING_VALUE}
    assert len(check(rule, PROJECT_MEMBER, pending)) == 1
    assert not check(rule, GCS_BUCKET, gcs_bucket())


def test_labelled_gcp_resources_carry_the_stack_labels() -> None:
    rule = gcp_rules.gcp_required_labels
    for resource_type, props in (
        (GCS_BUCKET, gcs_bucket()),
        (AR_REPOSITORY, ar_repository()),
        (RUN_SERVICE, run_service()),
    ):
        assert not check(rule, resource_type, props)
    partial = {key: value for key, value in LABELS.items() if key not in ("model", "package-digest")}
    assert check(rule, RUN_SERVICE, run_service(labels=partial), name="digits-prod-service").one == (
        "'digits-prod-service' lacks the labels model, package-digest: pass the stack's resource labels "
        "(StackConfig.resource_labels) as labels, or set them as the gcp provider's default_labels"
    )
    # A type the program creates must be labelled even when it passes no labels at all.
    endpoint = {"displayName": "digits-prod", "location": "europe-west4"}
    assert "lacks the labels environment, stack, model" in check(rule, "gcp:vertex/aiEndpoint:AiEndpoint", endpoint).one
    # Resources without labels are skipped; others are checked when they set some.
    assert not check(rule, "gcp:serviceaccount/account:Account", {"accountId": "digits-prod-run-sa"})
    assert len(check(rule, "gcp:pubsub/topic:Topic", {"labels": {"team": "ml"}})) == 1
    assert not check(rule, "aws:s3/bucket:Bucket", {"bucket": "b", "labels": {}})
    as_text = {"defaultLabels": json.dumps(LABELS)}
    unlabelled = gcs_bucket(labels=None)
    assert not check(rule, GCS_BUCKET, unlabelled, provider_props=as_text, provider_type=GCP_PROVIDER)
    assert not check(rule, GCS_BUCKET, gcs_bucket(labels={"team": "ml"}), config={"requiredLabels": ["team"]})


def test_required_labels_are_what_the_stack_config_sets() -> None:
    labels = stack_config().resource_labels
    assert set(REQUIRED_LABEL_KEYS) <= set(labels)
    assert not check(gcp_rules.gcp_required_labels, GCS_BUCKET, gcs_bucket(labels=labels))


# --- unknown values -----------------------------------------------------------------------------


def test_resource_rules_leave_unknown_values_to_the_engine() -> None:
    """During preview a computed document is unknown: the engine turns the error into an advisory note
    and enforces the rule at ``pulumi up``, when the value is known."""
    with pytest.raises(UnknownValueError):
        check(rules.iam_no_wildcard_actions, ROLE_POLICY, {"policy": UNKNOWN_STRING_VALUE})
    with pytest.raises(UnknownValueError):
        check(gcp_rules.cloud_run_image_pinned_by_digest, RUN_SERVICE, run_service(image=UNKNOWN_STRING_VALUE))
    with pytest.raises(UnknownValueError):
        check(gcp_rules.gcp_no_public_members, BUCKET_MEMBER, {"role": "roles/x", "member": UNKNOWN_STRING_VALUE})


# --- the pack as the CLI runs it ----------------------------------------------------------------


@pytest.fixture
def analyzer(tmp_path: Path) -> Iterator[Any]:
    """The pack started as ``pulumi`` starts it (``python infra/policy/__main__.py``), and a gRPC stub to it."""
    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    process = subprocess.Popen(
        [sys.executable, str(POLICY_DIR / "__main__.py")],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else "no port"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_pack_serves_its_policies_over_the_analyzer_protocol(analyzer: Any) -> None:
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "model-deploy"
    assert len(info.policies) == 25

    properties = struct_pb2.Struct()
    properties.update({"bucket": "acme-models", "blockPublicAcls": True, "blockPublicPolicy": False})
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(type=PAB, properties=properties, urn=_urn(PAB, "store-pab"), name="store-pab")
    )
    by_policy = {diagnostic.policyName: diagnostic for diagnostic in response.diagnostics}
    assert set(by_policy) == {"s3-public-access-block-all-on"}
    diagnostic = by_policy["s3-public-access-block-all-on"]
    assert diagnostic.message == (
        "S3 public access blocks set all four settings to true.\n'store-pab' leaves block_public_policy, "
        "ignore_public_acls, restrict_public_buckets off: set all four of block_public_acls, block_public_policy, "
        "ignore_public_acls, restrict_public_buckets to True (a model store is never public)"
    )
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY


def test_the_pack_checks_gcp_resources_over_the_analyzer_protocol(analyzer: Any) -> None:
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2

    def analyze(resource_type: str, name: str, props: dict[str, Any]) -> dict[str, str]:
        properties = struct_pb2.Struct()
        properties.update(props)
        request = analyzer_pb2.AnalyzeRequest(
            type=resource_type, properties=properties, urn=_urn(resource_type, name), name=name
        )
        return {d.policyName: d.message for d in analyzer.Analyze(request).diagnostics}

    # What the GCP program declares passes every rule, the AWS ones included.
    assert analyze(GCS_BUCKET, "artifacts-bucket", gcs_bucket()) == {}
    assert analyze(RUN_SERVICE, "digits-prod-service", run_service()) == {}
    assert analyze(RUN_INVOKER, "digits-prod-invoker", invoker(RUN_SA)) == {}

    found = analyze(GCS_BUCKET, "artifacts-bucket", gcs_bucket(uniformBucketLevelAccess=False, labels=None))
    assert set(found) == {"gcs-bucket-uniform-access", "gcp-required-labels"}
    assert found["gcs-bucket-uniform-access"].startswith(
        "Cloud Storage buckets use uniform bucket-level access (IAM only, no ACLs).\n'artifacts-bucket' sets "
        "uniform_bucket_level_access False: set it to True"
    )
    assert set(analyze(RUN_INVOKER, "digits-prod-invoker-public", invoker("allUsers"))) == {"cloud-run-public-invoker"}


def test_the_pack_runs_stack_rules_over_the_analyzer_protocol(analyzer: Any) -> None:
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2

    def analyzer_resource(resource_type: str, name: str, props: dict[str, Any], **deps: str) -> Any:
        properties = struct_pb2.Struct()
        properties.update(props)
        return analyzer_pb2.AnalyzerResource(
            type=resource_type,
            properties=properties,
            urn=_urn(resource_type, name),
            name=name,
            dependencies=list(deps.values()),
            propertyDependencies={k: analyzer_pb2.AnalyzerPropertyDependencies(urns=[v]) for k, v in deps.items()},
        )

    store = analyzer_resource(BUCKET, "store", {"bucket": "acme-models", "tags": TAGS})
    logs = analyzer_resource(BUCKET, "logs", {"bucket": "acme-logs", "tags": TAGS})
    sse = analyzer_resource(ENCRYPTION, "store-sse", {"bucket": "acme-models"}, bucket=store.urn)
    pab = analyzer_resource(PAB, "store-pab", {"bucket": "acme-models", **ALL_ON}, bucket=store.urn)
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[store, logs, sse, pab]))
    found = sorted((d.policyName, d.urn) for d in response.diagnostics)
    assert found == [
        ("s3-bucket-encryption-present", logs.urn),
        ("s3-bucket-public-access-block-present", logs.urn),
    ]
