"""What an ONNX graph says about the inputs it can take, beyond their declared shapes.

The ONNX counterpart of :mod:`model_package.formats.torch_graph`, read from the graph's nodes so that
requests the graph cannot run are refused before ONNX Runtime fails on them mid-graph (a 500):

- **Embedding ids** (:func:`gathered_index_ranges`): an integer input that indexes a weight table
  with ``Gather`` takes ``0..rows-1``; recorded in the signature when the package is written.
- **Position tables** (:func:`position_table_bounds`): a sequence axis whose positions
  (``Range(0, Shape(x)[1], 1)``, what ``torch.arange(x.shape[1])`` exports to) index a weight table
  takes at most that table's rows. ONNX Runtime fails such a request inside ``Gather`` ("indices
  element out of data bounds"). Read when the package loads.

Only the main graph is followed, through ops that keep values (casts, reshapes) and the addition of
a constant; anything else ends the trail (no bound is better than a wrong one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

#: Ops that pass index values through unchanged on their first input.
_VALUE_PRESERVING_OPS = frozenset({"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten"})


def gathered_index_ranges(graph: Any) -> dict[str, tuple[int, int]]:
    """Integer graph inputs used as ``Gather`` indices into a weight table, with the table's valid row range.

    ONNX ``Gather`` accepts negative indices and counts them from the end
    (https://onnx.ai/onnx/operators/onnx__Gather.html: "negative value means
    counting dimensions from the back"), where PyTorch's ``nn.Embedding``, which
    exports to it, refuses them. Recording ``[0, rows - 1]`` in the signature lets
    every request with an id outside the table be refused (a 400) instead of
    silently answering for another row.
    """
    tables = {init.name: list(init.dims) for init in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    ranges: dict[str, tuple[int, int]] = {}
    for value in graph.input:
        if value.name in tables or not value.type.HasField("tensor_type"):
            continue
        high: int | None = None
        frontier, seen = [value.name], {value.name}
        while frontier:
            name = frontier.pop()
            for node in consumers.get(name, []):
                if node.op_type == "Gather" and list(node.input[1:2]) == [name] and node.input[0] in tables:
                    rows = _gathered_rows(node, tables[node.input[0]])
                    if rows is not None:
                        high = rows - 1 if high is None else min(high, rows - 1)
                elif node.op_type in _VALUE_PRESERVING_OPS and list(node.input[:1]) == [name]:
                    frontier.extend(out for out in node.output if out not in seen)
                    seen.update(node.output)
        if high is not None and high >= 0:
            ranges[value.name] = (0, high)
    return ranges


def position_table_bounds(graph: Any) -> dict[str, int]:
    """Varying sizes (by ``dim_param``) whose positions index a weight table: each at most its rows.

    Follows a graph input's size (``Shape`` with ``start``/``end``, or ``Shape`` then ``Gather`` or
    ``Slice`` of one element) into ``Range(c, size + k, 1)`` (positions up to ``size + k - 1``), then
    the positions, plus any constant added, into ``Gather`` on a weight table.
    """
    tables = {init.name: list(init.dims) for init in graph.initializer}
    constants = dict(_constants(graph))
    dim_params = {
        value.name: [dim.dim_param or None for dim in value.type.tensor_type.shape.dim]
        for value in graph.input
        if value.type.HasField("tensor_type") and value.name not in tables
    }
    shapes: dict[str, tuple[str, int]] = {}  # value -> (input, first axis): a vector of the input's sizes
    sizes: dict[str, tuple[str, int]] = {}  # value -> (dim_param, offset): one size, plus a constant
    positions: dict[str, tuple[str, int]] = {}  # value -> (dim_param n, offset k): positions up to n - 1 + k
    bounds: dict[str, int] = {}
    for node in graph.node:
        op, inputs, out = node.op_type, list(node.input), node.output[0] if node.output else ""
        first = inputs[0] if inputs else ""
        if op == "Shape" and first in dim_params:
            start, end = _attribute(node, "start", 0), _attribute(node, "end", None)
            rank = len(dim_params[first])
            start = start + rank if start < 0 else start
            end = rank if end is None else end + rank if end < 0 else min(end, rank)
            if end - start == 1:
                _add_size(sizes, out, dim_params[first], start, 0)
            else:
                shapes[out] = (first, start)
        elif op in ("Gather", "Slice") and first in shapes:
            index = _picked_index(node, inputs, constants)
            if index is not None:
                name, axis = shapes[first]
                _add_size(sizes, out, dim_params[name], axis + index, 0)
        elif op in _VALUE_PRESERVING_OPS and first in sizes:
            sizes[out] = sizes[first]
        elif op == "Add" and len(inputs) == 2 and first in sizes and _integer(constants.get(inputs[1])) is not None:
            dim, offset = sizes[first]
            sizes[out] = (dim, offset + _integer(constants[inputs[1]]))  # type: ignore[operator]
        elif op == "Range" and len(inputs) == 3 and inputs[1] in sizes:
            start, delta = _integer(constants.get(inputs[0])), _integer(constants.get(inputs[2]))
            if start is not None and start >= 0 and delta == 1:
                positions[out] = sizes[inputs[1]]  # Range(c, n + k, 1) holds c .. n + k - 1
        elif op in (*_VALUE_PRESERVING_OPS, "Expand") and first in positions:
            positions[out] = positions[first]
        elif op == "Add" and len(inputs) == 2 and first in positions and _integer(constants.get(inputs[1])) is not None:
            dim, offset = positions[first]
            positions[out] = (dim, offset + _integer(constants[inputs[1]]))  # type: ignore[operator]
        elif op == "Gather" and len(inputs) == 2 and inputs[1] in positions and first in tables:
            rows = _gathered_rows(node, tables[first])
            if rows is not None:
                dim, offset = positions[inputs[1]]
                # The largest position, n - 1 + k, must be a row: n <= rows - k.
                bounds[dim] = min(rows - offset, bounds.get(dim, rows - offset))
    return {dim: rows for dim, rows in bounds.items() if rows >= 0}


def _add_size(sizes: dict[str, tuple[str, int]], value: str, dims: list[str | None], axis: int, offset: int) -> None:
    if 0 <= axis < len(dims) and dims[axis] is not None:
        sizes[value] = (dims[axis], offset)  # type: ignore[assignment]


def _picked_index(node: Any, inputs: list[str], constants: dict[str, np.ndarray]) -> int | None:
    """The one element a ``Gather`` or ``Slice`` takes from a shape vector, or ``None``."""
    if node.op_type == "Gather":
        index = _integer(constants.get(inputs[1])) if len(inputs) > 1 else None
        return index if index is not None and index >= 0 and _attribute(node, "axis", 0) == 0 else None
    if len(inputs) < 3 or (len(inputs) > 3 and _integer(constants.get(inputs[3])) not in (0, None)):
        return None  # another axis than the vector's own
    if len(inputs) > 4 and _integer(constants.get(inputs[4])) not in (1, None):
        return None
    start, end = _integer(constants.get(inputs[1])), _integer(constants.get(inputs[2]))
    return start if start is not None and end == start + 1 and start >= 0 else None


def _gathered_rows(node: Any, dims: list[int]) -> int | None:
    """The size of the axis a ``Gather`` on a table of ``dims`` indexes."""
    axis = _attribute(node, "axis", 0)
    return int(dims[axis]) if dims and -len(dims) <= axis < len(dims) else None


def _integer(value: np.ndarray | None) -> int | None:
    """A constant holding one integer, as an ``int``; else ``None``."""
    if value is None or value.size != 1 or value.dtype.kind not in "iu":
        return None
    return int(value.reshape(()))


def _attribute(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _constants(graph: Any) -> Iterator[tuple[str, np.ndarray]]:
    """Small integer constants: initializers and ``Constant`` nodes of at most a few elements."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if len(init.dims) <= 1 and (not init.dims or init.dims[0] <= 8) and not init.external_data:
            yield init.name, numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = _attribute(node, "value", None)
            if value is not None:
                yield node.output[0], numpy_helper.to_array(value)
            elif (integer := _attribute(node, "value_int", None)) is not None:
                yield node.output[0], np.asarray(integer, dtype=np.int64)
            elif (integers := _attribute(node, "value_ints", None)) is not None:
                yield node.output[0], np.asarray(integers, dtype=np.int64)
