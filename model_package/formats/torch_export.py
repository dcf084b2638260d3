"""Format ``torch_export``: a ``torch.export`` ExportedProgram saved as ``model.pt2``.

This is the recommended PyTorch format: the program is a traced graph with an
explicit dynamic batch dimension, its signature (names, dtypes, shapes) is
recorded in the file, and loading it needs no Python model code.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model_package.dynamic_axes import DynamicAxes
from model_package.errors import (
    ExportError,
    LoadError,
    MissingFileError,
    ModelPackageError,
    PredictionError,
    UsageError,
)
from model_package.formats import _torch
from model_package.formats._torch import torch
from model_package.formats.base import (
    NO_OPTIONS,
    ExportableFormat,
    ImportOptions,
    LoadedModel,
    SavedArtifact,
    Tensors,
    check_import_options,
    check_inputs,
    one_line_error,
    with_valid_ranges,
)
from model_package.formats.torch_graph import embedding_index_ranges, program_axis_rules
from model_package.manifest import Manifest, Signature, TensorSpec

MODEL_FILENAME = "model.pt2"


class TorchExportFormat:
    """Save, import and load ``torch.export`` programs (``.pt2``)."""

    name = "torch_export"

    def save(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, *, dynamic_axes: DynamicAxes | None = None
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Export ``model`` with ``torch.export.export`` (dynamic batch on axis 0, plus ``dynamic_axes``)."""
        axes = dynamic_axes or {}
        model, names = _torch.prepare_model(model, example_inputs)
        reference = _torch.reference_outputs(model, names, example_inputs)
        args = _torch.export_batch(example_inputs, names, axes)
        dynamic_shapes = _torch.batch_dynamic_shapes(names, example_inputs, axes)
        path = staging_dir / MODEL_FILENAME
        try:
            with _torch.eval_mode(model):
                program = torch.export.export(model, args, dynamic_shapes=dynamic_shapes)
            torch.export.save(program, str(path))
        except ModelPackageError:
            raise
        except Exception as exc:
            wanted = "a dynamic batch dimension" + (f" and dynamic axes {dict(axes)}" if axes else "")
            raise ExportError(
                f"torch.export could not export {type(model).__name__} with {wanted}: "
                f"{one_line_error(exc)}. See https://docs.pytorch.org/docs/stable/export.html for what export "
                "supports, or use the 'onnx' or 'torchscript' format"
            ) from exc

        # Named after the model, not the staging file: a temporary path means nothing to the user.
        signature = signature_from_program(program, f"{type(model).__name__}.forward()")
        declared = [spec.name for spec in signature.inputs]
        if declared != names:
            raise ExportError(f"the exported program names its inputs {declared}; expected forward()'s {names}")
        if [spec.name for spec in signature.outputs] != list(reference):
            raise ExportError(
                f"the exported program's outputs {[s.name for s in signature.outputs]} do not match the "
                f"live model's {list(reference)}"
            )
        loaded = self._load_file(path, signature, threads=None)
        cap = _torch.check_batch_generalizes(model, names, example_inputs, loaded, self.name)
        artifact = SavedArtifact(MODEL_FILENAME, signature, _torch.torch_framework(), max_batch_size=cap)
        _torch.check_axes_generalize(model, names, example_inputs, loaded.predict, axes=axes, fmt=self.name)
        return artifact, reference

    def import_artifact(
        self, source: Path, staging_dir: Path, example_inputs: Tensors | None, options: ImportOptions = NO_OPTIONS
    ) -> SavedArtifact:
        """Copy a ``.pt2`` file written by ``torch.export.save`` and read its signature from the program."""
        check_import_options(self.name, options)
        if not source.is_file():
            raise MissingFileError(f"{source} does not exist or is not a file; expected a torch.export .pt2 file")
        program = _load_program(source)
        signature = signature_from_program(program, str(source))
        if example_inputs is not None:
            try:
                check_inputs(signature, example_inputs)
            except PredictionError as exc:
                raise UsageError(f"the example inputs do not fit {source.name}: {exc}") from exc
        shutil.copyfile(source, staging_dir / MODEL_FILENAME)
        # A .pt2 file does not record the torch version that wrote it; record the one that read and checked it.
        return SavedArtifact(model_path=MODEL_FILENAME, signature=signature, framework=_torch.torch_framework())

    def load(self, package_dir: Path, manifest: Manifest, *, threads: int | None = None) -> LoadedModel:
        """Load ``model.pt2`` for inference; the program is deserialised once and reused for every call."""
        return self._load_file(package_dir / manifest.model_path, manifest.signature, threads=threads)

    def _load_file(self, path: Path, signature: Signature, *, threads: int | None) -> LoadedModel:
        _torch.set_threads(threads)
        program = _load_program(path)
        positional, keywords = _call_plan(program, str(path))
        declared = sorted([*positional, *keywords])
        expected = sorted(spec.name for spec in signature.inputs)
        if declared != expected:
            raise LoadError(f"{path} takes inputs {declared}, but the manifest declares {expected}")
        try:
            module = program.module()
        except Exception as exc:
            raise LoadError(f"cannot build a runnable module from {path}: {one_line_error(exc)}") from exc
        return _torch.TorchLoadedModel(
            _fast_call(program, module),
            signature,
            positional,
            keywords,
            description=f"torch.export program {path.name}",
            axis_rules=program_axis_rules(program),
        )


