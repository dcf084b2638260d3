"""Promote the pinned package from one stack to the next: dev -> staging -> prod.

``model-deploy-promote --from aws-dev --to aws-staging`` reads the source stack's pinned package
(``model-deploy:package``: name, version, URI, digest, image) and moves it to the target stack:

* The image keeps the source's ``@sha256:<digest>`` but lives in the target's own repository (the
  ``<registry>/<repository>`` of the target's current image, or ``--target-image-repository``):
  each environment's service may pull from its own registry only. The digest must already be
  there (copied with ``crane copy``, which keeps the manifest bytes and so the digest); it is
  checked through the registry's API (ECR ``DescribeImages``, Artifact Registry
  ``GetDockerImage``) before anything is copied or written, ``--dry-run`` included.
* The package must be in the target stack's store with the same sha256; it is copied across
  buckets when the environments use different stores (pulled verified against the digest, pushed
  with the same layout, checked again).

Then only the package block of ``Pulumi.<target>.yaml`` is rewritten, keeping every comment and
all other formatting, and the unified diff is printed: a one-block change for a pull request.

Refused, with one line on stderr, exit 2 and nothing written: unknown stacks, malformed digests,
skipping an environment (dev -> prod), going backwards or across clouds, promoting to prod a digest that staging
is not pinned to, and an image digest missing from the target's repository. A registry or store
that cannot be reached is exit 1.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode

from infra.config.errors import ConfigError
from infra.config.loader import load_stack_file
from infra.config.package_settings import ImageRef, PackageConfig, parse_image
from infra.config.schema import PROJECT, StackConfig
from infra.registry import RegistryError, lookup_image
from model_package.archive import ARCHIVE_NAME
from model_package.errors import ModelPackageError
from model_package.manifest import MANIFEST_FILENAME
from model_package.publish import Layout, package_uri, parse_package_uri, pull, push
from model_package.stores import StoreLocation, open_store, parse_store_uri

PROG = "model-deploy-promote"
ORDER: tuple[str, ...] = ("dev", "staging", "prod")
PACKAGE_KEY = f"{PROJECT}:package"
PACKAGE_FIELDS: tuple[str, ...] = ("name", "version", "uri", "digest", "image")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_PLAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")


class PromotionError(Exception):
    """A promotion that must not happen, or cannot; the message is one line."""


@dataclass(frozen=True)
class Stack:
    """A stack file: where it is, its text and its validated config."""

    name: str
    path: Path
    text: str
    config: StackConfig


@dataclass(frozen=True)
class Promotion:
    """What a promotion did (or, with ``dry_run``, would do)."""

    source: Stack
    target: Stack
    package: dict[str, str]
    """The target's new package block."""
    copied: bool
    """The package was copied into the target's store by this run."""
    diff: str
    """Unified diff of the target stack file; empty when it already pinned the package."""
    written: bool


def promote(
    source_name: str,
    target_name: str,
    *,
    root: Path = Path(),
    target_store: str | None = None,
    target_image_repository: str | None = None,
    digest: str | None = None,
    dry_run: bool = False,
    artifact_registry_endpoint: str | None = None,
    log: Any = None,
) -> Promotion:
    """Promote ``source_name``'s pinned package to ``target_name`` (stack names, as in ``Pulumi.<name>.yaml``).

    Nothing is copied or written unless every check passed, the image digest's presence in the
    target's repository included; ``dry_run`` checks everything and changes nothing.
    """
    say = log if log is not None else (lambda message: print(message, file=sys.stderr))
    if digest is not None and not _DIGEST_RE.match(digest):
        raise PromotionError(
            f"--digest {digest!r} is not a package digest: expected 64 lowercase hex characters "
            f"(the sha256 of {ARCHIVE_NAME})"
        )
    if source_name == target_name:
        raise PromotionError(f"--from and --to both name stack {source_name!r}: promote to the next environment")
    source = read_stack(root, source_name)
    target = read_stack(root, target_name)
    package = source.config.package
    _check_digests(source, package, digest)
    _check_cloud(source, target)
    _check_order(source, target)
    image = _promoted_image(package, target, target_image_repository)
    _check_image(image, source, target, artifact_registry_endpoint=artifact_registry_endpoint, say=say)

    layout: Layout = package.layout
    store = _target_store(target, source, target_store)
    new_uri = package_uri(str(store), package.name, package.digest, layout)

    new_package = {
        "name": package.name,
        "version": package.version,
        "uri": new_uri,
        "digest": package.digest,
        "image": str(image),
    }
    new_text = rewrite_package_block(target.text, new_package, where=str(target.path))
    diff = "".join(
        difflib.unified_diff(
            target.text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"a/{target.path.name}",
            tofile=f"b/{target.path.name}",
        )
    )
    if new_text != target.text:
        _validate_text(target, new_text, new_package)  # before any copy: an invalid result changes nothing
    copied = _ensure_in_store(package, new_uri, layout, dry_run=dry_run, say=say)
    written = False
    if new_text != target.text and not dry_run:
        _replace_atomically(target.path, new_text)
        written = True
    return Promotion(source, target, new_package, copied, diff, written)


