"""Entry point of the bootstrap program (``infra/bootstrap/Pulumi.yaml`` points here).

Run it once per cloud account, with local credentials of an administrator and a local
backend (``pulumi login --local``): it creates the backend the other stacks will use.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this file with infra/bootstrap/ as the program directory; the ``infra``
# package lives two levels up, in the repository root.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pulumi  # noqa: E402

from infra.config import ConfigError  # noqa: E402


def main() -> None:
    """Validate the config, declare the resources and export the repository variables."""
    from infra.bootstrap import deploy, from_pulumi

    try:
        config = from_pulumi()
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for name, value in deploy(config).items():
        pulumi.export(name, value)


main()