def _fast_call(program: Any, module: torch.nn.Module) -> Callable[..., Any]:
    """``module.forward`` when the module's call hooks have nothing to do for this program, else ``module``.

    ``program.module()`` wraps the graph in forward hooks: one checks that the call's argument
    structure matches the export (ours always does: the call plan builds it from the program's own
    signature) and two enable and disable ``nn.Module`` graph inputs (only for programs exported
    with modules among their example inputs). The shape guards run inside the graph itself
    (``_guards_fn``), so they stay. Going around ``Module.__call__`` costs 31-32 µs per call instead of
    55-57 µs on the 64->256->256->10 MLP (``python -m bench.request_overhead``): for small models,
    a tenth of a request's latency.
    """
    args, kwargs = program.example_inputs or ((), {})
    plain_tensors = all(isinstance(value, torch.Tensor) for value in [*args, *kwargs.values()])
    if plain_tensors and "_guards_fn" in dict(module.named_children()):
        forward: Callable[..., Any] = module.forward
        return forward
    return module


def _load_program(path: Path) -> Any:
    """``torch.export.load`` after checking that loading cannot unpickle arbitrary objects."""
    if not path.is_file():
        raise LoadError(f"{path} does not exist; the package is incomplete")
    check_pt2_is_safe(path)
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise LoadError(
            f"cannot load torch.export program {path}: {one_line_error(exc)}. "
            f"It must be written by torch.export.save (this is torch {torch.__version__})"
        ) from exc


def check_pt2_is_safe(path: Path) -> None:
    """Refuse ``.pt2`` archives whose loading would run pickle or native code.

    ``torch.export.load`` falls back to ``pickle`` / ``torch.load(weights_only=False)``
    for tensor subclasses, opaque objects, legacy layouts and sample inputs that
    are not plain tensors, and loads AOTInductor shared libraries. An archive
    written by ``torch.export.save`` for an ordinary model uses none of these,
    so anything that would is rejected before torch sees the file.
    """
    from torch.export.pt2_archive import PT2ArchiveReader
    from torch.export.pt2_archive import constants as pt2

    try:
        reader = PT2ArchiveReader(str(path))
        names = set(reader.get_file_names())
    except Exception as exc:
        raise LoadError(
            f"{path} is not a torch.export .pt2 archive: {one_line_error(exc)}. "
            "Write it with torch.export.save (files from torch.save or torch.jit.save are different formats)"
        ) from exc

    def refuse(why: str) -> LoadError:
        return LoadError(
            f"refusing to load {path}: {why}. Loading it would unpickle arbitrary objects or load native code; "
            "re-export the model with torch.export.export + torch.export.save from plain tensors and parameters"
        )

    if pt2.MODELS_FILENAME_FORMAT.format("model") not in names:
        raise LoadError(f"{path} holds no exported program named 'model'; write it with torch.export.save")
    for name in sorted(names):
        if name.startswith((pt2.AOTINDUCTOR_DIR, pt2.EXECUTORCH_DIR, pt2.MTIA_DIR)):
            raise refuse(f"it contains compiled code ({name})")
        if name.startswith((pt2.WEIGHTS_DIR, pt2.CONSTANTS_DIR)) and name.endswith(".pt"):
            raise refuse(f"it uses the legacy pickled weights layout ({name})")
        if name.startswith(pt2.WEIGHTS_DIR) and name.endswith("_weights_config.json"):
            _check_payload_config(reader, name, tensor_prefix=None, refuse=refuse)
        if name.startswith(pt2.CONSTANTS_DIR) and name.endswith("_constants_config.json"):
            _check_payload_config(reader, name, tensor_prefix=pt2.TENSOR_CONSTANT_FILENAME_PREFIX, refuse=refuse)
        if name.startswith(pt2.SAMPLE_INPUTS_DIR):
            # torch.export.load retries sample inputs with weights_only=False if this fails.
            try:
                torch.load(io.BytesIO(reader.read_bytes(name)), weights_only=True)
            except Exception as exc:
                raise refuse(f"its sample inputs ({name}) are not plain tensors") from exc


