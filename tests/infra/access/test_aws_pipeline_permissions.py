"""Every AWS call the pipelines make, evaluated offline against the policies the bootstrap and the stacks create.

For each committed ``Pulumi.aws-*.yaml`` and both supported layouts (one account per environment,
and one shared account): the stack's own deploy role is allowed every call of ``pulumi up``,
``refresh``, ``destroy`` and ``model-deploy-verify`` (0 denied); no environment's role may write
another environment's state, roles or keys; the read-only roles may write nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.access.aws_calls import Call
from tests.infra.access.aws_world import (
    LAYOUTS,
    SHARED_ACCOUNT,
    AwsWorld,
    Stack,
    batch_calls,
    batch_enabled,
    build_layout,
    committed_aws_stacks,
    state_calls,
    verify_calls,
)

STACKS = committed_aws_stacks()
WRITE_PREFIXES = (
    "Create",
    "Delete",
    "Put",
    "Update",
    "Tag",
    "Untag",
    "Add",
    "Register",
    "Deregister",
    "Enable",
    "Schedule",
    "Encrypt",
    "GenerateDataKey",
    "Retire",
    "Abort",
    "Invoke",
    "Pass",
    "Stop",
)
#: In one shared account, every write is bounded to the environment (by name, IAM path or the
#: environment tag) except the alarms Application Auto Scaling creates untagged for target tracking
#: with the caller's permissions: their name is the only handle (infra/bootstrap/aws_policies.py).
SHARED_ACCOUNT_GAPS = frozenset({"cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"})


def _shared_account_gap(call: Call) -> bool:
    if call.action == "iam:CreateServiceLinkedRole":
        return True  # one AWS-managed role per account, not an environment's: every environment needs it
    return call.action in SHARED_ACCOUNT_GAPS and ":alarm:TargetTracking-endpoint/" in call.resource


@pytest.fixture(scope="module", params=LAYOUTS)
def world(request: pytest.FixtureRequest) -> AwsWorld:
    return build_layout(request.param, STACKS)


def _is_write(call: Call) -> bool:
    return call.action.split(":")[1].startswith(WRITE_PREFIXES)


def _own_calls(world: AwsWorld, stack: Stack) -> Iterator[Call]:
    for command in ("up", "refresh", "destroy"):
        yield from stack.calls(command)
        yield from state_calls(world, stack.name, command)
    yield from verify_calls(world, stack)
    if batch_enabled(stack):
        yield from batch_calls(world, stack)


def test_the_committed_stacks_are_there() -> None:
    assert {"aws-dev", "aws-staging", "aws-prod"} <= set(STACKS)


@pytest.mark.parametrize("stack_name", sorted(STACKS))
def test_each_stack_deploy_role_is_denied_nothing_it_does(world: AwsWorld, stack_name: str) -> None:
    stack = world.stacks[stack_name]
    role = world.deploy_role(stack.environment)
    denied = {
        f"{call.action} {call.resource} ({call.why}): {decision.reason}"
        for call in _own_calls(world, stack)
        if not (decision := world.decide(role, call, stack.location.account))
    }
    assert not denied, "\n".join(sorted(denied))


@pytest.mark.parametrize("stack_name", sorted(STACKS))
def test_read_only_role_can_preview_and_refresh_and_write_nothing(world: AwsWorld, stack_name: str) -> None:
    stack = world.stacks[stack_name]
    role = world.readonly_role(stack.environment)
    reads = [*stack.calls("refresh"), *state_calls(world, stack.name, "preview")]
    denied = [
        f"{c.action} {c.resource}: {d.reason}"
        for c in reads
        if not (d := world.decide(role, c, stack.location.account))
    ]
    assert not denied, "\n".join(denied)
    writes = [call for call in _own_calls(world, stack) if _is_write(call)]
    assert writes
    allowed = [f"{c.action} {c.resource}" for c in writes if world.decide(role, c, stack.location.account)]
    assert not allowed, "\n".join(allowed)


def test_no_environment_writes_another_environments_state(world: AwsWorld) -> None:
    for stack in world.stacks.values():
        for other in world.layout.environment_accounts:
            if other == stack.environment:
                continue
            role = world.deploy_role(other)
            writes = [c for c in state_calls(world, stack.name, "up") if c.action.startswith("s3:") and _is_write(c)]
            reads = [
                c
                for c in state_calls(world, stack.name, "up")
                if c.action == "s3:GetObject" and "meta.yaml" not in c.resource
            ]
            allowed = [
                f"{other} -> {c.action} {c.resource}"
                for c in writes + reads
                if world.decide(role, c, stack.location.account)
            ]
            assert not allowed, "\n".join(allowed)


def test_no_environment_writes_another_environments_resources(world: AwsWorld) -> None:
    """0 allowed cross-environment writes with an account per environment; in a shared account only the
    one documented gap (target-tracking alarms, which AWS creates untagged)."""
    shared = world.layout.state_account == SHARED_ACCOUNT
    allowed: set[str] = set()
    for stack in world.stacks.values():
        calls = [c for command in ("up", "destroy") for c in stack.calls(command) if _is_write(c)]
        for other in world.layout.environment_accounts:
            if other == stack.environment:
                continue
            role = world.deploy_role(other)
            for call in calls:
                if world.decide(role, call, stack.location.account):
                    if shared and _shared_account_gap(call):
                        continue
                    allowed.add(f"{other} -> {call.action} {call.resource} ({call.why})")
    assert not allowed, "\n".join(sorted(allowed))


def test_state_key_cannot_be_managed_by_pipeline_roles(world: AwsWorld) -> None:
    for environment in world.layout.environment_accounts:
        for role in (world.deploy_role(environment), world.readonly_role(environment)):
            for action in ("kms:ScheduleKeyDeletion", "kms:PutKeyPolicy", "kms:TagResource", "kms:DisableKey"):
                decision = world.decide(role, Call(action, world.state_key_arn), world.layout.state_account)
                assert not decision, (role.role_arn, action, decision.reason)


def test_a_stack_with_batch_jobs_is_committed() -> None:
    """The batch permissions are proven on a committed stack, not only in the program's unit tests."""
    assert any(values["model-deploy:aws"]["endpoint"].get("batchJobs") for values in STACKS.values())


def test_no_environment_runs_or_reads_another_environments_batch_jobs(world: AwsWorld) -> None:
    """Another environment's deploy role is denied the job (tagged with this environment), its stop, and the
    batch data in this environment's store; in a shared account too."""
    checked = 0
    for stack in world.stacks.values():
        if not batch_enabled(stack):
            continue
        sensitive = [
            c
            for c in batch_calls(world, stack)
            if c.action
            in {"sagemaker:CreateTransformJob", "sagemaker:StopTransformJob", "s3:GetObject", "s3:ListBucket"}
        ]
        for other in world.layout.environment_accounts:
            if other == stack.environment:
                continue
            role = world.deploy_role(other)
            for call in sensitive:
                checked += 1
                assert not world.decide(role, call, stack.location.account), f"{other} -> {call.action} {call.resource}"
    assert checked
