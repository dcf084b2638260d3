"""Only transform_fn, on the package's own model (no model_fn)."""

import json

import numpy as np


def transform_fn(model, request_body, content_type, accept):
    rows = np.asarray(json.loads(request_body), dtype=np.float32)
    outputs = model.predict({"x": rows})
    # TorchServe-style handlers return one response per request of the batch.
    return [json.dumps({"best": outputs["best"].tolist(), "content_type": content_type})]
