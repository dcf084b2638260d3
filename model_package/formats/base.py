"""The small interface every model format implements.

A format module knows how to save one kind of artifact, how to inspect a saved
one, and how to load it for batch prediction on NumPy arrays. The inference
server and ``verify`` only ever use :class:`LoadedModel`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model_package.dynamic_axes import DynamicAxes
from model_package.errors import ExportError, InvalidInputError, LoadError, PredictionError, UsageError
from model_package.manifest import Framework, Manifest, Signature, TensorSpec

_log = logging.getLogger(__name__)
# Loose on purpose: the batch check looks for a frozen batch dimension, not for float rounding.
_BATCH_CHECK_RTOL = 1e-3
_BATCH_CHECK_ATOL = 1e-4
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

#: Named input arrays, in the signature's order.
Tensors = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class SavedArtifact:
    """What an exporter or importer wrote into a staging directory."""

    model_path: str
    """Path of the model file or directory, relative to the staging directory."""
    signature: Signature
    framework: Framework
    serving_signature: str | None = None
    """The SavedModel signature key the package serves, when not the default ``serving_default``."""
    max_batch_size: int | None = None
    """The most rows one model call can take, when the model cannot take batches (it runs one row a call)."""


@dataclass(frozen=True)
class ImportOptions:
    """Choices an import may need beyond the artifact itself; each format says which it supports."""

    dynamic_axes: DynamicAxes = field(default_factory=dict)
    """Non-batch input axes whose size may vary (only for formats whose files record no shapes)."""
    signature: str | None = None
    """Which SavedModel signature to serve (default ``serving_default``)."""


def check_import_options(
    fmt: str, options: ImportOptions, *, dynamic_axes: bool = False, signature: bool = False
) -> None:
    """Refuse options ``fmt`` cannot honour, saying why, instead of silently ignoring them."""
    if options.dynamic_axes and not dynamic_axes:
        raise UsageError(
            f"--dynamic-axes cannot change a {fmt} artifact: it records its own input shapes. Re-export it with "
            "those axes dynamic (model-package export --dynamic-axes NAME=AXIS, or the exporter's own option)"
        )
    if options.signature is not None and not signature:
        raise UsageError(f"--signature applies to TensorFlow SavedModels; a {fmt} artifact has one entry point")


#: The default: no options.
NO_OPTIONS = ImportOptions()


class LoadedModel(Protocol):
    """A loaded package, ready for concurrent batch prediction.

    Implementations must be safe to call from several threads at once and must
    not re-trace or re-compile per call.
    """

    @property
    def signature(self) -> Signature: ...

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        """Run one batch. ``inputs`` holds every signature input by name; the result every output."""
        ...


class ModelFormat(Protocol):
    """One model format: ``name`` is the manifest's ``format`` value."""

    name: str

    def import_artifact(
        self, source: Path, staging_dir: Path, example_inputs: Tensors | None, options: ImportOptions = ...
    ) -> SavedArtifact:
        """Copy an already-saved artifact into ``staging_dir`` under its canonical name and describe it.

        ``example_inputs`` is only needed by formats whose files do not record
        their signature (TorchScript); others ignore it. ``options`` the format
        cannot honour are refused with :func:`check_import_options`.
        """
        ...

    def load(self, package_dir: Path, manifest: Manifest, *, threads: int | None = None) -> LoadedModel:
        """Load the package's model; ``threads`` caps the framework's intra-op threads."""
        ...


