"""Which input axes of an exported model may vary in size between requests.

The batch axis (axis 0) of every input is always dynamic. Any other axis is
fixed at the example's size unless it is *dynamic*: declared by the caller
(``--dynamic-axes NAME=AXES`` on the command line, the ``dynamic_axes``
argument of :func:`model_package.export.export_model`, or a third value
returned by an export factory), or detected by the rule below.

Detection rule (documented in the README), for PyTorch models and TorchScript
files, whose example arrays are all there is to go on: an input named
``input_ids``, ``attention_mask``, ``token_type_ids`` or ``position_ids`` with
an integer dtype and at least two dimensions has a dynamic axis 1 -- the
sequence axis of Hugging Face-style transformer inputs. A declaration for an
input replaces the rule for that input (declare ``NAME=`` with no axes to keep
it fixed). Keras models need no rule: their ``keras.Input`` shapes already say
which axes are ``None``, and the TensorFlow formats keep them.

This module is framework-free: formats turn the resolved axes into
``torch.export.Dim`` s, ONNX dynamic axes or ``None`` dimensions in a TensorFlow
input signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from model_package.errors import ExportError, PredictionError, UsageError
from model_package.manifest import Signature, TensorSpec

_log = logging.getLogger(__name__)

#: Input name -> the non-batch axes whose size may vary (sorted, positive, never 0).
DynamicAxes = Mapping[str, tuple[int, ...]]

#: Input names whose axis 1 is a token sequence (Hugging Face tokenizer outputs).
SEQUENCE_INPUT_NAMES = frozenset({"input_ids", "attention_mask", "token_type_ids", "position_ids"})

# Loose on purpose, like the batch check: it looks for lengths baked into the graph, not float rounding.
_RTOL = 1e-3
_ATOL = 1e-4


def parse_dynamic_axes(values: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=AXES`` command-line values (``input_ids=1``, ``frames=1,2``, ``ids=`` for none)."""
    declared: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, sep, axes_text = value.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(
                f"--dynamic-axes {value!r} must look like NAME=AXES, e.g. input_ids=1 or frames=1,2 "
                "(NAME= keeps every non-batch axis of NAME fixed)"
            )
        try:
            axes = tuple(int(part) for part in axes_text.split(",") if part.strip())
        except ValueError:
            raise UsageError(
                f"--dynamic-axes {value!r}: axes must be comma-separated integers, e.g. {name}=1 or {name}=1,2"
            ) from None
        declared[name] = declared.get(name, ()) + axes
    return declared


