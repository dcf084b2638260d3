"""Format ``torchscript``: a TorchScript module saved with ``torch.jit.save`` as ``model.pt``.

TorchScript is deprecated upstream in favour of ``torch.export``; this format
exists to package models that are already TorchScript files or that
``torch.export`` cannot handle. A TorchScript file records argument names but
not dtypes or shapes, so importing one needs example inputs.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model_package.dynamic_axes import DynamicAxes, longer_along
from model_package.errors import ExportError, LoadError, MissingFileError, ModelPackageError, UsageError
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
    one_line_error,
)
from model_package.manifest import Manifest, Signature

MODEL_FILENAME = "model.pt"

logger = logging.getLogger(__name__)

# torch.jit's entry points are unannotated; naming their type once keeps mypy --strict quiet without ignores.
_jit_trace: Callable[..., Any] = torch.jit.trace
_jit_load: Callable[..., Any] = torch.jit.load


class TorchScriptFormat:
    """Save, import and load TorchScript modules (``.pt``)."""

    name = "torchscript"

    def save(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, *, dynamic_axes: DynamicAxes | None = None
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Trace ``model`` (or keep it, if already scripted) and write ``model.pt`` with ``torch.jit.save``.

        A TorchScript file records no shapes, so the ``dynamic_axes`` go into the
        manifest's signature, after a check that the saved module matches the
        live one when they are one longer than in the example.
        """
        axes = dynamic_axes or {}
        logger.warning(
            "TorchScript is deprecated in PyTorch; prefer the 'torch_export' format (torch.export) "
            "unless your model cannot be exported"
        )
        model, names = _torch.prepare_model(model, example_inputs)
        reference = _torch.reference_outputs(model, names, example_inputs)
        path = staging_dir / MODEL_FILENAME
        try:
            with _torch.eval_mode(model):
                scripted = (
                    model if isinstance(model, torch.jit.ScriptModule) else _trace(model, example_inputs, names, axes)
                )
            torch.jit.save(scripted, str(path))
        except ModelPackageError:
            raise
        except Exception as exc:
            raise ExportError(
                f"torch.jit could not trace {type(model).__name__}: {one_line_error(exc)}. "
                "Try the 'torch_export' format, or pass a torch.jit.script()-ed module"
            ) from exc
        ordered = {n: np.asarray(example_inputs[n]) for n in names}
        provisional = _torch.signature_from_arrays(ordered, reference, axes)
        loaded = self._load_file(path, provisional, threads=None)
        cap = _torch.check_batch_generalizes(model, names, example_inputs, loaded, self.name)
        longer = _torch.check_axes_generalize(model, names, example_inputs, loaded.predict, axes=axes, fmt=self.name)
        signature = _torch.signature_from_arrays(ordered, reference, axes, longer)
        return SavedArtifact(MODEL_FILENAME, signature, _torch.torch_framework(), max_batch_size=cap), reference

    def import_artifact(
        self, source: Path, staging_dir: Path, example_inputs: Tensors | None, options: ImportOptions = NO_OPTIONS
    ) -> SavedArtifact:
        """Copy a TorchScript file; the signature comes from running it on ``example_inputs``."""
        check_import_options(self.name, options, dynamic_axes=True)
        if not source.is_file():
            raise MissingFileError(f"{source} does not exist or is not a file; expected a TorchScript .pt file")
        if example_inputs is None:
            raise UsageError(
                f"{source.name} is a TorchScript file, which does not record input dtypes or shapes; "
                "pass example inputs (an .npz file with one array per forward() argument, via --example-inputs)"
            )
        module = _load_module(source)
        names = _argument_names(module, str(source))
        if sorted(names) != sorted(example_inputs):
            raise UsageError(
                f"{source.name}'s forward() takes {names}, but the example inputs are named {sorted(example_inputs)}; "
                "name the arrays in the .npz file after forward()'s arguments"
            )
        ordered = {name: np.asarray(example_inputs[name]) for name in names}
        try:
            outputs = _torch.run_model(module, names, ordered)
        except ModelPackageError:
            raise
        except Exception as exc:
            raise UsageError(
                f"{source.name} failed on the example inputs { ({n: list(a.shape) for n, a in ordered.items()}) }: "
                f"{one_line_error(exc)}"
            ) from exc
        axes = options.dynamic_axes
        longer = None
        if axes:
            grown = longer_along(ordered, axes)
            try:
                longer = _torch.run_model(module, names, grown)
            except ModelPackageError:
                raise
            except Exception as exc:
                described = ", ".join(f"{name} axis {list(dims)}" for name, dims in axes.items())
                raise UsageError(
                    f"{source.name} fails when the dynamic axes ({described}) are one longer than in the example, "
                    f"so it cannot serve other lengths: {one_line_error(exc)}. Trace it from a model that computes "
                    "lengths with tensor ops, or drop --dynamic-axes"
                ) from exc
        signature = _torch.signature_from_arrays(ordered, outputs, axes, longer)
        shutil.copyfile(source, staging_dir / MODEL_FILENAME)
        return SavedArtifact(MODEL_FILENAME, signature, _torch.torch_framework())

    def load(self, package_dir: Path, manifest: Manifest, *, threads: int | None = None) -> LoadedModel:
        """Load ``model.pt`` onto the CPU in eval mode."""
        return self._load_file(package_dir / manifest.model_path, manifest.signature, threads=threads)

    def _load_file(self, path: Path, signature: Signature, *, threads: int | None) -> LoadedModel:
        _torch.set_threads(threads)
        module = _load_module(path)
        names = _argument_names(module, str(path))
        expected = [spec.name for spec in signature.inputs]
        if sorted(names) != sorted(expected):
            raise LoadError(f"{path}'s forward() takes {names}, but the manifest declares inputs {expected}")
        return _torch.TorchLoadedModel(module, signature, names, description=f"TorchScript module {path.name}")


def _trace(model: Any, example_inputs: Tensors, names: list[str], axes: DynamicAxes) -> Any:
    args = _torch.export_batch(example_inputs, names, axes)
    with _torch.surface_tracer_warnings("torch.jit.trace"):
        # strict=False lets forward() return a dict; tracing re-runs once to check the graph is stable.
        return _jit_trace(model, args, strict=False)


def _load_module(path: Path) -> Any:
    if not path.is_file():
        raise LoadError(f"{path} does not exist; the package is incomplete")
    try:
        # TorchScript archives are read by TorchScript's own unpickler, which only rebuilds
        # TorchScript types; it cannot import arbitrary Python objects like pickle can.
        module = _jit_load(str(path), map_location="cpu")
    except Exception as exc:
        raise LoadError(
            f"cannot load TorchScript module {path}: {one_line_error(exc)}. It must be written by torch.jit.save"
        ) from exc
    module.eval()  # a file saved from a module in training mode would otherwise run dropout etc.
    return module


def _argument_names(module: Any, where: str) -> list[str]:
    try:
        arguments = module.forward.schema.arguments[1:]  # arguments[0] is self
    except Exception as exc:
        raise LoadError(f"{where} has no forward() method: {one_line_error(exc)}") from exc
    return [argument.name for argument in arguments]


#: Typed as the protocol so the type checker proves the class implements it.
FORMAT: ExportableFormat = TorchScriptFormat()
