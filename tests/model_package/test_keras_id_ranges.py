"""Ids fed to a Keras ``Embedding`` are checked against its table in every format a Keras model exports to.

Keras' TensorFlow backend counts a negative id from the table's end (``ops.take``), and TensorFlow
refuses an id past the table with an error the server reports as its own failure (500, counted by
the alarms and rollbacks that watch 5xx). With the table's range in the signature, the same ids
are the client's 400, naming the id and where it is, before the model runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from model_package.errors import InvalidInputError  # noqa: E402  (after the importorskip guard)
from model_package.export import export_model  # noqa: E402
from model_package.formats import get_format  # noqa: E402

pytestmark = pytest.mark.tensorflow

FORMATS = [
    "tf_savedmodel",
    "keras",
    pytest.param(
        "onnx", marks=pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="tf2onnx not installed")
    ),
]


def _recommender(*, lookup: bool) -> Any:
    """A user id and candidate ids into two tables; with ``lookup``, a category through an
    ``IntegerLookup`` (its own range; tf2onnx cannot convert it) into a third."""
    user = keras.Input((1,), name="user_id", dtype="int64")
    candidates = keras.Input((5,), name="candidates", dtype="int64")
    inputs = {"user_id": user, "candidates": candidates}
    user_vector = keras.layers.Embedding(20, 4)(user)
    if lookup:
        inputs["category"] = keras.Input((1,), name="category", dtype="int64")
        looked_up = keras.layers.IntegerLookup(vocabulary=[7, 11, 13])(inputs["category"])
        user_vector = user_vector + keras.layers.Embedding(5, 4)(looked_up)
    scores = keras.layers.Dot(axes=2)([user_vector, keras.layers.Embedding(40, 4)(candidates)])
    return keras.Model(inputs, {"scores": keras.layers.Flatten()(scores)})


IDS = {"user_id": np.array([[1], [2]], np.int64), "candidates": np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], np.int64)}
CATEGORY = np.array([[7], [99]], np.int64)


@pytest.mark.parametrize("fmt", FORMATS)
def test_ids_outside_a_keras_table_are_refused_naming_the_id(fmt: str, tmp_path: Path) -> None:
    lookup = fmt != "onnx"
    example = {**IDS, "category": CATEGORY} if lookup else IDS
    manifest = export_model(_recommender(lookup=lookup), example, tmp_path / fmt, name="rec", version="1", format=fmt)

    ranges = {spec.name: spec.valid_range for spec in manifest.signature.inputs}
    assert ranges == {"user_id": (0, 19), "candidates": (0, 39), **({"category": None} if lookup else {})}
    model = get_format(fmt).load(tmp_path / fmt, manifest)
    for name, bad, where in (("user_id", 25, "[1, 0]"), ("user_id", -1, "[1, 0]"), ("candidates", 40, "[1, 4]")):
        inputs = {key: value.copy() for key, value in example.items()}
        inputs[name][1, -1] = bad
        with pytest.raises(InvalidInputError, match=rf"input '{name}' holds {bad} at \{where}; valid values are 0 to"):
            model.predict(inputs)
    if lookup:  # any category: the lookup maps unknown values to its out-of-vocabulary row
        assert model.predict({**example, "category": np.array([[123456], [-5]], np.int64)})["scores"].shape == (2, 5)


class ModuloEmbedding(keras.layers.Embedding):  # type: ignore[misc]  # keras is untyped
    """Maps any id into the table itself: its input takes every integer."""

    def call(self, inputs: Any) -> Any:
        return super().call(keras.ops.mod(inputs, self.input_dim))


def test_only_this_models_own_lookups_range_its_inputs(tmp_path: Path) -> None:
    """A layer's calls from another model, or dropped ones, made valid ids (clipped, hashed) a 400."""
    ids = keras.Input((3,), name="ids", dtype="int64")
    table = keras.layers.Embedding(10, 2)
    table(ids)  # a call whose result is dropped
    keras.Model(ids, table(ids))  # another model on the same input and layer
    served = keras.Model(
        ids,
        {
            "clipped": keras.layers.Flatten()(table(keras.ops.clip(ids, 0, 9))),
            "hashed": keras.layers.Flatten()(ModuloEmbedding(10, 2)(ids)),
        },
    )
    example = {"ids": np.array([[1, 2, 3], [4, 5, 6]], np.int64)}

    manifest = export_model(served, example, tmp_path / "p", name="p", version="1", format="tf_savedmodel")

    assert manifest.signature.inputs[0].valid_range is None
    big = get_format("tf_savedmodel").load(tmp_path / "p", manifest).predict({"ids": np.array([[25, 99, -3]])})
    assert big["clipped"].shape == (1, 6)


def test_float_ids_into_an_embedding_are_ranged_too(tmp_path: Path) -> None:
    """Keras' default input dtype is float32; Embedding casts to int, and 10.0 past a 10-row table was a 500."""
    ids = keras.Input((3,), name="ids")
    model = keras.Model(ids, keras.layers.Flatten()(keras.layers.Embedding(10, 2)(ids)))
    example = {"ids": np.array([[1, 2, 3], [4, 5, 6]], np.float32)}

    manifest = export_model(model, example, tmp_path / "p", name="p", version="1", format="tf_savedmodel")

    assert manifest.signature.inputs[0].valid_range == (0, 9)
