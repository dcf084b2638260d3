"""Fixtures shared by the model_package tests."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.opaque_package import make_opaque_package

PackageFactory = Callable[..., Path]


@pytest.fixture
def make_package(tmp_path: Path) -> PackageFactory:
    """Build a package directory with opaque 'weights' (for integrity tests that never load a model)."""

    def make(name: str = "pkg", weights: bytes | None = None) -> Path:
        return make_opaque_package(tmp_path / name, weights=weights)

    return make


@dataclass
class CliOutcome:
    """What a ``model-package`` run printed and returned."""

    returncode: int
    stdout: str
    stderr: str


CliRunner = Callable[..., CliOutcome]


@pytest.fixture
def model_package_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """``model-package ARGS`` in this process, from ``cwd``: its exit code and its output.

    A subprocess would spend seconds importing torch again; ``tests/model_package/test_cli.py`` runs
    the console script itself.
    """
    from model_package.cli import main

    def run(*args: str | Path, cwd: Path) -> CliOutcome:
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            patch.setattr(sys, "path", list(sys.path))  # a "file.py:factory" leaves its folder last there
            capsys.readouterr()
            code = main([str(arg) for arg in args])
            out, err = capsys.readouterr()
        return CliOutcome(code, out, err)

    return run
