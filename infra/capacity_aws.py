"""``model-deploy-live-capacity``: read each variant's live instance count before ``pulumi up``.

Autoscaling moves a variant's ``DesiredInstanceCount``; the provider's update resets it to the
new config's ``InitialInstanceCount`` (see :mod:`infra.aws.capacity`). The deploy job runs this
before ``pulumi up`` and hands the result to the program::

    model-deploy-live-capacity --stack-file Pulumi.aws-prod.yaml >> "$GITHUB_ENV"
    # or --stack-outputs (the last deploy's `pulumi stack output --json`), or --endpoint-name/--region
    pulumi up --yes

It prints one line, ``MODEL_DEPLOY_LIVE_INSTANCE_COUNTS={"primary":6}`` (``{}`` when the endpoint
does not exist yet: the first deploy uses the configured counts), and exits 0; or one ``error:``
line and exit 4 when the endpoint is mid-rollout (a deploy must not start then), 2 on usage,
7 on credentials, 8 when AWS fails otherwise. Only pull-request previews and drift checks run
without it. The role needs ``sagemaker:DescribeEndpoint``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from infra.aws.capacity import LIVE_COUNTS_VARIABLE
from infra.config import ConfigError, load_stack_file
from infra.verify_aws import AwsClients, check_status
from infra.verify_common import (
    EndpointNotFoundError,
    UsageError,
    load_outputs,
    output_value,
    run_command,
)

PROG: Final = "model-deploy-live-capacity"


@dataclass(frozen=True)
class LiveCounts:
    """Each instance-based variant's ``DesiredInstanceCount``."""

    counts: dict[str, int]

    def summary(self) -> str:
        """The ``NAME=value`` line GitHub Actions reads from ``$GITHUB_ENV``."""
        # Compact, so the line is one shell word too: export "$(model-deploy-live-capacity ...)".
        return f"{LIVE_COUNTS_VARIABLE}={json.dumps(self.counts, sort_keys=True, separators=(',', ':'))}"


def desired_counts(description: Mapping[str, Any]) -> dict[str, int]:
    """``{variant: DesiredInstanceCount}`` from a ``DescribeEndpoint`` answer (serverless variants have none)."""
    return {
        str(variant["VariantName"]): int(variant["DesiredInstanceCount"])
        for variant in description.get("ProductionVariants", [])
        if variant.get("DesiredInstanceCount")
    }


def read_live_counts(aws: AwsClients, endpoint_name: str) -> LiveCounts:
    """The endpoint's live counts; none when it does not exist; an error while it is mid-rollout."""
    try:
        description = aws.call(
            f"describe endpoint {endpoint_name!r}",
            lambda: aws.sagemaker.describe_endpoint(EndpointName=endpoint_name),
            not_found=f"endpoint {endpoint_name!r} does not exist",
        )
    except EndpointNotFoundError:
        return LiveCounts({})
    check_status(description)
    return LiveCounts(desired_counts(description))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``model-deploy-live-capacity``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Print the endpoint's live instance counts for the next `pulumi up`."
    )
    parser.add_argument(
        "--stack-outputs", metavar="FILE", help="`pulumi stack output --json` written to FILE ('-' for stdin)"
    )
    parser.add_argument(
        "--stack-file", metavar="FILE", type=Path, help="Pulumi.<stack>.yaml: its endpoint name and region"
    )
    parser.add_argument("--endpoint-name", help="the endpoint (overrides endpointName)")
    parser.add_argument("--region", help="AWS region (overrides region; default: boto3's)")
    args = parser.parse_args(argv)

    def run() -> LiveCounts:
        outputs = load_outputs(args.stack_outputs) if args.stack_outputs else {}
        endpoint_name = args.endpoint_name or output_value(outputs, ("endpointName",))
        region = args.region or output_value(outputs, ("region", "awsRegion"))
        if args.stack_file is not None:
            # Before the first deploy there are no outputs; the stack file names the endpoint all along.
            try:
                config = load_stack_file(args.stack_file)
            except ConfigError as exc:
                raise UsageError(str(exc)) from None
            aws_config = config.aws if config.cloud == "aws" else None
            if aws_config is None:
                raise UsageError(f"{args.stack_file} is not an AWS stack")
            endpoint_name = endpoint_name or aws_config.endpoint.name
            region = region or config.aws_region
        if not endpoint_name:
            raise UsageError(
                "nothing says which endpoint to read: missing endpointName (or --endpoint-name, --stack-file)"
            )
        return read_live_counts(AwsClients(region), endpoint_name)

    return run_command(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
