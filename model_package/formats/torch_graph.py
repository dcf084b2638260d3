"""What a ``torch.export`` program's graph says about the inputs it can take, beyond their shapes.

Read when a package is imported (the signature's ``valid_range``) or loaded (its ``AxisRules``), so
that a request the program cannot run is refused as the client's error before the program runs,
instead of failing inside it as a 500 that the endpoint's alarms and automatic rollback count:

- **Embedding ids**: an input that indexes an embedding table directly takes ids ``0..rows-1``.
- **Tied axes and declared maxima**: one symbol on several inputs' axes, and a ``Dim(max=)``.
- **Position tables**: a sequence axis whose positions (``torch.arange(x.shape[1])``) index a table
  of learned positions takes at most that table's rows. ``torch.export`` records no bound for it:
  an index out of range is a runtime error, not a shape guard, so a 33-token request to a model
  with 32 positions failed inside ``aten.embedding`` ("index out of range in self"). (Slicing a
  table to the sequence length, ``self.position_ids[:, :n]``, is a shape guard: ``torch.export``
  refuses to export it without a ``Dim(max=)``, which is then read as a declared maximum.)
"""

from __future__ import annotations

import logging
from typing import Any

from model_package.formats._torch import torch
from model_package.formats.axis_rules import AxisRules, from_named_axes

_log = logging.getLogger(__name__)
_aten = torch.ops.aten
#: Ops whose output holds exactly their first argument's values (a new shape, device or dtype).
_SAME_VALUES = frozenset(
    {
        _aten.unsqueeze.default,
        _aten.view.default,
        _aten.reshape.default,
        _aten.expand.default,
        _aten.clone.default,
        _aten.alias.default,
        _aten._to_copy.default,
        _aten.to.dtype,
        _aten.to.device,
        _aten.to.dtype_layout,
        _aten.squeeze.dim,
        _aten.flatten.using_ints,
    }
)
_ARANGES = frozenset({_aten.arange.default, _aten.arange.start, _aten.arange.start_step})
_ADDS = frozenset({_aten.add.Tensor, _aten.add.Scalar})


def program_axis_rules(program: Any) -> AxisRules:
    """The program's tied varying axes (one symbol on several inputs), declared maxima (``Dim(max=)``)
    and position-table bounds.

    The program's own guards check the first two and raise an ``AssertionError`` from inside the call
    ("Guard failed: attention_mask.size()[1] == input_ids.size()[1]"), which reads as the model failing.
    """
    import sympy  # type: ignore[import-untyped]

    nodes = {node.name: node for node in program.graph.nodes}
    named: list[tuple[tuple[str, int], object]] = []
    for name in program.graph_signature.user_inputs:
        value = getattr(nodes.get(name), "meta", {}).get("val")
        for axis, size in enumerate(getattr(value, "shape", ())):
            expr = size.node.expr if isinstance(size, torch.SymInt) else None
            named.append(((name, axis), expr if isinstance(expr, sympy.Symbol) else None))
    most = {
        symbol: int(bounds.upper)
        for symbol, bounds in program.range_constraints.items()
        if isinstance(bounds.upper, sympy.Integer)  # unbounded is torch's int_oo
    }
    try:
        tables = position_table_bounds(program)
    except Exception as exc:  # a graph this reader does not know: serve it without the bound, logged
        _log.warning("cannot read the program's position tables: %s: %s", type(exc).__name__, exc, exc_info=True)
        tables = {}
    for symbol, rows in tables.items():
        most[symbol] = min(rows, most.get(symbol, rows))
    return from_named_axes(named, most=most)


