"""Which stacks a change can affect: the matrix of ``preview.yml``.

    git diff --name-only "$BASE"...HEAD | python3 infra/affected_stacks.py >> "$GITHUB_OUTPUT"

reads the changed paths on stdin and prints ``matrix=<JSON list of {"stack", "cloud"}>``. The
rules, from the narrowest change to the widest:

* ``Pulumi.<stack>.yaml`` affects that stack only (a promotion is a one-stack pull request);
* ``infra/aws/**`` affects the AWS stacks, ``infra/gcp/**`` the GCP stacks;
* ``infra/bootstrap/**`` affects none (a separate program, applied by hand with admin rights);
* anything else the program is built from (``Pulumi.yaml``, the rest of ``infra/``,
  ``model_package/``, the dependencies, the workflows that run previews) affects every stack.

Only the standard library, so the workflow runs it with the runner's ``python3`` before any
install; the cloud of a stack is the prefix of its name (``aws-…``, ``gcp-…``), as everywhere in
this repository.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

CLOUDS = ("aws", "gcp")
#: Paths that feed every stack's program (fnmatch patterns; ``*`` crosses ``/``).
SHARED = (
    "Pulumi.yaml",
    "infra/*",
    "model_package/*",
    "pyproject.toml",
    "requirements/*",
    ".github/workflows/preview.yml",
    ".github/workflows/pulumi-stack.yml",
)
UNAFFECTING = ("infra/bootstrap/*",)


def stacks_in(root: Path) -> list[str]:
    """The stack names of the ``Pulumi.<stack>.yaml`` files at ``root``, sorted."""
    return sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in root.glob("Pulumi.*.yaml"))


def cloud_of(stack: str) -> str:
    """``aws`` or ``gcp``, from the stack name's prefix."""
    cloud = stack.split("-", 1)[0]
    if cloud not in CLOUDS:
        raise ValueError(f"stack {stack!r} does not start with one of {', '.join(CLOUDS)} and a dash")
    return cloud


def affected(changed: Iterable[str], stacks: Sequence[str]) -> list[str]:
    """The stacks among ``stacks`` that the ``changed`` paths can affect, in ``stacks``' order."""
    hit: set[str] = set()
    for path in (path.strip() for path in changed):
        if not path or any(fnmatch.fnmatch(path, pattern) for pattern in UNAFFECTING):
            continue
        name = Path(path).name
        if "/" not in path and name.startswith("Pulumi.") and name.endswith(".yaml") and name != "Pulumi.yaml":
            hit.add(name[len("Pulumi.") : -len(".yaml")])
            continue
        for cloud in CLOUDS:
            if path.startswith(f"infra/{cloud}/"):
                hit.update(stack for stack in stacks if cloud_of(stack) == cloud)
                break
        else:
            if any(fnmatch.fnmatch(path, pattern) for pattern in SHARED):
                hit.update(stacks)
    return [stack for stack in stacks if stack in hit]


def main(argv: Sequence[str] | None = None, stdin: Iterable[str] = sys.stdin) -> int:
    """Print ``matrix=[...]`` for the paths on stdin (root: the first argument, default ``.``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path()
    if not root.is_dir():
        print(f"affected_stacks: error: {root} is not a directory (expected the repository root)", file=sys.stderr)
        return 2
    stacks = stacks_in(root)
    try:
        matrix = [{"stack": stack, "cloud": cloud_of(stack)} for stack in affected(stdin, stacks)]
    except ValueError as exc:
        print(f"affected_stacks: error: {exc}", file=sys.stderr)
        return 2
    print("matrix=" + json.dumps(matrix, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
