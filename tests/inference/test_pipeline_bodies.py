"""Large JSON bodies for pipelines are refused before parsing when they hold more arrays and objects
than valid instances could.

Parsing costs per array and holds the interpreter throughout: 4 MB of ``[[],[],...]`` sent to a text
model, or 700,000 candidates each nested ``[[[1]]]``, kept ``/ping`` waiting 1.3-2.4 s before the
instances were refused (a hostile-client review). Texts may hold brackets: those bodies still pass.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from inference.codecs.limits import count_containers
from inference.errors import BadRequestError
from inference.pipeline import requests
from inference.pipeline.oip import raw_oip_items


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any parse of the body fails the test: the refusal must come first."""

    def parse(_: object) -> Any:
        raise AssertionError("the body was parsed before it was refused")

    monkeypatch.setattr(requests.orjson, "loads", parse)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("text", b"[" + b",".join([b"[]"] * 1_300_000) + b"]"),
        ("ids", b'{"user_id": 1, "candidates": [' + b",".join([b"[[[1]]]"] * 500_000) + b"]}"),
        ("image", b'{"instances": [' + b",".join([b"{}"] * 500_000) + b"]}"),
    ],
    ids=["empty-lists-to-text", "nested-candidates", "empty-objects-to-image"],
)
def test_a_body_of_more_containers_than_instances_could_hold_is_refused_unparsed(
    no_parsing: None, kind: str, body: bytes
) -> None:
    with pytest.raises(BadRequestError, match=r"holds more arrays and objects than [\d,]+ bytes of \w+ instances"):
        requests.json_items(body, kind)


def test_the_open_inference_protocol_route_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inference.pipeline.oip.orjson.loads", lambda _: pytest.fail("parsed before refused"))
    # Denser than a BYTES tensor nested by its shape can be (a list per 3 bytes: [[""]],), and empty lists.
    for data, refusal in (
        (b"[" + b",".join([b"[[[]]]"] * 300_000) + b"]", "holds more arrays and objects"),
        (b"[" + b",".join([b"[]"] * 500_000) + b"]", "holds empty lists"),
    ):
        body = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ' + data + b"}]}"
        with pytest.raises(BadRequestError, match=refusal):
            raw_oip_items(body, "text")


def test_texts_full_of_brackets_still_pass() -> None:
    texts = ["[[{{" * 50_000, "a ] b", "{}" * 10_000]
    assert requests.json_items(orjson.dumps({"instances": texts}), "text") == texts


def test_ids_nested_as_deep_as_their_input_takes_still_pass() -> None:
    """An input of rank 4 takes instances of lists nested 3 deep: ``[[[1]],[[2]],...]`` holds a list per
    3 bytes, valid there; for a list of ids (rank 2) the same body is refused."""
    candidates = [[[index % 7]] for index in range(40_000)]
    body = orjson.dumps({"user_id": 1, "candidates": candidates})
    assert requests.json_items(body, "ids", id_depth=3) == [{"user_id": 1, "candidates": candidates}]
    with pytest.raises(BadRequestError, match="holds more arrays and objects"):
        requests.json_items(body, "ids", id_depth=1)


def test_oip_requests_of_the_models_own_tensors_are_left_to_the_tensor_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline package also takes the model's tensors on V2; nested as OIP allows (a list per 8 bytes
    for ids of shape [n, 3]) they were refused as too many arrays for text instances."""
    rows = [[2, 5, 3]] * 5_000
    tensor = {"name": "input_ids", "shape": [len(rows), 3], "datatype": "INT64", "data": rows}
    body = orjson.dumps({"inputs": [tensor]})
    monkeypatch.setattr("inference.pipeline.oip.orjson.loads", lambda _: pytest.fail("parsed twice"))
    assert raw_oip_items(body, "text") is None


def test_a_bytes_tensor_nested_as_its_shape_is_read() -> None:
    texts = [f"text {index}" for index in range(12_000)]
    body = orjson.dumps(
        {"inputs": [{"name": "text", "shape": [len(texts), 1], "datatype": "BYTES", "data": [[t] for t in texts]}]}
    )
    raw = raw_oip_items(body, "text")
    assert raw is not None and raw.items == texts


def test_brackets_inside_strings_are_told_apart_without_a_pass_over_each_string() -> None:
    """6 MB of ``"[",`` took a regular expression 0.4 s holding the interpreter to tell its brackets
    were in strings; escaped quotes and backslashes must not flip what is inside a string."""
    assert count_containers(b'["[", "{", "a\\\\"] [', outside_strings=True) == 2
    assert count_containers(b'["\\\\\\"[{", {}]', outside_strings=True) == 2
    texts = ["["] * 1_000_000
    assert requests.json_items(orjson.dumps(texts), "text") == texts