def read_stack(root: Path, name: str) -> Stack:
    """Read and validate ``<root>/Pulumi.<name>.yaml``; refuses a stack without a file."""
    if not name or "/" in name or name.startswith("."):
        raise PromotionError(f"{name!r} is not a stack name (expected e.g. aws-dev, naming Pulumi.aws-dev.yaml)")
    path = root / f"Pulumi.{name}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise PromotionError(
            f"unknown stack {name!r}: there is no {path}" + (f" (stacks here: {', '.join(known)})" if known else "")
        )
    config = load_stack_file(path)
    return Stack(name=name, path=path, text=path.read_text(encoding="utf-8"), config=config)


def rewrite_package_block(text: str, package: dict[str, str], *, where: str = "the stack file") -> str:
    """``text`` with the values of ``config: model-deploy:package:`` replaced, every other character kept.

    Only the scalar values of the five keys change (their comments, order and indentation stay),
    so the change is exactly the lines that pin a different package.
    """
    root = YAML(typ="rt").compose(text)
    block = _package_node(root, where)
    edits: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for key_node, value_node in block.value:
        key = str(key_node.value)
        if key not in package:
            continue
        seen.add(key)
        if not isinstance(value_node, ScalarNode) or value_node.style in ("|", ">"):
            raise PromotionError(f"{where}: {PACKAGE_KEY}.{key} must be a one-line scalar to be rewritten")
        if str(value_node.value) == package[key]:
            continue
        start, end = value_node.start_mark.index, value_node.end_mark.index
        edits.append((start, end, _scalar(package[key], text[start:end])))
    missing = [key for key in PACKAGE_FIELDS if key in package and key not in seen]
    if missing:
        raise PromotionError(f"{where}: {PACKAGE_KEY} has no {', '.join(missing)} to rewrite")
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _package_node(root: Node | None, where: str) -> MappingNode:
    if isinstance(root, MappingNode):
        for key_node, config_node in root.value:
            if key_node.value == "config" and isinstance(config_node, MappingNode):
                for entry_key, entry_value in config_node.value:
                    if entry_key.value == PACKAGE_KEY and isinstance(entry_value, MappingNode):
                        return entry_value
    raise PromotionError(f"{where}: has no config: {PACKAGE_KEY}: mapping to rewrite")


def _scalar(value: str, original: str) -> str:
    """``value`` written as YAML that reads back as the string ``value``, in the original's quoting if possible."""
    quote = original[:1]
    if quote == "'" and "'" not in value and "\n" not in value:
        return f"'{value}'"
    if quote != '"' and _PLAIN_RE.match(value) and yaml.safe_load(value) == value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_digests(source: Stack, package: PackageConfig, digest: str | None) -> None:
    uri_digest = package.ref.digest
    if uri_digest != package.digest:
        raise PromotionError(
            f"{source.path}: {PACKAGE_KEY}.digest {package.digest} differs from the digest in its uri "
            f"({uri_digest}): fix the source stack before promoting it"
        )
    if digest is not None and digest != package.digest:
        if source.config.environment == "staging":
            raise PromotionError(
                f"refusing to promote {digest} to prod: staging stack {source.name!r} is pinned to {package.digest}, "
                "not to it; promote that digest to staging first"
            )
        raise PromotionError(
            f"refusing to promote {digest}: stack {source.name!r} is pinned to {package.digest}, not to it"
        )


def _check_cloud(source: Stack, target: Stack) -> None:
    """Promotion stays within one cloud: what aws-staging ran says nothing about a Vertex or Cloud Run prod."""
    if source.config.cloud != target.config.cloud:
        raise PromotionError(
            f"refusing to promote {source.name} ({source.config.cloud}) -> {target.name} ({target.config.cloud}): "
            f"promotion stays within one cloud; promote through {target.config.cloud}'s own staging first"
        )


def _check_order(source: Stack, target: Stack) -> None:
    have, want = source.config.environment, target.config.environment
    if ORDER.index(want) != ORDER.index(have) + 1:
        expected = ORDER[ORDER.index(want) - 1] if want != ORDER[0] else None
        hint = (
            f"{want} is promoted from {expected} only"
            if expected is not None
            else f"{want} is the first environment, nothing is promoted into it"
        )
        if want == "prod":
            hint += f" (prod may only receive a digest staging is pinned to; {source.name!r} is {have})"
        raise PromotionError(
            f"refusing to promote {source.name} ({have}) -> {target.name} ({want}): "
            f"the order is {' -> '.join(ORDER)}; {hint}"
        )


