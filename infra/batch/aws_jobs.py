"""SageMaker Batch Transform for an AWS stack: the request, the job followed to its end, the output checked.

The job runs the very SageMaker model the stack's endpoint serves (the model pins the image
digest and the package, and brings its execution role and VPC settings with it), writes its
output encrypted with the stack's KMS key, and is tagged like every resource the stack creates
(the bootstrap's ABAC conditions require ``aws:RequestTag/environment`` on creates).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from infra.batch.errors import BatchJobFailedError, JobInterruptedError, RecordsFailedError
from infra.batch.locations import S3Location, require_within
from infra.batch.records import ContentTypeError, content_type_of, count_lines, is_line_format
from infra.config import StackConfig
from infra.config.aws_limits import has_local_instance_storage
from infra.verify_aws import AwsClients, model_data_digest
from infra.verify_common import DeploymentMismatchError, UsageError, output_value

#: SageMaker job names: ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`` (CreateTransformJob, TransformJobName).
#: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
MAX_JOB_NAME: Final = 63
_NAME_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9-]+")

#: DescribeTransformJob's TransformJobStatus: InProgress | Completed | Failed | Stopping | Stopped.
#: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeTransformJob.html
TERMINAL_STATES: Final = frozenset({"Completed", "Failed", "Stopped"})

#: "For every S3 object used as input for the transform job, batch transform stores the transformed
#: data with an .out suffix" (TransformOutput.S3OutputPath), and it "doesn't upload partially processed
#: objects": https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html
OUTPUT_SUFFIX: Final = ".out"

#: Where a transform job's container logs go ("/aws/sagemaker/TransformJobs", log streams per instance):
#: https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html
LOG_GROUP: Final = "/aws/sagemaker/TransformJobs"


@dataclass(frozen=True)
class AwsJobOptions:
    """What the command line asks for, beyond the stack."""

    input_uri: str
    output_uri: str
    content_type: str | None = None
    instance_type: str | None = None
    instance_count: int = 1
    max_payload_mb: int | None = None
    max_concurrent: int | None = None
    poll_interval: float = 30.0
    dry_run: bool = False


@dataclass(frozen=True)
class ObjectCheck:
    """One input object and what the job wrote for it."""

    key: str
    records: int
    output_key: str
    written: int | None
    """Lines (records) in the ``.out`` object; ``None`` when there is none."""

    @property
    def complete(self) -> bool:
        return self.written is not None and self.written >= self.records


@dataclass
class BatchResult:
    job_name: str
    request: dict[str, Any]
    status: str = "DryRun"
    elapsed: float = 0.0
    objects: list[ObjectCheck] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        if self.dry_run:
            return f"dry run: would create transform job {self.job_name} (request above); nothing was created"
        records = sum(check.records for check in self.objects)
        return (
            f"OK: transform job {self.job_name} Completed in {_clock(self.elapsed)}: {len(self.objects)} objects, "
            f"{records} records in, {records} out, under {self.request['TransformOutput']['S3OutputPath']}"
        )


def job_name(endpoint: str, model: str, input_uri: str, output_uri: str, now: datetime) -> str:
    """``<endpoint>-batch-<UTC time>-<8 hex of model+input+output>``, at most 63 characters.

    Deterministic for the same request in the same second, distinct across inputs, outputs and
    rollouts (SageMaker refuses a reused job name), and recognisable as the endpoint's.
    """
    digest = hashlib.sha256("\n".join((model, input_uri, output_uri)).encode()).hexdigest()[:8]
    suffix = f"-batch-{now.strftime('%Y%m%d%H%M%S')}-{digest}"
    prefix = _NAME_UNSAFE.sub("-", endpoint)[: MAX_JOB_NAME - len(suffix)].strip("-") or "model-deploy"
    return prefix + suffix


def transform_request(
    *,
    name: str,
    model_name: str,
    source: S3Location,
    destination: S3Location,
    content_type: str,
    instance_type: str,
    instance_count: int,
    kms_key_arn: str,
    tags: Mapping[str, str],
    max_payload_mb: int | None = None,
    max_concurrent: int | None = None,
) -> dict[str, Any]:
    """The CreateTransformJob request (field names and values from its API reference).

    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
    """
    lines = is_line_format(content_type)
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model_name,
        # S3Prefix: "Amazon SageMaker uses all objects with the specified key name prefix"
        # (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformS3DataSource.html).
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source.uri}},
            "ContentType": content_type,
            # Line: one record per line, so MultiRecord batches lines up to MaxPayloadInMB
            # (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformInput.html).
            "SplitType": "Line" if lines else "None",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": destination.uri,
            "Accept": content_type if lines else "application/json",
            # Line: one output line per record, in input order, so the output can be counted.
            "AssembleWith": "Line" if lines else "None",
            # The store's bucket policy refuses SSE-KMS with any other key (infra/aws/iam.py).
            "KmsKeyId": kms_key_arn,
        },
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
        "BatchStrategy": "MultiRecord" if lines else "SingleRecord",
        "Tags": [{"Key": key, "Value": value} for key, value in sorted(tags.items())],
    }
    if not has_local_instance_storage(instance_type):
        # Encrypts the ML storage volume; instance types with only instance-store (NVMe) volumes
        # refuse a VolumeKmsKeyId (TransformResources):
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformResources.html
        request["TransformResources"]["VolumeKmsKeyId"] = kms_key_arn
    # Unset, SageMaker asks the container's /execution-parameters for both (CreateTransformJob).
    if max_payload_mb is not None:
        request["MaxPayloadInMB"] = max_payload_mb
    if max_concurrent is not None:
        request["MaxConcurrentTransforms"] = max_concurrent
    return request


@dataclass(frozen=True)
class ServedModel:
    """The SageMaker model the stack's endpoint serves, checked against the stack's pins."""

    endpoint: str
    name: str
    kms_key_arn: str | None


def find_served_model(aws: AwsClients, config: StackConfig, outputs: Mapping[str, Any]) -> ServedModel:
    """The endpoint's model, refused unless it loads the stack's pinned package and image."""
    endpoint = output_value(outputs, ("endpointName",)) or config.require_aws().endpoint.name
    description = aws.call(
        f"describe endpoint {endpoint!r}",
        lambda: aws.sagemaker.describe_endpoint(EndpointName=endpoint),
        not_found=f"endpoint {endpoint!r} does not exist in {aws.region}; the batch job runs the model the "
        "stack's endpoint serves: run `pulumi up` first",
    )
    config_name = str(description.get("EndpointConfigName"))
    expected = output_value(outputs, ("endpointConfigName",))
    if expected and expected != config_name:
        raise DeploymentMismatchError(
            f"endpoint {endpoint!r} runs endpoint config {config_name!r}, not the stack's {expected!r} "
            "(a rollback?); run model-deploy-verify and fix the rollout before scoring with it"
        )
    endpoint_config = aws.call(
        f"describe endpoint config {config_name!r}",
        lambda: aws.sagemaker.describe_endpoint_config(EndpointConfigName=config_name),
    )
    variants = endpoint_config.get("ProductionVariants") or []
    if not variants:
        raise DeploymentMismatchError(f"endpoint config {config_name!r} has no production variant")
    model_name = str(variants[0]["ModelName"])
    model = aws.call(f"describe model {model_name!r}", lambda: aws.sagemaker.describe_model(ModelName=model_name))
    pinned = config.package.digest
    served = model_data_digest(model)
    if served != pinned:
        raise DeploymentMismatchError(
            f"model {model_name!r} of endpoint {endpoint!r} loads package {served or '(none by digest)'}, but the "
            f"stack pins {pinned}; run `pulumi up` with the pinned package first"
        )
    image = str((model.get("PrimaryContainer") or {}).get("Image") or "")
    if config.package.image and image != config.package.image:
        raise DeploymentMismatchError(
            f"model {model_name!r} runs image {image!r}, but the stack pins {config.package.image!r}; "
            "run `pulumi up` first"
        )
    kms = output_value(outputs, ("kmsKeyArn",)) or endpoint_config.get("KmsKeyId")
    return ServedModel(endpoint, model_name, str(kms) if kms else None)


def check_batch_prefixes(
    config: StackConfig, outputs: Mapping[str, Any], source: S3Location, destination: S3Location
) -> None:
    """Refuse locations the model's execution role may not use (it reads and writes only the stack's batch prefixes).

    The prefixes come from the stack outputs ``batchInputUri`` / ``batchOutputUri`` (infra/aws/program.py);
    a job elsewhere would fail after minutes of provisioning with AccessDenied, so it is refused up front.
    """
    endpoint = config.require_aws().endpoint
    if not endpoint.batch_jobs:
        raise UsageError(
            f"stack {config.stack} does not allow batch jobs: set model-deploy:aws.endpoint.batchJobs: true "
            "and run `pulumi up` (the execution role then reads batch/<endpoint>/input/ and writes "
            "batch/<endpoint>/output/ of the store)"
        )
    require_within(outputs, "--input", source.uri, "batchInputUri")
    require_within(outputs, "--output", destination.uri, "batchOutputUri")


def list_objects(aws: AwsClients, where: S3Location, *, limit: int | None = None) -> list[tuple[str, int]]:
    """(key, size) of the objects under a prefix, folders' placeholder keys left out."""

    def listing() -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        paginator = aws.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=where.bucket, Prefix=where.key):
            for item in page.get("Contents", []):
                if not str(item["Key"]).endswith("/"):
                    found.append((str(item["Key"]), int(item.get("Size", 0))))
                if limit is not None and len(found) >= limit:
                    return found
        return found

    return aws.call(f"list {where.uri}", listing)


