"""Forward-only promotion, checked on every pull request: prod pins exactly what staging pins.

    python -m infra.promotion_check --base "$BASE_SHA" --head "$HEAD_SHA" [--staging-outputs aws=out.json]

For every ``Pulumi.<cloud>-prod.yaml`` whose package block the pull request changes (``base`` is
the default branch's commit the pull request targets, ``head`` its last commit), the new block
must pin what ``Pulumi.<cloud>-staging.yaml`` pins on the default branch (``base``), the same cloud
only: the same package name, version and digest, and the same image digest (in prod's own
repository). Staging's pin in the pull request itself does not count: a change reaches prod only
after it has been merged to staging first.

Where the pipeline can read it, ``--staging-outputs <cloud>=<file>`` (``pulumi stack output --json``
of the staging stack) adds what staging has actually deployed: its ``packageDigest`` output must
be the digest staging pins, or staging has not deployed it (yet, or a rollback took it back).

One line per checked stack on stdout; a refusal is one line on stderr and exit 2; a failure of
ours (git, unreadable files) exit 1. Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGE_KEY = "model-deploy:package"
PROG = "promotion_check"


class CheckError(Exception):
    """The repository or an input file could not be read (exit 1)."""


@dataclass(frozen=True)
class Verdict:
    """One prod stack's check: ``problem`` is ``None`` when it passes."""

    stack: str
    problem: str | None
    detail: str


def _show(root: Path, ref: str, path: str) -> str | None:
    """``git show ref:path``; ``None`` when the file does not exist at ``ref``."""
    result = subprocess.run(
        ["git", "-C", str(root), "show", f"{ref}:{path}"], capture_output=True, text=True, check=False
    )
    if result.returncode == 0:
        return result.stdout
    exists = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if exists.returncode != 0:
        raise CheckError(f"git does not know the commit {ref!r} (fetch the history: actions/checkout fetch-depth: 0)")
    return None


def _changed(root: Path, base: str, head: str) -> list[str]:
    result = subprocess.run(
        ["git", "-C", str(root), "diff", "--name-only", f"{base}...{head}", "--"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CheckError(f"git diff {base}...{head} failed: {result.stderr.strip()}")
    return result.stdout.splitlines()


def package_of(text: str, where: str) -> dict[str, str]:
    """The package block of a stack file, every value a string (YAML 1.10 stays "1.10")."""
    data = yaml.load(text, Loader=yaml.BaseLoader)  # BaseLoader: plain str/list/dict only
    block = data.get("config", {}).get(PACKAGE_KEY) if isinstance(data, dict) else None
    if not isinstance(block, dict):
        raise CheckError(f"{where} has no config: {PACKAGE_KEY}: block")
    return {str(key): str(value) for key, value in block.items()}


def _image_digest(image: str) -> str:
    return image.rsplit("@", 1)[1] if "@" in image else ""


def check_stack(
    stack: str, prod: Mapping[str, str], staging: Mapping[str, str] | None, deployed: str | None
) -> Verdict:
    """Does ``prod`` (the pull request's block) pin what ``staging`` (the default branch's) pins?"""
    cloud = stack.split("-", 1)[0]
    source = f"{cloud}-staging"
    if staging is None:
        return Verdict(stack, f"there is no Pulumi.{source}.yaml on the default branch to promote from", "")
    wanted = {
        "name": staging.get("name"),
        "version": staging.get("version"),
        "digest": staging.get("digest"),
        "image digest": _image_digest(staging.get("image", "")),
    }
    have = {
        "name": prod.get("name"),
        "version": prod.get("version"),
        "digest": prod.get("digest"),
        "image digest": _image_digest(prod.get("image", "")),
    }
    differing = [key for key in wanted if wanted[key] != have[key]]
    if differing:
        described = ", ".join(f"{key} {have[key]!r} (staging: {wanted[key]!r})" for key in differing)
        return Verdict(
            stack,
            f"{stack} must pin what {source} pins on the default branch (promote to staging first, same cloud "
            f"only: `model-deploy-promote --from {source} --to {stack}`); it differs in {described}",
            "",
        )
    if deployed is not None and deployed != wanted["digest"]:
        return Verdict(
            stack,
            f"{source} pins {wanted['digest']} but its stack outputs show it deployed {deployed}: "
            "promote to prod only what staging runs",
            "",
        )
    evidence = " and has deployed it" if deployed is not None else " (its deployment was not checked)"
    return Verdict(stack, None, f"{stack}: pins {wanted['digest']}, as {source} does on the default branch{evidence}")


def check(root: Path, base: str, head: str, deployed: Mapping[str, str]) -> list[Verdict]:
    """Check every prod stack whose package block changes between ``base`` and ``head``."""
    verdicts: list[Verdict] = []
    for path in _changed(root, base, head):
        name = Path(path).name
        if "/" in path or not (name.startswith("Pulumi.") and name.endswith("-prod.yaml")):
            continue
        stack = name[len("Pulumi.") : -len(".yaml")]
        new_text = _show(root, head, path)
        if new_text is None:
            continue  # the stack file is deleted: nothing is promoted
        prod = package_of(new_text, f"{path} at {head}")
        old_text = _show(root, base, path)
        if old_text is not None and package_of(old_text, f"{path} at {base}") == prod:
            continue  # the package block is unchanged: not a promotion
        staging_path = f"Pulumi.{stack.split('-', 1)[0]}-staging.yaml"
        staging_text = _show(root, base, staging_path)
        staging = package_of(staging_text, f"{staging_path} at {base}") if staging_text is not None else None
        verdicts.append(check_stack(stack, prod, staging, deployed.get(stack.split("-", 1)[0])))
    return verdicts


def _deployed_digests(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        cloud, _, path = value.partition("=")
        if cloud not in ("aws", "gcp") or not path:
            raise CheckError(f"--staging-outputs {value!r}: expected <cloud>=<file>, cloud aws or gcp")
        try:
            outputs = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckError(f"--staging-outputs {path}: not readable `pulumi stack output --json` ({exc})") from None
        digest = outputs.get("packageDigest") if isinstance(outputs, dict) else None
        if not isinstance(digest, str):
            raise CheckError(f"--staging-outputs {path}: has no packageDigest output (is the stack deployed?)")
        out[cloud] = digest
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when every promoted prod stack pins what its staging pins, 2 when one does not, 1 on our failure."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="the default branch's commit the pull request targets")
    parser.add_argument("--head", default="HEAD", help="the pull request's commit (default: HEAD)")
    parser.add_argument("--root", type=Path, default=Path(), help="the repository (default: .)")
    parser.add_argument("--staging-outputs", action="append", default=[], metavar="CLOUD=FILE")
    args = parser.parse_args(argv)
    try:
        verdicts = check(args.root, args.base, args.head, _deployed_digests(args.staging_outputs))
    except CheckError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    refused = [verdict for verdict in verdicts if verdict.problem is not None]
    for verdict in verdicts:
        if verdict.problem is None:
            print(verdict.detail)
    for verdict in refused:
        print(f"{PROG}: refused: {verdict.problem}", file=sys.stderr)
    if not verdicts:
        print("no prod stack's package changes: nothing to check")
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
