"""The data set: scikit-learn's bundled digits (1,797 images of 8x8 pixels), no download needed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The one model input: 64 pixel intensities scaled to [0, 1].
INPUT_NAME = "pixels"
NUM_FEATURES = 64
NUM_CLASSES = 10


@dataclass(frozen=True)
class Split:
    """Train and test arrays (float32 features, int64 labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """A deterministic shuffled train/test split of the digits data set."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return Split(x[train], y[train], x[test], y[test])


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max matches the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))
