"""A small valid package whose 'weights' are opaque bytes: for tests that never load a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def make_opaque_package(root: Path, *, weights: bytes | None = None, weight_values: int = 50_000) -> Path:
    """Create ``root`` as package ``demo`` (an ONNX-format manifest over ``weights``, seeded if not given)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    payload = weights if weights is not None else rng.standard_normal(weight_values).astype(np.float32).tobytes()
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
