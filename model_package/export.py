"""Create packages: from a live model (export) or from an already-saved artifact (import)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import cast

import numpy as np

from model_package.builder import PackageCheck, PackageSpec, build_package
from model_package.dynamic_axes import resolve_dynamic_axes, warn_fixed_axes
from model_package.errors import ExportError, MissingFileError, UnknownFormatError, UsageError
from model_package.formats import ExportableFormat, ImportOptions, detect_format, get_format
from model_package.formats.keras_objects import custom_objects
from model_package.manifest import Manifest
from model_package.pipeline.attach import PipelineSource

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
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
    pipeline: PipelineSource | None = None,
    verify: bool = True,
    check: PackageCheck | None = None,
) -> Manifest:
    """Export a live PyTorch or Keras model into the package directory ``out_dir``.

    ``example_inputs`` maps each model input name (a ``forward`` parameter for
    PyTorch, a Keras ``Input`` name) to a small batch; its outputs from the live
    model become the package's expected outputs. The batch axis is always
    dynamic; ``dynamic_axes`` (input name -> axes) declares others, on top of
    what :mod:`model_package.dynamic_axes` detects (a declaration for an input
    replaces detection for it). ``pipeline`` declares the pre- and post-processing the server
    runs around the model (``docs/manifest.md``). ``verify=False`` skips loading the finished
    package in a fresh process (done only when its model needs Python objects: Keras custom layers).
    ``check`` runs on the finished package before it is moved into place (``build_package``).
    """
    framework = framework_of(model)
    allowed = EXPORT_FORMATS[framework]
    chosen = format or allowed[0]
    if chosen not in allowed:
        raise UnknownFormatError(
            f"a {framework} model cannot be exported as {chosen!r}; choose one of: {', '.join(allowed)}"
        )
    inputs = _as_named_arrays(example_inputs)
    # Keras models say which axes vary (None in keras.Input); torch models only have the example arrays.
    axes = resolve_dynamic_axes(inputs, dynamic_axes, detect=framework == "torch")
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
        pipeline=pipeline,
    )
    manifest = build_package(
        out_dir,
        spec,
        lambda staging: exporter.save(model, inputs, staging, dynamic_axes=axes),
        overwrite=overwrite,
        fresh_load_check=verify,
        check=check,
    )
    warn_fixed_axes(manifest.signature, name, shaped_by_pipeline=_pipeline_shaped(manifest))
    return manifest


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
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
    signature: str | None = None,
    pipeline: PipelineSource | None = None,
    verify: bool = True,
    check: PackageCheck | None = None,
) -> Manifest:
    """Package an already-saved artifact without its Python class.

    Without ``expected_outputs`` the artifact's own outputs on the example
    become the reference (the package then verifies it loads and runs
    identically wherever it goes). Without ``example_inputs`` a deterministic
    example is synthesized from the signature. ``dynamic_axes`` applies to
    TorchScript files (the only format that records no shapes; detection as
    for exports); ``signature`` chooses a SavedModel's signature; ``verify`` and ``check``
    as for :func:`export_model`.
    """
    if not source.exists():
        raise MissingFileError(f"{source} does not exist")
    chosen = format or detect_format(source)
    fmt = get_format(chosen)
    examples = _as_named_arrays(example_inputs) if example_inputs is not None else None
    if chosen == "torchscript" and examples is not None:
        axes = resolve_dynamic_axes(examples, dynamic_axes)
    else:
        axes = {name: tuple(int(a) for a in dims) for name, dims in (dynamic_axes or {}).items() if dims}
    options = ImportOptions(dynamic_axes=axes, signature=signature)
    if code_dir is not None and chosen == "keras" and (code_dir / "inference.py").is_file() and custom_objects(source):
        # The server imports the package's code before it opens the model: the custom layers it
        # registers are needed to read this .keras file, here as there (model_package.fresh_load).
        from inference.user_code import import_user_code

        import_user_code(code_dir / "inference.py", name)
    spec = PackageSpec(
        name=name,
        version=version,
        format=chosen,
        example_inputs=examples,
        expected_outputs=_as_named_arrays(expected_outputs) if expected_outputs is not None else None,
        code_dir=code_dir,
        rtol=rtol,
        atol=atol,
        source=str(source),
        metadata=dict(metadata or {}),
        pipeline=pipeline,
    )
    manifest = build_package(
        out_dir,
        spec,
        lambda staging: fmt.import_artifact(source, staging, spec.example_inputs, options),
        overwrite=overwrite,
        fresh_load_check=verify,
        check=check,
    )
    warn_fixed_axes(manifest.signature, name, shaped_by_pipeline=_pipeline_shaped(manifest))
    return manifest


def _pipeline_shaped(manifest: Manifest) -> tuple[str, ...]:
    """Inputs the package's pipeline sizes itself (an image input), whose fixed axes need no warning."""
    from model_package.pipeline.schema import ImageInput

    if manifest.pipeline is not None and isinstance(manifest.pipeline.input, ImageInput):
        return (manifest.pipeline.input.input,)
    return ()


