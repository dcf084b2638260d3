"""Helpers shared by the PyTorch-based formats (``torch_export``, ``torchscript`` and ONNX export).

The conventions that make a package's signature predictable live here:

* inputs are named after the parameters of ``forward()`` and passed in that order;
* outputs are named ``output`` (one tensor), ``output_0``, ``output_1``, ... (a tuple or
  list) or after the keys of a returned dict;
* the first dimension of every input and output is the (dynamic) batch dimension.

Importing this module imports PyTorch. Format modules import it only when a torch
format is actually used, so ``import model_package`` stays framework-free.
"""

from __future__ import annotations

import contextlib
import inspect
import keyword
import logging
import re
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from model_package import dynamic_axes
from model_package.dynamic_axes import DynamicAxes, apply_to_specs, longer_along, output_shapes
from model_package.errors import (
    ExportError,
    LoadError,
    ModelExecutionError,
    ModelPackageError,
    UsageError,
)
from model_package.formats import base
from model_package.formats.axis_rules import AxisRules
from model_package.formats.base import (
    LoadedModel,
    Tensors,
    check_inputs,
    dynamic_batch_shape,
    numpy_dtype_name,
    one_line_error,
)
from model_package.manifest import DTYPES, Framework, Signature, TensorSpec

try:
    # Re-exported (``as torch``) so format modules get torch through this guarded import.
    import torch as torch  # noqa: PLC0414
except ImportError as exc:  # pragma: no cover - exercised only without torch installed
    raise LoadError(
        "PyTorch is not installed, so torch_export/torchscript packages cannot be used; "
        "install the 'torch' extra (pip install 'model-deploy[torch]') after a torch build for your platform"
    ) from exc

logger = logging.getLogger(__name__)


#: What forward() may return, and what to do about Hugging Face models that return more.
OUTPUT_ADVICE = (
    "forward() must return tensors: one tensor, a flat tuple, list or NamedTuple of tensors, or a dict or "
    "Hugging Face ModelOutput of tensors. For a transformers model, call it with output_hidden_states=False, "
    "output_attentions=False and use_cache=False (or wrap it in a module whose forward() returns just the "
    "fields you serve, e.g. outputs.logits); return_dict=False returns a plain tuple instead"
)

#: Name of the only output of a model whose forward() returns a single tensor.
SINGLE_OUTPUT = "output"

#: Tolerances of the batch-size self-check that save() runs on every artifact. They are deliberately
#: looser than a package's example tolerance: the check looks for exports that baked in the example's
#: batch size (wrong shapes or wildly wrong values), not for float rounding between runtimes.

# NumPy and the manifest cannot represent these; a clear error beats a cryptic TypeError from .numpy().
_UNSUPPORTED_TORCH_DTYPES = ("bfloat16", "complex", "float8", "qint", "quint", "bits")


def torch_framework() -> Framework:
    """The manifest ``framework`` entry for artifacts saved or loaded with this PyTorch."""
    return Framework(name="torch", version=str(torch.__version__))


def set_threads(threads: int | None) -> None:
    """Cap PyTorch's intra-op thread pool.

    The pool is process-wide, so this is only called by loaders, which the
    serving process configures once at start-up.
    """
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def forward_parameters(model: Any) -> list[inspect.Parameter]:
    """The positional parameters of ``model.forward`` (or of ``model`` itself if it is a plain callable)."""
    target = getattr(model, "forward", model)
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError) as exc:
        schema = getattr(target, "schema", None)
        if schema is None:
            raise UsageError(f"cannot read the parameters of {type(model).__name__}.forward(): {exc}") from exc
        # A TorchScript module loaded from a file has no Python signature, only its TorchScript schema.
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [
            inspect.Parameter(arg.name, kind, default=None if arg.has_default_value() else inspect.Parameter.empty)
            for arg in schema.arguments[1:]  # arguments[0] is self
        ]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p for p in params if p.kind in positional]


_MAPPING_ANNOTATION = re.compile(r"^(typing\.|collections\.abc\.)?(dict|Dict|Mapping|MutableMapping)\b")


