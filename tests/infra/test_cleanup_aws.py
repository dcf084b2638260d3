"""``model-deploy-cleanup`` against moto's server mode: real boto3 clients, SageMaker's real calls.

Each test lays out what a stack leaves behind after a few rollouts (models and endpoint configs
auto-named and tagged as the program names and tags them) and runs the command as the pipeline
would, then asks SageMaker what is left.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.aws.naming import CONFIG_KIND, MODEL_KIND, child_name
from infra.cleanup_aws import main

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/model-deploy/dev/endpoint"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/model-serve@sha256:" + "ab" * 32


def _tags(stack: str) -> list[dict[str, str]]:
    return [{"Key": "managed-by", "Value": "model-deploy"}, {"Key": "stack", "Value": stack}]


@dataclass
class Stack:
    """One stack's endpoint in moto and the rollouts it went through."""

    sagemaker: Any
    endpoint: str
    stack: str

    def rollout(self, suffix: str, *, tags: list[dict[str, str]] | None = None) -> str:
        """Create the model and config one `pulumi up` creates; return the config's name."""
        model = f"{child_name(self.endpoint, MODEL_KIND)}-{suffix}"
        config = f"{child_name(self.endpoint, CONFIG_KIND)}-{suffix}"
        tags = _tags(self.stack) if tags is None else tags
        self.sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=ROLE_ARN,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/models/digits/" + "0" * 64 + "/model.tar.gz"},
            Tags=tags,
        )
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {"VariantName": "primary", "ModelName": model, "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"}
            ],
            Tags=tags,
        )
        return config

    def deploy(self, config: str) -> None:
        """The endpoint now runs ``config``.

        moto has no UpdateEndpoint: the endpoint is created again on ``config``, which leaves it
        as the command sees it after a real update (same name and tags, InService on ``config``).
        """
        existing = {e["EndpointName"] for e in self.sagemaker.list_endpoints()["Endpoints"]}
        if self.endpoint in existing:
            self.sagemaker.delete_endpoint(EndpointName=self.endpoint)
        self.sagemaker.create_endpoint(EndpointName=self.endpoint, EndpointConfigName=config, Tags=_tags(self.stack))

    def configs(self) -> set[str]:
        found = self.sagemaker.list_endpoint_configs(NameContains=self.endpoint)["EndpointConfigs"]
        return {c["EndpointConfigName"] for c in found if c["EndpointConfigName"].startswith(f"{self.endpoint}-")}

    def models(self) -> set[str]:
        # moto's ListModels ignores NameContains; filter here as SageMaker would.
        found = self.sagemaker.list_models(NameContains=self.endpoint)["Models"]
        return {m["ModelName"] for m in found if m["ModelName"].startswith(f"{self.endpoint}-")}

    def outputs(self, config: str) -> dict[str, Any]:
        """What `pulumi stack output --json` prints after the rollout that declared ``config``."""
        return {"endpointName": self.endpoint, "endpointConfigName": config, "region": REGION}


@pytest.fixture
def stack(aws_env: str) -> Stack:
    import boto3

    # moto's state lives for the whole session: a fresh endpoint name per test.
    return Stack(boto3.client("sagemaker", region_name=REGION), f"digits-{uuid.uuid4().hex[:8]}", "aws-dev")


