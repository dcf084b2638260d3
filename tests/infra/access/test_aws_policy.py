"""The offline IAM evaluator follows AWS's documented evaluation logic, denials included."""

from __future__ import annotations

from typing import Any

import pytest

from infra.access.aws_policy import Principal, Request, ResourcePolicy, UnsupportedPolicy, arn_matches, evaluate

DEV = Principal("arn:aws:iam::111111111111:role/github-model-deploy-dev")
OTHER_ACCOUNT = "222222222222"


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "A", "Effect": "Allow", "Action": action, "Resource": resource, **extra}],
    }


def request(action: str, resource: str, principal: Principal = DEV, **context: str) -> Request:
    return Request(principal, action, resource, context)


def test_identity_allow_and_implicit_deny() -> None:
    policies = {"p": allow("s3:GetObject", "arn:aws:s3:::bucket/*")}
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::bucket/key"), policies)
    decision = evaluate(request("s3:PutObject", "arn:aws:s3:::bucket/key"), policies)
    assert not decision and "implicit deny" in decision.reason


def test_actions_are_case_insensitive_and_wildcards_match() -> None:
    policies = {"p": allow(["S3:get*", "sagemaker:Describe?ndpoint"], "*")}
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::b/k"), policies)
    assert evaluate(request("sagemaker:DescribeEndpoint", "arn:aws:sagemaker:us-east-1:1:endpoint/x"), policies)
    assert not evaluate(
        request("sagemaker:DescribeEndpointConfig", "arn:aws:sagemaker:us-east-1:1:endpoint/x"), policies
    )


def test_explicit_deny_wins_over_allow() -> None:
    policy = allow("s3:*", "*")
    policy["Statement"].append({"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"})
    decision = evaluate(request("s3:DeleteObject", "arn:aws:s3:::b/k"), {"p": policy})
    assert not decision and "NoDelete" in decision.reason


def test_arn_parts_match_separately_and_star_spans_slashes_in_the_resource_part() -> None:
    assert arn_matches(
        "arn:aws:iam::111111111111:role/model-deploy/dev/*", "arn:aws:iam::111111111111:role/model-deploy/dev/x-role-1"
    )
    assert not arn_matches(
        "arn:aws:iam::111111111111:role/model-deploy-*", "arn:aws:iam::111111111111:role/digits-dev-role-abc1234"
    )
    assert arn_matches(
        "arn:aws:sagemaker:*:111111111111:endpoint/*", "arn:aws:sagemaker:eu-west-1:111111111111:endpoint/e"
    )
    # A wildcard region does not stretch into the account part.
    assert not arn_matches(
        "arn:aws:sagemaker:*:111111111111:endpoint/*", "arn:aws:sagemaker:eu-west-1:222222222222:endpoint/e"
    )
    assert arn_matches("*", "anything") and not arn_matches("arn:aws:s3:::*", "*")