def takes_one_dict(model: Any, example_inputs: Tensors) -> bool:
    """Whether ``forward()`` takes its inputs as one dict of tensors (SentenceTransformer style).

    True when the example names are not ``forward()``'s parameters and its one
    required parameter is annotated as a dict/Mapping, or is the only required
    parameter while the example has several arrays (which could not be passed
    positionally anyway).
    """
    params = forward_parameters(model)
    names = {p.name for p in params}
    if not params or set(example_inputs) <= names:
        return False
    required = [p for p in params if p.default is inspect.Parameter.empty]
    if len(required) > 1:
        return False
    annotation = params[0].annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    origin = typing.get_origin(annotation)
    mapping = annotation in (dict, Mapping) or origin in (dict, Mapping) or bool(_MAPPING_ANNOTATION.match(text))
    return mapping or (len(required) == 1 and len(example_inputs) > 1)


class Adapter(torch.nn.Module):
    """Calls a model the way exporters can follow and returns outputs every loader can read.

    The subclass made by :func:`prepare_model` has a generated ``forward(self,
    <input names>)``: torch.export, torch.jit.trace and torch.onnx all name a
    program's inputs after forward()'s parameters. It passes the inputs on
    positionally, or as one dict for a forward() that takes a dict of tensors
    (SentenceTransformer style), and returns a plain dict for dict-like results
    (Hugging Face ``ModelOutput``) and NamedTuples, so the saved program never
    refers to a class the serving process may not have. Outputs that only echo
    an input back (SentenceTransformer modules return the features dict they
    were given, plus their results) are dropped.
    """

    input_names: tuple[str, ...] = ()

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.train(inner.training)

    def finish(self, result: Any) -> Any:
        """The inner model's result as a plain tensor, tuple or dict."""
        if is_namedtuple(result):
            return dict(zip(result._fields, result, strict=True))
        if isinstance(result, Mapping):
            return {key: value for key, value in result.items() if key not in self.input_names}
        return result


def prepare_model(model: Any, example_inputs: Tensors) -> tuple[Any, list[str]]:
    """The model to export (``model`` itself or an :class:`Adapter` around it) and its input names in order."""
    as_dict = isinstance(model, torch.nn.Module) and takes_one_dict(model, example_inputs)
    if as_dict:
        names = list(example_inputs)
        bad = [name for name in names if not name.isidentifier() or keyword.iskeyword(name)]
        if bad:
            raise UsageError(
                f"{type(model).__name__}.forward() takes a dict of tensors, so the example inputs are its keys, "
                f"and package inputs must be Python identifiers; rename {bad}"
            )
        for name in names:
            _check_input_array(name, np.asarray(example_inputs[name]))
    else:
        names = ordered_input_names(model, example_inputs)
    if not isinstance(model, torch.nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return model, names
    if not as_dict:
        tensors = [to_tensor(np.asarray(example_inputs[name])) for name in names]
        try:
            with eval_mode(model), torch.inference_mode():
                result = model(*tensors)
        except Exception as exc:
            raise ExportError(
                f"{type(model).__name__} failed on the example inputs before export: {one_line_error(exc)}"
            ) from exc
        plain = not is_namedtuple(result) and (not isinstance(result, Mapping) or type(result) is dict)
        if plain:
            return model, names
    call = f"{{{', '.join(f'{name!r}: {name}' for name in names)}}}" if as_dict else ", ".join(names)
    # The names are forward()'s own parameters or identifiers checked above, so the source is well-formed.
    source = f"def forward(self, {', '.join(names)}):\n    return self.finish(self.inner({call}))\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<{type(model).__name__} adapter>", "exec"), namespace)
    adapter_type = type(
        f"{type(model).__name__}Adapter",
        (Adapter,),
        {"forward": namespace["forward"], "input_names": tuple(names) if as_dict else ()},
    )
    adapter: Any = adapter_type(model)
    return adapter, names


