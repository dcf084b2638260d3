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
    data = b"[" + b",".join([b"[]"] * 500_000) + b"]"
    body = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ' + data + b"}]}"
    with pytest.raises(BadRequestError, match="holds more arrays and objects"):
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
