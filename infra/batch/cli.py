"""``model-deploy-batch``: one command for offline scoring, local or managed.

Where the input lives decides where the work runs:

- a local file or directory: the package is scored in this process, through the serving
  container's own data plane (:mod:`inference.batch`), writing what the managed engines write;
- ``s3://`` or ``gs://`` with ``--stack-file``: a SageMaker Batch Transform job or a Vertex AI
  ``BatchPredictionJob`` for the stack's pinned package and image (:mod:`infra.batch.cloud`),
  followed to the end and its output checked record by record.

Each side registers its own options; this module only routes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

PROG: Final = "model-deploy-batch"
CLOUD_SCHEMES: Final = ("s3://", "gs://")


def is_cloud_uri(location: str) -> bool:
    """True for an object-store prefix that a managed batch engine reads."""
    return location.startswith(CLOUD_SCHEMES)


def build_parser() -> argparse.ArgumentParser:
    """The command's parser: the shared options, then the local and the managed ones."""
    from inference.batch.local import add_local_arguments
    from infra.batch.cloud import add_cloud_arguments

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Score a dataset with a model package: locally for a file or directory, "
            "on SageMaker Batch Transform or Vertex AI batch prediction for s3:// or gs:// with --stack-file."
        ),
    )
    parser.add_argument("--input", required=True, help="a local file or directory, or an s3:// or gs:// prefix")
    parser.add_argument(
        "--output", required=True, help="where results go: a local directory, or an s3:// or gs:// prefix"
    )
    parser.add_argument("--log-format", choices=["auto", "json", "text"], default="auto", help="stderr log format")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    add_local_arguments(parser.add_argument_group("local scoring (local --input)"))
    add_cloud_arguments(parser.add_argument_group("managed batch jobs (s3:// or gs:// --input)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``model-deploy-batch``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if is_cloud_uri(args.input):
        from infra.batch.cloud import run_cloud

        return run_cloud(args, parser)
    from inference.batch.local import run_local

    return run_local(args, parser)


if __name__ == "__main__":
    sys.exit(main())