@dataclass(frozen=True)
class Factory:
    """What an export factory returned."""

    model: object
    example_inputs: dict[str, np.ndarray]
    dynamic_axes: dict[str, tuple[int, ...]] | None = None


def load_factory(reference: str) -> Factory:
    """Call ``module:function`` (or ``path/to/file.py:function``).

    The function returns ``(model, example_inputs)`` or ``(model, example_inputs,
    dynamic_axes)``, where ``dynamic_axes`` maps input names to the non-batch
    axes whose size may vary (``{"candidates": [1]}``).
    """
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise UsageError(f"factory {reference!r} must look like 'package.module:function' or 'file.py:function'")
    is_file = module_name.endswith(".py")
    path = Path(module_name).resolve()
    if is_file and not path.is_file():
        raise MissingFileError(f"factory file {module_name} does not exist")
    # The file's folder (or the working directory) comes first on sys.path while the factory is
    # imported and called, so its helper modules win, then moves to the end (see _first_on_path).
    with _first_on_path(path.parent if is_file else Path.cwd()):
        try:
            module = _import_file(path) if is_file else importlib.import_module(module_name)
        except ImportError as exc:
            raise UsageError(f"cannot import factory module {module_name!r}: {exc}") from exc
        except Exception as exc:  # a syntax error, or an exception at import time: the user's to fix
            raise ExportError(f"factory module {module_name} failed to import: {type(exc).__name__}: {exc}") from exc
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
    if not (isinstance(result, tuple) and len(result) in (2, 3)):
        raise UsageError(
            f"factory {reference} must return (model, example_inputs) or (model, example_inputs, dynamic_axes), "
            f"got {type(result).__name__}"
        )
    axes = _as_axes(result[2], reference) if len(result) == 3 else None
    return Factory(model=result[0], example_inputs=_as_named_arrays(result[1]), dynamic_axes=axes)


@contextlib.contextmanager
def _first_on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the block, then last.

    Last, not removed: a model's ``forward`` may import a module beside the factory when it first
    runs, during export. Not first: a user's SageMaker handler in the folder (``inference.py``)
    shadowed this toolkit's own ``inference`` package, imported later to verify ``--code``. Even
    last it would (an editable install's finder runs after every ``sys.path`` entry), so this
    toolkit's packages are imported before the folder goes back, and one of their names imported
    from the folder meanwhile (a factory importing its handler) is forgotten first, its importers
    keeping their reference.
    """
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # the factory may have removed it itself
            sys.path.remove(entry)
        for name in [name for name in sys.modules if name.partition(".")[0] in _OWN_PACKAGES]:
            module = sys.modules[name]
            if _is_under(module, folder) and not _is_under(module, _TOOLKIT / name.partition(".")[0]):
                del sys.modules[name]
        for package in sorted(_OWN_PACKAGES):
            importlib.import_module(package)  # empty package modules: their submodules resolve inside them
        sys.path.append(entry)


#: This toolkit's top-level packages: a user's module of one of these names must not stand in for them.
_OWN_PACKAGES = frozenset({"inference", "infra", "model_package"})
#: Where they are (a factory run from a checkout has them under its working directory).
_TOOLKIT = Path(__file__).resolve().parents[1]


def _is_under(module: ModuleType, folder: Path) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(folder.resolve())


def _import_file(path: Path) -> ModuleType:
    """Import ``path`` as a module of its own, whatever its name.

    By the file's name, ``json.py`` or ``utils.py`` was whichever module of that name was imported
    first (the standard library's, or another factory file's in the same process), and the factory
    was "not callable". A unique module name, registered while it runs as imports are (dataclasses
    and TorchScript look a class's module up by name), keeps each file its own.
    """
    name = f"_model_package_factory_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"factory file {path} cannot be imported: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _as_axes(value: object, reference: str) -> dict[str, tuple[int, ...]]:
    """A factory's dynamic axes as a plain dict, with a message saying the expected shape when it is not."""
    expected = "a dict of input name -> list of axes, e.g. {'candidates': [1]}"
    if not isinstance(value, Mapping):
        raise UsageError(f"factory {reference}: dynamic_axes must be {expected}, got {type(value).__name__}")
    axes: dict[str, tuple[int, ...]] = {}
    for name, given in value.items():
        dims = [given] if isinstance(given, int) else given
        if not isinstance(name, str) or not isinstance(dims, Sequence) or not all(isinstance(d, int) for d in dims):
            raise UsageError(f"factory {reference}: dynamic_axes must be {expected}, got {value!r}")
        axes[name] = tuple(dims)
    return axes


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
