"""AWS bootstrap: state bucket and secrets key, GitHub OIDC provider, per-environment deploy roles.

The policies it attaches are built in ``infra/bootstrap/aws_policies.py``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any, Final

import pulumi

from infra.bootstrap.aws_policies import (
    deploy_policy,
    github_trust_policy,
    identity_arn,
    readonly_policy,
    state_bucket_policy,
    state_key_policy,
)
from infra.bootstrap.config import (
    AWS_AUDIENCE,
    GITHUB_OIDC_URL,
    IDENTITY_PREFIX,
    PROJECT,
    READONLY,
    STATE_KEY_ALIAS,
    BootstrapConfig,
    variable,
)

#: Replaced versions of the state are kept this long: Pulumi writes a stack's state object at every
#: step of an update, and an old version is how a bad update's state is recovered, within a quarter.
STATE_NONCURRENT_VERSION_DAYS: Final = 90

#: What the DIY backend writes into an empty state store on its first command (pulumi/pulumi
#: pkg/backend/diy/meta.go ``ensurePulumiMeta``): written here so no pipeline identity has to.
STATE_META_KEY: Final = ".pulumi/meta.yaml"
STATE_META: Final = "version: 1\n"


def _access_role_arn(partition: str, *, account: str, name: str) -> str:
    return f"arn:{partition}:iam::{account}:role/{name}"


def deploy_aws(config: BootstrapConfig) -> dict[str, pulumi.Input[str]]:
    """State bucket and secrets key; per account a GitHub OIDC provider and read-only role; a role per environment."""
    from pulumi_aws import iam, kms, s3
    from pulumi_aws._inputs import ProviderAssumeRoleArgs  # only the package module, which mypy skips, re-exports it
    from pulumi_aws.get_caller_identity import get_caller_identity_output
    from pulumi_aws.get_partition import get_partition_output
    from pulumi_aws.get_region import get_region_output
    from pulumi_aws.provider import Provider

    from infra.aws.hardened_bucket import hardened_bucket, rotating_key

    settings = config.aws
    assert settings is not None  # BootstrapConfig requires the section of its cloud
    identity = get_caller_identity_output()
    partition = get_partition_output().partition
    region = get_region_output().region
    tags = {"project": "model-deploy", "managed-by": PROJECT}
    keep = pulumi.ResourceOptions(protect=True)  # losing these loses every stack's state

    # One provider per environment account, through the role AWS Organizations creates in it.
    providers: dict[str, Provider] = {}
    for member in dict.fromkeys(settings.environment_accounts.values()):
        providers[member] = Provider(
            f"account-{member}",
            region=region,
            assume_roles=[
                ProviderAssumeRoleArgs(
                    role_arn=partition.apply(
                        functools.partial(_access_role_arn, account=member, name=settings.account_access_role_name)
                    ),
                    session_name="model-deploy-bootstrap",
                )
            ],
        )

    def in_account(account: str | None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(provider=providers[account]) if account else pulumi.ResourceOptions()

    def suffix(account: str | None) -> str:
        return f"-{account}" if account else ""

    # Accounts that hold roles: None is the bootstrap's own account.
    accounts: list[str | None] = [None, *providers]
    environment_account = {
        environment: settings.environment_accounts.get(environment) for environment in config.environments
    }

    def role_arn(account: str | None, name: str) -> pulumi.Output[str]:
        return pulumi.Output.all(partition, identity.account_id).apply(
            lambda values: identity_arn(values[0], account or values[1], name)
        )

    deploy_role_arns = {
        environment: role_arn(account, environment) for environment, account in environment_account.items()
    }
    readonly_role_arns = {account: role_arn(account, READONLY) for account in accounts}

    key = rotating_key(
        "state-key", description="model-deploy: Pulumi state bucket and stack secrets", tags=tags, opts=keep
    )
    kms.Alias("state-key-alias", name=STATE_KEY_ALIAS, target_key_id=key.key_id)

    state = hardened_bucket(
        "state",
        bucket_name=settings.state_bucket_name,
        key_arn=key.arn,
        tags=tags,
        noncurrent_version_days=STATE_NONCURRENT_VERSION_DAYS,
        protect=True,  # losing it loses every stack's state
    )
    bucket, public_access, encryption = state.bucket, state.public_access, state.encryption
    s3.BucketObjectv2(
        "state-meta",
        bucket=bucket.id,
        key=STATE_META_KEY,
        content=STATE_META,
        content_type="application/yaml",
        opts=pulumi.ResourceOptions(depends_on=[encryption]),
    )

    providers_arn: dict[str | None, pulumi.Output[str]] = {}
    for account in accounts:
        if settings.oidc_provider == "existing":
            # IAM allows one provider per URL per account: reuse the one that is there.
            found = iam.get_open_id_connect_provider_output(
                url=GITHUB_OIDC_URL, opts=pulumi.InvokeOutputOptions(provider=providers[account]) if account else None
            )
            providers_arn[account] = found.arn
        else:
            providers_arn[account] = iam.OpenIdConnectProvider(
                f"github-oidc{suffix(account)}",
                url=GITHUB_OIDC_URL,
                client_id_lists=[AWS_AUDIENCE],
                tags=tags,
                opts=in_account(account),
            ).arn

    def role(name: str, account: str | None, subjects: Sequence[str], policy: Any, description: str) -> iam.Role:
        created = iam.Role(
            f"{name}-role{suffix(account)}",
            name=f"{IDENTITY_PREFIX}{name}",
            description=description,
            assume_role_policy=providers_arn[account].apply(lambda arn: json.dumps(github_trust_policy(arn, subjects))),
            max_session_duration=3600,
            tags=tags,
            opts=in_account(account),
        )
        iam.RolePolicy(
            f"{name}-policy{suffix(account)}",
            role=created.id,
            policy=pulumi.Output.all(partition, identity.account_id, bucket.arn, key.arn).apply(
                lambda values: json.dumps(policy(values[0], account or values[1], values[2], values[3]))
            ),
            opts=in_account(account),
        )
        return created

    outputs: dict[str, pulumi.Input[str]] = {}
    roles: list[iam.Role] = []
    for environment, account in environment_account.items():
        created = role(
            environment,
            account,
            [config.environment_subject(environment)],
            lambda p, a, b, k, e=environment: deploy_policy(p, a, e, b, k),
            f"model-deploy {environment}: assumed by {config.github_repository} jobs in environment {environment}",
        )
        roles.append(created)
        outputs[f"AWS_ROLE_ARN_{variable(environment)}"] = created.arn
    readonly_roles: dict[str | None, iam.Role] = {}
    for account in accounts:
        readonly_roles[account] = role(
            READONLY,
            account,
            config.readonly_subjects,
            readonly_policy,
            f"model-deploy previews and drift checks of {config.github_repository} (pull requests, main)",
        )
    roles.extend(readonly_roles.values())
    # Previews of an environment run with the read-only role of its account.
    for environment, account in environment_account.items():
        outputs[f"AWS_ROLE_ARN_READONLY_{variable(environment)}"] = readonly_roles[account].arn
    outputs["AWS_ROLE_ARN_READONLY"] = readonly_roles[None].arn

    # Both policies name roles, which IAM must know first ("Invalid principal in policy").
    after_roles = pulumi.ResourceOptions(depends_on=[public_access, *roles])
    s3.BucketPolicy(
        "state-bucket-policy",
        bucket=bucket.id,
        policy=pulumi.Output.all(
            bucket.arn,
            key.arn,
            pulumi.Output.all(**deploy_role_arns),
            pulumi.Output.all(*readonly_role_arns.values()),
        ).apply(lambda values: json.dumps(state_bucket_policy(values[0], values[1], dict(values[2]), list(values[3])))),
        opts=after_roles,
    )
    kms.KeyPolicy(
        "state-key-policy",
        key_id=key.key_id,
        policy=pulumi.Output.all(
            partition,
            identity.account_id,
            pulumi.Output.all(*deploy_role_arns.values()),
            pulumi.Output.all(*readonly_role_arns.values()),
        ).apply(lambda values: json.dumps(state_key_policy(values[0], values[1], list(values[2]), list(values[3])))),
        opts=pulumi.ResourceOptions(depends_on=roles),
    )

    outputs["PULUMI_BACKEND_URL_AWS"] = bucket.bucket.apply(lambda name: f"s3://{name}")
    outputs["PULUMI_SECRETS_PROVIDER_AWS"] = pulumi.Output.all(region, key.arn).apply(
        # By key ARN, not alias: a role in another account can only name the key by its ARN
        # (KMS Developer Guide, "Allowing users in other accounts to use a KMS key").
        lambda values: f"awskms:///{values[1]}?region={values[0]}"
    )
    outputs["stateKeyArn"] = key.arn
    outputs["oidcProviderArn"] = providers_arn[None]
    return outputs
