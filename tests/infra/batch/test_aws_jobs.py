"""``model-deploy-batch`` on an AWS stack against moto's server mode: real boto3 clients, real calls.

moto keeps transform jobs but does not run them: a job is ``Completed`` the moment it is
created. Each test stands in for SageMaker by wrapping moto's job constructor: it writes the
``.out`` objects a real job would write (one line per input line, under the input's relative
path, TransformOutput.S3OutputPath:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html), or leaves
some out, or ends the job ``Failed`` with a ``FailureReason``.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.batch.cloud import add_cloud_arguments, run_cloud

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/model-deploy/dev/endpoint"

Simulation = Callable[[Any, dict[str, Any]], None]
"""What SageMaker does with a created job: gets the S3 client and the job's request."""


def run(argv: list[str]) -> int:
    # The router (infra.batch.cli) composes the same parser with the local side's options.
    parser = argparse.ArgumentParser(prog="model-deploy-batch")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    add_cloud_arguments(parser.add_argument_group("managed"))
    return run_cloud(parser.parse_args(argv), parser)


class World:
    """One AWS stack in moto: its endpoint serving the pinned package, a KMS key, a bucket with input."""

    def __init__(self, tmp_path: Path) -> None:
        import boto3

        self.s3 = boto3.client("s3", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        document = yaml.safe_load((ROOT / "Pulumi.aws-dev.yaml").read_text())
        config = document["config"]
        self.endpoint = f"digits-{uuid.uuid4().hex[:8]}"
        config["model-deploy:aws"]["endpoint"]["name"] = self.endpoint
        config["model-deploy:aws"]["endpoint"]["batchJobs"] = True
        self.package = config["model-deploy:package"]
        self.stack_file = tmp_path / "Pulumi.aws-dev.yaml"
        self.stack_file.write_text(yaml.safe_dump(document))
        self.bucket = f"batch-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.kms_key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        self.model = f"{self.endpoint}-model-aaaaaaa"
        self.config_name = f"{self.endpoint}-config-aaaaaaa"
        self.deploy(self.package["uri"], self.package["image"])
        self.outputs = tmp_path / "outputs.json"
        self.outputs.write_text(
            json.dumps(
                {
                    "endpointName": self.endpoint,
                    "endpointConfigName": self.config_name,
                    "kmsKeyArn": self.kms_key_arn,
                    "region": REGION,
                    "batchInputUri": f"s3://{self.bucket}/batch/{self.endpoint}/input/",
                    "batchOutputUri": f"s3://{self.bucket}/batch/{self.endpoint}/output/",
                }
            )
        )

    def deploy(self, package_uri: str, image: str) -> None:
        self.sagemaker.create_model(
            ModelName=self.model,
            ExecutionRoleArn=ROLE_ARN,
            PrimaryContainer={"Image": image, "ModelDataUrl": package_uri},
        )
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=self.config_name,
            ProductionVariants=[
                {
                    "VariantName": "primary",
                    "ModelName": self.model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
        self.sagemaker.create_endpoint(EndpointName=self.endpoint, EndpointConfigName=self.config_name)

    def put(self, key: str, body: str) -> None:
        """``key`` under the stack's batch prefix (``in/…`` for input, ``out/…`` for output)."""
        kind, _, rest = key.partition("/")
        folder = {"in": "input", "out": "output"}[kind]
        self.s3.put_object(Bucket=self.bucket, Key=f"batch/{self.endpoint}/{folder}/{rest}", Body=body.encode())

    def uri(self, path: str) -> str:
        return f"s3://{self.bucket}/batch/{self.endpoint}/{path}"

    def argv(self, *extra: str) -> list[str]:
        return [
            "--input", self.uri("input/"),
            "--output", self.uri("output/"),
            "--stack-file", str(self.stack_file),
            "--stack-outputs", str(self.outputs),
            "--poll-interval", "0.01",
            *extra,
        ]  # fmt: skip

    def jobs(self) -> list[dict[str, Any]]:
        names = [j["TransformJobName"] for j in self.sagemaker.list_transform_jobs()["TransformJobSummaries"]]
        return [
            self.sagemaker.describe_transform_job(TransformJobName=name)
            for name in names
            if name.startswith(f"{self.endpoint}-batch-")
        ]


@pytest.fixture
def world(aws_env: str, tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def sagemaker_runs(monkeypatch: pytest.MonkeyPatch) -> Callable[[Simulation], None]:
    """Install what the (in-process) moto server's SageMaker does when a job is created."""
    import boto3
    from moto.sagemaker import models

    original = models.FakeTransformJob.__init__

    def install(simulation: Simulation) -> None:
        def create(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            simulation(boto3.client("s3", region_name=REGION), {"job": self, **kwargs})

        monkeypatch.setattr(models.FakeTransformJob, "__init__", create)

    return install


def score_every_line(skip: set[str] = frozenset(), short: set[str] = frozenset()) -> Simulation:  # type: ignore[assignment]
    """A job that writes ``<relative key>.out`` with one line per input line (less for ``short``)."""

    def simulate(s3: Any, job: dict[str, Any]) -> None:
        source = job["transform_input"]["DataSource"]["S3DataSource"]["S3Uri"]
        destination = job["transform_output"]["S3OutputPath"]
        in_bucket, _, in_prefix = source[len("s3://") :].partition("/")
        out_bucket, _, out_prefix = destination[len("s3://") :].partition("/")
        for item in s3.list_objects_v2(Bucket=in_bucket, Prefix=in_prefix).get("Contents", []):
            key = item["Key"]
            relative = key[len(in_prefix) :]
            if relative in skip:
                continue
            lines = s3.get_object(Bucket=in_bucket, Key=key)["Body"].read().decode().splitlines()
            if relative in short:
                lines = lines[:-1]
            answer = "".join(json.dumps({"prediction": i}) + "\n" for i, _ in enumerate(lines))
            s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}{relative}.out", Body=answer.encode())

    return simulate


def fail_with(reason: str) -> Simulation:
    def simulate(s3: Any, job: dict[str, Any]) -> None:
        job["job"].transform_job_status = "Failed"
        job["job"].failure_reason = reason

    return simulate


def jsonl(rows: int) -> str:
    return "".join(json.dumps({"inputs": [i, i + 1]}) + "\n" for i in range(rows))


def test_a_completed_job_over_every_record_succeeds_with_one_summary_line(
    world: World, sagemaker_runs: Callable[[Simulation], None], capsys: pytest.CaptureFixture[str]
) -> None:
    world.put("in/a.jsonl", jsonl(3))
    world.put("in/day=2/b.jsonl", jsonl(5) + "\n")  # a blank line is no record
    sagemaker_runs(score_every_line())

    code = run(world.argv())

    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith(f"OK: transform job {world.endpoint}-batch-")
    assert "2 objects, 8 records in, 8 out" in out
    assert ": Completed" in err  # the status transition, with the elapsed time
    (job,) = world.jobs()
    assert job["ModelName"] == world.model
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformInput"]["ContentType"] == "application/jsonlines"
    assert job["BatchStrategy"] == "MultiRecord"
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert job["TransformOutput"]["KmsKeyId"] == world.kms_key_arn
    assert job["TransformResources"] == {
        "InstanceType": "ml.m5.large",
        "InstanceCount": 1,
        "VolumeKmsKeyId": world.kms_key_arn,
    }
    # Left to the container's /execution-parameters.
    assert "MaxPayloadInMB" not in job and "MaxConcurrentTransforms" not in job
    assert len(job["TransformJobName"]) <= 63


def test_the_job_is_tagged_with_the_stack_environment_for_abac(
    world: World, sagemaker_runs: Callable[[Simulation], None]
) -> None:
    world.put("in/a.csv", "1,2\n3,4\n")
    sagemaker_runs(score_every_line())
    assert run(world.argv()) == 0
    (job,) = world.jobs()
    tags = {t["Key"]: t["Value"] for t in world.sagemaker.list_tags(ResourceArn=job["TransformJobArn"])["Tags"]}
    assert tags["environment"] == "dev"
    assert tags["package-digest"] == world.package["digest"]
    assert job["TransformInput"]["ContentType"] == "text/csv"


def test_an_input_object_without_output_is_named_and_exits_11(
    world: World, sagemaker_runs: Callable[[Simulation], None], capsys: pytest.CaptureFixture[str]
) -> None:
    world.put("in/a.jsonl", jsonl(2))
    world.put("in/b.jsonl", jsonl(4))
    sagemaker_runs(score_every_line(skip={"b.jsonl"}))

    code = run(world.argv())

    out, err = capsys.readouterr()
    assert code == 11 and out == ""
    last = err.strip().splitlines()[-1]
    assert "Completed but 1 of 2 input objects lack output" in last
    assert f"batch/{world.endpoint}/input/b.jsonl (4 records, no .out object)" in last
    assert "Traceback" not in err


def test_a_short_output_is_reported_with_its_counts(
    world: World, sagemaker_runs: Callable[[Simulation], None], capsys: pytest.CaptureFixture[str]
) -> None:
    world.put("in/a.jsonl", jsonl(6))
    sagemaker_runs(score_every_line(short={"a.jsonl"}))

    assert run(world.argv()) == 11
    assert f"batch/{world.endpoint}/input/a.jsonl (5 of 6 records)" in capsys.readouterr().err


def test_a_failed_job_exits_10_with_sagemakers_reason(
    world: World, sagemaker_runs: Callable[[Simulation], None], capsys: pytest.CaptureFixture[str]
) -> None:
    world.put("in/a.jsonl", jsonl(2))
    sagemaker_runs(fail_with("ClientError: See job logs for more information"))

    code = run(world.argv())

    err = capsys.readouterr().err
    assert code == 10
    last = err.strip().splitlines()[-1]
    assert "ended Failed" in last and "ClientError: See job logs for more information" in last
    assert "/aws/sagemaker/TransformJobs/" in last


def test_dry_run_prints_the_request_and_creates_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", jsonl(2))

    code = run(world.argv("--dry-run", "--max-payload-mb", "6", "--instance-count", "2"))

    out, _ = capsys.readouterr()
    assert code == 0
    request = json.loads(out[: out.rindex("}") + 1])["CreateTransformJob"]
    assert request["MaxPayloadInMB"] == 6
    assert request["TransformResources"]["InstanceCount"] == 2
    assert "dry run: would create transform job" in out
    assert world.jobs() == []


def test_an_endpoint_serving_another_package_is_refused_before_any_job(
    aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World.__new__(World)
    World.__init__(world, tmp_path)
    # Roll the endpoint to a model of another package, as a manual change would.
    other = world.package["uri"].replace(world.package["digest"], "f" * 64)
    world.sagemaker.delete_endpoint(EndpointName=world.endpoint)
    world.model, world.config_name = f"{world.endpoint}-model-bbbbbbb", f"{world.endpoint}-config-bbbbbbb"
    world.deploy(other, world.package["image"])
    world.outputs.write_text(json.dumps({"kmsKeyArn": world.kms_key_arn}))
    world.put("in/a.jsonl", jsonl(2))

    assert run(world.argv()) == 5
    assert "but the stack pins" in capsys.readouterr().err
    assert world.jobs() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--output": "input/out/"}, "lies under --input"),
        ({"--input": "input/none/"}, "holds no objects"),
        ({"--input": "input-elsewhere/"}, "the only place the stack's job identity may read"),
        ({"--output": "elsewhere/"}, "the only place the stack's job identity may write"),
    ],
)
def test_bad_locations_are_one_line_usage_errors(
    world: World, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    world.put("in/a.jsonl", jsonl(1))
    argv = world.argv()
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = world.uri(value)

    assert run(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_gs_input_on_an_aws_stack_is_a_usage_error(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    argv = world.argv()
    argv[argv.index("--input") + 1] = f"gs://{world.bucket}/in/"
    assert run(argv) == 2
    assert "deploys to aws" in capsys.readouterr().err


def test_a_stack_without_batch_jobs_is_refused_naming_the_config_key(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load(world.stack_file.read_text())
    del document["config"]["model-deploy:aws"]["endpoint"]["batchJobs"]
    world.stack_file.write_text(yaml.safe_dump(document))
    world.put("in/a.jsonl", jsonl(1))

    assert run(world.argv()) == 2
    assert "set model-deploy:aws.endpoint.batchJobs: true" in capsys.readouterr().err
    assert world.jobs() == []


def test_an_output_prefix_holding_objects_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", jsonl(1))
    world.put("out/a.jsonl.out", "{}\n")  # an earlier job's output would be counted as this one's

    assert run(world.argv()) == 2
    assert "already holds objects" in capsys.readouterr().err


def test_unknown_extensions_need_a_content_type(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.bin", "x")

    assert run(world.argv()) == 2
    assert "pass --content-type" in capsys.readouterr().err


def test_progress_shows_each_status_change_once_with_the_elapsed_time(
    world: World, sagemaker_runs: Callable[[Simulation], None], capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    world.put("in/a.jsonl", jsonl(2))
    write_outputs = score_every_line()

    def run_for_a_while(s3: Any, job: dict[str, Any]) -> None:
        # InProgress for a few polls, then the outputs appear and the job completes (as SageMaker would).
        job["job"].transform_job_status = "InProgress"

        def finish() -> None:
            write_outputs(s3, job)
            job["job"].transform_job_status = "Completed"

        threading.Timer(0.2, finish).start()

    sagemaker_runs(run_for_a_while)

    assert run(world.argv()) == 0
    err = capsys.readouterr().err
    statuses = [line.rsplit(": ", 1)[-1] for line in err.splitlines() if "] " in line]
    assert statuses == ["InProgress", "Completed"]
    assert all(re.search(r"\[\d+:\d\d:\d\d\] ", line) for line in err.splitlines() if "] " in line)
