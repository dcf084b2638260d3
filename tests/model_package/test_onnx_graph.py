"""Position tables read off ONNX graphs: a sequence longer than the table is the client's 400, not a 500.

The graphs are built by hand in the shapes exporters write (``torch.onnx``'s dynamo exporter:
``Shape(start, end)``; the legacy one: ``Shape`` then ``Gather``; Keras through tf2onnx: ``Slice``)
and loaded in ONNX Runtime. Without the bound, an over-long sequence fails inside ``Gather``
("indices element out of data bounds") or, where ONNX Runtime fuses a ``Range`` feeding a ``Gather``
into a ``Slice`` (its ``GatherToSliceFusion``, onnxruntime/core/optimizer/gather_fusion.cc: "Fuse
Range->Gather to Slice"), is answered with the positions past the table silently dropped: a 200
with a wrong answer (seen here with these graphs, ONNX Runtime 1.32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from model_package.errors import InvalidInputError  # noqa: E402
from model_package.formats.onnx import _load_session  # noqa: E402
from model_package.formats.onnx_graph import position_table_bounds  # noqa: E402
from model_package.manifest import Signature, TensorSpec  # noqa: E402


def _const(name: str, value: int | list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.int64), name)


def _graph(size_nodes: list[onnx.NodeProto], size: str, *, offset: int = 0, rows: int = 8) -> onnx.GraphProto:
    """ids [batch, seq] -> the rows of a (rows, 2) table at positions offset .. seq - 1 + offset, summed."""
    table = numpy_helper.from_array(np.arange(rows * 2, dtype=np.float32).reshape(rows, 2), "table")
    nodes = [
        *size_nodes,
        helper.make_node("Range", ["zero", size, "one"], ["arange"]),
        helper.make_node("Add", ["arange", "offset"], ["positions"]),
        helper.make_node("Gather", ["table", "positions"], ["placed"], axis=0),
        helper.make_node("ReduceSum", ["placed"], ["total"], keepdims=0),
        helper.make_node("Cast", ["ids"], ["ids_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["ids_float"], ["id_sum"], keepdims=0),
        helper.make_node("Add", ["total", "id_sum"], ["output"]),
    ]
    constants = [_const("zero", 0), _const("one", 1), _const("offset", offset), _const("axis_one", 1)]
    constants += [_const("starts", [1]), _const("ends", [2])]
    return helper.make_graph(
        nodes,
        "positions",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [])],
        initializer=[table, *constants],
    )


DYNAMO = [helper.make_node("Shape", ["ids"], ["len1"], start=1, end=2), helper.make_node("Squeeze", ["len1"], ["n"])]
LEGACY = [helper.make_node("Shape", ["ids"], ["shape"]), helper.make_node("Gather", ["shape", "axis_one"], ["n"])]
SLICED = [
    helper.make_node("Shape", ["ids"], ["shape"]),
    helper.make_node("Slice", ["shape", "starts", "ends"], ["len1"]),
    helper.make_node("Squeeze", ["len1"], ["n"]),
]


@pytest.mark.parametrize("size_nodes", [DYNAMO, LEGACY, SLICED], ids=["dynamo", "legacy", "sliced"])
@pytest.mark.parametrize("offset", [0, 2])
def test_positions_indexing_a_table_bound_the_sequence(tmp_path: Path, size_nodes: list, offset: int) -> None:
    graph = _graph(size_nodes, "n", offset=offset, rows=8)
    assert position_table_bounds(graph) == {"seq": 8 - offset}

    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    signature = Signature(
        inputs=(TensorSpec(name="ids", dtype="int64", shape=(-1, -1)),),
        outputs=(TensorSpec(name="output", dtype="float32", shape=()),),
    )
    model = _load_session(path, signature, threads=1)
    longest = np.zeros((1, 8 - offset), np.int64)
    assert model.predict({"ids": longest})["output"].shape == ()
    with pytest.raises(InvalidInputError, match=rf"'ids' has size {9 - offset} on axis 1; this model takes at most"):
        model.predict({"ids": np.zeros((1, 9 - offset), np.int64)})


def test_a_range_of_another_step_or_a_size_of_a_fixed_axis_sets_no_bound() -> None:
    graph = _graph(DYNAMO, "n")
    graph.initializer.remove(next(init for init in graph.initializer if init.name == "one"))
    graph.initializer.append(_const("one", 2))  # every other position: the table may hold twice the sequence
    assert position_table_bounds(graph) == {}

    fixed = _graph(DYNAMO, "n")
    fixed.input[0].type.tensor_type.shape.dim[1].ClearField("dim_param")
    fixed.input[0].type.tensor_type.shape.dim[1].dim_value = 6
    assert position_table_bounds(fixed) == {}


def test_a_graph_the_reader_cannot_follow_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_package.formats import onnx as onnx_format

    def broken(_: object) -> dict[str, int]:
        raise KeyError("an op this reader has not seen")

    monkeypatch.setattr(onnx_format, "position_table_bounds", broken)
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(_graph(DYNAMO, "n"), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    signature = Signature(
        inputs=(TensorSpec(name="ids", dtype="int64", shape=(-1, -1)),),
        outputs=(TensorSpec(name="output", dtype="float32", shape=()),),
    )
    model = _load_session(path, signature, threads=1)
    assert not model.axis_rules.most
    assert model.predict({"ids": np.zeros((1, 4), np.int64)})["output"].shape == ()
