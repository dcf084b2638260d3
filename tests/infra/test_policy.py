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

from infra.config import load_stack_config
from infra.policy import RULES, build_policies, rules
from infra.policy.iam_documents import RESOURCE_WILDCARD_ACTIONS
from infra.policy.settings import DEFAULT_ALLOWED_INSTANCE_FAMILIES, REQUIRED_TAG_KEYS

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


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def check(
    rule: Any,
    resource_type: str,
    props: Mapping[str, Any],
    *,
    name: str = "res",
    config: Mapping[str, Any] | None = None,
    stack_tags: Mapping[str, str] | None = None,
    provider_props: Mapping[str, Any] | None = None,
) -> Violations:
    """Run a resource rule on one resource as the engine would; return what it reported."""
    provider = None
    if provider_props is not None:
        provider = PolicyProviderResource(
            "pulumi:providers:aws", unknown_checking_proxy(dict(provider_props)), _urn("pulumi:providers:aws", "p"), "p"
        )
    args = ResourceValidationArgs(
        resource_type,
        unknown_checking_proxy(json.loads(json.dumps(props))),
        _urn(resource_type, name),
        name,
        _opts(),
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
    assert len(names) == len(set(names)) == 12
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


def test_required_tags_are_what_the_stack_config_sets() -> None:
    stack = load_stack_config(
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
    assert set(REQUIRED_TAG_KEYS) <= set(stack.resource_tags)
    assert not check(rules.aws_required_tags, CONFIG, {"tags": stack.resource_tags})
    assert not check(rules.aws_required_tags, CONFIG, {"tags": {"team": "ml"}}, config={"requiredTags": ["team"]})


# --- unknown values -----------------------------------------------------------------------------


def test_resource_rules_leave_unknown_values_to_the_engine() -> None:
    """During preview a computed document is unknown: the engine turns the error into an advisory note
    and enforces the rule at ``pulumi up``, when the value is known."""
    with pytest.raises(UnknownValueError):
        check(rules.iam_no_wildcard_actions, ROLE_POLICY, {"policy": UNKNOWN_STRING_VALUE})


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
    assert len(info.policies) == 12

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
