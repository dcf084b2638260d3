"""Fixtures shared by the model_package tests."""

from __future__ import annotations

from collections.abc import Callable
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