def _stream_lines(aws: AwsClients, bucket: str, key: str) -> int:
    """Non-empty lines of an object, read in chunks (memory flat in the object's size)."""

    def read() -> int:
        body = aws.s3.get_object(Bucket=bucket, Key=key)["Body"]
        total, tail = 0, b""
        for chunk in body.iter_chunks(1 << 20):
            data = tail + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                tail = data
                continue
            total += count_lines(data[: cut + 1])
            tail = data[cut + 1 :]
        return total + count_lines(tail)

    return aws.call(f"read s3://{bucket}/{key}", read)


def output_key(source: S3Location, destination: S3Location, key: str) -> str:
    """Where the job writes the output of input object ``key``: its path under the input prefix + ``.out``.

    The relative path below the input prefix is kept ("in a corresponding subfolder",
    TransformOutput.S3OutputPath, see :data:`OUTPUT_SUFFIX`).
    """
    base = source.key[: source.key.rfind("/") + 1]  # the prefix up to its last "/" ("" for none)
    relative = key[len(base) :] if key.startswith(base) else key.rsplit("/", 1)[-1]
    prefix = destination.key if not destination.key or destination.key.endswith("/") else destination.key + "/"
    return prefix + relative + OUTPUT_SUFFIX


def check_outputs(
    aws: AwsClients, source: S3Location, destination: S3Location, inputs: list[str], content_type: str
) -> list[ObjectCheck]:
    """Count each input object's records and its ``.out`` object's lines; raise naming what is short."""
    written = {key for key, _ in list_objects(aws, destination)}
    by_name: dict[str, list[str]] = {}
    for key in written:
        by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    lines = is_line_format(content_type)
    checks: list[ObjectCheck] = []
    for key in inputs:
        expected_key = output_key(source, destination, key)
        if expected_key not in written:
            # The documented example nests the output differently from the input's relative path;
            # accept the one output object of the same name when the expected key is absent.
            same_name = by_name.get(expected_key.rsplit("/", 1)[-1], [])
            expected_key = same_name[0] if len(same_name) == 1 else expected_key
        records = _stream_lines(aws, source.bucket, key) if lines else 1
        out: int | None = None
        if expected_key in written:
            out = _stream_lines(aws, destination.bucket, expected_key) if lines else 1
        checks.append(ObjectCheck(key, records, expected_key, out))
    return checks