def _check_payload_config(reader: Any, name: str, *, tensor_prefix: str | None, refuse: Any) -> None:
    try:
        config = json.loads(reader.read_string(name))["config"]
        entries = list(config.items())
    except Exception as exc:
        raise refuse(f"{name} is not a valid payload index") from exc
    for key, meta in entries:
        if not isinstance(meta, dict) or meta.get("use_pickle"):
            raise refuse(f"{key!r} in {name} is stored pickled (a tensor subclass or custom object)")
        if tensor_prefix is not None and not str(meta.get("path_name", "")).startswith(tensor_prefix):
            raise refuse(f"constant {key!r} in {name} is a custom or opaque object, not a tensor")


def _call_plan(program: Any, where: str) -> tuple[list[str], dict[str, str]]:
    """How to call the program: positional input names, and input name -> keyword for keyword inputs."""
    names = list(program.graph_signature.user_inputs)
    in_spec = program.call_spec.in_spec
    try:
        args_spec, kwargs_spec = _children(in_spec)
        n_positional = args_spec.num_children
        keys = list(kwargs_spec.context or [])
    except Exception as exc:
        raise LoadError(f"{where}: unexpected input structure {in_spec}") from exc
    if in_spec.num_leaves != len(names) or n_positional + len(keys) != len(names):
        raise UsageError(
            f"{where} takes nested inputs ({in_spec}); packages support forward() parameters that are each one tensor"
        )
    return names[:n_positional], dict(zip(names[n_positional:], keys, strict=True))


def signature_from_program(program: Any, where: str) -> Signature:
    """The signature recorded in an ExportedProgram: symbolic dimensions become ``-1``."""
    nodes = {node.name: node for node in program.graph.nodes}
    positional, keywords = _call_plan(program, where)
    inputs = [_spec(name, nodes.get(name), "input", where) for name in [*positional, *keywords]]
    inputs = list(with_valid_ranges(inputs, embedding_index_ranges(program)))

    output_nodes = []
    for output_spec in program.graph_signature.output_specs:
        if output_spec.kind.name != "USER_OUTPUT":
            continue  # buffer mutations and the like are not results
        arg_name = getattr(output_spec.arg, "name", None)
        output_nodes.append(nodes.get(arg_name) if isinstance(arg_name, str) else None)
    out_spec = program.call_spec.out_spec
    names = _output_names(out_spec, len(output_nodes), where)
    outputs = [_spec(name, node, "output", where) for name, node in zip(names, output_nodes, strict=True)]
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _output_names(out_spec: Any, count: int, where: str) -> list[str]:
    # The same rule as _torch.name_outputs applies to live results, so save() and import agree.
    if out_spec.is_leaf():
        return _checked_count([_torch.SINGLE_OUTPUT], count, where)
    children = _children(out_spec)
    context = out_spec.context
    # dict, OrderedDict and Hugging Face ModelOutput (a registered pytree node) keep their keys as context.
    keys = [str(key) for key in context] if isinstance(context, list | tuple) else None
    fields = getattr(context, "_fields", None)  # a NamedTuple's context is its class
    if isinstance(fields, tuple):
        keys = [str(field) for field in fields]
    nested = [
        keys[index] if keys is not None and index < len(keys) else str(index)
        for index, child in enumerate(children)
        if not child.is_leaf()
    ]
    if nested:
        raise UsageError(f"{where} returns nested values in {nested}. {_torch.OUTPUT_ADVICE}")
    if out_spec.type in (tuple, list):
        names = [_torch.positional_output_name(i) for i in range(out_spec.num_children)]
    elif keys is not None and len(keys) == out_spec.num_children:
        names = keys
    else:
        raise UsageError(
            f"{where} returns a {getattr(out_spec.type, '__name__', out_spec.type)}. {_torch.OUTPUT_ADVICE}"
        )
    return _checked_count(names, count, where)


def _checked_count(names: list[str], count: int, where: str) -> list[str]:
    if len(names) != count:
        raise UsageError(f"{where} returns {len(names)} values but only {count} are tensors; outputs must be tensors")
    return names


def _children(spec: Any) -> list[Any]:
    # TreeSpec.children() replaced the children_specs attribute (deprecated in recent torch releases).
    children = getattr(spec, "children", None)
    return list(children() if callable(children) else spec.children_specs)


def _spec(name: str, node: Any, kind: str, where: str) -> TensorSpec:
    value = None if node is None else node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{where}: {kind} {name!r} is not a tensor; package signatures describe tensors only")
    # Symbolic sizes (SymInt) are the dynamic dimensions; concrete ints are fixed.
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in value.shape)
    return TensorSpec(name=name, dtype=_torch.torch_dtype_name(value.dtype, f"{kind} {name!r}"), shape=shape)


#: Typed as the protocol so the type checker proves the class implements it.
FORMAT: ExportableFormat = TorchExportFormat()
