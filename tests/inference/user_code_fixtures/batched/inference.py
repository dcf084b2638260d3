"""predict_batch_fn: the inputs of concurrent requests in one model call, one prediction back for each."""

import json

import numpy as np

from inference.user_code import BadInput

POISON = 666.0  # a first feature the "model" cannot take: stands in for a model that crashes on one input


def input_fn(request_body, request_content_type):
    payload = json.loads(request_body)
    if "instances" not in payload:
        raise BadInput("the body needs an 'instances' field")
    return np.asarray(payload["instances"], dtype=np.float32)


def predict_batch_fn(inputs, model, contexts):
    # The Open Inference Protocol skips input_fn: its requests arrive as the signature's named arrays.
    inputs = [item["x"] if isinstance(item, dict) else item for item in inputs]
    merged = np.concatenate(inputs)
    if (merged[:, 0] == POISON).any():
        raise RuntimeError("the model cannot take this row")
    outputs = model.predict({"x": merged})
    predictions = []
    offset = 0
    for rows, context in zip(inputs, contexts, strict=True):
        context.response_headers["x-batch-requests"] = str(len(inputs))
        predictions.append({name: value[offset : offset + len(rows)] for name, value in outputs.items()})
        offset += len(rows)
    return predictions


def output_fn(prediction, accept):
    return {"scores": prediction["scores"].tolist(), "best": prediction["best"].tolist()}
