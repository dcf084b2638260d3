"""A SageMaker PyTorch-toolkit script: all four hooks, none taking the context argument."""

import json
import os

import torch
from preprocessing import parse_csv, parse_json


def model_fn(model_dir):
    # Load the exported program directly, as scripts written for the PyTorch container do.
    program = torch.export.load(os.path.join(model_dir, "model.pt2"))
    return program.module()


def input_fn(request_body, request_content_type):
    # The toolkit hands JSON and CSV bodies over as str: parse_csv's io.StringIO relies on that.
    if request_content_type == "application/json":
        return torch.from_numpy(parse_json(request_body))
    if request_content_type == "text/csv":
        return torch.from_numpy(parse_csv(request_body))
    raise ValueError(f"unsupported content type {request_content_type!r}")


def predict_fn(input_data, model):
    with torch.no_grad():
        return model(input_data)


def output_fn(prediction, accept):
    if accept == "text/csv":
        return "".join(f"{best}\n" for best in prediction["best"].tolist()), "text/csv"
    body = {"scores": prediction["scores"].numpy().tolist(), "best": prediction["best"].tolist()}
    return json.dumps(body), "application/json"
