"""The Pulumi program (``Pulumi.yaml`` at the repo root points here): config in, one cloud's stack out.

The config is read and validated once, before any resource is declared. A bad value stops the
program with one line naming the key (a ``pulumi.RunError``, which Pulumi prints without a
traceback), so ``pulumi preview`` reports configuration mistakes in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this file with infra/ as the program directory; the packages it imports
# (infra, model_package) live one level up, in the repository root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pulumi  # noqa: E402

from infra.config import ConfigError, from_pulumi  # noqa: E402


def main() -> None:
    """Validate the stack config and declare the stack's resources and outputs."""
    try:
        config = from_pulumi()
        # Imported here so a stack loads only its own cloud's provider SDK.
        if config.cloud == "gcp":
            from infra.gcp import deploy as deploy_gcp

            outputs = deploy_gcp(config)
        else:
            from infra.aws import deploy as deploy_aws

            outputs = deploy_aws(config)
    except ConfigError as exc:
        # Every further problem on its own line, each naming its key; the first ends the program.
        for problem in exc.problems[1:]:
            pulumi.log.error(problem.first_problem)
        raise pulumi.RunError(str(exc)) from None
    for name, value in outputs.items():
        pulumi.export(name, value)


main()
