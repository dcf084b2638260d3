"""TensorFlow helpers shared by the ``tf_savedmodel`` and ``keras`` formats (and ``onnx``'s Keras export).

Everything TensorFlow-specific that both formats need lives here: importing
TensorFlow (lazily, with a clear error when it is missing), translating TF
dtypes and ``tf.TensorSpec`` into manifest :class:`TensorSpec`, capping
threads, running a live Keras model for reference outputs, and a loaded-model
class around one concrete function.

Output naming is the same in both formats and follows what Keras'
``model.export(format="tf_saved_model")`` writes into the ``serving_default``
signature, so the live reference, the SavedModel and the ``.keras`` package of
one model all use the same names:

* a model returning a dict: its keys;
* a model returning a list or tuple: ``output_0``, ``output_1``, ...;
* a model returning one tensor: ``output_0`` (even when its layer has a name;
  return a dict from the model to choose the names).

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_package import dynamic_axes
from model_package.dynamic_axes import DynamicAxes
from model_package.errors import (
    ExportError,
    LoadError,
    ModelExecutionError,
    ModelPackageError,
    PredictionError,
    UsageError,
)
from model_package.formats import base
from model_package.formats.base import LoadedModel, Tensors, check_inputs, numpy_dtype_name, one_line_error
from model_package.manifest import DTYPES, Framework, Signature, TensorSpec

logger = logging.getLogger(__name__)

INSTALL_HINT = "install the 'tensorflow' extra: pip install 'model-deploy[tensorflow]'"

# Longest framework message we put into one of our one-line errors; TF messages
# can embed whole graph dumps.


def import_tensorflow() -> Any:
    """Import and return the ``tensorflow`` module, or raise :class:`LoadError` saying how to install it."""
    # TF's C++ runtime logs INFO/WARNING lines (CPU features, XLA, ...) straight
    # to stderr; hide them unless the user chose a level. The variable is read
    # when TensorFlow is first imported, hence here. (oneDNN's one-line start-up
    # note is printed regardless; only TF_ENABLE_ONEDNN_OPTS=0 removes it, and
    # that changes the kernels, so we leave it alone.)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise LoadError(f"TensorFlow is not installed ({exc}); {INSTALL_HINT}") from exc
    return tf


def import_keras() -> Any:
    """Import and return Keras 3 running on the TensorFlow backend."""
    import_tensorflow()
    try:
        import keras
    except ImportError as exc:
        raise LoadError(f"Keras is not installed ({exc}); {INSTALL_HINT}") from exc
    major = int(str(keras.__version__).split(".")[0])
    if major < 3:
        raise LoadError(f"Keras {keras.__version__} is too old: the keras format needs Keras 3; {INSTALL_HINT}")
    backend = keras.backend.backend()
    if backend != "tensorflow":
        # Loaded models are traced into a tf.function, which needs TF tensors.
        raise LoadError(
            f"Keras is configured for the {backend!r} backend; TensorFlow formats need the TensorFlow backend. "
            "Set KERAS_BACKEND=tensorflow before starting Python."
        )
    return keras


def framework() -> Framework:
    """The :class:`Framework` entry for the installed TensorFlow."""
    return Framework(name="tensorflow", version=str(import_tensorflow().__version__))


def dtype_name(dtype: Any) -> str:
    """The manifest dtype name of a TF dtype (or anything ``tf.as_dtype`` accepts); ``tf.string`` is ``bytes``.

    Raises ``ValueError`` for dtypes a manifest cannot describe (bfloat16, complex, resource, ...).
    """
    tf = import_tensorflow()
    tf_dtype = tf.as_dtype(dtype)
    if tf_dtype == tf.string:
        return "bytes"
    if not tf_dtype.is_numpy_compatible:
        # resource and variant map to NumPy's object dtype, which would read as "bytes".
        raise ValueError(f"dtype {tf_dtype.name} has no NumPy equivalent")
    name = numpy_dtype_name(tf_dtype.as_numpy_dtype)
    if name not in DTYPES:
        raise ValueError(f"dtype {tf_dtype.name} is not supported in a package signature; allowed: {', '.join(DTYPES)}")
    return name


def tensor_spec(name: str, spec: Any) -> TensorSpec:
    """A manifest :class:`TensorSpec` from anything with ``.shape`` and ``.dtype`` (``tf.TensorSpec``, ``tf.Tensor``).

    Unknown dimensions become ``-1``. Raises ``ValueError`` for unknown rank or
    for non-dense specs (ragged, sparse), which a signature cannot describe.
    """
    tf = import_tensorflow()
    if not isinstance(spec, tf.TensorSpec | tf.Tensor):
        raise ValueError(f"{name!r} is a {type(spec).__name__}; only dense tensors are supported")
    shape = tf.TensorShape(spec.shape)
    if shape.rank is None:
        dtype = tf.as_dtype(spec.dtype).name
        raise ValueError(
            f"{name!r} has unknown rank (TensorSpec(None)), and a package must say how many dimensions each input "
            f"has, with None for the sizes that vary. Re-save the SavedModel with a concrete function of known "
            f"rank, e.g. signatures={{'serving_default': f.get_concrete_function(tf.TensorSpec([None, None], "
            f"tf.{dtype}, name={name!r}))}} for a batch of rows of any length"
        )
    dims = tuple(-1 if dim is None else int(dim) for dim in shape.as_list())
    return TensorSpec(name=name, dtype=dtype_name(spec.dtype), shape=dims)


def signature_of(function: Any) -> Signature:
    """The signature of a concrete function, from ``structured_input_signature`` and ``structured_outputs``.

    Keyword inputs (SavedModel signatures) come in sorted name order, which is
    also TensorFlow's own flat order; positional inputs keep their order and are
    named by their ``tf.TensorSpec`` names. The outputs must be a dict (as in
    every SavedModel signature) and are listed in sorted name order. Raises
    ``ValueError`` when something cannot be described.
    """
    tf = import_tensorflow()
    args, kwargs = function.structured_input_signature
    inputs: list[TensorSpec] = []
    for position, spec in enumerate(tf.nest.flatten(args)):
        name = getattr(spec, "name", None)
        if not name:
            raise ValueError(f"positional input {position} has no name")
        inputs.append(tensor_spec(name, spec))
    for name in sorted(kwargs):
        inputs.append(tensor_spec(name, kwargs[name]))
    outputs = function.structured_outputs
    if not isinstance(outputs, Mapping):
        raise ValueError(f"outputs must be a dict of named tensors, got {type(outputs).__name__}")
    return Signature(
        inputs=tuple(inputs),
        outputs=tuple(tensor_spec(str(name), outputs[name]) for name in sorted(outputs)),
    )


def configure_threads(threads: int | None) -> None:
    """Cap TensorFlow's intra-op thread pool at ``threads`` (``None`` keeps TensorFlow's default).

    TensorFlow fixes its thread pools when its runtime initialises (the first
    op or model load in the process), so this only works before that; later
    calls log a warning instead of failing, because a serving process that
    loads a second model should keep running with the pool it has.
    """
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}")
    tf = import_tensorflow()
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        logger.warning(
            "TensorFlow is already initialised in this process with %s intra-op threads; threads=%d is ignored. "
            "Pass threads when loading the first TensorFlow model of the process.",
            current or "its default number of",
            threads,
        )


def name_outputs(result: Any) -> dict[str, Any]:
    """Name a model's raw outputs the way Keras' SavedModel export names its signature outputs (see module doc)."""
    if isinstance(result, Mapping):
        named = {str(key): value for key, value in result.items()}
    elif isinstance(result, list | tuple):
        named = {f"output_{index}": value for index, value in enumerate(result)}
    else:
        named = {"output_0": result}
    for name, value in named.items():
        if isinstance(value, Mapping | list | tuple):
            raise ValueError(f"output {name!r} is a nested {type(value).__name__}; outputs must be flat tensors")
    return named


def to_numpy(tensor: Any) -> np.ndarray:
    """A TF tensor as a NumPy array; string tensors become fixed-width ``bytes`` arrays (never ``object``)."""
    array = np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)
    if array.dtype == object:
        array = array.astype(np.bytes_)
    return array


# -- Keras models ------------------------------------------------------------------------------------------------


def keras_input_tensors(model: Any) -> list[Any]:
    """The symbolic inputs of a Functional or Sequential Keras model, in call order.

    Raises ``ValueError`` for models without symbolic inputs (subclassed models).
    """
    try:
        return list(model.inputs)
    except AttributeError as exc:
        raise ValueError(
            f"{type(model).__name__} has no symbolic inputs (a subclassed model?); "
            "build it with keras.Input layers (Functional or Sequential API)"
        ) from exc


def keras_input_name(tensor: Any) -> str:
    """The stable name of a Keras model input: the name of the ``InputLayer`` that made it.

    A live model's input *tensor* may carry a session-dependent name such as
    ``keras_tensor_3`` when ``keras.Input`` was not named, while a reloaded
    ``.keras`` model names the tensor after its ``InputLayer`` (``input_layer_1``).
    The layer name is what survives saving, so both formats use it.
    """
    # _keras_history is the (operation, node_index, tensor_index) link every
    # symbolic tensor keeps to the layer that produced it; Keras has no public
    # accessor for an input's layer.
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None)
    return str(operation.name if operation is not None else tensor.name)


def keras_embedding_ranges(model: Any) -> dict[str, tuple[int, int]]:
    """Integer model inputs fed straight into an ``Embedding`` table, with the table's valid ids ``[0, rows - 1]``.

    Keras' TensorFlow backend looks ids up with ``ops.take``, which counts a negative id from the
    end (NumPy's rule), and TensorFlow's CPU gather refuses an id past the table with an error the
    server must report as its own failure (500). Recorded in the signature, every id outside the
    table is the client's 400, naming the id, before the model runs. Only inputs wired directly
    into an ``Embedding`` layer of the model (not through lookups or hashing, whose output range
    is theirs to keep) are covered.
    """
    keras = import_keras()
    try:
        names = {id(tensor): keras_input_name(tensor) for tensor in keras_input_tensors(model)}
    except ValueError:  # a subclassed model: no graph of layers to follow
        return {}
    # The calls of layers that make up this model's graph (a Sequential keeps its graph in a Functional).
    # A layer's own list of calls (_inbound_nodes) also holds calls from other models built on the same
    # layers, or calls whose results were dropped: those must not range this model's inputs. Keras has
    # no public accessor for either.
    graph = model if hasattr(model, "_nodes_by_depth") else getattr(model, "_functional", None)
    ranges: dict[str, tuple[int, int]] = {}
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            layer = node.operation
            # Exactly Keras' layer: a subclass may map ids itself (ids % rows) before its lookup.
            if type(layer) is not keras.layers.Embedding:
                continue
            for tensor in node.input_tensors:
                name = names.get(id(tensor))
                if name is not None and str(tensor.dtype).startswith(("int", "uint", "float")):
                    high = int(layer.input_dim) - 1
                    ranges[name] = (0, min(high, ranges.get(name, (0, high))[1]))
    return ranges


def keras_call_structure(model: Any, flat: Sequence[Any]) -> Any:
    """Arrange inputs given in ``model.inputs`` order into the structure ``model(...)`` expects."""
    keras = import_keras()
    if isinstance(model, keras.Sequential):
        return flat[0]
    try:
        # Functional models are called with the structure they were built
        # from (one tensor, a list or a dict); model.inputs is that structure
        # flattened, so packing restores it exactly.
        structure = model.input
    except AttributeError:  # a subclassed model: only single-input ones get here
        return flat[0]
    return keras.tree.pack_sequence_as(structure, list(flat))


def batch_dynamic(shape: Sequence[int | None]) -> tuple[int | None, ...]:
    """A Keras/TF shape with its first (batch) dimension unknown."""
    dims = tuple(shape)
    return (None, *dims[1:]) if dims else dims


def dynamic_dims_or_minus_one(shape: Sequence[int | None]) -> tuple[int, ...]:
    """A Keras shape in manifest terms: ``None`` becomes ``-1``."""
    return tuple(-1 if dim is None else int(dim) for dim in shape)


def check_declared_axes_are_none(specs: Sequence[TensorSpec], axes: DynamicAxes) -> None:
    """Refuse declared dynamic axes that the model's ``keras.Input`` fixes.

    Keras checks every call against its ``keras.Input`` shapes, so the live
    model itself refuses another length there; only the ``keras.Input`` can
    make the axis dynamic.
    """
    fixed = [
        f"{spec.name}[{axis}]={spec.shape[axis]}"
        for spec in specs
        for axis in axes.get(spec.name, ())
        if axis < len(spec.shape) and spec.shape[axis] != -1
    ]
    if fixed:
        raise UsageError(
            f"the model's keras.Input shapes fix {', '.join(fixed)}, and Keras refuses other sizes there; build "
            "those inputs with None on the axes that vary, e.g. keras.Input(shape=(None,), dtype='int32')"
        )


def dynamic_dims(shape: Sequence[int | None], axes: Sequence[int]) -> tuple[int | None, ...]:
    """A Keras/TF shape with its batch dimension and ``axes`` unknown (``None``)."""
    return tuple(None if index in axes else dim for index, dim in enumerate(batch_dynamic(shape)))


def run_keras_model(
    model: Any, signature: Signature, inputs: Tensors, call_order: Sequence[str]
) -> dict[str, np.ndarray]:
    """Run a live Keras model on named inputs and name its outputs.

    ``call_order`` names the inputs in ``model.inputs`` order. This produces the
    reference outputs a package is verified against, so it calls the model
    itself, eagerly, not anything derived from the saved file. Raises
    :class:`UsageError` when the inputs do not fit the signature and
    :class:`ExportError` when the model fails.
    """
    tf = import_tensorflow()
    try:
        checked = check_inputs(signature, inputs)
    except PredictionError as exc:
        raise UsageError(f"example inputs do not fit the model: {exc}") from exc
    flat = [tf.constant(checked[name]) for name in call_order]
    try:
        result = model(keras_call_structure(model, flat), training=False)
        named = name_outputs(result)
        return {name: to_numpy(value) for name, value in named.items()}
    except ModelPackageError:
        raise
    except Exception as exc:  # Keras raises anything from a user's layers
        raise ExportError(f"the live Keras model failed on the example inputs: {one_line_error(exc)}") from exc


#: Tolerances of the batch-size self-check; as loose as the torch formats' (see ``_torch``): it looks for
#: exports that baked in the example's batch size, not for float rounding between runtimes.


def check_batch_generalizes(
    model: Any,
    signature: Signature,
    example_inputs: Tensors,
    call_order: Sequence[str],
    loaded: LoadedModel,
    *,
    fmt: str,
) -> int | None:
    """Compare the reloaded artifact with the live Keras model on a larger batch (see base.check_batch_generalizes)."""
    return base.check_batch_generalizes(
        lambda arrays: run_keras_model(model, signature, arrays, call_order),
        {name: example_inputs[name] for name in call_order},
        loaded,
        fmt=fmt,
        advice=(
            "build the model with a free batch axis: keras.Input(shape=...) without batch_size, no reshape to a "
            "fixed number of rows" + (", or try the 'tf_savedmodel' format" if fmt == "onnx" else "")
        ),
    )


def check_axes_generalize(
    model: Any,
    signature: Signature,
    example_inputs: Tensors,
    call_order: Sequence[str],
    loaded: LoadedModel,
    *,
    axes: DynamicAxes,
    fmt: str,
) -> None:
    """Compare the saved artifact with the live Keras model with the dynamic axes one longer (see dynamic_axes)."""
    dynamic_axes.check_axes_generalize(
        lambda arrays: run_keras_model(model, signature, arrays, call_order),
        loaded.predict,
        {name: example_inputs[name] for name in call_order},
        axes,
        fmt=fmt,
        advice="build the keras.Input with None on those axes, e.g. keras.Input(shape=(None,))",
    )


def check_example_names(expected: Sequence[str], inputs: Tensors) -> None:
    """Raise :class:`UsageError` unless the example inputs are named exactly ``expected``."""
    if sorted(inputs) != sorted(expected):
        raise UsageError(
            f"example inputs are named {sorted(inputs)}, but the model's inputs are {list(expected)}; "
            "name the example arrays after the model's keras.Input layers"
        )


def check_reference_names(signature: Signature, reference: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`ExportError` if the live model's output names differ from the saved artifact's."""
    saved = sorted(spec.name for spec in signature.outputs)
    if sorted(reference) != saved:
        raise ExportError(
            f"the live model's outputs are named {sorted(reference)} but the saved artifact's are {saved}; "
            "return a dict of named outputs from the model to make the names unambiguous"
        )


def check_manifest_signature(path: object, manifest_signature: Signature, actual: Signature) -> None:
    """Raise :class:`LoadError` if the model's input/output names and dtypes differ from the manifest's."""

    def summary(specs: Sequence[TensorSpec]) -> dict[str, str]:
        return {spec.name: spec.dtype for spec in specs}

    for kind, declared, found in (
        ("inputs", manifest_signature.inputs, actual.inputs),
        ("outputs", manifest_signature.outputs, actual.outputs),
    ):
        if summary(declared) != summary(found):
            raise LoadError(
                f"{path}: the manifest declares {kind} {summary(declared)} but the model has {summary(found)}; "
                "the package was modified or built by an incompatible tool"
            )


class ConcreteFunctionModel:
    """A :class:`~model_package.formats.base.LoadedModel` around one TF concrete function.

    A concrete function is already traced for a dynamic batch dimension, so
    calling it never retraces, and TensorFlow allows concurrent calls of one
    function from several threads (each call runs the same immutable graph with
    its own tensors; the variables are only read), so no lock is needed.
    """

    def __init__(self, signature: Signature, function: Any, *, positional: Sequence[str] | None, owner: Any) -> None:
        """Wrap ``function``: called with keyword tensors, or positionally in ``positional`` order if given."""
        self._signature = signature
        self._function = function
        self._positional = tuple(positional) if positional is not None else None
        # The object that owns the variables (the loaded SavedModel or Keras
        # model): a concrete function only holds weak references to them, so
        # dropping the owner would break later calls.
        self._owner = owner
        self._tf = import_tensorflow()

    @property
    def signature(self) -> Signature:
        """The package signature predictions are checked against."""
        return self._signature

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        """Run one batch; returns every signature output by name."""
        checked = check_inputs(self._signature, inputs)
        tf = self._tf
        try:
            tensors = {name: tf.constant(array) for name, array in checked.items()}
            if self._positional is None:
                result = self._function(**tensors)
            else:
                result = self._function(*(tensors[name] for name in self._positional))
            return {spec.name: to_numpy(result[spec.name]) for spec in self._signature.outputs}
        except Exception as exc:  # a server must get a ModelExecutionError, never a raw framework exception
            raise ModelExecutionError(f"TensorFlow failed to run the model: {one_line_error(exc)}") from exc


def export_input_signature(
    model: Any, example_inputs: Tensors, axes: DynamicAxes | None = None
) -> tuple[list[Any], list[str]]:
    """The ``input_signature`` for ``model.export`` and the input names in ``model.inputs`` order.

    Keras would name signature inputs after the live input *tensors*, which for
    an unnamed ``keras.Input`` is a session-dependent ``keras_tensor_N``; naming
    them after their ``InputLayer`` instead gives the names a reloaded ``.keras``
    model has, so both TF formats agree. The batch dimension is made dynamic
    here, whatever ``batch_size`` the model was built with, and so are the
    declared dynamic ``axes`` (``None`` dimensions).
    """
    tf = import_tensorflow()
    keras = import_keras()
    try:
        tensors = keras_input_tensors(model)
    except ValueError:
        return _subclassed_input_signature(model, example_inputs, axes or {})
    names = [keras_input_name(tensor) for tensor in tensors]
    check_declared_axes_are_none(
        [
            TensorSpec(name=n, dtype="float32", shape=dynamic_dims_or_minus_one(t.shape))
            for n, t in zip(names, tensors, strict=True)
        ],
        axes or {},
    )
    specs = [
        tf.TensorSpec(batch_dynamic(tensor.shape), tensor.dtype, name=name)
        for tensor, name in zip(tensors, names, strict=True)
    ]
    if isinstance(model, keras.Sequential):
        return specs, names
    # A Functional model takes one positional argument holding its input structure.
    return [keras.tree.pack_sequence_as(model.input, specs)], names


def _subclassed_input_signature(model: Any, example_inputs: Tensors, axes: DynamicAxes) -> tuple[list[Any], list[str]]:
    """A subclassed model has no named inputs: its single input is named after the example array."""
    tf = import_tensorflow()
    if len(example_inputs) != 1:
        raise UsageError(
            f"{type(model).__name__} is a subclassed Keras model with no named inputs, so only single-input "
            f"models can be exported; got example inputs {sorted(example_inputs)}. Build the model with "
            "named keras.Input layers instead"
        )
    ((name, array),) = example_inputs.items()
    array = np.asarray(array)
    dtype = getattr(model, "input_dtype", None) or array.dtype
    return [tf.TensorSpec(dynamic_dims(array.shape, axes.get(name, ())), dtype, name=name)], [name]
