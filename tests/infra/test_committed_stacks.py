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
