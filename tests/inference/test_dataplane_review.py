"""Review of the one data plane: behaviour that changed by accident when every predict route moved onto it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from inference.service import ModelService
from tests.inference.in_process import mlp_with_code, run


@pytest.fixture(scope="module")
def dict_head_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Float32 ``scores`` (4 per row) and an int64 ``best`` class (1 per row)."""
    from model_package.export import export_model
    from tests.model_package import torch_models

    out = tmp_path_factory.mktemp("packages") / "head"
    export_model(torch_models.make_dict_head(), torch_models.dict_head_inputs(4), out, name="head", version="1")
    return out


def test_the_early_413_does_not_refuse_an_int64_answer_that_json_writes_in_two_bytes_a_row(
    dict_head_package: Path,
) -> None:
    """check_before_computing took 8 bytes (int64's raw size) as a lower bound of ``best`` in any encoding.

    JSON writes a class index in two bytes ("3,"), so an OIP request asking only for ``best`` whose
    answer fits the limit was refused with 413 before the model ran.
    """
    rows = 400  # 400 x 8 raw bytes = 3,200 > 3,100; the JSON answer is about 900 bytes

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        request = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 5], "data": [0.5] * (rows * 5)}],
            "outputs": [{"name": "best"}],
        }
        response = await client.post("/v2/models/head/infer", json=request)
        assert response.status_code == 200, response.text
        assert len(response.content) < 1000
        (output,) = response.json()["outputs"]
        assert output["name"] == "best" and output["shape"] == [rows]

    run(dict_head_package, scenario, env={"MODEL_SERVER_MAX_RESPONSE_BYTES": "3100"})


def test_the_size_estimate_does_not_multiply_the_envelope_by_the_rows(dict_head_package: Path) -> None:
    """encode_within extrapolated a 16-row sample's whole body, envelope included, by rows / 16.

    The Open Inference Protocol's envelope (model name, version, id, the output's name, datatype
    and shape) is about 150 bytes, written once: 400 rows of one int64 each were estimated at about
    4,550 bytes and refused with 413 under a 2,000-byte limit, for an answer of about 950 bytes.
    """
    rows = 400

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        request = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 5], "data": [0.5] * (rows * 5)}],
            "outputs": [{"name": "best"}],
        }
        response = await client.post("/v2/models/head/infer", json=request)
        assert response.status_code == 200, response.text
        assert len(response.content) < 1000

    run(dict_head_package, scenario, env={"MODEL_SERVER_MAX_RESPONSE_BYTES": "2000"})


OIP_HEADER_HOOK = """
def predict_fn(data, model, context):
    context.set_response_header(0, "Inference-Header-Content-Length", "7")
    context.set_response_header(0, "X-Model-Trace", "kept")
    return model.predict(data)
"""


