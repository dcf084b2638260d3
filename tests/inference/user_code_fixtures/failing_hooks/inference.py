"""Hooks that fail or return unusual values, to check how failures reach the client."""

import json

import numpy as np

from inference.errors import BadRequestError


def input_fn(request_body, request_content_type):
    payload = json.loads(request_body)  # malformed JSON raises ValueError: a client error by convention
    if "rows" not in payload:
        raise BadRequestError("the body needs a 'rows' field")  # the script answers 400 itself
    return np.asarray(payload["rows"], dtype=np.float32)


def predict_fn(data, model):
    if data.shape[0] > 2:
        raise RuntimeError("this model takes at most 2 rows\nper request")
    return model.predict({"x": data})


def output_fn(prediction, accept):
    if accept == "application/x-nothing":
        return None
    return prediction["best"].tolist()  # a plain JSON value, not yet serialised
