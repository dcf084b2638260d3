"""Vertex AI batch prediction for a GCP Vertex stack: the request, the job followed, the output checked.

The job runs the stack's uploaded Vertex model (``modelResourceName``: the pinned image and
package), as the stack's runtime service account, with the stack's CMEK when it has one, and
carries the stack's labels. A Cloud Run-only stack has no Vertex model: the command refuses it
rather than uploading one outside Pulumi's state (score locally, or deploy a ``vertex`` target).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from infra.batch.errors import BatchJobFailedError, JobInterruptedError, RecordsFailedError
from infra.batch.locations import GcsLocation, require_within
from infra.batch.records import CSV, JSON_LINES, ContentTypeError, content_type_of, count_lines
from infra.config import StackConfig
from infra.verify_common import UsageError, output_value
from infra.verify_gcp import _google as google_errors

#: BatchPredictionJob.instances_format / predictions_format for our line formats ("jsonl", "csv"):
#: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.batchPredictionJobs
INSTANCES_FORMATS: Final = {JSON_LINES: "jsonl", CSV: "csv"}

#: JobState values that end a job (google.cloud.aiplatform.v1.JobState):
#: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/JobState
TERMINAL_STATES: Final = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)

#: Output files inside ``output_info.gcs_output_directory``: custom-trained models write
#: ``prediction.results-NNNNN-of-NNNNN`` (one JSON line per instance with its prediction) and
#: ``prediction.errors_stats-NNNNN-of-NNNNN`` (one line per failed instance) ("Get batch predictions
#: from a custom trained model", https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions);
#: the API reference (OutputConfig.gcs_destination) names them ``predictions_NNNN.<ext>`` and
#: ``errors_NNNN.<ext>``. Both spellings are read.
RESULT_FILE: Final = re.compile(r"(^|/)(prediction\.results-\d+-of-\d+|predictions_\d+\.\w+)$")
ERROR_FILE: Final = re.compile(r"(^|/)(prediction\.errors_stats-\d+-of-\d+|errors_\d+\.\w+)$")

#: Vertex display names: at most 128 characters (BatchPredictionJob.display_name).
MAX_DISPLAY_NAME: Final = 128


@dataclass(frozen=True)
class GcpJobOptions:
    input_uri: str
    output_uri: str
    content_type: str | None = None
    machine_type: str | None = None
    replica_count: int = 1
    poll_interval: float = 30.0
    dry_run: bool = False
    api_endpoint: str | None = None


@dataclass
class VertexBatchResult:
    job_name: str
    request: dict[str, Any]
    elapsed: float = 0.0
    records: int = 0
    output_directory: str = ""
    dry_run: bool = False

    def summary(self) -> str:
        if self.dry_run:
            return f"dry run: would create batch prediction job {self.job_name} (request above); nothing was created"
        return (
            f"OK: batch prediction job {self.job_name} succeeded in {_clock(self.elapsed)}: {self.records} records in, "
            f"{self.records} predictions in {self.output_directory}"
        )


def display_name(model: str, input_uri: str, output_uri: str, now: datetime) -> str:
    digest = hashlib.sha256("\n".join((model, input_uri, output_uri)).encode()).hexdigest()[:8]
    base = model.rsplit("/", 1)[-1]
    return f"{base}-batch-{now.strftime('%Y%m%d%H%M%S')}-{digest}"[-MAX_DISPLAY_NAME:]


def batch_request(
    *,
    name: str,
    model: str,
    uris: list[str],
    destination: GcsLocation,
    content_type: str,
    machine_type: str,
    replicas: int,
    service_account: str | None,
    kms_key_name: str | None,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The BatchPredictionJob (field names of google.cloud.aiplatform.v1.BatchPredictionJob)."""
    fmt = INSTANCES_FORMATS[content_type]
    request: dict[str, Any] = {
        "display_name": name,
        "model": model,
        "input_config": {"instances_format": fmt, "gcs_source": {"uris": uris}},
        # Predictions as JSON Lines: one line per instance, whatever the input format.
        "output_config": {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": destination.uri}},
        "dedicated_resources": {
            "machine_spec": {"machine_type": machine_type},
            "starting_replica_count": replicas,
            "max_replica_count": replicas,
        },
        "labels": dict(labels),
    }
    if service_account:
        request["service_account"] = service_account
    if kms_key_name:
        request["encryption_spec"] = {"kms_key_name": kms_key_name}
    return request


Log = Callable[[str], None]


def run_gcp_job(
    config: StackConfig,
    outputs: Mapping[str, Any],
    options: GcpJobOptions,
    *,
    log: Log,
    print_request: Callable[[dict[str, Any]], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> VertexBatchResult:
    """Plan, (unless dry run) create, follow and check one BatchPredictionJob."""
    from google.cloud import aiplatform_v1

    from infra.gcp.vertex_client import default_api_endpoint
    from infra.loopback import gapic_client

    source, destination = GcsLocation.input_and_output(options.input_uri, options.output_uri)
    gcp = config.require_gcp()
    if gcp.target != "vertex":
        raise UsageError(
            f"stack {config.stack} serves on Cloud Run and has no Vertex model to run a batch prediction job with; "
            "score locally, or deploy a target: vertex stack"
        )
    assert gcp.vertex is not None  # the rules require it for target vertex
    if not gcp.vertex.batch_jobs:
        raise UsageError(
            f"stack {config.stack} does not allow batch jobs: set model-deploy:gcp.vertex.batchJobs: true and run "
            "`pulumi up` (the runtime account may then write batch/<stack>/output/ of the store)"
        )
    require_within(outputs, "--input", source.uri, "batchInputUri")
    require_within(outputs, "--output", destination.uri, "batchOutputUri")
    model = output_value(outputs, ("modelResourceName",))
    if not model:
        raise UsageError("no Vertex model: pass --stack-outputs with modelResourceName (`pulumi stack output --json`)")
    gcs = Gcs(gcp.project)
    inputs = gcs.names(source)
    if not inputs:
        raise UsageError(f"--input {source.uri} holds no objects")
    try:
        content_type = options.content_type or content_type_of(inputs)
    except ContentTypeError as exc:
        raise UsageError(str(exc)) from None
    if content_type not in INSTANCES_FORMATS:
        raise UsageError(
            f"content type {content_type} is not one Vertex batch prediction reads from files here; "
            "use JSON Lines (.jsonl) or CSV (.csv)"
        )
    if not options.dry_run and gcs.names(destination, limit=1):
        raise UsageError(f"--output {destination.uri} already holds objects; give the job an empty prefix")
    name = display_name(model, source.uri, destination.uri, now())
    request = batch_request(
        name=name,
        model=model,
        uris=[f"gs://{source.bucket}/{key}" for key in inputs],
        destination=destination,
        content_type=content_type,
        machine_type=options.machine_type or gcp.vertex.machine_type,
        replicas=options.replica_count,
        service_account=output_value(outputs, ("serviceAccountEmail",)),
        kms_key_name=gcp.store.kms_key_name,
        labels=config.resource_labels,
    )
    if options.dry_run:
        print_request(request)
        return VertexBatchResult(name, request, dry_run=True)
    api = options.api_endpoint or default_api_endpoint(gcp.region)
    with google_errors(f"create a Vertex AI job client for {api}"):
        from google.cloud.aiplatform_v1.services.job_service.transports.grpc import JobServiceGrpcTransport

        client, channel = gapic_client(aiplatform_v1.JobServiceClient, JobServiceGrpcTransport, api)
    try:
        parent = f"projects/{gcp.project}/locations/{gcp.region}"
        with google_errors(f"create batch prediction job {name}"):
            job = client.create_batch_prediction_job(
                parent=parent, batch_prediction_job=aiplatform_v1.BatchPredictionJob(request)
            )
        log(f"created batch prediction job {job.name} ({len(inputs)} objects, {content_type})")
        started = clock()
        job = _follow(client, job.name, options.poll_interval, log=log, sleep=sleep, clock=clock, started=started)
    finally:
        if channel is not None:
            channel.close()
    elapsed = clock() - started
    state = job.state.name
    if state not in {"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"}:
        reason = " ".join((job.error.message or "no reason given").split())
        raise BatchJobFailedError(f"batch prediction job {job.name} ended {state} after {_clock(elapsed)}: {reason}")
    expected = sum(gcs.line_count(source.bucket, key) for key in inputs)
    directory = GcsLocation.parse(job.output_info.gcs_output_directory or destination.uri, "the job's output directory")
    written = gcs.names(directory)
    results = sum(gcs.line_count(directory.bucket, key) for key in written if RESULT_FILE.search(key))
    errors = [line for key in written if ERROR_FILE.search(key) for line in gcs.read_lines(directory.bucket, key)]
    if errors or results < expected:
        first = "; ".join(" ".join(line.split())[:160] for line in errors[:3])
        detail = f": {len(errors)} failed records, first: {first}" if errors else ""
        raise RecordsFailedError(
            f"batch prediction job {job.name} {state}, but {results} of {expected} records have predictions{detail}"
        )
    return VertexBatchResult(job.name, request, elapsed, expected, directory.uri)


def _follow(
    client: Any,
    name: str,
    interval: float,
    *,
    log: Log,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    started: float,
) -> Any:
    last = None
    try:
        for job in _poll(client, name, interval, sleep):
            state = job.state.name
            if state != last:
                log(f"[{_clock(clock() - started)}] {name}: {state}")
                last = state
            if state in TERMINAL_STATES:
                return job
    except KeyboardInterrupt:
        raise JobInterruptedError(
            # REST projects.locations.batchPredictionJobs.cancel:
            # https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.batchPredictionJobs/cancel
            f"interrupted; batch prediction job {name} keeps running: cancel it on the console's batch predictions "
            f"page, or with POST https://<region>-aiplatform.googleapis.com/v1/{name}:cancel"
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _poll(client: Any, name: str, interval: float, sleep: Callable[[float], None]) -> Iterator[Any]:
    first = True
    while True:
        if not first:
            sleep(interval)
        first = False
        with google_errors(f"get batch prediction job {name}"):
            yield client.get_batch_prediction_job(name=name)


class Gcs:
    """The Cloud Storage reads the command makes, with one client (``STORAGE_EMULATOR_HOST`` honoured)."""

    def __init__(self, project: str) -> None:
        # importlib: google.cloud is a namespace package mypy cannot follow (as in model_package/stores/gcs.py).
        import importlib

        with google_errors("create a Cloud Storage client"):
            self.client = importlib.import_module("google.cloud.storage").Client(project=project)

    def names(self, where: GcsLocation, *, limit: int | None = None) -> list[str]:
        with google_errors(f"list {where.uri}"):
            blobs = self.client.list_blobs(where.bucket, prefix=where.key, max_results=limit)
            return [blob.name for blob in blobs if not blob.name.endswith("/")]

    def read_lines(self, bucket: str, key: str) -> list[str]:
        with google_errors(f"read gs://{bucket}/{key}"):
            data: bytes = self.client.bucket(bucket).blob(key).download_as_bytes()
        return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]

    def line_count(self, bucket: str, key: str) -> int:
        """Non-empty lines, streamed (memory flat in the object's size)."""
        with google_errors(f"read gs://{bucket}/{key}"):
            total, tail = 0, b""
            with self.client.bucket(bucket).blob(key).open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    data = tail + chunk
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        tail = data
                        continue
                    total += count_lines(data[: cut + 1])
                    tail = data[cut + 1 :]
            return total + count_lines(tail)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
