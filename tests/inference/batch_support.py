"""Helpers for the batch tests: run ``model-deploy-batch`` the way users do.

``infra.batch.cloud`` (the managed side) is built on another branch; until it is merged, the CLI's
router cannot import it, so a stand-in with no options is installed for these tests only when the
real module is absent. Local scoring never calls it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from collections.abc import Sequence


def ensure_cloud_module() -> None:
    """Install a no-option ``infra.batch.cloud`` when the real one is not there yet."""
    try:
        importlib.import_module("infra.batch.cloud")
    except ModuleNotFoundError as exc:
        if exc.name != "infra.batch.cloud":
            raise
        module = types.ModuleType("infra.batch.cloud")

        def add_cloud_arguments(group: argparse._ArgumentGroup) -> None:
            del group

        def run_cloud(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
            parser.error("managed batch jobs are not part of this build")
            return 2

        module.add_cloud_arguments = add_cloud_arguments  # type: ignore[attr-defined]
        module.run_cloud = run_cloud  # type: ignore[attr-defined]
        sys.modules["infra.batch.cloud"] = module


ensure_cloud_module()
# Imported now, not when first called: exporting a package from a "file.py:factory" puts that file's
# directory (tests/) on sys.path, where tests/infra and tests/inference would then shadow the real
# packages the command imports lazily.
import inference.batch.local  # noqa: E402, F401
from infra.batch.cli import main as cli_main  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """``model-deploy-batch`` itself (``infra.batch.cli.main``)."""
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
