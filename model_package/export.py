"""Create packages: from a live model (export) or from an already-saved artifact (import)."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np

from model_package.builder import PackageSpec, build_package
from model_package.errors import ExportError, MissingFileError, UnknownFormatError, UsageError
from model_package.formats import ExportableFormat, detect_format, get_format
from model_package.manifest import Manifest

#: Which formats each framework's live models can be exported to; the first is the default.
EXPORT_FORMATS: dict[str, tuple[str, ...]] = {
    "torch": ("torch_export", "torchscript", "onnx"),
    "tensorflow": ("tf_savedmodel", "keras", "onnx"),
}


def framework_of(model: object) -> str:
    """``torch`` or ``tensorflow`` for a live model, decided without importing either framework."""
    modules = {cls.__module__.split(".")[0] for cls in type(model).__mro__}
    if "torch" in modules:
        return "torch"
    if modules & {"keras", "tf_keras", "tensorflow"}:
        return "tensorflow"
    raise UsageError(
        f"cannot export a {type(model).__module__}.{type(model).__qualname__}: "
        "expected a torch.nn.Module or a Keras model"
    )


def export_model(
    model: object,
    example_inputs: Mapping[str, np.ndarray],
    out_dir: Path,
    *,
    name: str,
    version: str,
    format: str | None = None,
    code_dir: Path | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Export a live PyTorch or Keras model into the package directory ``out_dir``.

    ``example_inputs`` maps each model input name (a ``forward`` parameter for
    PyTorch, a Keras ``Input`` name) to a small batch; its outputs from the live
    model become the package's expected outputs.
    """
    framework = framework_of(model)
    allowed = EXPORT_FORMATS[framework]
    chosen = format or allowed[0]
    if chosen not in allowed:
        raise UnknownFormatError(
            f"a {framework} model cannot be exported as {chosen!r}; choose one of: {', '.join(allowed)}"
        )
    inputs = _as_named_arrays(example_inputs)
    exporter = cast(ExportableFormat, get_format(chosen))
    spec = PackageSpec(
        name=name,
        version=version,
        format=chosen,
        example_inputs=inputs,
        code_dir=code_dir,
        rtol=rtol,
        atol=atol,
        source=f"{type(model).__module__}.{type(model).__qualname__}",
        metadata=dict(metadata or {}),
    )
    return build_package(out_dir, spec, lambda staging: exporter.save(model, inputs, staging), overwrite=overwrite)


def import_artifact(
    source: Path,
    out_dir: Path,
    *,
    name: str,
    version: str,
    format: str | None = None,
    example_inputs: Mapping[str, np.ndarray] | None = None,
    expected_outputs: Mapping[str, np.ndarray] | None = None,
    code_dir: Path | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Package an already-saved artifact without its Python class.

    Without ``expected_outputs`` the artifact's own outputs on the example
    become the reference (the package then verifies it loads and runs
    identically wherever it goes). Without ``example_inputs`` a deterministic
    example is synthesized from the signature.
    """
    if not source.exists():
        raise MissingFileError(f"{source} does not exist")
    chosen = format or detect_format(source)
    fmt = get_format(chosen)
    spec = PackageSpec(
        name=name,
        version=version,
        format=chosen,
        example_inputs=_as_named_arrays(example_inputs) if example_inputs is not None else None,
        expected_outputs=_as_named_arrays(expected_outputs) if expected_outputs is not None else None,
        code_dir=code_dir,
        rtol=rtol,
        atol=atol,
        source=str(source),
        metadata=dict(metadata or {}),
    )
    return build_package(
        out_dir, spec, lambda staging: fmt.import_artifact(source, staging, spec.example_inputs), overwrite=overwrite
    )


def load_factory(reference: str) -> tuple[object, dict[str, np.ndarray]]:
    """Call ``module:function`` (or ``path/to/file.py:function``) and return ``(model, example_inputs)``."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise UsageError(f"factory {reference!r} must look like 'package.module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            if not path.is_file():
                raise MissingFileError(f"factory file {module_name} does not exist")
            sys.path.insert(0, str(path.parent))
            module = importlib.import_module(path.stem)
        else:
            sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import factory module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UsageError(f"{module_name} has no callable {attr!r}")
    if inspect.signature(factory).parameters and any(
        p.default is inspect.Parameter.empty for p in inspect.signature(factory).parameters.values()
    ):
        raise UsageError(f"factory {reference} must be callable without arguments")
    try:
        result = factory()
    except Exception as exc:
        raise ExportError(f"factory {reference} raised {type(exc).__name__}: {exc}") from exc
    if not (isinstance(result, tuple) and len(result) == 2):
        raise UsageError(f"factory {reference} must return (model, example_inputs), got {type(result).__name__}")
    model, inputs = result
    return model, _as_named_arrays(inputs)


def _as_named_arrays(arrays: object) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping) or not arrays:
        raise UsageError(
            "example inputs must be a non-empty mapping of input name to array, e.g. {'x': batch}, "
            f"got {type(arrays).__name__}"
        )
    named: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        if array.dtype.hasobject:
            raise UsageError(f"example input {key!r} has dtype object; use numeric, bool or bytes arrays")
        named[str(key)] = array
    return named
