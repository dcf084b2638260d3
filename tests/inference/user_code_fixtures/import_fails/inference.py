"""Fails while being imported, like a script that reads configuration the image does not have."""

import os

THRESHOLD = float(os.environ.get("THRESHOLD_THAT_IS_NEVER_SET", "not-a-number"))


def predict_fn(data, model):
    return model(data) > THRESHOLD
