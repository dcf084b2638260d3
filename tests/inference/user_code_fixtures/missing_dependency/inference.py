"""Imports a library the serving image does not have."""

import definitely_not_installed_dependency  # noqa: F401


def predict_fn(data, model):
    return model(data)