def test_user_code_cannot_set_the_oip_binary_framing_header(tmp_path: Path) -> None:
    """Hook headers reach the OIP route since the data plane; the one that frames its body must not.

    ``Inference-Header-Content-Length`` tells a Triton client where the JSON ends and binary
    tensors begin. A predict_fn that set it made a plain JSON answer announce 7 bytes of JSON
    followed by binary data, and a binary answer carry two conflicting values.
    """
    package = mlp_with_code(tmp_path, OIP_HEADER_HOOK)
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 64], "data": [0.0] * 128}

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        plain = await client.post("/v2/models/mlp/infer", json={"inputs": [tensor]})
        assert plain.status_code == 200, plain.text
        assert plain.headers["x-model-trace"] == "kept"
        assert "inference-header-content-length" not in plain.headers, plain.headers
        binary_request = {"inputs": [tensor], "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}
        binary = await client.post("/v2/models/mlp/infer", json=binary_request)
        assert binary.status_code == 200, binary.text
        values = binary.headers.get_list("inference-header-content-length")
        assert len(values) == 1 and values[0] != "7", values

    run(package, scenario)


@pytest.fixture(scope="module")
def image_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.pipeline_models import package_image_classifier

    return package_image_classifier(tmp_path_factory.mktemp("served") / "pkg")


def test_an_oip_pipeline_request_refuses_an_accept_without_json_before_the_pipeline_runs(image_package: Path) -> None:
    """The V2 route is JSON-only for a pipeline's answer: 406 before preprocessing, like /invocations.

    A BYTES tensor of images with ``Accept: application/octet-stream`` ran the whole pipeline and
    answered 200 in application/json, which the client had said it cannot read.
    """
    import base64

    from tests.pipeline_models import sample_images

    data = [base64.b64encode(sample_images()[0].read_bytes()).decode()]
    request = {"inputs": [{"name": "photo", "datatype": "BYTES", "shape": [1], "data": data}]}
    calls: list[int] = []

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        pipeline = service.pipeline
        assert pipeline is not None
        answer = pipeline.answer

        async def counted(*args: object, **kwargs: object) -> object:
            calls.append(1)
            return await answer(*args, **kwargs)

        pipeline.answer = counted  # type: ignore[method-assign]
        response = await client.post(
            "/v2/models/tiny-image/infer", json=request, headers={"accept": "application/octet-stream"}
        )
        assert response.status_code == 406, response.text
        assert "application/json" in response.json()["error"]
        assert calls == [], "refused before the pipeline ran"

    run(image_package, scenario)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/invocations", [0.5] * 64),
        ("/predict", {"instances": [0.5] * 64}),
        ("/v1/models/mlp:predict", {"instances": [0.5] * 64}),
    ],
)
def test_the_early_413_leaves_an_input_of_the_wrong_rank_to_validation(
    torch_package: Path, path: str, body: object
) -> None:
    """A single instance sent flat (64 numbers, not [[64 numbers]]) decodes to shape (64,): a 400.

    check_answer_fits ran on the decoded, not yet validated, inputs and took shape[0] = 64 as the
    row count: under a 1,000-byte limit the client got 413 "at least 1280 bytes ... send at most 45
    rows per request (this one held 64)" for a one-instance request, instead of validation's 400
    naming the shape it must send.
    """

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.post(path, json=body)
        assert response.status_code == 400, response.text
        assert "has shape [64]" in response.json()["error"]

    run(torch_package, scenario, env={"MODEL_SERVER_MAX_RESPONSE_BYTES": "1000"})


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/invocations", [[]] * 200),
        ("/predict", {"instances": [[0.5, 0.5]] * 200}),
        ("/v1/models/mlp:predict", {"instances": [[]] * 200}),
    ],
)
def test_the_early_413_leaves_rows_of_the_wrong_width_to_validation(
    torch_package: Path, path: str, body: object
) -> None:
    """Many rows of the wrong width (empty, or 2 values for a 64-value input) are a 400 naming the width.

    The early response-size check counted them as rows to answer: the client was told its batch
    was too large ("send at most 45 rows") and, when it sent fewer, that its rows were wrong.
    """

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.post(path, json=body)
        assert response.status_code == 400, response.text
        assert "on axis 1; expected 64" in response.json()["error"]

    run(torch_package, scenario, env={"MODEL_SERVER_MAX_RESPONSE_BYTES": "1000"})


def test_an_oip_pipeline_takes_images_as_binary_tensor_data(image_package: Path) -> None:
    """Triton's clients send BYTES inputs as binary data after the JSON (4-byte length, then the bytes)."""
    import struct

    import orjson

    from tests.pipeline_models import sample_images

    image = sample_images()[0].read_bytes()
    binary = struct.pack("<I", len(image)) + image
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "photo",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(binary)},
                }
            ]
        }
    )

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.post(
            "/v2/models/tiny-image/infer",
            content=header + binary,
            headers={"inference-header-content-length": str(len(header)), "content-type": "application/octet-stream"},
        )
        assert response.status_code == 200, response.text
        outputs = {tensor["name"]: tensor for tensor in response.json()["outputs"]}
        assert outputs["labels"]["shape"] == [1, 2]

    run(image_package, scenario)


REQUEST_ID_HOOK = """
def predict_fn(data, model, context):
    context.set_response_header(0, "X-Request-Id", "from-the-hook")
    return model.predict(data)
"""


def test_user_code_cannot_replace_the_request_id_on_any_route(tmp_path: Path) -> None:
    """The server's X-Request-Id keys its logs (a 5xx body holds only it); a hook's must not join it.

    A predict_fn that set X-Request-Id sent two X-Request-Id headers (its own and the server's) on
    every route, the hook's first, so a client reading one header got an id the server never logged.
    """
    from tests.inference.test_dataplane import ROUTES

    package = mlp_with_code(tmp_path, REQUEST_ID_HOOK)

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        for route, (path, body) in sorted(ROUTES.items()):
            response = await client.post(path, headers={"x-request-id": "client-id-1"}, **body(2))
            assert response.status_code == 200, (route, response.text)
            assert response.headers.get_list("x-request-id") == ["client-id-1"], route

    run(package, scenario)
