"""Which stacks a change can affect: the matrix of ``preview.yml``.

    git diff --name-only "$BASE"...HEAD | python3 infra/affected_stacks.py >> "$GITHUB_OUTPUT"

reads the changed paths on stdin and prints ``matrix=<JSON list of {"stack", "cloud"}>``. The
rules, from the narrowest change to the widest:

* ``Pulumi.<stack>.yaml`` affects that stack only (a promotion is a one-stack pull request);
* ``infra/aws/**`` affects the AWS stacks, ``infra/gcp/**`` the GCP stacks;
* ``infra/bootstrap/**`` affects none (a separate program, applied by hand with admin rights);
* anything else the program is built from (``Pulumi.yaml``, the rest of ``infra/``,
  ``model_package/``, the dependencies, the workflows that run previews) affects every stack.

The deploy workflow asks the same question per stack, about the changes since the revision the
stack last deployed (not since the previous commit: a deploy job that GitHub cancelled because a
newer one replaced it in the stack's concurrency group must not lose its change for the stacks
after it)::

    python3 infra/affected_stacks.py --cloud aws --head "$SHA" --history-dir histories >> "$GITHUB_OUTPUT"

reads ``histories/<stack>.json`` (``pulumi stack history --json``; no file: the stack does not
exist yet) for every stack of that cloud and prints ``<environment>=true|false`` per stack, e.g.
``staging=false``, with the reason on stderr.

Only the standard library, so the workflow runs it with the runner's ``python3`` before any
install; the cloud of a stack is the prefix of its name (``aws-…``, ``gcp-…``), as everywhere in
this repository.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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


#: The config key the pipeline sets to the commit it deploys (``pulumi up --config``).
REVISION_KEY = "model-deploy:gitRevision"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")  # full commits only: the pipeline passes github.sha


@dataclass(frozen=True)
class Decision:
    """Whether one stack deploys at ``head``, and why (printed for the operator)."""

    stack: str
    deploy: bool
    reason: str


def deployed_revision(history: Sequence[Mapping[str, object]]) -> tuple[str | None, str]:
    """The commit the stack's newest update deployed, or ``None`` with the reason it is unknown.

    ``history`` is ``pulumi stack history --json``, newest first (the order the CLI prints and the
    Automation API's ``Stack.history`` relies on). Only ``update`` entries deploy a revision; a
    newest update that did not succeed leaves the stack somewhere between two revisions, so it is
    unknown (and the stack deploys again). The revision is the ``model-deploy:gitRevision`` the
    pipeline passed, else the ``git.head`` Pulumi records in every update's environment (keys and
    results as pulumi/pulumi's backend defines them: ``GitHead = "git.head"``, ``GitDirty =
    "git.dirty"``, ``SucceededResult = "succeeded"``).
    """
    for entry in history:
        if entry.get("kind") != "update":
            continue
        if entry.get("result") != "succeeded":
            return None, f"its last update ended {entry.get('result')!r}"
        config = entry.get("config")
        value = config.get(REVISION_KEY) if isinstance(config, dict) else None
        if isinstance(value, dict):  # the CLI writes {"value": ..., "secret": false}
            value = value.get("value")
        if isinstance(value, str) and _SHA_RE.match(value):
            return value, "deployed"
        # Not run by the pipeline (the committed placeholder "0000000", or no value): the commit
        # Pulumi recorded, unless the working tree had uncommitted changes.
        environment = entry.get("environment")
        environment = environment if isinstance(environment, dict) else {}
        head = environment.get("git.head")
        if isinstance(head, str) and _SHA_RE.match(head) and environment.get("git.dirty") != "true":
            return head, "deployed"
        return None, "its last update recorded no clean commit"
    return None, "it has no update yet"


def changed_since(revision: str, head: str, repo: Path) -> list[str] | None:
    """``git diff --name-only revision head`` in ``repo``; ``None`` if git does not know ``revision``."""
    result = subprocess.run(
        ["git", "-C", str(repo), "diff", "--name-only", revision, head, "--"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line]


def decide(stack: str, history: Sequence[Mapping[str, object]] | None, head: str, repo: Path) -> Decision:
    """Deploy ``stack`` at ``head`` iff what changed since its deployed revision affects it."""
    if history is None:
        return Decision(stack, True, "the stack does not exist yet: the first deploy creates it")
    revision, why = deployed_revision(history)
    if revision is None:
        return Decision(stack, True, f"{why}: deploying")
    changed = changed_since(revision, head, repo)
    if changed is None:
        return Decision(stack, True, f"it deployed {revision}, which this clone does not contain: deploying")
    if affected(changed, [stack]):
        return Decision(stack, True, f"changed since {revision[:12]} and affecting it: deploying")
    return Decision(stack, False, f"nothing that affects it changed since {revision[:12]}: skipped")


def _read_history(path: Path) -> list[Mapping[str, object]] | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8") or "[]")
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise ValueError(f"{path} is not `pulumi stack history --json` output (expected a JSON list of updates)")
    return data


def _environment(stack: str) -> str:
    return stack.split("-", 1)[1] if "-" in stack else stack


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affected_stacks.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=".", help="the repository root (default: .)")
    parser.add_argument("--cloud", choices=CLOUDS, help="deploy mode: decide for this cloud's stacks")
    parser.add_argument("--head", help="deploy mode: the commit being deployed")
    parser.add_argument("--history-dir", type=Path, help="deploy mode: <stack>.json per existing stack")
    return parser


def main(argv: Sequence[str] | None = None, stdin: Iterable[str] = sys.stdin) -> int:
    """Print ``matrix=[...]`` for the paths on stdin, or (``--cloud``) one ``<environment>=true|false`` per stack."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    root = Path(args.root)
    if not root.is_dir():
        print(f"affected_stacks: error: {root} is not a directory (expected the repository root)", file=sys.stderr)
        return 2
    stacks = stacks_in(root)
    deploy_mode = (args.cloud, args.head, args.history_dir)
    if any(value is not None for value in deploy_mode) and not all(value is not None for value in deploy_mode):
        print("affected_stacks: error: --cloud, --head and --history-dir go together", file=sys.stderr)
        return 2
    try:
        if args.cloud is not None:
            for stack in (stack for stack in stacks if cloud_of(stack) == args.cloud):
                decision = decide(stack, _read_history(args.history_dir / f"{stack}.json"), args.head, root)
                print(f"{stack}: {decision.reason}", file=sys.stderr)
                print(f"{_environment(stack)}={'true' if decision.deploy else 'false'}")
            return 0
        matrix = [{"stack": stack, "cloud": cloud_of(stack)} for stack in affected(stdin, stacks)]
    except ValueError as exc:
        print(f"affected_stacks: error: {exc}", file=sys.stderr)
        return 2
    print("matrix=" + json.dumps(matrix, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
