"""Format ``onnx``: an ONNX graph saved as ``model.onnx``, served with ONNX Runtime.

Serving an ONNX package needs only ``onnxruntime`` (no PyTorch or TensorFlow),
which makes for the smallest serving images. Exporting from a live PyTorch model
needs torch, ``onnx`` and ``onnxscript``; exporting from a live Keras 3 model
needs TensorFlow, ``onnx`` and ``tf2onnx``; importing an existing file needs ``onnx``.

Names: a PyTorch export follows :mod:`model_package.formats._torch` (inputs after
``forward()``'s parameters); a Keras export names inputs and outputs exactly as
the ``tf_savedmodel`` format does for the same model (inputs after their
``keras.Input`` layers, outputs ``output_0``, ``output_1``, ... or the keys of a
returned dict; see :mod:`model_package.formats._tensorflow`), so switching a
Keras model between the two formats does not change its request or response.

Framework naming: the manifest records ``Framework(name="onnx", version=<onnxruntime
version>)`` for exports and imports alike. What a serving container has to
match is the runtime, not the exporter: the package's example outputs are
checked with ONNX Runtime, so that is the version worth pinning against. (The
exporter that wrote the file is still recorded inside it, in the ONNX model's
``producer_name`` / ``producer_version``.)
"""

from __future__ import annotations

import importlib
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from model_package.dynamic_axes import DynamicAxes
from model_package.errors import (
    ExportError,
    LoadError,
    MissingFileError,
    ModelExecutionError,
    ModelPackageError,
    PredictionError,
    UsageError,
)
from model_package.formats.axis_rules import from_named_axes
from model_package.formats.base import (
    NO_OPTIONS,
    ExportableFormat,
    ImportOptions,
    LoadedModel,
    SavedArtifact,
    Tensors,
    check_import_options,
    check_inputs,
    numpy_dtype_name,
    one_line_error,
    with_valid_ranges,
)
from model_package.formats.onnx_graph import gathered_index_ranges, position_table_bounds
from model_package.manifest import DTYPES, Framework, Manifest, Signature, TensorSpec, check_relative_path

try:
    import onnxruntime
except ImportError as exc:  # pragma: no cover - exercised only without onnxruntime installed
    raise LoadError(
        "onnxruntime is not installed, so ONNX packages cannot be used; install the 'onnx' extra "
        "(pip install 'model-deploy[onnx]')"
    ) from exc

MODEL_FILENAME = "model.onnx"


logger = logging.getLogger(__name__)


def onnx_framework() -> Framework:
    """The manifest ``framework`` entry for ONNX packages (see the module docstring for why ORT's version)."""
    return Framework(name="onnx", version=str(onnxruntime.__version__))