def test_negated_operator_is_true_when_the_key_is_absent() -> None:
    """The shape of the store's old DenyOtherOrUnnamedKmsKeys: a push naming no key id is denied."""
    key = "arn:aws:kms:us-east-1:111111111111:key/k"
    bucket_policy = {
        "Statement": [
            {
                "Sid": "DenyOtherKeys",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::b/*",
                "Condition": {
                    "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                    "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key},
                },
            }
        ]
    }
    policies = {"p": allow("s3:PutObject", "arn:aws:s3:::b/*")}
    resource = ResourcePolicy(bucket_policy, DEV.account, "s3")
    no_key = request("s3:PutObject", "arn:aws:s3:::b/k", **{"s3:x-amz-server-side-encryption": "aws:kms"})
    assert not evaluate(no_key, policies, resource)
    alias = request(
        "s3:PutObject",
        "arn:aws:s3:::b/k",
        **{
            "s3:x-amz-server-side-encryption": "aws:kms",
            "s3:x-amz-server-side-encryption-aws-kms-key-id": "alias/models",
        },
    )
    assert not evaluate(alias, policies, resource)
    named = request(
        "s3:PutObject",
        "arn:aws:s3:::b/k",
        **{"s3:x-amz-server-side-encryption": "aws:kms", "s3:x-amz-server-side-encryption-aws-kms-key-id": key},
    )
    assert evaluate(named, policies, resource)
    # No encryption header at all: the positive StringEquals is false, so the deny does not apply.
    assert evaluate(request("s3:PutObject", "arn:aws:s3:::b/k"), policies, resource)


def test_null_and_if_exists() -> None:
    policy = allow("s3:PutObject", "*", Condition={"Null": {"s3:x-amz-server-side-encryption": "true"}})
    assert evaluate(request("s3:PutObject", "arn:aws:s3:::b/k"), {"p": policy})
    assert not evaluate(
        request("s3:PutObject", "arn:aws:s3:::b/k", **{"s3:x-amz-server-side-encryption": "AES256"}), {"p": policy}
    )
    policy = allow(
        "iam:PassRole", "*", Condition={"StringEqualsIfExists": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    )
    assert evaluate(request("iam:PassRole", "arn:aws:iam::1:role/r"), {"p": policy})
    assert not evaluate(
        request("iam:PassRole", "arn:aws:iam::1:role/r", **{"iam:PassedToService": "ec2.amazonaws.com"}), {"p": policy}
    )


def test_plain_condition_on_an_absent_key_is_false() -> None:
    policy = allow("iam:PassRole", "*", Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
    assert not evaluate(request("iam:PassRole", "arn:aws:iam::1:role/r"), {"p": policy})
    assert evaluate(
        request("iam:PassRole", "arn:aws:iam::1:role/r", **{"iam:PassedToService": "sagemaker.amazonaws.com"}),
        {"p": policy},
    )


def test_multi_valued_keys_need_a_set_operator() -> None:
    req = Request(DEV, "sagemaker:AddTags", "*", {"aws:TagKeys": ("environment", "owner")})
    any_policy = allow("sagemaker:AddTags", "*", Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": "owner"}})
    all_policy = allow("sagemaker:AddTags", "*", Condition={"ForAllValues:StringEquals": {"aws:TagKeys": "owner"}})
    assert evaluate(req, {"p": any_policy}) and not evaluate(req, {"p": all_policy})
    plain = allow("sagemaker:AddTags", "*", Condition={"StringEquals": {"aws:TagKeys": "owner"}})
    with pytest.raises(UnsupportedPolicy):
        evaluate(req, {"p": plain})


def test_global_keys_are_in_every_request() -> None:
    policy = allow("s3:GetObject", "*", Condition={"StringEquals": {"aws:PrincipalAccount": DEV.account}})
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::b/k"), {"p": policy})
    deny_plain_http = {
        "Statement": [
            {
                "Sid": "TLS",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    }
    assert evaluate(
        request("s3:GetObject", "arn:aws:s3:::b/k"),
        {"p": allow("s3:*", "*")},
        ResourcePolicy(deny_plain_http, DEV.account),
    )


def test_cross_account_needs_both_the_identity_and_the_resource_policy() -> None:
    identity = {"p": allow("s3:GetObject", "arn:aws:s3:::state/*")}
    grant = {
        "Statement": [
            {
                "Sid": "Dev",
                "Effect": "Allow",
                "Principal": {"AWS": DEV.role_arn},
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::state/*",
            }
        ]
    }
    resource = ResourcePolicy(grant, OTHER_ACCOUNT, "s3")
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::state/k"), identity, resource)
    assert not evaluate(request("s3:GetObject", "arn:aws:s3:::state/k"), {}, resource)
    assert not evaluate(request("s3:GetObject", "arn:aws:s3:::state/k"), identity, resource_account=OTHER_ACCOUNT)
    # Same account: a resource policy naming the role suffices on its own.
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::state/k"), {}, ResourcePolicy(grant, DEV.account, "s3"))


def test_a_resource_policy_for_the_account_delegates_to_iam() -> None:
    grant = {
        "Statement": [
            {
                "Sid": "Acct",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{DEV.account}:root"},
                "Action": "s3:*",
                "Resource": "*",
            }
        ]
    }
    cross = ResourcePolicy(grant, OTHER_ACCOUNT, "s3")
    assert not evaluate(request("s3:GetObject", "arn:aws:s3:::b/k"), {}, cross)
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::b/k"), {"p": allow("s3:GetObject", "*")}, cross)


def test_kms_needs_the_key_policy() -> None:
    key = "arn:aws:kms:us-east-1:111111111111:key/k"
    identity = {"p": allow("kms:Decrypt", key)}
    root = {
        "Statement": [
            {
                "Sid": "Root",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{DEV.account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
    }
    only_admin = {
        "Statement": [
            {
                "Sid": "Admin",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111111111111:role/admin"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
    }
    assert evaluate(request("kms:Decrypt", key), identity, ResourcePolicy(root, DEV.account, "kms"))
    assert not evaluate(request("kms:Decrypt", key), {}, ResourcePolicy(root, DEV.account, "kms"))
    decision = evaluate(request("kms:Decrypt", key), identity, ResourcePolicy(only_admin, DEV.account, "kms"))
    assert not decision and "key policy" in decision.reason


def test_not_action_and_not_resource() -> None:
    policy = {
        "Statement": [{"Sid": "N", "Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::prod-*"}]
    }
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::dev-b"), {"p": policy})
    assert not evaluate(request("s3:GetObject", "arn:aws:s3:::prod-b"), {"p": policy})
    assert not evaluate(request("iam:GetRole", "arn:aws:iam::1:role/r"), {"p": policy})


def test_what_is_not_modelled_is_refused() -> None:
    policy = {"Statement": [{"Effect": "Deny", "NotPrincipal": {"AWS": "x"}, "Action": "s3:*", "Resource": "*"}]}
    with pytest.raises(UnsupportedPolicy):
        evaluate(request("s3:GetObject", "arn:aws:s3:::b/k"), {}, ResourcePolicy(policy, DEV.account))
    odd = allow("s3:GetObject", "*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}})
    with pytest.raises(UnsupportedPolicy):
        evaluate(request("s3:GetObject", "arn:aws:s3:::b/k"), {"p": odd})