def ordered_input_names(model: Any, example_inputs: Tensors) -> list[str]:
    """The example inputs' names in ``forward()`` order.

    The names must be the leading positional parameters of ``forward()`` (every
    required one; optional trailing ones may be left out), in any order: the
    exporters pass inputs positionally and name the package's inputs after them.
    """
    params = forward_parameters(model)
    given = list(example_inputs)
    names = [p.name for p in params[: len(given)]]
    if not given or sorted(names) != sorted(given):
        raise UsageError(
            f"example inputs must be named after the parameters of {type(model).__name__}.forward(): "
            f"expected {names or [p.name for p in params[:1]]} (forward() takes {[p.name for p in params]}), "
            f"got {given}. Rename the arrays (e.g. the keys of the .npz file) to match forward(); if forward() "
            "takes one dict of tensors, annotate that parameter as dict[str, torch.Tensor]"
        )
    missing = [p.name for p in params[len(given) :] if p.default is inspect.Parameter.empty]
    if missing:
        raise UsageError(f"example inputs lack the required forward() parameter(s) {missing}; got {given}")
    for name in names:
        _check_input_array(name, np.asarray(example_inputs[name]))
    return names


def _check_input_array(name: str, array: np.ndarray) -> None:
    dtype = numpy_dtype_name(array.dtype)
    if dtype not in DTYPES or dtype == "bytes":
        raise UsageError(
            f"example input {name!r} has dtype {array.dtype}; PyTorch models take numeric or bool arrays "
            f"({', '.join(d for d in DTYPES if d != 'bytes')})"
        )


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing memory with ``array`` where possible."""
    if not array.flags.writeable:
        # torch.from_numpy warns on read-only arrays (e.g. from np.load with mmap); copying is cheap insurance.
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def to_numpy(name: str, tensor: Any) -> np.ndarray:
    """A model output as a NumPy array; rejects dtypes NumPy and the manifest cannot hold."""
    if not isinstance(tensor, torch.Tensor):
        raise UsageError(f"output {name!r} is a {type(tensor).__name__}, not a tensor. {OUTPUT_ADVICE}")
    if any(marker in str(tensor.dtype) for marker in _UNSUPPORTED_TORCH_DTYPES):
        raise UsageError(
            f"output {name!r} has dtype {tensor.dtype}, which NumPy cannot represent; "
            "cast it (e.g. .float()) at the end of forward()"
        )
    result: np.ndarray = tensor.detach().cpu().numpy()
    return result


def positional_output_name(index: int) -> str:
    """The name of the ``index``-th output of a model returning a tuple or list."""
    return f"output_{index}"


def is_namedtuple(value: object) -> bool:
    """Whether ``value`` is a ``typing.NamedTuple`` / ``collections.namedtuple`` instance."""
    return isinstance(value, tuple) and isinstance(getattr(type(value), "_fields", None), tuple)


def name_outputs(result: Any) -> dict[str, np.ndarray]:
    """Name a forward() result.

    One tensor -> ``output``; a tuple or list -> ``output_<i>``; a NamedTuple ->
    its fields; a dict or a Hugging Face ``ModelOutput`` (a dict that only holds
    the fields that are set) -> its keys.
    """
    if isinstance(result, torch.Tensor):
        return {SINGLE_OUTPUT: to_numpy(SINGLE_OUTPUT, result)}
    if is_namedtuple(result):
        return {str(field): to_numpy(str(field), value) for field, value in zip(result._fields, result, strict=True)}
    if isinstance(result, (tuple, list)):
        return {positional_output_name(i): to_numpy(positional_output_name(i), t) for i, t in enumerate(result)}
    if isinstance(result, Mapping) and all(isinstance(key, str) for key in result):
        return {key: to_numpy(key, value) for key, value in result.items()}
    raise UsageError(f"forward() returned a {type(result).__name__}. {OUTPUT_ADVICE}")


def name_like(result: Any, declared: Sequence[str]) -> dict[str, np.ndarray]:
    """``name_outputs``, except that a plain tuple gets the ``declared`` names.

    A traced TorchScript module returns a NamedTuple as a plain tuple; its
    manifest still names the fields, in order.
    """
    named = name_outputs(result)
    positional = [positional_output_name(i) for i in range(len(declared))]
    if list(named) == positional and list(declared) != positional:
        return dict(zip(declared, named.values(), strict=True))
    return named


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode for the duration, then restore its training flag."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def run_model(model: Callable[..., Any], names: Sequence[str], inputs: Tensors) -> dict[str, np.ndarray]:
    """Run ``model`` once in eval mode under ``torch.inference_mode`` and name its outputs."""
    tensors = [to_tensor(np.asarray(inputs[name])) for name in names]
    with eval_mode(model), torch.inference_mode():
        result = model(*tensors)
    return name_outputs(result)


def reference_outputs(model: Callable[..., Any], names: Sequence[str], inputs: Tensors) -> dict[str, np.ndarray]:
    """The live model's outputs on the example: what the package is verified against."""
    try:
        return run_model(model, names, inputs)
    except ModelPackageError:
        raise
    except Exception as exc:
        raise ExportError(
            f"{type(model).__name__} failed on the example inputs before export: {one_line_error(exc)}"
        ) from exc


