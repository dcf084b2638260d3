"""``model-deploy-verify`` against moto's server mode: real boto3 clients, a real package in moto's S3.

moto's SageMaker keeps models, endpoint configs and endpoints (always ``InService``), and its
SageMaker runtime answers ``InvokeEndpoint`` with canned results queued through
``/moto-api/static/sagemaker/endpoint-results``. The healthy answer queued here is what the
serving container would send for the package: its bundled expected outputs encoded by the
container's own JSON codec. Statuses moto cannot produce (Failed, RollingBack, Updating) are
checked on ``DescribeEndpoint``-shaped answers directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inference.codecs import encode_response
from infra.verify_aws import (
    AwsClients,
    AwsCredentialsError,
    AwsUnavailableError,
    EndpointNotReadyError,
    SmokeTestError,
    UsageError,
    check_status,
    compare_predictions,
    main,
    target_from,
)
from model_package.example import load_arrays
from model_package.manifest import Manifest, read_manifest
from model_package.publish import push

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/model-deploy-endpoint"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/model-serve@sha256:" + "ab" * 32
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Package:
    """A real packaged PyTorch MLP and its bundled example."""

    path: Path
    manifest: Manifest
    expected: dict[str, np.ndarray]


@dataclass(frozen=True)
class Deployment:
    """A package published to moto's S3 and an endpoint for it in moto's SageMaker."""

    endpoint_name: str
    config_name: str
    package_uri: str
    digest: str
    package: Package

    def outputs(self, **changes: Any) -> dict[str, Any]:
        """What ``pulumi stack output --json`` would print for this stack."""
        outputs = {
            "endpointName": self.endpoint_name,
            "endpointConfigName": self.config_name,
            "packageUri": self.package_uri,
            "packageDigest": self.digest,
            "region": REGION,
            "endpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{self.endpoint_name}",
        }
        outputs.update(changes)
        return outputs


@pytest.fixture(scope="session")
def mlp_package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    """The seeded MLP exported once per session (torch.export takes a few seconds)."""
    pytest.importorskip("torch")
    from model_package.export import export_model
    from tests.model_package.torch_models import make_mlp, mlp_inputs

    path = tmp_path_factory.mktemp("verify") / "mlp"
    export_model(make_mlp(), mlp_inputs(3), path, name="mlp", version="1.0.0")
    manifest = read_manifest(path)
    return Package(path, manifest, load_arrays(path / manifest.example.outputs))


def _create_endpoint(sagemaker: Any, model_data_url: str, *, async_output: str | None = None) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    model, config, endpoint = f"mlp-{suffix}", f"mlp-config-{suffix}", f"mlp-{suffix}"
    sagemaker.create_model(
        ModelName=model,
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_data_url},
    )
    extra: dict[str, Any] = {}
    if async_output is not None:
        extra["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": async_output}}
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {"VariantName": "primary", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
        **extra,
    )
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    return endpoint, config


@pytest.fixture
def sagemaker(aws_env: str) -> Any:
    import boto3

    return boto3.client("sagemaker", region_name=REGION)


@pytest.fixture
def deployment(mlp_package: Package, s3_bucket: str, sagemaker: Any) -> Deployment:
    pushed = push(mlp_package.path, f"s3://{s3_bucket}/packages")
    endpoint, config = _create_endpoint(sagemaker, pushed.uri)
    return Deployment(endpoint, config, pushed.uri, pushed.digest, mlp_package)


def queue_answer(moto_server: str, body: str, content_type: str = "application/json") -> None:
    """Queue moto's next InvokeEndpoint answer (consumed by the next request moto has not seen)."""
    result = {"Body": body, "ContentType": content_type, "InvokedProductionVariant": "primary"}
    response = httpx.post(
        f"{moto_server}/moto-api/static/sagemaker/endpoint-results", json={"region": REGION, "results": [result]}
    )
    response.raise_for_status()


def queue_async_answer(moto_server: str, body: str, *, failure: bool = False) -> None:
    """Queue moto's next InvokeEndpointAsync result (moto writes it to S3 at once)."""
    result = {"data": body, "is_failure": failure}
    response = httpx.post(
        f"{moto_server}/moto-api/static/sagemaker/async-endpoint-results", json={"region": REGION, "results": [result]}
    )
    response.raise_for_status()


