"""``model-deploy-check-change``: refuse a stack-file change that would replace a prod endpoint.

Run in a pull request against the stack file on the default branch::

    git show origin/main:Pulumi.aws-prod.yaml > base/Pulumi.aws-prod.yaml
    model-deploy-check-change --base base/Pulumi.aws-prod.yaml --head Pulumi.aws-prod.yaml

Both files are validated like the program validates them; the command prints one line and exits
0 (no replacing change), 1 (the change would replace the prod endpoint: the first reason and the
count of others on stderr) or 2 (a file is unreadable or invalid).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from infra.config import ConfigError, load_stack_file
from infra.config.aws_rollout_rules import replacement_changes

PROG: Final = "model-deploy-check-change"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``model-deploy-check-change``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Refuse a stack-file change that would replace (delete, then recreate) a prod endpoint."
    )
    parser.add_argument("--base", required=True, type=Path, help="the stack file as deployed (default branch)")
    parser.add_argument("--head", required=True, type=Path, help="the proposed stack file")
    args = parser.parse_args(argv)
    try:
        before, after = load_stack_file(args.base), load_stack_file(args.head)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if before.stack != after.stack:
        print(f"{PROG}: error: --base is stack {before.stack!r} but --head is {after.stack!r}", file=sys.stderr)
        return 2
    problems = list(replacement_changes(before, after))
    if problems:
        print(f"{PROG}: refused: {ConfigError.collect(problems)}", file=sys.stderr)
        return 1
    print(f"OK: the change to stack {after.stack} replaces no prod endpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
