"""The container under the managed batch engines: the request shapes SageMaker Batch Transform and
Vertex AI batch prediction document, replayed against the real app, one answer per record, in order,
and a failing record named by its position.

Sources of the shapes replayed here:

- SageMaker, "Use batch transform to run inference" (https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html):
  with ``SplitType=Line`` and ``BatchStrategy=MultiRecord`` a request holds as many whole records
  (lines) as fit in ``MaxPayloadInMB``; with ``AssembleWith=Line`` the job joins the responses line
  by line, so each response must hold one line per record.
- CreateTransformJob / TransformInput / TransformOutput API reference
  (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformInput.html: SplitType
  None | Line | RecordIO, "None" sends each input object whole;
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html: BatchStrategy,
  MaxPayloadInMB, MaxConcurrentTransforms; .../API_TransformOutput.html: Accept, AssembleWith).
- "Use your own inference code with batch transform"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-batch-code.html): the job reads
  GET /execution-parameters for MaxConcurrentTransforms, BatchStrategy and MaxPayloadInMB, and a
  non-2xx answer to /invocations fails the records of that request.
- Vertex AI, "Get batch predictions from a custom trained model"
  (https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions, "Input data
  requirements"): JSON Lines -> ``{"instances": [<each line>]}``; CSV (header row first, unquoted
  values read as floats) -> each row a list; TFRecord and file list -> each instance
  ``{"b64": <base64 of the record or file>}``; BigQuery -> each row an object keyed by column
  name, or with ``instanceConfig.instanceType=array`` and ``includedFields`` a list in that order.
  The container answers ``{"predictions": [...]}``, one per instance, in order.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from inference.service import ModelService
from tests.inference.test_app_routing import run
from tests.model_package import torch_models

pytestmark = pytest.mark.torch

ROWS = torch_models.mlp_inputs(7, seed=11)["x"]


def csv_lines(rows: np.ndarray) -> bytes:
    return b"".join(",".join(repr(float(v)) for v in row).encode() + b"\n" for row in rows)


def jsonl_lines(rows: np.ndarray) -> bytes:
    return b"".join(orjson.dumps(row.tolist()) + b"\n" for row in rows)


async def one_by_one(client: httpx.AsyncClient, rows: np.ndarray) -> np.ndarray:
    """Each row's prediction from a request of its own (SingleRecord): what a batch must reproduce."""
    answers = []
    for row in rows:
        response = await client.post("/invocations", json={"instances": [row.tolist()]})
        assert response.status_code == 200, response.text
        answers.append(response.json()["predictions"][0])
    return np.array(answers)


