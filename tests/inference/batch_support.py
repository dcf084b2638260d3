"""Helpers for the batch tests: run ``model-deploy-batch`` the way users do.

The command is imported up front, not when first called, so that what the tests put on sys.path
(a tests/ directory holds tests/infra and tests/inference) never shadows the packages it imports lazily.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import inference.batch.local  # noqa: F401
import infra.batch.cloud  # noqa: F401
from infra.batch.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """``model-deploy-batch`` itself (``infra.batch.cli.main``)."""
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
