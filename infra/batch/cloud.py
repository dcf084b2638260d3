"""The managed side of ``model-deploy-batch``: options, the stack, and the job for its cloud.

``s3://`` input runs a SageMaker Batch Transform job (:mod:`infra.batch.aws_jobs`) for an AWS
stack; ``gs://`` input a Vertex AI ``BatchPredictionJob`` of a GCP Vertex stack
(:mod:`infra.batch.gcp_jobs`). Errors are one line on stderr with verify's exit codes
(:mod:`infra.verify_common`) plus 10 (job failed or stopped) and 11 (records missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from infra.batch.aws_jobs import AwsJobOptions, BatchResult, run_aws_job
from infra.batch.gcp_jobs import GcpJobOptions, VertexBatchResult, run_gcp_job
from infra.config import load_stack_file
from infra.config.errors import ConfigError
from infra.verify_common import UsageError, load_outputs, run_command

PROG: Final = "model-deploy-batch"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def add_cloud_arguments(group: argparse._ArgumentGroup) -> None:
    """Register the managed-job options (``--stack-file`` and below)."""
    group.add_argument(
        "--stack-file", metavar="FILE", help="the stack's Pulumi.<stack>.yaml (required for s3:// gs://)"
    )
    group.add_argument(
        "--stack-outputs", metavar="FILE", help="`pulumi stack output --json` of that stack ('-' for stdin)"
    )
    group.add_argument(
        "--content-type",
        help="the input's MIME type (default: from the file extensions: .jsonl, .csv, .json, .npy)",
    )
    group.add_argument(
        "--instance-type",
        help="instance (AWS) or machine (Vertex) type of the job (default: the endpoint's first variant's, "
        "the Vertex deployment's)",
    )
    group.add_argument(
        "--instance-count", type=_positive_int, default=1, help="instances or replicas of the job (default 1)"
    )
    group.add_argument(
        "--max-payload-mb", type=_positive_int, help="request size cap (default: the container's /execution-parameters)"
    )
    group.add_argument(
        "--max-concurrent",
        type=_positive_int,
        help="concurrent requests per instance (default: the container's /execution-parameters)",
    )
    group.add_argument(
        "--poll-interval", type=_positive_float, default=30.0, metavar="SECONDS", help="status polls (default 30)"
    )
    group.add_argument("--dry-run", action="store_true", help="print the job request; create nothing")
    group.add_argument(
        "--api-endpoint", help="Vertex AI API host[:port] (default: the stack region's; a loopback address in tests)"
    )


def run_cloud(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the managed job ``args`` describe; returns the exit code."""
    if not args.stack_file:
        parser.error("--stack-file is required with an s3:// or gs:// --input")
    return run_command(PROG, lambda: _run(args))


def _run(args: argparse.Namespace) -> BatchResult | VertexBatchResult:
    try:
        config = load_stack_file(Path(args.stack_file))
    except ConfigError as exc:
        raise UsageError(f"invalid stack file: {exc}") from None
    outputs: dict[str, Any] = load_outputs(args.stack_outputs) if args.stack_outputs else {}
    scheme = "s3://" if str(args.input).startswith("s3://") else "gs://"
    wanted = "aws" if scheme == "s3://" else "gcp"
    if config.cloud != wanted:
        raise UsageError(
            f"--input is {scheme} but stack {config.stack} deploys to {config.cloud}; "
            f"{'s3:// runs on an aws stack' if scheme == 's3://' else 'gs:// runs on a gcp stack'}"
        )
    if wanted == "gcp":
        for flag, value in (("--max-payload-mb", args.max_payload_mb), ("--max-concurrent", args.max_concurrent)):
            if value is not None:
                raise UsageError(f"{flag} is a SageMaker Batch Transform setting; Vertex AI jobs have none")
        gcp_options = GcpJobOptions(
            input_uri=args.input,
            output_uri=args.output,
            content_type=args.content_type,
            machine_type=args.instance_type,
            replica_count=args.instance_count,
            poll_interval=args.poll_interval,
            dry_run=args.dry_run,
            api_endpoint=args.api_endpoint,
        )
        return run_gcp_job(config, outputs, gcp_options, log=_log, print_request=_print_request)
    options = AwsJobOptions(
        input_uri=args.input,
        output_uri=args.output,
        content_type=args.content_type,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        max_payload_mb=args.max_payload_mb,
        max_concurrent=args.max_concurrent,
        poll_interval=args.poll_interval,
        dry_run=args.dry_run,
    )
    return run_aws_job(config, outputs, options, log=_log, print_request=_print_request)


def _log(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def _print_request(request: dict[str, Any]) -> None:
    kind = "CreateTransformJob" if "TransformJobName" in request else "CreateBatchPredictionJob"
    print(json.dumps({kind: request}, indent=2, sort_keys=True))
