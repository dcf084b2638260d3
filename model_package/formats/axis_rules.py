"""What a loaded model knows about its varying axes beyond the signature's ``-1``.

The manifest records a varying axis as ``-1``: any size. Some models say more, and calling them
against it fails inside the framework (a 500 on the endpoint, counted against its alarms):

- **Tied axes**: ``input_ids`` and ``attention_mask`` of a text model share their sequence axis. A
  ``torch.export`` program gives both the same symbol and guards that they are equal ("Guard
  failed: attention_mask.size()[1] == input_ids.size()[1]"); an ONNX graph names both with the
  same ``dim_param``, which means the same size ("two network inputs with the same named dimension
  parameter are considered equal": NVIDIA TensorRT's sampleNamedDimensions, after the ONNX IR
  specification's named dimensions), and ONNX Runtime fails mid-graph when they differ.
- **Bounds**: a ``torch.export.Dim`` declared with ``max=`` (the program's range constraints).

Read from the artifact when it loads, so packages written before this need nothing new. Lower
bounds are not enforced: ``torch.export`` records 2 for a dimension it specialises away from 0
and 1, yet its programs run on 1. The batch axis is left to the signature check, which already
ties it across inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_package.errors import InvalidInputError

Axis = tuple[str, int]
"""An input's name and one of its axes."""


@dataclass(frozen=True)
class AxisRules:
    """Groups of input axes that must have one size, and upper bounds on axes."""

    tied: tuple[tuple[Axis, ...], ...] = ()
    most: Mapping[Axis, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tied or self.most)

    def check(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Refuse inputs that break a rule, naming the inputs, the axis and the sizes."""
        for group in self.tied:
            sizes = [(name, axis, inputs[name].shape[axis]) for name, axis in group]
            if len({size for _, _, size in sizes}) > 1:
                axes = " and ".join(f"{name!r} (axis {axis})" for name, axis, _ in sizes)
                got = " and ".join(str(size) for _, _, size in sizes)
                raise InvalidInputError(
                    f"{axes} must have the same size, as the model ties them (a sequence and its mask, say); got {got}"
                )
        for (name, axis), most in self.most.items():
            size = inputs[name].shape[axis]
            if size > most:
                raise InvalidInputError(
                    f"input {name!r} has size {size} on axis {axis}; this model takes at most {most} there"
                )


def from_named_axes(named: Iterable[tuple[Axis, Any]], *, most: Mapping[Any, int] | None = None) -> AxisRules:
    """Rules from each varying axis's name in the artifact (a ``torch.export`` symbol, an ONNX ``dim_param``).

    Axes sharing a name are tied; ``most`` gives a name's upper bound where the artifact has one.
    Axis 0 (the batch) and unnamed axes (``None``) are skipped.
    """
    by_name: dict[object, list[Axis]] = defaultdict(list)
    for (input_name, axis), name in named:
        if axis and name is not None:
            by_name[name].append((input_name, axis))
    tied = tuple(tuple(axes) for axes in by_name.values() if len(axes) > 1)
    bounds = {axis: (most or {})[name] for name, axes in by_name.items() for axis in axes if name in (most or {})}
    return AxisRules(tied, bounds)