@contextlib.contextmanager
def surface_tracer_warnings(tool: str) -> Iterator[None]:
    """Log torch.jit tracer warnings through our logger and drop tracing's deprecation notices.

    Tracer warnings flag Python control flow or int conversions that the trace
    froze into constants: the one thing a user must see when a trace-based
    exporter runs. The ``torch.jit`` deprecation notices are replaced by the
    callers' own advice.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in sorted({str(w.message) for w in caught if w.category.__name__ == "TracerWarning"}):
        logger.warning("%s: %s", tool, message)


def export_batch(inputs: Tensors, names: Sequence[str], axes: DynamicAxes | None = None) -> tuple[torch.Tensor, ...]:
    """The tensors to trace or export with, in ``names`` order.

    A batch of one is repeated to two rows, and a dynamic axis of size one is
    grown to two (its last slice repeated): exporters specialise a dimension of
    size 1 to a constant, which would make the axis static.
    """
    arrays = [np.asarray(inputs[name]) for name in names]
    if arrays and all(a.ndim and a.shape[0] == 1 for a in arrays):
        arrays = [np.concatenate([a, a]) for a in arrays]
    short = {
        name: dims for name, dims in (axes or {}).items() if any(np.asarray(inputs[name]).shape[d] == 1 for d in dims)
    }
    if short:
        grown = longer_along(dict(zip(names, arrays, strict=True)), short)
        arrays = [grown[name] for name in names]
    return tuple(to_tensor(a) for a in arrays)


def batch_dynamic_shapes(names: Sequence[str], inputs: Tensors, axes: DynamicAxes | None = None) -> dict[str, Any]:
    """``dynamic_shapes`` for torch.export / the dynamo ONNX exporter.

    One shared batch ``Dim`` on axis 0 (rather than ``Dim.AUTO`` per input) both
    marks the axis dynamic -- export fails loudly instead of silently
    specialising it -- and records that all inputs share the batch size, as
    ``check_inputs`` enforces. Declared dynamic axes get ``Dim.DYNAMIC``: export
    infers how they relate (``input_ids`` and ``attention_mask`` share a length)
    and fails, rather than specialising, if the model fixes one.
    """
    batch = torch.export.Dim("batch")
    shapes: dict[str, Any] = {}
    for name in names:
        if not np.asarray(inputs[name]).ndim:
            shapes[name] = None
            continue
        dims: dict[int, Any] = {0: batch}
        dims.update({axis: torch.export.Dim.DYNAMIC for axis in (axes or {}).get(name, ())})
        shapes[name] = dims
    return shapes


def specs_from_arrays(
    arrays: Mapping[str, np.ndarray], kind: str, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> tuple[TensorSpec, ...]:
    """TensorSpecs for named arrays, with the first dimension (or the axes ``shapes`` gives as -1) dynamic."""
    specs = []
    for name, value in arrays.items():
        array = np.asarray(value)
        dtype = numpy_dtype_name(array.dtype)
        if dtype not in DTYPES:
            raise UsageError(f"{kind} {name!r} has dtype {array.dtype}, which a package signature cannot describe")
        shape = (shapes or {}).get(name) or dynamic_batch_shape(array.shape)
        specs.append(TensorSpec(name=name, dtype=dtype, shape=shape))
    return tuple(specs)


def signature_from_arrays(
    inputs: Tensors,
    outputs: Mapping[str, np.ndarray],
    axes: DynamicAxes | None = None,
    longer_outputs: Mapping[str, np.ndarray] | None = None,
) -> Signature:
    """A signature from example arrays: batch dimension and the dynamic ``axes`` of inputs ``-1``.

    ``longer_outputs`` are the outputs on inputs with the dynamic axes grown
    (see :func:`model_package.dynamic_axes.check_axes_generalize`); the output
    axes that changed size are dynamic too.
    """
    input_specs = apply_to_specs(specs_from_arrays(inputs, "input"), axes or {})
    output_specs = specs_from_arrays(outputs, "output", output_shapes(outputs, longer_outputs))
    return Signature(inputs=input_specs, outputs=output_specs)


def torch_dtype_name(dtype: torch.dtype, what: str) -> str:
    """The manifest dtype name of a torch dtype; ``what`` names the tensor in the error."""
    try:
        # A zero-element tensor is the cheapest way to ask torch for the NumPy equivalent.
        name = numpy_dtype_name(torch.empty(0, dtype=dtype).numpy().dtype)
    except TypeError as exc:
        raise UsageError(f"{what} has dtype {dtype}, which NumPy and package signatures cannot represent") from exc
    if name not in DTYPES:
        raise UsageError(f"{what} has dtype {dtype}, which package signatures cannot represent")
    return name


class TorchLoadedModel:
    """A loaded torch callable (exported program or TorchScript module) behind the LoadedModel interface.

    Safe for concurrent calls: the module was exported or loaded in eval mode, so
    its forward pass reads parameters and buffers without updating them, and it
    runs under ``torch.inference_mode``, so no autograd state is shared between
    calls. The module is built once at load time; calls never re-trace.
    """

    def __init__(
        self,
        module: Callable[..., Any],
        signature: Signature,
        positional: Sequence[str],
        keywords: Mapping[str, str] | None = None,
        *,
        description: str,
        axis_rules: AxisRules | None = None,
    ) -> None:
        self._module = module
        self.axis_rules = axis_rules or AxisRules()
        """What the program knows of its varying axes (``torch.export``); checked before it runs."""
        self._signature = signature
        self._positional = tuple(positional)
        # input name -> keyword of forward() (only for programs exported with keyword inputs)
        self._keywords = dict(keywords or {})
        self._description = description

    @property
    def signature(self) -> Signature:
        """The package's signature (from its manifest)."""
        return self._signature

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        """Run one batch; InvalidInputError for inputs that do not fit, ModelExecutionError if forward() fails."""
        checked = check_inputs(self._signature, inputs)
        if self.axis_rules:
            self.axis_rules.check(checked)
        try:
            args = [to_tensor(checked[name]) for name in self._positional]
            kwargs = {key: to_tensor(checked[name]) for name, key in self._keywords.items()}
            with torch.inference_mode():
                result = self._module(*args, **kwargs)
            named = name_like(result, [spec.name for spec in self._signature.outputs])
        except Exception as exc:
            shapes = {name: list(array.shape) for name, array in checked.items()}
            raise ModelExecutionError(
                f"{self._description} failed on inputs with shapes {shapes}: {one_line_error(exc)}"
            ) from exc
        missing = [spec.name for spec in self._signature.outputs if spec.name not in named]
        if missing:
            raise ModelExecutionError(
                f"{self._description} returned outputs {sorted(named)}, but the manifest declares {missing} as well"
            )
        return {spec.name: named[spec.name] for spec in self._signature.outputs}


def check_batch_generalizes(
    model: Callable[..., Any], names: Sequence[str], example_inputs: Tensors, loaded: LoadedModel, fmt: str
) -> int | None:
    """Compare the reloaded artifact with the live module on a larger batch (see base.check_batch_generalizes)."""
    return base.check_batch_generalizes(
        lambda arrays: run_model(model, names, arrays),
        {name: example_inputs[name] for name in names},
        loaded,
        fmt=fmt,
        advice="try the 'torch_export' format or make forward() independent of the batch size",
    )


def check_axes_generalize(
    model: Callable[..., Any],
    names: Sequence[str],
    example_inputs: Tensors,
    predict_saved: Callable[[Tensors], Mapping[str, np.ndarray]],
    *,
    axes: DynamicAxes,
    fmt: str,
) -> dict[str, np.ndarray] | None:
    """Compare the saved artifact with the live module with the dynamic axes one longer (see dynamic_axes)."""
    return dynamic_axes.check_axes_generalize(
        lambda arrays: run_model(model, names, arrays),
        predict_saved,
        {name: example_inputs[name] for name in names},
        axes,
        fmt=fmt,
        advice="try the 'torch_export' format, or compute lengths with tensor ops (x.shape[1]) instead of constants",
    )