def position_table_bounds(program: Any) -> dict[Any, int]:
    """Sizes (by symbol) that index a table through ``arange``: each at most the table's rows.

    Follows ``arange(n)`` (``n`` a varying size, positions ``0..n-1``) through ops that keep its
    values (``unsqueeze``, ``expand``, a dtype change, ...) and the addition of a constant (an offset,
    as RoBERTa's positions start past the padding id) into ``embedding``, ``index_select`` or
    indexing of a 2-D table. Anything else (a slice, a multiplication, positions computed from the
    data) ends the trail: no bound is better than a wrong one.
    """
    import sympy

    # node -> (symbol n, offset k): the node holds positions k .. n - 1 + k.
    positions: dict[Any, tuple[Any, int]] = {}
    bounds: dict[Any, int] = {}
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        target, args = node.target, node.args
        if target in _ARANGES:
            end = args[0] if target is _aten.arange.default else args[1] if len(args) > 1 else None
            step = args[2] if target is _aten.arange.start_step and len(args) > 2 else 1
            start = args[0] if target is not _aten.arange.default else 0
            size = _symbolic_size(end, sympy)
            if size is not None and step == 1 and isinstance(start, int) and start >= 0:
                positions[node] = size
        elif target in _SAME_VALUES and args and args[0] in positions:
            positions[node] = positions[args[0]]
        elif target in _ADDS and len(args) == 2 and args[0] in positions and type(args[1]) is int:
            symbol, offset = positions[args[0]]
            positions[node] = (symbol, offset + args[1])
        else:
            indexed = _indexed_table(node)
            if indexed is not None and indexed[1] in positions:
                rows = indexed[0]
                symbol, offset = positions[indexed[1]]
                # The largest position, n - 1 + k, must be a row: n <= rows - k.
                bounds[symbol] = min(rows - offset, bounds.get(symbol, rows - offset))
    return {symbol: rows for symbol, rows in bounds.items() if rows >= 0}


def _symbolic_size(value: Any, sympy: Any) -> tuple[Any, int] | None:
    """``(symbol, offset)`` for a graph value that is a varying size ``symbol + offset``, else ``None``."""
    size = getattr(value, "meta", {}).get("val")
    if not isinstance(size, torch.SymInt):
        return None
    constant, rest = size.node.expr.as_coeff_Add()
    if not isinstance(rest, sympy.Symbol) or not constant.is_Integer:
        return None
    # arange(n + c) holds 0 .. n + c - 1: positions of n with the offset c.
    return rest, int(constant)


def _indexed_table(node: Any) -> tuple[int, Any] | None:
    """``(rows, indices)`` when ``node`` picks rows of a 2-D table by ``indices``, else ``None``."""
    args = node.args
    if node.target is _aten.embedding.default and len(args) >= 2:
        table, indices = args[0], args[1]
    elif node.target is _aten.index_select.default and len(args) >= 3 and args[1] == 0:
        table, indices = args[0], args[2]
    elif node.target is _aten.index.Tensor and len(args) >= 2 and args[1] and args[1][0] is not None:
        table, indices = args[0], args[1][0]
    else:
        return None
    value = getattr(table, "meta", {}).get("val")
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or not isinstance(value.shape[0], int):
        return None  # a table built from the input (sinusoids of arange(n)) grows with it: no bound
    return value.shape[0], indices


def embedding_index_ranges(program: Any) -> dict[str, tuple[int, int]]:
    """User inputs that index an embedding table directly, with the table's valid row range.

    Recorded in the signature so that every format refuses an id outside the
    table the same way, before the model runs (see ``base.check_range``).
    """
    user_inputs = set(program.graph_signature.user_inputs)
    ranges: dict[str, tuple[int, int]] = {}
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default or len(node.args) < 2:
            continue
        weight, indices = node.args[0], node.args[1]
        table = getattr(weight, "meta", {}).get("val")
        name = getattr(indices, "name", None)
        rows = table.shape[0] if isinstance(table, torch.Tensor) and table.ndim == 2 else None
        # An int, not a SymInt: a table built from the input grows with it.
        if isinstance(name, str) and name in user_inputs and isinstance(rows, int):
            high = rows - 1
            if high >= 0:
                ranges[name] = (0, min(high, ranges.get(name, (0, high))[1]))
    return ranges