def describe_failures(checks: list[ObjectCheck], limit: int = 5) -> str:
    bad = [check for check in checks if not check.complete]
    words = []
    for check in bad[:limit]:
        if check.written is None:
            words.append(f"{check.key} ({check.records} records, no {OUTPUT_SUFFIX} object)")
        else:
            words.append(f"{check.key} ({check.written} of {check.records} records)")
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} of {len(checks)} input objects lack output: {', '.join(words)}{more}"


Log = Callable[[str], None]


def run_aws_job(
    config: StackConfig,
    outputs: Mapping[str, Any],
    options: AwsJobOptions,
    *,
    log: Log,
    print_request: Callable[[dict[str, Any]], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchResult:
    """Plan, (unless dry run) create, follow and check one Batch Transform job."""
    source, destination = S3Location.input_and_output(options.input_uri, options.output_uri)
    check_batch_prefixes(config, outputs, source, destination)
    aws = AwsClients(config.region)
    served = find_served_model(aws, config, outputs)
    if served.kms_key_arn is None:
        raise UsageError(
            "no KMS key for the job's output: pass --stack-outputs with kmsKeyArn (`pulumi stack output --json`)"
        )
    inputs = [key for key, _ in list_objects(aws, source)]
    if not inputs:
        raise UsageError(f"--input {source.uri} holds no objects")
    try:
        content_type = options.content_type or content_type_of(inputs)
    except ContentTypeError as exc:
        raise UsageError(str(exc)) from None
    instance_type = options.instance_type or config.require_aws().endpoint.variants[0].instance_type
    if not instance_type:
        raise UsageError("the endpoint is serverless: pass --instance-type (for example ml.m5.large)")
    if not options.dry_run and list_objects(aws, destination, limit=1):
        # Objects of an earlier job would be counted as this one's output.
        raise UsageError(f"--output {destination.uri} already holds objects; give the job an empty prefix")
    name = job_name(served.endpoint, served.name, source.uri, destination.uri, now())
    request = transform_request(
        name=name,
        model_name=served.name,
        source=source,
        destination=destination,
        content_type=content_type,
        instance_type=instance_type,
        instance_count=options.instance_count,
        kms_key_arn=served.kms_key_arn,
        tags=config.resource_tags,
        max_payload_mb=options.max_payload_mb,
        max_concurrent=options.max_concurrent,
    )
    if options.dry_run:
        print_request(request)
        return BatchResult(name, request, dry_run=True)
    aws.call(f"create transform job {name!r}", lambda: aws.sagemaker.create_transform_job(**request))
    log(
        f"created transform job {name} ({len(inputs)} objects, {content_type}, "
        f"{options.instance_count} x {instance_type})"
    )
    started = clock()
    description = _follow(aws, name, options.poll_interval, log=log, sleep=sleep, clock=clock, started=started)
    status = str(description.get("TransformJobStatus"))
    elapsed = clock() - started
    if status != "Completed":
        reason = " ".join(str(description.get("FailureReason") or "no reason given").split())
        raise BatchJobFailedError(
            f"transform job {name} ended {status} after {_clock(elapsed)}: {reason} "
            f"(logs: {LOG_GROUP}/{name} in {aws.region})"
        )
    checks = check_outputs(aws, source, destination, inputs, content_type)
    if not all(check.complete for check in checks):
        raise RecordsFailedError(f"transform job {name} Completed but {describe_failures(checks)}")
    return BatchResult(name, request, status, elapsed, checks)


def _follow(
    aws: AwsClients,
    name: str,
    interval: float,
    *,
    log: Log,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    started: float,
) -> Mapping[str, Any]:
    """Poll DescribeTransformJob until a terminal state, logging each status change with the elapsed time."""
    last = None
    try:
        for description in _poll(aws, name, interval, sleep):
            status = str(description.get("TransformJobStatus"))
            if status != last:
                log(f"[{_clock(clock() - started)}] {name}: {status}")
                last = status
            if status in TERMINAL_STATES:
                return description
    except KeyboardInterrupt:
        # Stopping is a decision with a cost either way (work done is lost); leave it to the user.
        raise JobInterruptedError(
            f"interrupted; transform job {name} keeps running: stop it with "
            f"`aws sagemaker stop-transform-job --transform-job-name {name} --region {aws.region}`"
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover - _poll never ends on its own


def _poll(aws: AwsClients, name: str, interval: float, sleep: Callable[[float], None]) -> Iterator[Mapping[str, Any]]:
    first = True
    while True:
        if not first:
            sleep(interval)
        first = False
        yield aws.call(
            f"describe transform job {name!r}",
            lambda: aws.sagemaker.describe_transform_job(TransformJobName=name),
        )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
