"""``model-deploy-live-capacity`` against moto: what autoscaling left the endpoint at, for the next rollout."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.aws.capacity import LIVE_COUNTS_VARIABLE, live_counts_from_environment
from infra.capacity_aws import desired_counts, main, read_live_counts
from infra.verify_common import EndpointNotReadyError

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/model-deploy/prod/endpoint"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/model-serve@sha256:" + "ab" * 32
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def endpoint(aws_env: str) -> tuple[Any, str]:
    """An endpoint with two variants at 2 instances each, as the stack creates it."""
    import boto3

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    name = f"digits-{uuid.uuid4().hex[:8]}"
    sagemaker.create_model(ModelName=f"{name}-model", ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": IMAGE})
    variants = [
        {"VariantName": variant, "ModelName": f"{name}-model", "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"}
        for variant in ("champion", "challenger")
    ]
    sagemaker.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=variants)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    return sagemaker, name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prints_the_counts_autoscaling_left_for_github_env(
    endpoint: tuple[Any, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sagemaker, name = endpoint
    # What Application Auto Scaling does when it scales a variant out.
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "champion", "DesiredInstanceCount": 8}]
    )
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"endpointName": name, "region": REGION}))
    code, out, err = run(capsys, "--stack-outputs", str(outputs))
    assert (code, err) == (0, "")
    assert out == f'{LIVE_COUNTS_VARIABLE}={{"challenger":2,"champion":8}}\n'
    # ... which is exactly what the program accepts.
    name_value = out.strip().split("=", 1)
    assert live_counts_from_environment({name_value[0]: name_value[1]}) == {"champion": 8, "challenger": 2}


def test_before_the_first_deploy_the_stack_file_names_the_endpoint(
    aws_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = yaml.safe_load((ROOT / "Pulumi.aws-prod.yaml").read_text())
    document["config"]["model-deploy:aws"]["endpoint"]["name"] = f"digits-{uuid.uuid4().hex[:8]}"
    stack_file = tmp_path / "Pulumi.aws-prod.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    code, out, err = run(capsys, "--stack-file", str(stack_file))
    assert (code, err) == (0, "")
    assert out == f"{LIVE_COUNTS_VARIABLE}={{}}\n"  # no endpoint yet: the program uses the configured counts


def test_no_endpoint_named_is_a_usage_error(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--region", REGION)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "missing endpointName (or --endpoint-name, --stack-file)" in err


def test_an_endpoint_mid_rollout_stops_the_deploy() -> None:
    # moto's endpoints are always InService: answer DescribeEndpoint as SageMaker does during a rollout.
    class Updating:
        region = REGION

        class sagemaker:
            @staticmethod
            def describe_endpoint(EndpointName: str) -> dict[str, Any]:
                return {"EndpointName": EndpointName, "EndpointStatus": "Updating", "ProductionVariants": []}

        def call(self, action: str, thunk: Any, **_: Any) -> Any:
            return thunk()

    with pytest.raises(EndpointNotReadyError, match="'digits' is Updating, not InService"):
        read_live_counts(Updating(), "digits")  # type: ignore[arg-type]


def test_serverless_variants_have_no_instance_count() -> None:
    description = {
        "ProductionVariants": [
            {"VariantName": "a", "DesiredInstanceCount": 3, "CurrentInstanceCount": 2},
            {"VariantName": "sls", "CurrentServerlessConfig": {"MemorySizeInMB": 2048}},
        ]
    }
    assert desired_counts(description) == {"a": 3}
