"""``model-deploy-batch`` on a GCP Vertex stack: the real GAPIC JobService client against the local
aiplatform gRPC stand-in (tests/infra/fake_vertex.py), the real Cloud Storage client against the
GCS emulator.

The stand-in plays the batch engine on the job's first Get: it writes what Vertex documents
("Get batch predictions from a custom trained model":
https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions) into
``<output prefix>/prediction-<model>-<time>/``: ``prediction.results-00000-of-00001`` with one line
per predicted instance and ``prediction.errors_stats-00000-of-00001`` with one line per failed one,
and sets the job's state.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import aiplatform_v1

from infra.batch.cloud import add_cloud_arguments, run_cloud
from tests.infra.fake_vertex import PARENT, PROJECT, REGION, FakeVertex

ROOT = Path(__file__).resolve().parents[3]
MODEL = f"{PARENT}/models/55"
SERVICE_ACCOUNT = f"vertex-sa@{PROJECT}.iam.gserviceaccount.com"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="model-deploy-batch")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    add_cloud_arguments(parser.add_argument_group("managed"))
    return run_cloud(parser.parse_args(argv), parser)


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    fake = FakeVertex().start()
    fake.models[MODEL] = aiplatform_v1.Model(name=MODEL, display_name="digits")
    yield fake
    fake.stop()


class World:
    def __init__(self, tmp_path: Path, client: Any, bucket: str, vertex: FakeVertex) -> None:
        self.client, self.bucket, self.vertex = client, bucket, vertex
        # The committed dev stack, moved to the stand-in's project (its bucket and image name the project).
        text = (ROOT / "Pulumi.gcp-dev.yaml").read_text().replace("acme-ml-dev", PROJECT)
        document = yaml.safe_load(text)
        config = document["config"]
        assert config["gcp:region"] == REGION
        gcp = config["model-deploy:gcp"]
        gcp["target"] = "vertex"
        gcp.pop("cloudRun")
        gcp["vertex"] = {"endpointName": "digits dev", "machineType": "n1-standard-4", "batchJobs": True}
        gcp["store"]["kmsKeyName"] = f"projects/{PROJECT}/locations/{REGION}/keyRings/ml/cryptoKeys/models"
        self.stack_file = tmp_path / "Pulumi.gcp-dev.yaml"
        self.stack_file.write_text(yaml.safe_dump(document))
        self.outputs = tmp_path / "outputs.json"
        self.outputs.write_text(
            json.dumps(
                {
                    "modelResourceName": MODEL,
                    "serviceAccountEmail": SERVICE_ACCOUNT,
                    "batchInputUri": f"gs://{bucket}/in/",
                    "batchOutputUri": f"gs://{bucket}/out/",
                }
            )
        )

    def put(self, key: str, text: str) -> None:
        self.client.bucket(self.bucket).blob(key).upload_from_string(text)

    def argv(self, *extra: str) -> list[str]:
        return [
            "--input", f"gs://{self.bucket}/in/",
            "--output", f"gs://{self.bucket}/out/",
            "--stack-file", str(self.stack_file),
            "--stack-outputs", str(self.outputs),
            "--api-endpoint", self.vertex.address,
            "--poll-interval", "0.01",
            *extra,
        ]  # fmt: skip

    def engine(self, *, predicted: int | None = None, failed: int = 0, state: str = "JOB_STATE_SUCCEEDED") -> None:
        """Play Vertex: predict every input line (or ``predicted`` of them), fail ``failed`` more."""

        def run_job(job: aiplatform_v1.BatchPredictionJob) -> None:
            lines = [
                line
                for uri in job.input_config.gcs_source.uris
                for line in self.client.bucket(self.bucket)
                .blob(uri.removeprefix(f"gs://{self.bucket}/"))
                .download_as_text()
                .splitlines()
                if line.strip()
            ]
            count = len(lines) if predicted is None else predicted
            prefix = job.output_config.gcs_destination.output_uri_prefix.removeprefix(f"gs://{self.bucket}/")
            directory = f"{prefix.rstrip('/')}/prediction-digits-2026_12_06T01_02_03_000Z"
            results = "".join(json.dumps({"instance": json.loads(x), "prediction": 1}) + "\n" for x in lines[:count])
            self.put(f"{directory}/prediction.results-00000-of-00001", results)
            errors = "".join(
                json.dumps({"instance": json.loads(x), "status": "INVALID_ARGUMENT: bad row"}) + "\n"
                for x in lines[count : count + failed]
            )
            if errors:
                self.put(f"{directory}/prediction.errors_stats-00000-of-00001", errors)
            job.output_info = aiplatform_v1.BatchPredictionJob.OutputInfo(
                gcs_output_directory=f"gs://{self.bucket}/{directory}"
            )
            job.state = aiplatform_v1.JobState[state]
            if state == "JOB_STATE_FAILED":
                job.error = {"code": 3, "message": "Model server never became ready"}

        self.vertex.run_batch_job = run_job


@pytest.fixture
def world(tmp_path: Path, gcs_client: Any, gcs_bucket: str, vertex: FakeVertex) -> World:
    return World(tmp_path, gcs_client, gcs_bucket, vertex)


def rows(n: int) -> str:
    return "".join(json.dumps([i, i + 1]) + "\n" for i in range(n))


def test_a_succeeded_job_over_every_record_passes(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", rows(3))
    world.put("in/b.jsonl", rows(2))
    world.engine()

    code = run(world.argv())

    out, err = capsys.readouterr()
    assert code == 0, err
    assert "succeeded" in out and "5 records in, 5 predictions" in out
    assert "JOB_STATE_RUNNING" in err and "JOB_STATE_SUCCEEDED" in err
    (job,) = world.vertex.batch_jobs.values()
    assert job.model == MODEL
    assert job.service_account == SERVICE_ACCOUNT
    assert job.encryption_spec.kms_key_name.endswith("/cryptoKeys/models")
    assert job.input_config.instances_format == "jsonl"
    assert list(job.input_config.gcs_source.uris) == [
        f"gs://{world.bucket}/in/a.jsonl",
        f"gs://{world.bucket}/in/b.jsonl",
    ]
    assert job.output_config.predictions_format == "jsonl"
    assert job.dedicated_resources.machine_spec.machine_type == "n1-standard-4"
    assert job.labels["environment"] == "dev"


def test_failed_records_are_reported_with_the_first_errors(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", rows(4))
    world.engine(predicted=3, failed=1, state="JOB_STATE_PARTIALLY_SUCCEEDED")

    assert run(world.argv()) == 11
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3 of 4 records have predictions: 1 failed records" in last
    assert "INVALID_ARGUMENT: bad row" in last


def test_missing_predictions_without_errors_still_fail(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", rows(4))
    world.engine(predicted=2)

    assert run(world.argv()) == 11
    assert "2 of 4 records have predictions" in capsys.readouterr().err


def test_a_failed_job_exits_10_with_vertexs_error(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", rows(1))
    world.engine(state="JOB_STATE_FAILED")

    assert run(world.argv()) == 10
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "ended JOB_STATE_FAILED" in last and "Model server never became ready" in last


def test_dry_run_creates_no_job(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.csv", "1,2\n")

    assert run(world.argv("--dry-run")) == 0
    out = capsys.readouterr().out
    request = json.loads(out[: out.rindex("}") + 1])["CreateBatchPredictionJob"]
    assert request["input_config"]["instances_format"] == "csv"
    assert world.vertex.batch_jobs == {}


def test_a_cloud_run_stack_has_no_vertex_model(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.stack_file.write_text((ROOT / "Pulumi.gcp-dev.yaml").read_text())
    world.put("in/a.jsonl", rows(1))

    assert run(world.argv()) == 2
    assert "serves on Cloud Run" in capsys.readouterr().err


def test_sagemaker_only_flags_are_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", rows(1))
    assert run(world.argv("--max-payload-mb", "6")) == 2
    assert "SageMaker Batch Transform setting" in capsys.readouterr().err


def test_output_outside_the_stacks_batch_prefix_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.put("in/a.jsonl", rows(1))
    argv = world.argv()
    argv[argv.index("--output") + 1] = f"gs://{world.bucket}/elsewhere/"

    assert run(argv) == 2
    assert "may write batch data (batchOutputUri" in capsys.readouterr().err
    assert world.vertex.batch_jobs == {}


def test_a_vertex_stack_without_batch_jobs_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load(world.stack_file.read_text())
    del document["config"]["model-deploy:gcp"]["vertex"]["batchJobs"]
    world.stack_file.write_text(yaml.safe_dump(document))
    world.put("in/a.jsonl", rows(1))

    assert run(world.argv()) == 2
    assert "set model-deploy:gcp.vertex.batchJobs: true" in capsys.readouterr().err
