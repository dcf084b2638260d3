"""JSON Lines' fast paths give exactly the bytes and errors of the per-line ones they replace.

Local batch scoring decodes records it has already split into lines, and encodes answers from one
``orjson`` call over the whole output array; a client must not be able to tell either apart.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from inference.codecs import decode_json_lines, decode_request
from inference.codecs.jsonlines_codec import JsonLinesCodec
from inference.errors import BadRequestError
from model_package.manifest import Signature, TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 3)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 3)),),
)


def per_row(rows: np.ndarray) -> bytes:
    """What the encoder wrote before: one ``orjson.dumps`` per row."""
    return b"".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for row in rows)


@pytest.mark.parametrize(
    "rows",
    [
        np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32),
        np.arange(5, dtype=np.int64),
        np.random.default_rng(1).standard_normal((2, 3, 4)),
        np.random.default_rng(2).standard_normal((2, 2, 2, 2)).astype(np.float16),
        np.array([[True, False], [False, True]]),
        np.array([[np.nan, 1e-30, -1e30], [np.inf, 0.0, -0.0]]),
        np.zeros((3, 0), dtype=np.float32),
        np.zeros((1, 1), dtype=np.uint8),
    ],
    ids=["2d-float32", "1d-int", "3d-float64", "4d-float16", "bool", "non-finite", "no-columns", "one-cell"],
)
def test_whole_array_encoding_writes_the_bytes_of_one_dumps_per_row(rows: np.ndarray) -> None:
    signature = Signature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=(-1,)),),
        outputs=(TensorSpec(name="y", dtype=str(rows.dtype), shape=(-1,)),),
    )
    assert JsonLinesCodec().encode({"y": rows}, signature) == per_row(rows)


@pytest.mark.parametrize(
    "records",
    [
        [b"[1, 2, 3]", b"[4.5, 5, 6]", b"[7, 8, 9]"],
        [b"[1, 2, 3]", b"[NaN, 2, 3]"],  # NaN: read by the fallback parser, then refused as non-finite
        [b"[1, 2, 3]", b"[1, 2"],  # invalid JSON on line 2
        [b"[1, 2, 3]", b"[1, 2]"],  # wrong width on line 2
        [b"[1, 2, 3]", b'[1, "two", 3]'],  # a string on line 2
        [b"\xef\xbb\xbf[1, 2, 3]"],  # a byte-order mark
    ],
    ids=["valid", "nan", "invalid-json", "wrong-width", "string", "bom"],
)
def test_decoding_split_records_matches_decoding_the_joined_body(records: list[bytes]) -> None:
    def outcome(decode: object) -> object:
        try:
            tensors = decode()  # type: ignore[operator]
        except BadRequestError as exc:
            return ("error", exc.status, str(exc))
        return ("ok", {name: (array.dtype, array.tolist()) for name, array in tensors.items()})

    joined = outcome(lambda: decode_request(b"\n".join(records), "application/jsonlines", SIGNATURE))
    split = outcome(lambda: decode_json_lines(records, SIGNATURE))
    assert split == joined
