"""Hooks that take the optional trailing ``context`` argument, and one that does not."""

import json
import os

import torch

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


def model_fn(model_dir, context):
    program = torch.export.load(os.path.join(context.system_properties["model_dir"], "model.pt2"))
    return {"module": program.module(), "loaded_from": model_dir}


def _attributes(context):
    raw = context.get_request_header(0, CUSTOM_ATTRIBUTES) or ""
    return dict(item.strip().split("=", 1) for item in raw.split(";") if "=" in item)


def input_fn(request_body, request_content_type, context):
    rows = torch.tensor(json.loads(request_body), dtype=torch.float32)
    return rows, int(_attributes(context).get("top_k", "1"))


def predict_fn(data, model):
    rows, top_k = data
    with torch.no_grad():
        scores = model["module"](rows)["scores"]
    return torch.topk(scores, k=top_k, dim=-1).indices


def output_fn(prediction, accept, context=None):
    # A defaulted parameter still counts: the toolkit passes the context to it.
    trace = _attributes(context).get("trace", "none")
    model_dir = os.path.basename(context.system_properties["model_dir"])
    context.set_response_header(0, CUSTOM_ATTRIBUTES, f"trace={trace};model={model_dir}")
    return json.dumps({"top_k": prediction.tolist(), "raw": context.custom_attributes}), accept