def served_answer(package: Package, outputs: dict[str, np.ndarray] | None = None) -> str:
    """The serving container's JSON answer for ``outputs`` (default: the package's expected outputs)."""
    body, _ = encode_response(outputs or package.expected, "application/json", package.manifest.signature)
    return body.decode()


def run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, outputs: dict[str, Any] | None, *flags: str
) -> tuple[int, str, str]:
    """Run the command in-process; returns (exit code, stdout, stderr)."""
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
    assert "Traceback" not in text
    return lines[0]


# --- against moto -------------------------------------------------------------------------------


@pytest.mark.torch
def test_healthy_endpoint_passes(
    deployment: Deployment, moto_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    queue_answer(moto_server, served_answer(deployment.package))
    code, out, err = run(capsys, tmp_path, deployment.outputs())
    assert (code, err) == (0, "")
    line = one_line(out)
    assert line.startswith(f"OK: endpoint {deployment.endpoint_name} is InService on config {deployment.config_name}")
    assert "variants primary" in line
    assert f"serving mlp@1.0.0 digest {deployment.digest[:12]}" in line
    assert "smoke test passed (3 rows, max abs error 0)" in line


@pytest.mark.torch
def test_explicit_flags_work_without_outputs(
    deployment: Deployment, moto_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    queue_answer(moto_server, served_answer(deployment.package))
    flags = [
        "--endpoint-name", deployment.endpoint_name,
        "--expected-config", deployment.config_name,
        "--package-uri", deployment.package_uri,
        "--region", REGION,
    ]  # fmt: skip
    code, out, _ = run(capsys, tmp_path, None, *flags)
    assert code == 0
    assert one_line(out).startswith("OK: ")


@pytest.mark.torch
def test_skip_smoke_checks_everything_but_the_invocation(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, tmp_path, deployment.outputs(), "--skip-smoke")
    assert code == 0
    assert one_line(out).endswith(f"digest {deployment.digest[:12]}; smoke test skipped (--skip-smoke)")


@pytest.mark.torch
def test_rolled_back_endpoint_fails_naming_both_configs(
    deployment: Deployment, sagemaker: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The stack created a new config, but the endpoint still runs the old one: SageMaker rolled back.
    new_config = f"{deployment.config_name}-new"
    model = sagemaker.describe_endpoint_config(EndpointConfigName=deployment.config_name)["ProductionVariants"][0]
    sagemaker.create_endpoint_config(
        EndpointConfigName=new_config,
        ProductionVariants=[{**model, "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1}],
    )
    code, out, err = run(capsys, tmp_path, deployment.outputs(endpointConfigName=new_config))
    assert (code, out) == (5, "")
    line = one_line(err)
    assert f"runs endpoint config {deployment.config_name!r}, but the stack expects {new_config!r}" in line
    assert "SageMaker rolled the update back" in line
    assert f"{deployment.config_name!r} and its model were kept, so the endpoint keeps serving" in line


@pytest.mark.torch
def test_wrong_predictions_fail_with_the_max_abs_error(
    deployment: Deployment, moto_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wrong = {name: array.copy() for name, array in deployment.package.expected.items()}
    wrong["output"][1, 3] += 0.5
    queue_answer(moto_server, served_answer(deployment.package, wrong))
    code, out, err = run(capsys, tmp_path, deployment.outputs())
    assert (code, out) == (6, "")
    line = one_line(err)
    assert "output 'output' differs from the package's expected outputs: max abs error 0.5 exceeds" in line
    assert "atol 1e-05 + rtol 0.0001" in line


@pytest.mark.torch
def test_an_answer_that_is_not_json_fails(
    deployment: Deployment, moto_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    queue_answer(moto_server, "<html>502 Bad Gateway</html>", "text/html")
    code, _, err = run(capsys, tmp_path, deployment.outputs())
    assert code == 6
    assert "answered the smoke request with non-JSON '<html>502 Bad Gateway</html>'" in one_line(err)


@pytest.mark.torch
def test_endpoint_serving_another_package_fails(
    mlp_package: Package, s3_bucket: str, sagemaker: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pushed = push(mlp_package.path, f"s3://{s3_bucket}/packages")
    other = "f" * 64
    endpoint, config = _create_endpoint(sagemaker, f"s3://{s3_bucket}/packages/mlp/{other}/model.tar.gz")
    outputs = {"endpointName": endpoint, "endpointConfigName": config, "packageUri": pushed.uri, "region": REGION}
    code, _, err = run(capsys, tmp_path, outputs)
    assert code == 5
    assert f"variant 'primary' of endpoint {endpoint!r} loads package {other}" in one_line(err)
    assert f"the stack pins {pushed.digest}" in err


@pytest.fixture
def async_deployment(mlp_package: Package, s3_bucket: str, sagemaker: Any) -> Deployment:
    """Like ``deployment``, with an asynchronous endpoint writing to the store."""
    pushed = push(mlp_package.path, f"s3://{s3_bucket}/packages")
    # The stack's layout: async/<endpoint>/{input,output,failure}, the role reading input/ only.
    endpoint, config = _create_endpoint(sagemaker, pushed.uri, async_output=f"s3://{s3_bucket}/async/mlp/output")
    return Deployment(endpoint, config, pushed.uri, pushed.digest, mlp_package)


@pytest.mark.torch
def test_async_endpoint_is_smoke_tested_through_the_store(
    async_deployment: Deployment, moto_server: str, s3_client: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    queue_async_answer(moto_server, served_answer(async_deployment.package))
    code, out, err = run(capsys, tmp_path, async_deployment.outputs())
    assert (code, err) == (0, "")
    line = one_line(out)
    assert line.startswith(f"OK: async endpoint {async_deployment.endpoint_name} is InService")
    assert "smoke test passed (3 rows, max abs error 0)" in line
    bucket = async_deployment.package_uri.split("/")[2]
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix="async/")  # the request is cleaned up


def test_async_requests_go_where_the_endpoint_may_read() -> None:
    from infra.verify_aws import _async_input_prefix

    assert _async_input_prefix("s3://store/async/mlp/output") == "s3://store/async/mlp/input"
    assert _async_input_prefix("s3://store/async/mlp/output/") == "s3://store/async/mlp/input"
    assert _async_input_prefix("s3://store/results") == "s3://store/results"


@pytest.mark.torch
def test_async_failure_is_reported(
    async_deployment: Deployment, moto_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    queue_async_answer(moto_server, "CUDA out of memory", failure=True)
    code, _, err = run(capsys, tmp_path, async_deployment.outputs())
    assert code == 6
    assert "failed the async smoke request: 'CUDA out of memory'" in one_line(err)


def test_missing_endpoint_is_a_clear_not_found(aws_env: str, tmp_path: Path) -> None:
    """Through the real entry point: one line on stderr, no traceback, exit 3."""
    digest = "0" * 64
    outputs = {
        "endpointName": "no-such-endpoint",
        "endpointConfigName": "no-such-config",
        "packageUri": f"s3://nowhere/mlp/{digest}/model.tar.gz",
        "region": REGION,
    }
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    result = subprocess.run(
        [sys.executable, "-m", "infra.verify_aws", "--stack-outputs", str(path)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (3, "")
    line = one_line(result.stderr)
    assert line.startswith("model-deploy-verify: error: endpoint 'no-such-endpoint' does not exist in us-east-1")


def test_no_credentials_is_a_clear_message(
    isolated_cloud_env: None,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # even if it tried, nothing leaves the machine
    outputs = {
        "endpointName": "mlp",
        "endpointConfigName": "mlp-config",
        "packageUri": f"s3://models/mlp/{'0' * 64}/model.tar.gz",
        "region": REGION,
    }
    code, _, err = run(capsys, tmp_path, outputs)
    assert code == 7
    line = one_line(err)
    assert "cannot describe endpoint 'mlp': Unable to locate credentials" in line
    assert "configure AWS credentials" in line


# --- outputs and flags --------------------------------------------------------------------------

DIGEST = "ab" * 32
URI = f"s3://models/mlp/{DIGEST}/model.tar.gz"


def test_missing_outputs_name_the_key_and_the_flag() -> None:
    with pytest.raises(UsageError, match=r"missing endpointConfigName \(or --expected-config\)"):
        target_from({"endpointName": "mlp", "packageUri": URI}, {})


def test_flags_override_outputs() -> None:
    target = target_from(
        {"endpointName": "mlp", "endpointConfigName": "a", "packageUri": URI, "region": "eu-west-1"},
        {"expected_config": "b", "region": None},
    )
    assert (target.expected_config, target.region) == ("b", "eu-west-1")


def test_secret_outputs_ask_for_show_secrets() -> None:
    with pytest.raises(UsageError, match="packageUri is a secret; export the outputs with `--show-secrets`"):
        target_from({"endpointName": "mlp", "endpointConfigName": "a", "packageUri": "[secret]"}, {})


def test_outputs_that_disagree_on_the_digest_are_refused() -> None:
    outputs = {"endpointName": "mlp", "endpointConfigName": "a", "packageUri": URI, "packageDigest": "cd" * 32}
    with pytest.raises(UsageError, match=f"packageDigest is {'cd' * 32} but the package URI pins {DIGEST}"):
        target_from(outputs, {})


def test_unreadable_outputs_are_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text("Current stack outputs (3):")  # `pulumi stack output` without --json
    code, _, err = run(capsys, tmp_path, None, "--stack-outputs", str(path))
    assert code == 2
    assert "are not JSON" in one_line(err)
    assert "pulumi stack output --json" in err


# --- statuses moto cannot produce, and errors it cannot raise -----------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("Failed", "Image pull failed: manifest unknown", "is Failed: Image pull failed: manifest unknown; fix"),
        ("RollingBack", None, "is RollingBack, not InService; wait for the rollout to finish"),
        ("Updating", None, "is Updating, not InService"),
        ("OutOfService", "capacity", "is OutOfService, not InService: capacity"),
    ],
)
def test_endpoints_not_in_service_fail_with_the_reason(status: str, reason: str | None, expected: str) -> None:
    description = {"EndpointName": "mlp", "EndpointStatus": status, "EndpointConfigName": "c"}
    if reason:
        description["FailureReason"] = reason
    with pytest.raises(EndpointNotReadyError, match=expected) as caught:
        check_status(description)
    assert caught.value.exit_code == 4


def _client_error(code: str, message: str, **extra: Any) -> Any:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}, **extra}, "InvokeEndpoint")


def _raise(exc: Exception) -> Any:
    raise exc


@pytest.fixture
def aws(aws_env: str) -> AwsClients:
    return AwsClients(REGION)


def test_throttling_after_retries_says_so(aws: AwsClients) -> None:
    with pytest.raises(AwsUnavailableError, match=r"AWS throttled the call to describe endpoint 'mlp' even after"):
        aws.call("describe endpoint 'mlp'", lambda: _raise(_client_error("ThrottlingException", "Rate exceeded")))


def test_access_denied_names_the_call(aws: AwsClients) -> None:
    with pytest.raises(AwsCredentialsError, match=r"not allowed to invoke endpoint 'mlp': User: arn:aws:sts"):
        aws.call(
            "invoke endpoint 'mlp'",
            lambda: _raise(_client_error("AccessDeniedException", "User: arn:aws:sts::1:assumed-role/ci is not")),
        )


def test_a_model_error_is_a_smoke_failure_with_the_container_status() -> None:
    from infra.verify_aws import _raise_invocation_error

    error = _client_error(
        "ModelError",
        "Received client error (400)",
        OriginalStatusCode=400,
        OriginalMessage='{"error": "input \'x\' must have 64 columns"}',
        LogStreamArn="arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/Endpoints/mlp",
    )
    with pytest.raises(SmokeTestError, match=r"answered the smoke request with HTTP 400: .*64 columns.*\(logs: arn"):
        _raise_invocation_error(error, "mlp")


def test_predictions_compare_within_the_manifest_tolerance() -> None:
    from model_package.manifest import Signature, TensorSpec

    signature = Signature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 2)),),
        outputs=(
            TensorSpec(name="scores", dtype="float32", shape=(-1, 2)),
            TensorSpec(name="label", dtype="bytes", shape=(-1,)),
        ),
    )
    expected = {"scores": np.array([[1.0, 2.0], [3.0, np.nan]], np.float32), "label": np.array([b"cat", b"dog"])}
    answer: dict[str, Any] = {
        "predictions": [{"scores": [1.000001, 2.0], "label": "cat"}, {"scores": [3.0, None], "label": "dog"}]
    }
    assert compare_predictions(answer, expected, signature, rtol=1e-4, atol=1e-5) == pytest.approx(1e-6, abs=1e-7)
    answer["predictions"][1]["label"] = "cow"
    with pytest.raises(SmokeTestError, match="output 'label' differs"):
        compare_predictions(answer, expected, signature, rtol=1e-4, atol=1e-5)
    with pytest.raises(SmokeTestError, match=r'not \{"predictions": \[\.\.\.\]\}'):
        compare_predictions({"outputs": []}, expected, signature, rtol=1e-4, atol=1e-5)