def _promoted_image(package: PackageConfig, target: Stack, override: str | None) -> ImageRef:
    """The source's image digest in the target's repository: ``override``, else the target's current one.

    Every environment pulls from its own registry (its service may read nothing else), so the
    repository comes from the target and only the digest moves.
    """
    digest = package.image_ref.digest
    if override is None:
        current = target.config.package.image_ref
        return ImageRef(current.registry, current.repository, digest)
    repository = override.strip().rstrip("/")
    if "@" in repository or "/" not in repository or ":" in repository.rsplit("/", 1)[1]:
        raise PromotionError(
            f"--target-image-repository {override!r} is not a repository: expected <registry>/<repository> "
            "without a tag or digest (e.g. 234567890123.dkr.ecr.us-east-1.amazonaws.com/model-serve)"
        )
    try:
        return parse_image(f"{repository}@{digest}")
    except ValueError:
        raise PromotionError(
            f"--target-image-repository {override!r} is not a repository: expected <registry>/<repository>"
        ) from None


def _check_image(
    image: ImageRef, source: Stack, target: Stack, *, artifact_registry_endpoint: str | None, say: Any
) -> None:
    """Refuse unless ``image``'s digest is in its (the target's) repository.

    There is deliberately no way to skip this: whoever promotes already needs credentials for the
    target's store, reading its registry is no further burden, and a stack pinned to an image its
    registry lacks fails only at deploy time, after review, in the environment being promoted to.
    """
    repository = f"{image.registry}/{image.repository}"
    source_image = source.config.package.image_ref
    source_repository = f"{source_image.registry}/{source_image.repository}"
    try:
        found = lookup_image(image, artifact_registry_endpoint=artifact_registry_endpoint)
    except RegistryError as exc:
        raise RegistryError(f"{exc}; nothing was promoted") from None
    # A deterministic tag: both repositories expire untagged images after a few weeks (ECR
    # lifecycle policy, Artifact Registry cleanup policy), which would pull the pinned image out
    # from under a running service; with immutable tags, one tag per digest never conflicts.
    tag = f"sha256-{image.digest.removeprefix('sha256:')}"
    if not found.found:
        if repository == source_repository:
            hint = f"that is where {source.name} pins it: push the image there first"
        else:
            hint = (
                f"copy it there keeping the digest, e.g. `crane copy {source_repository}@{image.digest} "
                f"{repository}:{tag}` (or pass --target-image-repository), then promote again"
            )
        raise PromotionError(
            f"image {image.digest} is not in {repository}, the repository {target.name} pulls from, "
            f"so nothing was copied or written: {hint}"
        )
    say(f"{image}: present" + (f" (tags: {', '.join(found.tags)})" if found.tags else ""))
    if not found.tags:
        say(
            f"warning: {image} has no tag, and the repository's cleanup deletes untagged images: "
            f"tag it, e.g. `crane tag {image} {tag}`"
        )


def _target_store(target: Stack, source: Stack, override: str | None) -> StoreLocation:
    """The target's store root: ``--target-store``, else the target's bucket with the current (or source's) prefix."""
    if override is not None:
        return parse_store_uri(override.rstrip("/"))
    config = target.config
    current = _store_root(config.package)
    bucket: str | None = None
    scheme = "s3" if config.cloud == "aws" else "gs"
    if config.aws is not None:
        bucket = config.aws.store.bucket_name
    elif config.gcp is not None:
        bucket = config.gcp.store.bucket_name
    bucket = bucket or current.bucket
    if current.scheme == scheme and current.bucket == bucket:
        prefix = current.prefix
    else:
        prefix = _store_root(source.config.package).prefix
    return parse_store_uri(f"{scheme}://{bucket}/{prefix}" if prefix else f"{scheme}://{bucket}")


def _store_root(package: PackageConfig) -> StoreLocation:
    """``<store>`` of ``<store>/<name>/<digest>/…``."""
    return package.ref.location.parent(2)


