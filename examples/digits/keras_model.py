"""The same classifier in Keras 3, trained with gradient descent; ``factory`` is the CLI entry."""

from __future__ import annotations

from typing import Any

import numpy as np

from examples.digits.data import INPUT_NAME, NUM_CLASSES, NUM_FEATURES, load_digits_split


def train(epochs: int = 60, seed: int = 0) -> Any:
    """Adam on mini-batches of 128; a few seconds on one CPU core."""
    import keras

    keras.utils.set_random_seed(seed)
    split = load_digits_split()
    inputs = keras.Input(shape=(NUM_FEATURES,), name=INPUT_NAME)
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(hidden)
    model = keras.Model(inputs, logits, name="digits_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(split.x_train, split.y_train, epochs=epochs, batch_size=128, verbose=0)
    return model


def factory() -> tuple[Any, dict[str, np.ndarray]]:
    """``model-package export examples.digits.keras_model:factory``: the trained model and an example batch."""
    return train(), {INPUT_NAME: load_digits_split().x_test[:4]}
