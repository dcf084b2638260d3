"""Text and ids pipelines served over real HTTP: raw text and JSON objects of ids in, labels and top-k out."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest

from tests.inference.server_fixtures import ServerProcess, start_server
from tests.pipeline_models import SENTIMENTS, TEXTS, package_recommender

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def recommender_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    package = package_recommender(tmp_path_factory.mktemp("recommender") / "pkg")
    process = start_server(tmp_path_factory.mktemp("rec-logs"), args=["serve", "--model-dir", str(package)])
    yield process
    assert process.terminate() == 0


def test_every_text_shape_gets_the_same_answer(text_server: ServerProcess) -> None:
    text = TEXTS[0]
    with text_server.client() as client:
        answers = [
            client.post("/invocations", content=text.encode(), headers={"Content-Type": "text/plain"}),
            client.post("/invocations", json=text),
            client.post("/invocations", json={"inputs": text}),
            client.post("/predict", json={"instances": [{"text": text}]}),
            client.post("/v1/models/tiny-text:predict", json={"instances": [text]}),
        ]
    assert all(response.status_code == 200 for response in answers), [r.text for r in answers]
    bodies = [response.json()["predictions"] for response in answers]
    assert all(body == bodies[0] for body in bodies)
    (answer,) = bodies[0]
    assert answer["labels"][0] in SENTIMENTS and len(answer["labels"]) == 1


def test_texts_of_different_lengths_are_padded_together(text_server: ServerProcess) -> None:
    with text_server.client() as client:
        alone = [client.post("/invocations", json=text).json()["predictions"][0] for text in TEXTS[:3]]
        together = client.post("/invocations", json={"inputs": TEXTS[:3]})
    assert together.status_code == 200
    for one, batched in zip(alone, together.json()["predictions"], strict=True):
        assert one["labels"] == batched["labels"]
        assert one["scores"] == pytest.approx(batched["scores"], abs=1e-6)


def test_undecodable_or_wrongly_shaped_text_is_a_400(text_server: ServerProcess) -> None:
    with text_server.client() as client:
        latin1 = client.post(
            "/invocations", content="caf\xe9".encode("latin-1"), headers={"Content-Type": "text/plain"}
        )
        number = client.post("/invocations", json={"instances": [42]})
    assert latin1.status_code == 400
    assert "not valid UTF-8" in latin1.json()["error"]
    assert number.status_code == 400
    assert "send text as a JSON string" in number.json()["error"]


def test_a_user_and_candidates_get_the_top_k_items(recommender_server: ServerProcess) -> None:
    request = {"user_id": 3, "candidates": [5, 7, 11, 13, 17, 19]}
    with recommender_server.client() as client:
        single = client.post("/invocations", json=request)
        listed = client.post(
            "/predict", json={"instances": [request, {"user_id": 4, "candidates": [1, 2, 3, 4, 5, 6]}]}
        )
    assert single.status_code == 200, single.text
    (answer,) = single.json()["predictions"]
    assert len(answer["items"]) == 3 and set(answer["items"]) <= set(request["candidates"])
    assert answer["scores"] == sorted(answer["scores"], reverse=True)
    assert listed.status_code == 200
    assert listed.json()["predictions"][0] == answer


def test_out_of_range_or_malformed_ids_are_a_400(recommender_server: ServerProcess) -> None:
    with recommender_server.client() as client:
        negative = client.post("/invocations", json={"user_id": -1, "candidates": [1, 2]})
        too_high = client.post("/predict", json={"instances": [{"user_id": 1, "candidates": [1, 50]}]})
        ragged = client.post(
            "/invocations", json=[{"user_id": 1, "candidates": [1]}, {"user_id": 2, "candidates": [1, 2]}]
        )
        missing = client.post("/invocations", json={"user": 1, "candidates": [1]})
        fractional = client.post("/invocations", json={"user_id": 1.5, "candidates": [1]})
        # Past int64, and nested deeper than a list of ids: refused as sent (were "holds
        # -9223372036854775808", a value NumPy's conversion wrapped to, and "lists of different lengths").
        huge = client.post("/invocations", json={"user_id": 3, "candidates": [1e300]})
        huge_int = client.post("/invocations", content=b'{"user_id": 1180591620717411303424, "candidates": [1]}')
        nested = client.post("/invocations", json={"user_id": 1, "candidates": [[[1]], [[2]]]})
    assert negative.status_code == 400
    assert "valid values are 0 to 9" in negative.json()["error"]
    assert too_high.status_code == 400
    assert "valid values are 0 to 49" in too_high.json()["error"]
    assert ragged.status_code == 400
    assert "same number of values" in ragged.json()["error"]
    assert missing.status_code == 400
    assert "missing ['user_id']" in missing.json()["error"]
    assert fractional.status_code == 400
    assert "ids are integers" in fractional.json()["error"]
    assert huge.status_code == 400
    assert "'candidates' holds 1e+300, outside the int64 range" in huge.json()["error"]
    assert huge_int.status_code == 400
    assert "outside the int64 range" in huge_int.json()["error"]  # JSON's reader made a float of it
    assert nested.status_code == 400
    assert "'candidates' nests lists deeper than its input takes (lists 1 deep per instance)" in nested.json()["error"]


def test_oip_requests_of_texts_are_held_to_the_protocol_like_tensor_requests(text_server: ServerProcess) -> None:
    """The pipeline's V2 route ignored what the tensor route refuses (a hostile-client review): a shape
    of [7, 7] for one text, an id of 5 (replaced without a word), an output it does not have, and a
    binary_data_output of "maybe" all answered 200; binary_data_output true was answered in JSON."""

    def infer(**fields: object) -> httpx.Response:
        tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["great film"]}
        request = {"inputs": [{**tensor, **fields.pop("tensor", {})}], **fields}  # type: ignore[dict-item]
        with text_server.client() as client:
            return client.post("/v2/models/tiny-text/infer", json=request)

    for fields, message in (
        ({"tensor": {"shape": [7, 7]}}, "has 1 values in 'data' but its shape [7, 7] needs 49"),
        ({"tensor": {"shape": "1"}}, "has shape '1'"),
        ({"id": 5}, "'id' must be a string"),
        ({"outputs": [{"name": "nope"}]}, "outputs[0] requests 'nope'; this model's outputs are ['labels', 'scores']"),
        ({"parameters": {"binary_data_output": "maybe"}}, "binary_data_output 'maybe'; expected true or false"),
        ({"parameters": {"binary_data_output": None}}, "binary_data_output null; expected"),  # as JSON spells it
    ):
        response = infer(**fields)
        assert response.status_code == 400, (fields, response.text)
        assert message in response.json()["error"], (fields, response.text)

    scores_only = infer(id="q", outputs=[{"name": "scores"}])
    assert scores_only.status_code == 200, scores_only.text
    assert [tensor["name"] for tensor in scores_only.json()["outputs"]] == ["scores"]
    assert scores_only.json()["id"] == "q"
    both = infer().json()["outputs"]
    binary = infer(parameters={"binary_data_output": True})
    assert binary.status_code == 200, binary.text
    length = int(binary.headers["inference-header-content-length"])
    header = orjson.loads(binary.content[:length])
    assert [tensor["parameters"]["binary_data_size"] > 0 for tensor in header["outputs"]] == [True, True]
    scores = np.frombuffer(binary.content[length:][-header["outputs"][1]["parameters"]["binary_data_size"] :], "<f4")
    np.testing.assert_allclose(scores, both[1]["data"], rtol=1e-6)


def test_oip_bytes_tensor_of_texts_gets_the_same_labels(text_server: ServerProcess) -> None:
    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[:2]}]}
    with text_server.client() as client:
        response = client.post("/v2/models/tiny-text/infer", json=request)
        plain = client.post("/invocations", json={"inputs": TEXTS[:2]})
    assert response.status_code == 200, response.text
    outputs = {tensor["name"]: tensor for tensor in response.json()["outputs"]}
    assert outputs["labels"]["shape"] == [2, 1]
    assert outputs["labels"]["data"] == [answer["labels"][0] for answer in plain.json()["predictions"]]