def test_multi_record_csv_and_json_lines_get_one_line_per_record_in_order(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        params = (await client.get("/execution-parameters")).json()
        assert params["BatchStrategy"] == "MULTI_RECORD" and params["MaxPayloadInMB"] >= 1
        expected = await one_by_one(client, ROWS)

        for content_type, body in (("text/csv", csv_lines(ROWS)), ("application/jsonlines", jsonl_lines(ROWS))):
            # TransformOutput.Accept set to the same type, as batch jobs over CSV/JSON Lines are configured.
            for trailing in (b"", b"\n"):  # the last record of a mini-batch may or may not end in a newline
                response = await client.post(
                    "/invocations",
                    content=body.rstrip(b"\n") + trailing,
                    headers={"Content-Type": content_type, "Accept": content_type},
                )
                assert response.status_code == 200, response.text
                lines = response.content.splitlines()
                assert len(lines) == len(ROWS), (content_type, response.content[:200])
                if content_type == "text/csv":
                    got = np.array([[float(cell) for cell in line.split(b",")] for line in lines])
                else:
                    got = np.array([orjson.loads(line) for line in lines])
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    run(torch_package, scenario)


def test_without_an_accept_header_a_line_request_is_answered_line_for_line(torch_package: Path) -> None:
    """A transform job whose TransformOutput.Accept is unset sends no Accept: AssembleWith=Line still
    needs one output line per input line, so CSV and JSON Lines are answered in kind."""

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        for content_type, body in (("text/csv", csv_lines(ROWS)), ("application/jsonlines", jsonl_lines(ROWS))):
            response = await client.post("/invocations", content=body, headers={"Content-Type": content_type})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(content_type)
            assert len(response.content.splitlines()) == len(ROWS)

    run(torch_package, scenario)


def test_split_type_none_sends_a_whole_file_including_windows_line_ends(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        body = csv_lines(ROWS).replace(b"\n", b"\r\n")
        response = await client.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
        assert response.status_code == 200, response.text
        assert len(response.content.splitlines()) == len(ROWS)

    run(torch_package, scenario)


@pytest.mark.parametrize("content_type", ["application/x-recordio-protobuf", "application/x-recordio"])
def test_recordio_is_refused_naming_what_is_accepted(torch_package: Path, content_type: str) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.post(
            "/invocations", content=b"\x0a\xd7\x3e\xce", headers={"Content-Type": content_type}
        )
        assert response.status_code == 415
        error = response.json()["error"]
        assert content_type in error and "text/csv" in error and "application/jsonlines" in error

    run(torch_package, scenario)


@pytest.mark.parametrize(
    ("content_type", "bad_line"),
    [("text/csv", b"1.0,2.0"), ("application/jsonlines", b"[1.0, 2.0]"), ("application/jsonlines", b"{not json")],
    ids=["csv-short-row", "jsonl-short-row", "jsonl-not-json"],
)
def test_a_failing_record_fails_its_request_naming_its_line_in_body_and_log(
    torch_package: Path, caplog: pytest.LogCaptureFixture, content_type: str, bad_line: bytes
) -> None:
    lines = (csv_lines if content_type == "text/csv" else jsonl_lines)(ROWS).splitlines()
    lines[3] = bad_line  # the 4th record of the mini-batch: line 4

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        with caplog.at_level(logging.INFO, logger="inference"):
            response = await client.post(
                "/invocations", content=b"\n".join(lines), headers={"Content-Type": content_type}
            )
        assert response.status_code == 400
        assert "line 4" in response.json()["error"]
        logged = [record for record in caplog.records if getattr(record, "status", None) == 400]
        assert logged and "line 4" in logged[-1].getMessage() + str(getattr(logged[-1], "error", ""))

    run(torch_package, scenario)


# --------------------------------------------------------------------------- Vertex AI


def test_vertex_json_lines_and_csv_instances_get_one_prediction_each(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        expected = await one_by_one(client, ROWS)
        # JSON Lines of arrays, and CSV rows (unquoted values are floats): both become lists.
        for instances in ([row.tolist() for row in ROWS], [[float(v) for v in row] for row in ROWS]):
            response = await client.post("/predict", json={"instances": instances})
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(np.array(response.json()["predictions"]), expected, rtol=1e-5, atol=1e-6)
        # JSON Lines of objects keyed by the input's name, with parameters alongside.
        response = await client.post(
            "/predict", json={"instances": [{"x": row.tolist()} for row in ROWS], "parameters": {}}
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == len(ROWS)

    run(torch_package, scenario)


@pytest.fixture(scope="module")
def two_input_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_package.export import export_model

    out = tmp_path_factory.mktemp("packages") / "two"
    export_model(
        torch_models.make_two_in_two_out(), torch_models.two_in_two_out_inputs(4), out, name="two", version="1"
    )
    return out


def test_vertex_bigquery_rows_as_objects_map_columns_to_inputs(two_input_package: Path) -> None:
    inputs = torch_models.two_in_two_out_inputs(3, seed=2)
    # instanceType=object (BigQuery's default): each row an object keyed by column name.
    rows = [{name: array[i].tolist() for name, array in inputs.items()} for i in range(3)]

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        response = await client.post("/predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == 3 and set(predictions[0]) == {spec.name for spec in service.signature.outputs}
        # Each row answered alone gives the same: the rows were not mixed up.
        for row, prediction in zip(rows, predictions, strict=True):
            alone = (await client.post("/predict", json={"instances": [row]})).json()["predictions"][0]
            for name, value in prediction.items():
                np.testing.assert_allclose(alone[name], value, rtol=1e-5, atol=1e-6)

    run(two_input_package, scenario)


def test_vertex_failing_instance_is_named_by_index(torch_package: Path) -> None:
    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        instances = [row.tolist() for row in ROWS]
        instances[2] = [1.0, 2.0]
        response = await client.post("/predict", json={"instances": instances})
        assert response.status_code == 400
        assert "row 2 " in response.json()["error"]  # the 0-based index into "instances"

    run(torch_package, scenario)


def test_vertex_file_list_instances_reach_an_image_pipeline(tmp_path: Path) -> None:
    from tests.pipeline_models import encode_image, package_image_classifier, sample_images

    package = package_image_classifier(tmp_path / "pkg")
    files = [path.read_bytes() for path in sample_images()[:2]]
    files.append(encode_image(np.zeros((8, 8, 3), dtype=np.uint8), "PNG"))

    async def scenario(client: httpx.AsyncClient, service: ModelService) -> None:
        instances = [{"b64": base64.b64encode(data).decode()} for data in files]
        response = await client.post("/predict", json={"instances": instances})
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == len(files)
        instances[1] = {"b64": base64.b64encode(b"not an image").decode()}
        response = await client.post("/predict", json={"instances": instances})
        assert response.status_code == 400 and "image 1 " in response.json()["error"]

    run(package, scenario)


def test_a_configured_default_accept_still_wins_over_answering_in_kind() -> None:
    from inference.protocols.sagemaker import default_response_type

    assert default_response_type("text/csv") == "text/csv"
    assert default_response_type("application/jsonlines; charset=utf-8") == "application/jsonlines"
    assert default_response_type("application/x-npy") == "application/json"
    assert default_response_type("text/csv", "application/jsonlines") == "application/jsonlines"
