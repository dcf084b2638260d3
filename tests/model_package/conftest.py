"""Fixtures shared by the model_package tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model_package.builder import hash_tree
from model_package.example import save_arrays
from model_package.manifest import (
    SCHEMA_VERSION,
    Creation,
    Example,
    Framework,
    Manifest,
    Signature,
    TensorSpec,
    write_manifest,
)

PackageFactory = Callable[..., Path]


@pytest.fixture
def make_package(tmp_path: Path) -> PackageFactory:
    """Build a package directory with opaque 'weights' (for integrity tests that never load a model)."""

    def make(name: str = "pkg", weights: bytes | None = None) -> Path:
        root = tmp_path / name
        root.mkdir()
        rng = np.random.default_rng(0)
        payload = weights if weights is not None else rng.standard_normal(50_000).astype(np.float32).tobytes()
        (root / "model.onnx").write_bytes(payload)
        save_arrays(root / "example" / "inputs.npz", {"x": np.ones((2, 3), np.float32)})
        save_arrays(root / "example" / "outputs.npz", {"y": np.ones((2, 1), np.float32)})
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name="demo",
            version="1.0.0",
            format="onnx",
            framework=Framework(name="onnx", version="1.17.0"),
            model_path="model.onnx",
            signature=Signature(
                inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 3)),),
                outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
            ),
            example=Example(),
            files=hash_tree(root),
            created=Creation(created_at="2026-01-01T00:00:00+00:00", tool="tests", python="3.11"),
        )
        write_manifest(root, manifest)
        return root

    return make