def _ensure_in_store(package: PackageConfig, new_uri: str, layout: Layout, *, dry_run: bool, say: Any) -> bool:
    """Make sure ``new_uri`` holds the package with its digest; ``True`` if it had to be copied there."""
    same_place = parse_package_uri(new_uri).location == package.ref.location
    if _present(new_uri, layout, package.digest):
        say(f"{new_uri}: present with sha256 {package.digest}")
        return False
    if same_place:
        raise PromotionError(f"the package pinned by the source stack is not in its store: {package.uri} is missing")
    with tempfile.TemporaryDirectory(prefix="model-deploy-promote-") as scratch:
        local = Path(scratch) / "package"
        # Pulled before the copy, and in a dry run too: a source package that is missing or does not
        # hash to its digest fails --dry-run exactly as it would fail the real promotion.
        pull(package.uri, local)  # refuses bytes that do not hash to the pinned digest
        if dry_run:
            say(f"{package.uri}: present with sha256 {package.digest}")
            say(f"would copy {package.uri} -> {new_uri} (dry run: nothing copied)")
            return False
        say(f"copying {package.uri} -> {new_uri}")
        result = push(local, str(parse_package_uri(new_uri).location.parent(2)), layout=layout)
    if result.digest != package.digest or result.uri != new_uri:
        raise PromotionError(
            f"the copy at {result.uri} has digest {result.digest}, not {package.digest}: nothing was pinned"
        )
    if not _present(new_uri, layout, package.digest):
        raise PromotionError(f"{new_uri} is still missing after the copy: nothing was pinned")
    return True


def _present(uri: str, layout: Layout, digest: str) -> bool:
    ref = parse_package_uri(uri)
    with open_store(str(ref.location)) as store:
        if layout == "archive":
            return store.has_identical(ARCHIVE_NAME, digest)
        if not store.exists(MANIFEST_FILENAME):
            return False
    with tempfile.TemporaryDirectory(prefix="model-deploy-promote-") as scratch:
        pull(uri, Path(scratch) / "package")  # checks every file and the digest
    return True


def _validate_text(target: Stack, text: str, package: dict[str, str]) -> None:
    """Validate the rewritten file as a stack file and check it pins exactly ``package``."""
    scratch = Path(tempfile.mkdtemp(prefix=".promote-", dir=target.path.parent))
    try:
        candidate = scratch / target.path.name
        candidate.write_text(text, encoding="utf-8")
        try:
            config = load_stack_file(candidate)
        except ConfigError as exc:
            raise PromotionError(
                f"the promoted {target.path.name} would not be valid, so it was left as it was: "
                + str(exc).replace(str(candidate), str(target.path))
            ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pinned = config.package.model_dump()
    if any(pinned[key] != value for key, value in package.items()):
        raise PromotionError(f"rewriting {target.path} did not pin the package as intended; it was left as it was")


def _replace_atomically(path: Path, text: str) -> None:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        shutil.copymode(path, name)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Promote the package pinned by one stack to the next (dev -> staging -> prod), by digest.",
    )
    parser.add_argument("--from", dest="source", required=True, help="source stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--to", dest="target", required=True, help="target stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--root", type=Path, default=Path(), help="directory of the stack files (default: .)")
    parser.add_argument(
        "--target-store",
        help="the target's store URI, e.g. s3://bucket/models (default: the target stack's bucket)",
    )
    parser.add_argument(
        "--target-image-repository",
        metavar="REGISTRY/REPOSITORY",
        help="where the target pulls the image from (default: the repository of the target stack's current image)",
    )
    parser.add_argument("--digest", help="the digest expected to be promoted (refused unless the source pins it)")
    parser.add_argument(
        "--dry-run", action="store_true", help="check everything (the image digest too), print the diff; change nothing"
    )
    parser.add_argument(
        "--artifact-registry-endpoint",
        metavar="HOST[:PORT]",
        help="Artifact Registry API endpoint (default: artifactregistry.googleapis.com; a loopback host:port is "
        "spoken to in plain text, for tests)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 promoted or already pinned, 2 refused, 1 failed).

    Failed: a store or registry could not be read or written (credentials, network, permissions).
    """
    args = _parser().parse_args(argv)
    try:
        result = promote(
            args.source,
            args.target,
            root=args.root,
            target_store=args.target_store,
            target_image_repository=args.target_image_repository,
            digest=args.digest,
            dry_run=args.dry_run,
            artifact_registry_endpoint=args.artifact_registry_endpoint,
        )
    except (PromotionError, ConfigError) as exc:
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except (ModelPackageError, RegistryError) as exc:
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{PROG}: error: {_one_line(where + str(exc.strerror or exc))}", file=sys.stderr)
        return 1
    if not result.diff:
        print(f"{result.target.path.name} already pins {result.package['digest']}; nothing to change", file=sys.stderr)
        return 0
    sys.stdout.write(result.diff)
    if args.dry_run:
        print(f"dry run: {result.target.path.name} not written", file=sys.stderr)
    else:
        print(f"promoted {result.package['digest']}: {args.source} -> {args.target}", file=sys.stderr)
    return 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