def run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, outputs: dict[str, Any] | None, *flags: str
) -> tuple[int, str, str]:
    argv = list(flags)
    if outputs is not None:
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps(outputs))
        argv = ["--stack-outputs", str(path), *argv]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_a_verified_rollout_deletes_what_it_superseded(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = stack.rollout("aaaaaaa")
    stack.deploy(first)
    second = stack.rollout("bbbbbbb")
    stack.deploy(second)
    third = stack.rollout("ccccccc")
    stack.deploy(third)

    code, out, err = run(capsys, tmp_path, stack.outputs(third))
    assert (code, err) == (0, "")
    line = one_line(out)
    assert line.startswith(f"OK: endpoint {stack.endpoint} is InService on config {third}; deleted 2 endpoint configs")
    assert stack.configs() == {third}
    assert stack.models() == {f"{child_name(stack.endpoint, MODEL_KIND)}-ccccccc"}


def test_after_a_rollback_nothing_is_deleted_and_the_reason_is_one_line(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = stack.rollout("aaaaaaa")
    stack.deploy(old)
    new = stack.rollout("bbbbbbb")  # declared by `pulumi up`, but SageMaker rolled the endpoint back to `old`
    before = (stack.configs(), stack.models())

    code, out, err = run(capsys, tmp_path, stack.outputs(new))
    assert (code, out) == (5, "")
    line = one_line(err)
    assert line.startswith(f"model-deploy-cleanup: error: endpoint {stack.endpoint!r} runs endpoint config {old!r}")
    assert "nothing was deleted" in line
    assert (stack.configs(), stack.models()) == before


def test_only_the_stacks_own_auto_named_resources_are_touched(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = stack.rollout("aaaaaaa")
    stack.deploy(old)
    other_stack = stack.rollout("bbbbbbb", tags=_tags("aws-staging"))
    untagged = stack.rollout("ccccccc", tags=[])
    current = stack.rollout("ddddddd")
    stack.deploy(current)
    # A config named by hand beside the stack's, with the right tags: not Pulumi's auto-name, so not ours.
    stack.sagemaker.create_endpoint_config(
        EndpointConfigName=f"{child_name(stack.endpoint, CONFIG_KIND)}-manual",
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": f"{child_name(stack.endpoint, MODEL_KIND)}-aaaaaaa",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        Tags=_tags(stack.stack),
    )

    code, _, err = run(capsys, tmp_path, stack.outputs(current))
    assert (code, err) == (0, "")
    assert stack.configs() == {current, other_stack, untagged, f"{child_name(stack.endpoint, CONFIG_KIND)}-manual"}
    assert f"{child_name(stack.endpoint, MODEL_KIND)}-aaaaaaa" not in stack.models()


def test_a_config_newer_than_the_running_one_keeps_its_model(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = stack.rollout("aaaaaaa")
    stack.deploy(old)
    current = stack.rollout("bbbbbbb")
    stack.deploy(current)
    in_flight = stack.rollout("ccccccc")  # a concurrent deploy created it and is about to roll it out

    code, _, err = run(capsys, tmp_path, stack.outputs(current))
    assert (code, err) == (0, "")
    assert stack.configs() == {current, in_flight}
    assert stack.models() == {f"{child_name(stack.endpoint, MODEL_KIND)}-{s}" for s in ("bbbbbbb", "ccccccc")}


def test_dry_run_deletes_nothing(stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = stack.rollout("aaaaaaa")
    stack.deploy(old)
    current = stack.rollout("bbbbbbb")
    stack.deploy(current)
    code, out, _ = run(capsys, tmp_path, stack.outputs(current), "--dry-run")
    assert code == 0
    assert f"would delete 1 endpoint configs and 1 models ({old}, " in one_line(out)
    assert stack.configs() == {old, current}


def test_after_destroy_everything_the_stack_kept_goes(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = stack.rollout("aaaaaaa")
    stack.deploy(old)
    current = stack.rollout("bbbbbbb")
    stack.deploy(current)

    # Without the flag, a missing endpoint is an error, not a licence to delete.
    stack.sagemaker.delete_endpoint(EndpointName=stack.endpoint)
    code, _, err = run(capsys, tmp_path, stack.outputs(current))
    assert code == 3 and "nothing was deleted" in one_line(err)
    assert stack.configs() == {old, current}

    flags = ["--after-destroy", "--endpoint-name", stack.endpoint, "--stack", stack.stack, "--region", REGION]
    code, out, err = run(capsys, tmp_path, None, *flags)
    assert (code, err) == (0, "")
    assert one_line(out).startswith(f"OK: endpoint {stack.endpoint} is gone; deleted 2 endpoint configs and 2 models")
    assert stack.configs() == set() and stack.models() == set()


def test_after_destroy_while_the_endpoint_exists_is_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    current = stack.rollout("aaaaaaa")
    stack.deploy(current)
    flags = ["--after-destroy", "--endpoint-name", stack.endpoint, "--stack", stack.stack, "--region", REGION]
    code, _, err = run(capsys, tmp_path, None, *flags)
    assert code == 2 and "still exists; nothing was deleted" in one_line(err)
    assert stack.configs() == {current}


def test_missing_outputs_are_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, tmp_path, {"region": REGION})
    assert code == 2 and "missing endpointName (or --endpoint-name)" in one_line(err)
