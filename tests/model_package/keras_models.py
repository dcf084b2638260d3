"""Small, real Keras 3 models for the TensorFlow format tests, with matching example inputs.

Importing this module imports Keras; test modules import it only after
``pytest.importorskip("keras")``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np


def make_mlp() -> Any:
    """A Sequential MLP: ``features`` (64 floats) -> 10 softmax probabilities."""
    return keras.Sequential(
        [
            keras.Input((64,), name="features"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ]
    )


def mlp_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch for :func:`make_mlp`."""
    return {"features": np.random.default_rng(seed).standard_normal((rows, 64)).astype(np.float32)}


def make_two_in_two_out() -> Any:
    """A functional model with two named inputs (float features, int32 category ids) and two named outputs."""
    dense = keras.Input((8,), name="dense_features")
    category = keras.Input((3,), name="category", dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(20, 4)(category))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([dense, embedded]))
    return keras.Model(
        inputs={"dense_features": dense, "category": category},
        outputs={
            "score": keras.layers.Dense(1, name="score")(hidden),
            "probs": keras.layers.Dense(5, activation="softmax", name="probs")(hidden),
        },
    )


def two_in_two_out_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch for :func:`make_two_in_two_out`."""
    rng = np.random.default_rng(seed)
    return {
        "dense_features": rng.standard_normal((rows, 8)).astype(np.float32),
        "category": rng.integers(0, 20, (rows, 3)).astype(np.int32),
    }


def make_list_outputs() -> Any:
    """A functional model with an *unnamed* input and a list of two outputs (named ``output_0``, ``output_1``)."""
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return keras.Model(inputs, [keras.layers.Dense(2)(hidden), keras.layers.Dense(3)(hidden)])


def list_outputs_inputs(model: Any, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch for :func:`make_list_outputs`, keyed by the model's (generated) input layer name."""
    # An unnamed keras.Input gets a generated layer name (input_layer, input_layer_1, ...);
    # that layer name, not the tensor's keras_tensor_N, is what both TF formats use.
    input_layer = model.layers[0]
    assert isinstance(input_layer, keras.layers.InputLayer)
    return {input_layer.name: np.random.default_rng(seed).standard_normal((rows, 6)).astype(np.float32)}


def make_fixed_batch() -> Any:
    """A model built for batches of exactly 8 rows; packages must still accept any batch size."""
    inputs = keras.Input((5,), batch_size=8, name="x")
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def make_lambda_model() -> Any:
    """A model with a Python-lambda ``Lambda`` layer, which safe-mode loading must refuse."""
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))


@keras.saving.register_keras_serializable(package="model_package_tests")
class CountingDense(keras.layers.Dense):  # type: ignore[misc]  # keras is untyped
    """A Dense layer counting how often its Python ``call`` runs, i.e. how often a graph is traced."""

    python_calls: ClassVar[int] = 0

    def call(self, inputs: Any) -> Any:
        """Count, then behave exactly like Dense."""
        CountingDense.python_calls += 1
        return super().call(inputs)


def make_counting_model() -> Any:
    """A model whose Python code runs only when it is traced (see :class:`CountingDense`)."""
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, CountingDense(3)(inputs))


class SubclassedModel(keras.Model):  # type: ignore[misc]  # keras is untyped
    """A subclassed model (not registered for serialization) returning a dict with one named output."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)

    def call(self, inputs: Any) -> dict[str, Any]:
        """Logits for a batch of 5-feature rows."""
        return {"logits": self.dense(inputs)}


def make_subclassed() -> Any:
    """A built subclassed model: it has no keras.Input, so its input has no name of its own."""
    model = SubclassedModel()
    model(np.zeros((1, 5), np.float32))
    return model


def make_sequence_pooler(length: int | None = None) -> Any:
    """Token ids of any length (``length=None``) or a fixed one -> mean-pooled embedding -> 2 logits."""
    keras.utils.set_random_seed(5)
    tokens = keras.Input((length,), name="tokens", dtype="int32")
    hidden = keras.layers.Embedding(30, 4)(tokens)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    return keras.Model(tokens, keras.layers.Dense(2, name="logits")(pooled))


def sequence_inputs(rows: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids for :func:`make_sequence_pooler`."""
    return {"tokens": np.random.default_rng(seed).integers(0, 30, size=(rows, length)).astype(np.int32)}
