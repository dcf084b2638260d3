"""Keras models with variable-length inputs: ``None`` dims kept, declared axes exported as ``None``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_package.errors import UsageError  # noqa: E402
from model_package.export import export_model  # noqa: E402
from model_package.formats import get_format  # noqa: E402
from model_package.manifest import read_manifest  # noqa: E402
from tests.model_package import keras_models  # noqa: E402  (after the importorskip guards)

pytestmark = pytest.mark.tensorflow

ATOL = 1e-5


def _load(package: Path) -> tuple[dict[str, list[int]], Any]:
    manifest = read_manifest(package)
    shapes = {spec.name: list(spec.shape) for spec in (*manifest.signature.inputs, *manifest.signature.outputs)}
    return shapes, get_format(manifest.format).load(package, manifest)


def _live(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(model(inputs["tokens"], training=False))


@pytest.mark.parametrize("fmt", ["tf_savedmodel", "keras", "onnx"])
def test_variable_length_keras_input_serves_two_lengths(fmt: str, tmp_path: Path) -> None:
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
    model = keras_models.make_sequence_pooler()
    export_model(model, keras_models.sequence_inputs(3, 6), tmp_path / "pkg", name="seq", version="1", format=fmt)

    shapes, loaded = _load(tmp_path / "pkg")
    assert shapes["tokens"] == [-1, -1]
    for length in (3, 10):
        inputs = keras_models.sequence_inputs(2, length, seed=length)
        np.testing.assert_allclose(loaded.predict(inputs)["output_0"], _live(model, inputs), atol=ATOL)


@pytest.mark.parametrize("fmt", ["tf_savedmodel", "keras"])
def test_a_declared_axis_the_keras_input_fixes_is_refused_with_the_fix(fmt: str, tmp_path: Path) -> None:
    # Keras itself refuses other lengths where keras.Input fixes one, so only the Input can make it dynamic.
    with pytest.raises(UsageError, match=r"fix tokens\[1\]=6.*keras\.Input\(shape=\(None,\)"):
        export_model(
            keras_models.make_sequence_pooler(length=6),
            keras_models.sequence_inputs(3, 6),
            tmp_path / "pkg",
            name="seq",
            version="1",
            format=fmt,
            dynamic_axes={"tokens": [1]},
        )