def detected_axes(inputs: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The dynamic axes the naming rule finds in ``inputs`` (see the module docstring)."""
    found: dict[str, tuple[int, ...]] = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        if name in SEQUENCE_INPUT_NAMES and array.ndim >= 2 and array.dtype.kind in "iu":
            found[name] = (1,)
    return found


def resolve_dynamic_axes(
    inputs: Mapping[str, np.ndarray], declared: Mapping[str, Sequence[int]] | None, *, detect: bool = True
) -> dict[str, tuple[int, ...]]:
    """Detected axes (if ``detect``) overridden per input by ``declared``; validated against the example inputs.

    Axis 0 (the batch) is dropped: it is always dynamic. Negative axes count
    from the end. Raises :class:`UsageError` for unknown inputs or axes out of range.
    """
    resolved = detected_axes(inputs) if detect else {}
    for name, axes in (declared or {}).items():
        if name not in inputs:
            raise UsageError(
                f"dynamic axes were declared for {name!r}, which is not an input; the inputs are {sorted(inputs)}"
            )
        ndim = np.asarray(inputs[name]).ndim
        normalized: set[int] = set()
        for axis in axes:
            if not -ndim <= int(axis) < ndim:
                raise UsageError(
                    f"input {name!r} has {ndim} dimensions (shape {list(np.asarray(inputs[name]).shape)}); "
                    f"axis {axis} does not exist"
                )
            normalized.add(int(axis) % ndim)
        resolved[name] = tuple(sorted(normalized - {0}))
    return {name: axes for name, axes in resolved.items() if axes}


def apply_to_specs(specs: Sequence[TensorSpec], axes: DynamicAxes) -> tuple[TensorSpec, ...]:
    """``specs`` with the dynamic axes marked ``-1``."""
    return tuple(
        spec.model_copy(
            update={
                "shape": tuple(-1 if index in axes.get(spec.name, ()) else dim for index, dim in enumerate(spec.shape))
            }
        )
        for spec in specs
    )


def warn_fixed_axes(signature: Signature, where: str, *, shaped_by_pipeline: Collection[str] = ()) -> None:
    """Log one warning naming every input axis other than the batch whose size the package fixes.

    A fixed axis is right for features and images, and wrong for sequences,
    candidate lists and the like; either way the user should know that every
    request must match it exactly. Inputs a declared pipeline produces (an image
    resized to the input's size) are left out: clients never send them.
    """
    frozen = [
        f"{spec.name}[{index}]={dim}"
        for spec in signature.inputs
        if spec.name not in shaped_by_pipeline
        for index, dim in enumerate(spec.shape)
        if index > 0 and dim != -1
    ]
    if frozen:
        _log.warning(
            "%s: these input axes are fixed, so every request must match them exactly: %s. If one may vary "
            "(a sequence length, a number of candidates), declare it dynamic: --dynamic-axes NAME=AXIS "
            "(or dynamic_axes={'NAME': [AXIS]})",
            where,
            ", ".join(frozen),
        )


def longer_along(inputs: Mapping[str, np.ndarray], axes: DynamicAxes, extra: int = 1) -> dict[str, np.ndarray]:
    """The inputs with every dynamic axis ``extra`` longer: the last slice along it is repeated.

    Repeating the last token keeps ids in range and masks consistent (a padded
    row stays padded), so the live model accepts the result.
    """
    grown: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        for axis in axes.get(name, ()):
            last = np.take(array, [-1], axis=axis)
            array = np.concatenate([array, *([last] * extra)], axis=axis)
        grown[name] = array
    return grown


def check_axes_generalize(
    run_live: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    predict_saved: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    example_inputs: Mapping[str, np.ndarray],
    axes: DynamicAxes,
    *,
    fmt: str,
    advice: str,
) -> dict[str, np.ndarray] | None:
    """Prove that a saved artifact matches the live model when the dynamic axes are one longer.

    Tracing can bake the example's sequence length into reshapes or position
    tables without complaint. Returns the live model's outputs on the longer
    inputs (formats whose files do not record output shapes read the dynamic
    output axes from them), or ``None`` when there is nothing to check or the
    live model itself refuses the longer inputs.
    """
    if not axes:
        return None
    longer = longer_along(example_inputs, axes)
    described = ", ".join(f"{name} axis {list(dims)}" for name, dims in axes.items())
    try:
        expected = dict(run_live(longer))
    except Exception as exc:  # the live model only handles the example's lengths: nothing to compare with
        _log.warning("skipping the dynamic-axes check: the live model fails when %s grow by one (%s)", described, exc)
        return None
    try:
        got = predict_saved(longer)
    except PredictionError as exc:
        raise ExportError(
            f"the saved {fmt} model fails when the dynamic axes ({described}) are one longer than in the "
            f"example: {exc}. The export fixed that length; {advice}"
        ) from exc
    for name, want in expected.items():
        have = got.get(name)
        same = have is not None and have.shape == want.shape
        if same and have is not None and np.issubdtype(want.dtype, np.inexact):
            same = bool(np.allclose(have, want, rtol=_RTOL, atol=_ATOL, equal_nan=True))
        elif same and have is not None:
            same = bool(np.array_equal(have, want))
        if not same:
            raise ExportError(
                f"the saved {fmt} model disagrees with the live model when the dynamic axes ({described}) "
                f"are one longer than in the example (output {name!r}). The export fixed that length or "
                f"traced length-dependent control flow; {advice}"
            )
    return expected


def output_shapes(
    reference: Mapping[str, np.ndarray], longer: Mapping[str, np.ndarray] | None
) -> dict[str, tuple[int, ...]]:
    """Output shapes with the batch axis and every axis that changed between the two runs marked ``-1``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, array in reference.items():
        dims = list(np.asarray(array).shape)
        other = None if longer is None else longer.get(name)
        other_shape = None if other is None else np.asarray(other).shape
        for index, dim in enumerate(dims):
            changed = other_shape is not None and (len(other_shape) != len(dims) or other_shape[index] != dim)
            if index == 0 or changed:
                dims[index] = -1
        shapes[name] = tuple(dims)
    return shapes