class ExportableFormat(ModelFormat, Protocol):
    """A format that can also be written from a live, in-memory model."""

    def save(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, *, dynamic_axes: DynamicAxes | None = None
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Export ``model`` into ``staging_dir`` with a dynamic batch dimension and the given ``dynamic_axes``.

        ``dynamic_axes`` maps input names to further axes whose size may vary
        (resolved by :func:`model_package.dynamic_axes.resolve_dynamic_axes`).
        Returns what was written and the *live* model's outputs on
        ``example_inputs`` (the reference the package is verified against).
        """
        ...


def check_servable(signature: Signature) -> None:
    """Refuse signatures the server cannot serve, so that import, export and verify fail instead of every request.

    The server batches requests along the first axis of every input and splits
    results along the first axis of every output, so a scalar (shape ``[]``)
    input or output can never be served.
    """
    scalars = [
        f"{kind} {spec.name!r}"
        for kind, specs in (("input", signature.inputs), ("output", signature.outputs))
        for spec in specs
        if not spec.shape
    ]
    if scalars:
        raise LoadError(
            f"the model's {', '.join(scalars)} {'is a scalar' if len(scalars) == 1 else 'are scalars'} (shape []), "
            "but the server batches requests along the first axis of every input and output, so no request could "
            "be answered. Give each a leading batch dimension of None, e.g. tf.TensorSpec([None], tf.float32, "
            "name='x') in the signature's input_signature (one value per row)"
        )


class CheckedInputs(dict[str, np.ndarray]):
    """Inputs :func:`check_inputs` returned for ``signature``: checking them again returns them as they are.

    A server validates each request before it joins a batch (so a bad one fails alone), then hands
    a request that runs alone to ``LoadedModel.predict``, which checks its inputs too; on a small
    model the second check was a tenth of the server's own time per request.
    """

    def __init__(self, signature: Signature, checked: dict[str, np.ndarray]) -> None:
        super().__init__(checked)
        self.signature = signature


def check_inputs(signature: Signature, inputs: Tensors) -> CheckedInputs:
    """Validate named inputs against the signature and cast them to its dtypes.

    Raises :class:`InvalidInputError` naming the input, what it got and what the
    signature allows, so that servers can return it as a 4xx body unchanged.
    """
    if type(inputs) is CheckedInputs and inputs.signature is signature:
        return inputs
    expected = [spec.name for spec in signature.inputs]
    missing = [name for name in expected if name not in inputs]
    extra = [name for name in inputs if name not in expected]
    if missing or extra:
        raise InvalidInputError(f"inputs must be exactly {expected}; missing {missing}, unexpected {extra}")
    checked: dict[str, np.ndarray] = {}
    batch: int | None = None
    for spec in signature.inputs:
        array = np.asarray(inputs[spec.name])
        if array.ndim != len(spec.shape):
            raise InvalidInputError(
                f"input {spec.name!r} has shape {list(array.shape)}; expected rank {len(spec.shape)} "
                f"matching {list(spec.shape)} (-1 = any size)"
            )
        for axis, (got, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
            if want not in (-1, got):
                raise InvalidInputError(
                    f"input {spec.name!r} has size {got} on axis {axis}; expected {want} "
                    f"(signature shape {list(spec.shape)})"
                )
        if array.ndim and (batch is None or array.shape[0] == batch):
            batch = array.shape[0]
        elif array.ndim:
            raise InvalidInputError(
                f"all inputs must share the batch size; {spec.name!r} has {array.shape[0]}, others {batch}"
            )
        if spec.dtype != "bytes" and array.dtype != np.dtype(spec.dtype):
            try:
                array = array.astype(spec.dtype, casting="same_kind")
            except TypeError as exc:
                raise InvalidInputError(f"input {spec.name!r} has dtype {array.dtype}; expected {spec.dtype}") from exc
        if spec.valid_range is not None:
            check_range(spec.name, array, spec.valid_range)
        checked[spec.name] = np.ascontiguousarray(array)
    return CheckedInputs(signature, checked)


def with_valid_ranges(inputs: Sequence[TensorSpec], ranges: Mapping[str, tuple[int, int]]) -> tuple[TensorSpec, ...]:
    """``inputs`` with ``valid_range`` set on those named in ``ranges`` (the id inputs of embedding tables)."""
    return tuple(
        spec.model_copy(update={"valid_range": ranges[spec.name]}) if spec.name in ranges else spec for spec in inputs
    )


def check_range(name: str, array: np.ndarray, valid: tuple[int, int]) -> None:
    """Refuse values outside the inclusive ``valid`` range, naming the first one and where it is.

    Why it matters: PyTorch's embedding lookups refuse a negative id, but ONNX
    ``Gather`` counts it from the end, silently answering for another row.
    """
    low, high = valid
    outside = (array < low) | (array > high)
    if array.size and bool(outside.any()):
        index = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(outside)[0]), array.shape))
        raise InvalidInputError(
            f"input {name!r} holds {array[index].item()} at {list(index)}; valid values are {low} to {high}"
        )


def one_line_error(exc: BaseException, limit: int = 400) -> str:
    """A framework exception as one short line: frameworks print pages, with colour codes."""
    text = " ".join(_ANSI_ESCAPE.sub("", str(exc)).split()).rstrip(" .") or type(exc).__name__
    return text if len(text) <= limit else text[:limit].rstrip(" .") + " [...]"


def numpy_dtype_name(dtype: object) -> str:
    """The manifest dtype name of a NumPy-compatible dtype."""
    name = str(np.dtype(dtype).name)  # type: ignore[call-overload]
    if name.startswith(("bytes", "str", "object")):
        return "bytes"
    return name


def dynamic_batch_shape(shape: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``shape`` with its first (batch) dimension marked dynamic."""
    dims = tuple(int(d) for d in shape)
    return (-1, *dims[1:]) if dims else dims


def check_batch_generalizes(
    run_live: Callable[[Tensors], Mapping[str, np.ndarray]],
    example_inputs: Tensors,
    loaded: LoadedModel,
    *,
    fmt: str,
    advice: str,
) -> int | None:
    """Prove that a saved artifact works at a batch size other than the example's.

    Tracing exporters (TorchScript, ONNX, tf2onnx) can bake the example's batch
    size into reshapes without complaint; the package would then fail (or
    silently mislead) on the endpoint. Comparing the reloaded artifact with the
    live model (``run_live``) on a larger batch catches that at build time.
    Raises :class:`ExportError` ending with ``advice``. Returns 1 for a model that runs one row a
    call and no more, in both its live and its saved form (``keras.Input(batch_size=1)`` with a
    reshape to one row, a stateful layer): the package then caps batches at one row (the server
    splits larger requests into one-row calls), where the check used to pass it whatever it was.
    """
    arrays = {name: np.asarray(array) for name, array in example_inputs.items()}
    if not arrays or any(a.ndim == 0 or a.shape[0] == 0 for a in arrays.values()):
        return None
    example_rows = next(iter(arrays.values())).shape[0]
    # One row more than the example, and never 2: a one-row example is exported with two rows.
    extra = 1 if example_rows > 1 else 2
    bigger = {name: np.concatenate([a, *([a[:1]] * extra)]) for name, a in arrays.items()}
    rows = example_rows + extra
    live_error: Exception | None = None
    try:
        expected = run_live(bigger)
    except Exception as exc:
        live_error = exc
    try:
        got = loaded.predict(bigger)
    except PredictionError as exc:
        if live_error is not None and example_rows == 1:
            _log.warning(
                "the model runs one row per call (live and saved, it fails on %d rows: %s); the package caps "
                "batches at 1 row, and the server splits larger requests into one-row calls",
                rows,
                one_line_error(exc),
            )
            return 1
        # The server merges requests into batches of any size: a model that runs only at the example's
        # batch size would fail every batched call with a 500.
        why = (
            f"the model itself runs only at that batch size (the live model fails too: {one_line_error(live_error)})"
            if live_error is not None
            else "the export probably fixed the batch size"
        )
        raise ExportError(
            f"the saved {fmt} model fails on a batch of {rows} rows although the example had "
            f"{example_rows}: {one_line_error(exc)}. The server batches requests, so {why}; {advice}"
        ) from exc
    if live_error is not None:
        # The saved model runs at other batch sizes and the live one does not: nothing to compare against.
        _log.warning(
            "skipping the batch-size comparison: the live model fails on %d rows (%s)", rows, one_line_error(live_error)
        )
        return None
    for name, want in expected.items():
        have = got.get(name)
        if have is not None and have.shape == want.shape and _close(have, want):
            continue
        if have is None or have.shape != want.shape:
            detail = f"shape {None if have is None else list(have.shape)} instead of {list(want.shape)}"
        else:
            detail = "values differ beyond float rounding"
        raise ExportError(
            f"the saved {fmt} model disagrees with the live model on a batch of {rows} rows "
            f"(output {name!r}: {detail}). The export probably fixed the batch size or traced "
            f"data-dependent control flow; {advice}"
        )
    return None


def _close(have: np.ndarray, want: np.ndarray) -> bool:
    if np.issubdtype(want.dtype, np.inexact):
        return bool(np.allclose(have, want, rtol=_BATCH_CHECK_RTOL, atol=_BATCH_CHECK_ATOL, equal_nan=True))
    return bool(np.array_equal(have, want))
