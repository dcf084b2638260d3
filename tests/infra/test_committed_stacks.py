"""Every committed Pulumi.<stack>.yaml loads through the program's own typed config."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import load_stack_file

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))


def test_there_are_committed_stacks() -> None:
    assert STACK_FILES, "the repository should ship at least one example stack"


@pytest.mark.parametrize("path", STACK_FILES, ids=[path.name for path in STACK_FILES])
def test_committed_stack_is_valid(path: Path) -> None:
    config = load_stack_file(path)
    assert config.environment in ("dev", "staging", "prod")
    assert path.name == f"Pulumi.{config.stack}.yaml"


def test_aws_stacks_never_share_a_repository_or_bucket() -> None:
    """One account may hold every environment (the shared-account layout): the stores' names must differ.

    ECR repository and S3 bucket names are unique per account and region (bucket names globally), so
    two stacks naming the same one would fight over it, and the environment-tagged deploy roles could
    not both manage it.
    """
    from infra.aws.artifact_store import StoreNames

    names = {
        path.name: StoreNames.from_config(load_stack_file(path))
        for path in STACK_FILES
        if path.name.startswith("Pulumi.aws-")
    }
    assert len(names) >= 2
    repositories = [store.repository for store in names.values()]
    buckets = [store.bucket for store in names.values()]
    assert len(set(repositories)) == len(repositories), names
    assert len(set(buckets)) == len(buckets), names