class OnnxFormat:
    """Save (from PyTorch or Keras 3), import and load ONNX models."""

    name = "onnx"

    def save(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, *, dynamic_axes: DynamicAxes | None = None
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Export a live ``torch.nn.Module`` or Keras 3 model to ``model.onnx`` with a dynamic batch dimension.

        The framework is told from the model's class, so exporting a Keras model
        never imports PyTorch and vice versa. Either way the result is reloaded
        with ONNX Runtime and checked against the live model at a second batch size.
        """
        # Deferred: model_package.export sits above the formats and imports them.
        from model_package.export import framework_of

        axes = dynamic_axes or {}
        if framework_of(model) == "tensorflow":
            return self._save_keras(model, example_inputs, staging_dir, axes)
        return self._save_torch(model, example_inputs, staging_dir, axes)

    def _save_torch(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, axes: DynamicAxes
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Export a ``torch.nn.Module``.

        The dynamo-based exporter (``torch.export`` underneath) is tried first; if
        it fails, the legacy TorchScript-based exporter is used with ``dynamic_axes``.
        """
        from model_package.formats import _torch  # imports torch, only needed to export

        model, names = _torch.prepare_model(model, example_inputs)
        reference = _torch.reference_outputs(model, names, example_inputs)
        output_names = list(reference)
        path = staging_dir / MODEL_FILENAME
        try:
            with _torch.eval_mode(model):
                _export(model, example_inputs, names, reference, path, axes)
        except ModelPackageError:
            raise
        except Exception as exc:
            raise ExportError(
                f"torch.onnx could not export {type(model).__name__}: {one_line_error(exc)}. "
                "Try the 'torch_export' format, which supports more of PyTorch"
            ) from exc

        signature = signature_from_onnx(path)
        got_in, got_out = [s.name for s in signature.inputs], [s.name for s in signature.outputs]
        if sorted(got_in) != sorted(names) or got_out != output_names:
            raise ExportError(
                f"the exported ONNX graph has inputs {got_in} and outputs {got_out}; expected {names} and "
                f"{output_names} (the exporter drops inputs forward() does not use: remove them from the example)"
            )
        loaded = _load_session(path, signature, threads=None)
        cap = _torch.check_batch_generalizes(model, names, example_inputs, loaded, self.name)
        _torch.check_axes_generalize(model, names, example_inputs, loaded.predict, axes=axes, fmt=self.name)
        return SavedArtifact(MODEL_FILENAME, signature, onnx_framework(), max_batch_size=cap), reference

    def _save_keras(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, axes: DynamicAxes
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Export a live Keras 3 model with ``model.export(format="onnx")`` (tf2onnx underneath).

        Inputs get the ``input_signature`` the ``tf_savedmodel`` format uses (names
        of the ``keras.Input`` layers, batch dimension ``None``). tf2onnx keeps a
        returned dict's keys as output names but calls other outputs after their
        TensorFlow tensors (``Identity:0``); those are renamed to ``output_0``, ... .
        """
        from model_package.formats import _tensorflow as _tf

        # Shared with tf_savedmodel so both formats name a model's inputs identically.

        keras = _tf.import_keras()
        if not isinstance(model, keras.Model):
            raise UsageError(
                f"the onnx format exports torch.nn.Modules and Keras 3 models, got {type(model).__name__}; "
                "to package an existing .onnx file, import it instead"
            )
        try:
            # Keras imports tf2onnx lazily, deep inside export(); check up front for a clear message.
            importlib.import_module("tf2onnx")
        except ImportError as exc:
            raise ExportError(
                f"exporting a Keras model to ONNX needs tf2onnx, which is not installed ({exc}); {_tf.INSTALL_HINT}"
            ) from exc
        import onnx  # a dependency of tf2onnx, so present now

        input_signature, call_order = _tf.export_input_signature(model, example_inputs, axes)
        _tf.check_example_names(call_order, example_inputs)
        path = staging_dir / MODEL_FILENAME
        try:
            with warnings.catch_warnings():
                # Keras' numpy-2 patch for tf2onnx probes np.object, which NumPy 2 answers with a FutureWarning.
                warnings.filterwarnings("ignore", message=r".*np\.object", category=FutureWarning)
                model.export(str(path), format="onnx", input_signature=input_signature, verbose=False)
        except ModelPackageError:
            raise
        except Exception as exc:  # Keras, TF and tf2onnx raise anything while tracing and converting user layers
            raise ExportError(
                f"Keras could not export {type(model).__name__} to ONNX (tf2onnx): {one_line_error(exc)}. "
                "Try the 'tf_savedmodel' format, which supports every TensorFlow op"
            ) from exc

        proto = onnx.load(str(path))
        # tf2onnx writes ops it cannot convert into the graph unchanged (under their TF names) and carries on.
        unconverted = sorted({node.op_type for node in _all_nodes(proto.graph) if not _is_known_op(node)})
        if unconverted:
            raise ExportError(
                f"tf2onnx cannot convert the TensorFlow ops {unconverted} in {type(model).__name__} to ONNX; "
                "use the 'tf_savedmodel' format, or replace the layers that use them"
            )
        # Checked on the graph before its signature is read: reading warns about each input's fixed batch axis.
        weights = {init.name for init in proto.graph.initializer}
        got_in = [value.name for value in proto.graph.input if value.name not in weights]
        if sorted(got_in) != sorted(call_order):
            strays = sorted(set(got_in) - set(call_order))
            raise ExportError(
                f"the exported ONNX graph has inputs {got_in}; expected the model's inputs {call_order}. tf2onnx "
                f"left tensors of the model as inputs ({strays}): constants it did not fold, as with an adapted "
                "Normalization layer or keras.ops.arange (bare model.export(format='onnx') does the same); use the "
                "'tf_savedmodel' format, which keeps them"
            )
        exported = signature_from_onnx(path)
        fixed = [spec.name for spec in exported.inputs if spec.shape and spec.shape[0] != -1]
        if fixed:
            raise ExportError(f"the exported ONNX graph has a fixed batch dimension on inputs {fixed}; expected -1")
        reference = _tf.run_keras_model(model, exported, example_inputs, call_order)
        if _name_outputs_like(proto.graph, list(reference)):
            onnx.save_model(proto, str(path))
        signature = signature_from_onnx(path)
        # Keras' own id ranges: its negative-id handling sits between the input and the Gather, out of
        # gathered_index_ranges' sight.
        keras_ranges = _tf.keras_embedding_ranges(model)
        signature = signature.model_copy(update={"inputs": with_valid_ranges(signature.inputs, keras_ranges)})
        _tf.check_reference_names(signature, reference)
        reference = {spec.name: reference[spec.name] for spec in signature.outputs}  # in the graph's order
        try:
            loaded = _load_session(path, signature, threads=None)
        except LoadError as exc:
            raise ExportError(f"ONNX Runtime cannot load the graph tf2onnx wrote: {exc}") from exc
        cap = _tf.check_batch_generalizes(model, signature, example_inputs, call_order, loaded, fmt=self.name)
        _tf.check_axes_generalize(model, signature, example_inputs, call_order, loaded, axes=axes, fmt=self.name)
        return SavedArtifact(MODEL_FILENAME, signature, onnx_framework(), max_batch_size=cap), reference

    def import_artifact(
        self, source: Path, staging_dir: Path, example_inputs: Tensors | None, options: ImportOptions = NO_OPTIONS
    ) -> SavedArtifact:
        """Copy an ``.onnx`` file (and any external-data files it references); the signature comes from its graph."""
        check_import_options(self.name, options)
        if not source.is_file():
            raise MissingFileError(f"{source} does not exist or is not a file; expected an .onnx file")
        signature = signature_from_onnx(source)
        for location in external_data_locations(source):
            if location in (MODEL_FILENAME, "manifest.json") or location.startswith(("example/", "code/")):
                # The package owns these paths; letting weights land there would clobber or be clobbered.
                raise UsageError(
                    f"{source.name} keeps weights in {location!r}, a path the package reserves; "
                    "re-save it with another external-data location (onnx.save_model(..., location=...))"
                )
            target = staging_dir / location
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (source.parent / location).is_file():
                raise MissingFileError(f"{source.name} keeps weights in {location!r}, which is not next to it")
            shutil.copyfile(source.parent / location, target)
        shutil.copyfile(source, staging_dir / MODEL_FILENAME)
        # Open it once now so an ONNX Runtime that cannot run the graph fails the import, not the endpoint.
        _load_session(staging_dir / MODEL_FILENAME, signature, threads=None)
        if example_inputs is not None:
            try:
                check_inputs(signature, example_inputs)
            except PredictionError as exc:
                raise UsageError(f"the example inputs do not fit {source.name}: {exc}") from exc
        return SavedArtifact(MODEL_FILENAME, signature, onnx_framework())

    def load(self, package_dir: Path, manifest: Manifest, *, threads: int | None = None) -> LoadedModel:
        """Open ``model.onnx`` in an ONNX Runtime CPU session."""
        return _load_session(package_dir / manifest.model_path, manifest.signature, threads=threads)


class OnnxLoadedModel:
    """An ONNX Runtime session behind the LoadedModel interface.

    ``InferenceSession.run`` is documented as safe to call from several threads;
    the session is created once at load time.
    """

    def __init__(self, session: Any, signature: Signature, path: Path) -> None:
        self._session = session
        self._signature = signature
        named = [
            ((graph_input.name, axis), size if isinstance(size, str) else None)
            for graph_input in session.get_inputs()
            for axis, size in enumerate(graph_input.shape)
        ]
        # The graph is read only for models with a varying axis past the batch: image models skip it.
        varying = any(axis and name is not None for (_, axis), name in named)
        self.axis_rules = from_named_axes(named, most=_position_bounds(path) if varying else None)
        """Inputs whose varying axes share a ``dim_param`` name, so must have one size, and axes bounded by
        a table of positions (``onnx_graph``); checked before a run."""
        self._output_names = [spec.name for spec in signature.outputs]
        self._path = path

    @property
    def signature(self) -> Signature:
        """The package's signature (from its manifest)."""
        return self._signature

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        """Run one batch; InvalidInputError for inputs that do not fit, ModelExecutionError if the graph fails."""
        checked = check_inputs(self._signature, inputs)
        if self.axis_rules:
            self.axis_rules.check(checked)
        try:
            results = self._session.run(self._output_names, checked)
        except Exception as exc:
            shapes = {name: list(array.shape) for name, array in checked.items()}
            raise ModelExecutionError(
                f"ONNX model {self._path.name} failed on inputs with shapes {shapes}: {one_line_error(exc)}"
            ) from exc
        return {name: np.asarray(value) for name, value in zip(self._output_names, results, strict=True)}


def _position_bounds(path: Path) -> dict[str, int]:
    """The graph's position-table bounds (see ``onnx_graph``); none when the ``onnx`` package is missing."""
    try:
        import onnx
    except ImportError:  # serving needs only onnxruntime; the "onnx" extra installs both
        logger.warning(
            "the onnx package is not installed: sequence lengths past %s's position table fail as 500s", path.name
        )
        return {}
    try:
        # Weights are not needed, only the tables' sizes: external data stays on disk.
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # ONNX Runtime read the file; the onnx package is not what serving depends on
        logger.warning("cannot read %s's graph for its sequence bounds: %s", path.name, one_line_error(exc))
        return {}
    try:
        return position_table_bounds(graph)
    except Exception as exc:  # a graph this reader does not know: serve it without the bound, logged
        logger.warning("cannot read %s's position tables: %s", path.name, one_line_error(exc), exc_info=True)
        return {}


def _load_session(path: Path, signature: Signature, *, threads: int | None) -> OnnxLoadedModel:
    if not path.is_file():
        raise LoadError(f"{path} does not exist; the package is incomplete")
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise LoadError(f"cannot load ONNX model {path}: {one_line_error(exc)}") from exc
    graph_inputs = sorted(i.name for i in session.get_inputs())
    graph_outputs = {o.name for o in session.get_outputs()}
    declared_inputs = sorted(spec.name for spec in signature.inputs)
    missing_outputs = [spec.name for spec in signature.outputs if spec.name not in graph_outputs]
    if graph_inputs != declared_inputs or missing_outputs:
        raise LoadError(
            f"{path} has inputs {graph_inputs} and outputs {sorted(graph_outputs)}, but the manifest declares "
            f"inputs {declared_inputs} and outputs {[spec.name for spec in signature.outputs]}"
        )
    return OnnxLoadedModel(session, signature, path)


def _export(  # noqa: PLR0917 - one private call site
    model: Any,
    example_inputs: Tensors,
    names: list[str],
    reference: dict[str, np.ndarray],
    path: Path,
    axes: DynamicAxes,
) -> None:
    """Write ``path`` with the dynamo exporter, falling back to the legacy one."""
    from model_package.formats import _torch
    from model_package.formats._torch import torch

    output_names = list(reference)
    args = _torch.export_batch(example_inputs, names, axes)
    try:
        # The dynamo exporter is torch's supported path (default since 2.9): it goes through
        # torch.export, so the batch dimension is symbolic rather than a traced constant.
        with warnings.catch_warnings():
            # Inputs share one batch Dim on purpose; torch notes that it will name the axis once.
            warnings.filterwarnings("ignore", message=r".*since it shares the same shape constraints")
            # Raised from torch's own pytree internals during export; nothing a user could act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            # Without torchvision installed, torch warns once per torchvision op it cannot register:
            # noise for every model that does not use those ops (and those fail loudly anyway).
            registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
            registration_level = registration_log.level
            registration_log.setLevel(logging.ERROR)
            try:
                program = _export_dynamo(
                    model, args, names=names, output_names=output_names, example_inputs=example_inputs, axes=axes
                )
            finally:
                registration_log.setLevel(registration_level)
        if program is None:  # only returned as None when f is given; guard for the type checker
            raise RuntimeError("torch.onnx.export returned no program")
        program.save(str(path))  # external data (model.onnx.data) only for models over 2 GB
        return
    except Exception as exc:
        dynamo_error = one_line_error(exc, 300)
        logger.warning(
            "the dynamo ONNX exporter failed (%s); retrying with the legacy TorchScript-based exporter", dynamo_error
        )
    for leftover in (path, path.with_name(path.name + ".data")):
        leftover.unlink(missing_ok=True)
    arrays = {**{n: np.asarray(example_inputs[n]) for n in names}, **reference}
    batched = [name for name, array in arrays.items() if array.ndim]
    try:
        with _torch.surface_tracer_warnings("torch.onnx.export (legacy)"):
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=False,
                input_names=names,
                output_names=output_names,
                dynamic_axes={
                    name: {0: "batch", **{axis: f"{name}_{axis}" for axis in axes.get(name, ())}} for name in batched
                },
            )
    except Exception as exc:
        raise ExportError(
            f"torch.onnx could not export {type(model).__name__}: the dynamo exporter failed ({dynamo_error}) "
            f"and so did the legacy exporter ({one_line_error(exc, 300)}). Try the 'torch_export' format"
        ) from exc


def _all_nodes(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_nodes(subgraph)


def _is_known_op(node: Any) -> bool:
    """Whether ``node`` is a standard ONNX op (other domains, such as ONNX Runtime's contrib ops, are trusted)."""
    import onnx

    return node.domain not in ("", "ai.onnx") or bool(onnx.defs.has(node.op_type))


def _name_outputs_like(graph: Any, names: list[str]) -> bool:
    """Rename ``graph``'s outputs to ``output_0``, ``output_1``, ... if ``names`` are positional; True if renamed.

    tf2onnx lists the outputs in TensorFlow's flat order, which for a list or
    tuple is index order. Each renamed output gets an ``Identity`` node rather
    than a renamed producer, so no consumer (nor a subgraph that captures the
    tensor) has to be rewritten; ONNX Runtime removes the node when optimising.
    """
    import onnx

    current = [output.name for output in graph.output]
    if sorted(current) == sorted(names):
        return False
    positional = [f"output_{index}" for index in range(len(current))]
    if sorted(names) != positional:
        raise ExportError(
            f"the exported ONNX graph has outputs {current}, which cannot be matched to the live model's "
            f"outputs {names}; return a dict of named outputs from the model"
        )
    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    taken.update(value.name for value in (*graph.input, *graph.initializer))
    for output, new_name in zip(graph.output, positional, strict=True):
        if output.name == new_name:
            continue
        if new_name in taken:
            raise ExportError(
                f"cannot name the ONNX output {output.name!r} {new_name!r}: the graph already has a tensor "
                "of that name; return a dict of named outputs from the model"
            )
        graph.node.append(onnx.helper.make_node("Identity", [output.name], [new_name], name=f"{new_name}_identity"))
        output.name = new_name
    return True


def signature_from_onnx(path: Path) -> Signature:
    """The signature declared by an ONNX graph: symbolic or unknown dimensions become ``-1``."""
    import onnx

    try:
        # Weights are not needed to read the signature; skipping them keeps large models cheap to inspect.
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise LoadError(f"cannot read ONNX model {path}: {one_line_error(exc)}") from exc
    graph = model.graph
    # Old exporters list initializers (weights) as graph inputs too; they have defaults and are not user inputs.
    weights = {init.name for init in graph.initializer}
    inputs = tuple(_value_spec(v, "input", path) for v in graph.input if v.name not in weights)
    inputs = with_valid_ranges(inputs, gathered_index_ranges(graph))
    outputs = tuple(_value_spec(v, "output", path) for v in graph.output)
    if not inputs or not outputs:
        raise UsageError(f"{path} declares no {'inputs' if not inputs else 'outputs'}; a servable model needs both")
    for spec in inputs:
        if spec.shape and spec.shape[0] != -1:
            logger.warning(
                "%s: input %r has a fixed first dimension %d, so the package only accepts batches of exactly "
                "that size; re-export it with a dynamic batch axis to serve other batch sizes",
                path.name,
                spec.name,
                spec.shape[0],
            )
    return Signature(inputs=inputs, outputs=outputs)


def _value_spec(value: Any, kind: str, path: Path) -> TensorSpec:
    import onnx

    if not value.type.HasField("tensor_type"):
        raise UsageError(f"{path}: {kind} {value.name!r} is not a tensor (sequence/map/optional types are unsupported)")
    tensor_type = value.type.tensor_type
    try:
        dtype = numpy_dtype_name(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    except Exception:
        dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type).lower()
    if dtype not in DTYPES or dtype == "bytes":
        raise UsageError(
            f"{path}: {kind} {value.name!r} has element type {dtype}; supported: "
            f"{', '.join(d for d in DTYPES if d != 'bytes')}"
        )
    if not tensor_type.HasField("shape"):
        raise UsageError(f"{path}: {kind} {value.name!r} has no declared rank; re-export it with shape information")
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim)
    return TensorSpec(name=value.name, dtype=dtype, shape=shape)


def external_data_locations(path: Path) -> list[str]:
    """Relative paths of the external-data files an ONNX model references, checked to stay beside it."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise LoadError(f"cannot read ONNX model {path}: {one_line_error(exc)}") from exc
    locations: set[str] = set()
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        try:
            check_relative_path(location)
        except ValueError as exc:
            raise UsageError(f"{path.name} references external data {location!r} outside its directory") from exc
        locations.add(location)
    return sorted(locations)


def _all_tensors(graph: Any) -> Iterator[Any]:
    # Weights live in initializers and in tensor attributes of nodes, including nested subgraphs (If/Loop bodies).
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _all_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_tensors(subgraph)


#: Typed as the protocol so the type checker proves the class implements it.
FORMAT: ExportableFormat = OnnxFormat()


def _export_dynamo(
    model: Any,
    args: tuple[Any, ...],
    *,
    names: list[str],
    output_names: list[str],
    example_inputs: Tensors,
    axes: DynamicAxes,
) -> Any:
    """``torch.onnx.export`` through torch.export, with one shared dynamic batch dimension."""
    from model_package.formats import _torch
    from model_package.formats._torch import torch

    return torch.onnx.export(
        model,
        args,
        None,
        dynamo=True,
        input_names=names,
        output_names=output_names,
        dynamic_shapes=_torch.batch_dynamic_shapes(names, example_inputs, axes),
        verbose=False,
    )
