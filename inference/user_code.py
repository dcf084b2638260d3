"""Run SageMaker inference-toolkit user code (``code/inference.py``) unchanged.

A package may ship the hooks that the SageMaker inference toolkits call
(``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn`` or ``transform_fn``,
plus the optional ``pre_model_fn`` and ``model_warmup_fn``), helper modules
beside them in ``code/`` and a ``code/requirements.txt``. This module imports
that code once, loads the model through it and runs one request through it,
following the toolkit's calling conventions so existing scripts work as they are:

* ``model_fn(model_dir)`` loads the model; without it the package's own model
  is loaded (``default_model``).
* ``transform_fn(model, input_data, content_type, accept)`` handles a whole
  request; it cannot be combined with the other three request hooks. Without
  it, ``input_fn(input_data, content_type)`` -> ``predict_fn(data, model)`` ->
  ``output_fn(prediction, accept)`` run in turn, with a default for each
  missing hook.
* Every hook may take one extra trailing ``context`` parameter; whether to pass
  it is decided by the number of positional parameters, as the toolkit does.
  The context is a :class:`RequestContext`, which also answers the TorchServe
  ``Context`` calls that toolkit scripts use (``get_request_header(0, name)``,
  ``set_response_header(0, name, value)``, ``system_properties``).
* Bodies of ``application/json`` and ``text/csv`` requests reach the user's
  hooks as ``str``, all others as ``bytes``.
* An ``Accept`` that is missing or ``*/*`` becomes the default accept
  (``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` in the toolkit, passed in here).
* ``output_fn`` / ``transform_fn`` may return bytes, a str (sent as UTF-8), a
  ``(body, content_type)`` tuple, a one-element list of those (the model
  server's batch convention), or any JSON-serialisable value (sent as
  ``application/json``).

Errors: an :class:`inference.errors.ApiError` raised by user code reaches the
client unchanged, so scripts can answer 4xx themselves; so does the toolkit's
own ``BaseInferenceToolkitError`` (its ``status_code`` is kept). By convention a
``ValueError`` raised from ``input_fn`` means the request was malformed and
becomes a 400 (:class:`~inference.errors.BadRequestError`). Any other exception
becomes a :class:`~inference.errors.ModelError` (500) whose one-line message
names the hook; the traceback goes to the log, never to the client.

Thread safety: :meth:`UserCodeHandler.invoke` runs in the server's worker
threads, possibly several at once, and holds no lock around user code (a lock
would serialise every request behind the slowest one). User code must therefore
be thread-safe, or the server must run a single worker thread. Each request
gets its own :class:`RequestContext`, so contexts are never shared.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson

from inference.errors import (
    ApiError,
    BadRequestError,
    ModelError,
    NotAcceptableError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from model_package.errors import LoadError, ModelPackageError, PredictionError
from model_package.formats.base import check_inputs, one_line_error
from model_package.manifest import Manifest, Signature

__all__ = [
    "CUSTOM_ATTRIBUTES_HEADER",
    "RequestContext",
    "UserCodeHandler",
    "install_requirements",
]

logger = logging.getLogger("inference.user_code")

#: The SageMaker header that carries opaque per-request attributes in both directions.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"

JSON = "application/json"
# The toolkit decodes exactly these request bodies to str before calling user code.
_TEXT_MEDIA_TYPES = frozenset({JSON, "text/csv"})
# Prefix of the names user entry modules are imported under (a unique suffix per load).
_MODULE_PREFIX = "_model_user_code_"
# Headers user code must not set: the server owns framing, and the hook's return value owns Content-Type.
_RESERVED_RESPONSE_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding", "connection"})
# Status codes of the toolkit's BaseInferenceToolkitError that have a class of their own here.
_STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    404: NotFoundError,
    406: NotAcceptableError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    500: ModelError,
}
_PIP_TIMEOUT_S = 900.0

#: The positional arguments each hook receives before the optional context (the toolkit's names).
_HOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "pre_model_fn": ("model_dir",),
    "model_fn": ("model_dir",),
    "model_warmup_fn": ("model_dir", "model"),
    "input_fn": ("input_data", "content_type"),
    "predict_fn": ("data", "model"),
    "output_fn": ("prediction", "accept"),
    "transform_fn": ("model", "input_data", "content_type", "accept"),
}


@dataclass
class RequestContext:
    """What one request passes to user code and what user code may set on the response.

    Besides the plain fields, it answers the TorchServe ``Context`` methods that
    toolkit scripts call on their ``context`` argument. There is exactly one
    request per call, so the only valid request index is ``0``.
    """

    custom_attributes: str | None = None
    """The ``X-Amzn-SageMaker-Custom-Attributes`` request header, if any."""
    request_headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers, names lower-cased."""
    response_headers: dict[str, str] = field(default_factory=dict)
    """Headers to add to the response; user code sets e.g. ``X-Amzn-SageMaker-Custom-Attributes`` here."""
    system_properties: Mapping[str, Any] = field(default_factory=dict)
    """TorchServe's worker properties (``model_dir``, ``gpu_id``, ``batch_size``); filled in by the handler."""

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> RequestContext:
        """A context for a request with these headers (any case; the last value of a repeated name wins)."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        lowered = {name.lower(): value for name, value in items}
        return cls(custom_attributes=lowered.get(CUSTOM_ATTRIBUTES_HEADER.lower()), request_headers=lowered)

    def get_request_header(self, idx: int, key: str) -> str | None:
        """TorchServe ``Context.get_request_header``: one request header, looked up case-insensitively."""
        _check_index(idx)
        return self.request_headers.get(key.lower())

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        """TorchServe ``Context.get_all_request_header``: every request header (lower-case names)."""
        _check_index(idx)
        return dict(self.request_headers)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        """TorchServe ``Context.set_response_header``: add a header to the response."""
        _check_index(idx)
        self.response_headers[key] = value

    def get_response_headers(self, idx: int) -> dict[str, str]:
        """TorchServe ``Context.get_response_headers``: the headers set so far."""
        _check_index(idx)
        return self.response_headers


def _check_index(idx: int) -> None:
    if idx != 0:
        raise IndexError(f"request index {idx} is out of range: this server passes one request per call (index 0)")


@dataclass(frozen=True)
class _Hook:
    """One user function and whether it takes the trailing ``context`` argument."""

    name: str
    func: Callable[..., Any]
    takes_context: bool

    def __call__(self, *args: Any, context: RequestContext) -> Any:
        return self.func(*args, context) if self.takes_context else self.func(*args)


class UserCodeHandler:
    """A package's ``code/inference.py``, imported, with its model loaded and ready for requests."""

    def __init__(
        self,
        *,
        entry: Path,
        hooks: Mapping[str, _Hook],
        model: Any,
        signature: Signature,
        system_properties: Mapping[str, Any],
        default_accept: str,
        allow_non_finite: bool,
    ) -> None:
        """Use :meth:`load`; this only stores what it prepared."""
        self._entry = entry
        self._hooks = dict(hooks)
        self._model = model
        self._signature = signature
        self._system_properties = system_properties
        self._default_accept = default_accept
        self._allow_non_finite = allow_non_finite

    @classmethod
    def load(
        cls,
        package_dir: Path,
        manifest: Manifest,
        *,
        default_model: Callable[[], Any],
        default_accept: str = JSON,
        allow_non_finite: bool = False,
    ) -> UserCodeHandler | None:
        """Import the package's user code and load its model; ``None`` when the package has no code.

        ``default_model`` loads the package's model and is called only when the
        code defines no ``model_fn``. ``default_accept`` replaces a missing or
        ``*/*`` Accept header (the toolkit reads it from
        ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``); ``allow_non_finite`` is passed
        to the default ``input_fn``'s codecs. Call this at start-up, before
        serving: importing briefly changes ``sys.path`` and ``sys.modules``.
        Raises :class:`LoadError` naming the file and the exception when the
        import, a hook's definition or model loading fails.
        """
        if manifest.code is None:
            return None
        entry = package_dir / manifest.code.entry_point
        if not entry.is_file():
            raise LoadError(f"{entry} does not exist, but the manifest names it as the user code entry point")
        module = _import_user_module(entry, manifest.name)
        hooks = _collect_hooks(module, entry)
        names = ", ".join(hooks) or "none: every step uses the defaults"
        logger.info("loaded user code %s (hooks: %s)", manifest.code.entry_point, names)

        model_dir = str(package_dir)
        # TorchServe's load-time properties; this server runs user code on the CPU, one request per call.
        properties: Mapping[str, Any] = {"model_dir": model_dir, "gpu_id": None, "batch_size": 1}
        load_context = RequestContext(system_properties=properties)
        if "pre_model_fn" in hooks:
            _call_at_load(hooks["pre_model_fn"], entry, model_dir, context=load_context)
        if "model_fn" in hooks:
            model = _call_at_load(hooks["model_fn"], entry, model_dir, context=load_context)
            if model is None:
                logger.warning("model_fn in %s returned None; did it forget a return statement?", entry)
        else:
            model = _load_default_model(default_model)
        if "model_warmup_fn" in hooks:
            _call_at_load(hooks["model_warmup_fn"], entry, model_dir, model, context=load_context)
        if "predict_fn" not in hooks and "transform_fn" not in hooks:
            _prepare_for_default_predict(model)
        return cls(
            entry=entry,
            hooks=hooks,
            model=model,
            signature=manifest.signature,
            system_properties=properties,
            default_accept=default_accept,
            allow_non_finite=allow_non_finite,
        )

    @property
    def model(self) -> Any:
        """What ``model_fn`` returned, or the package's own model when there is no ``model_fn``."""
        return self._model

    @property
    def hooks(self) -> tuple[str, ...]:
        """The names of the hooks the user code defines (the others use the defaults)."""
        return tuple(self._hooks)

    def invoke(self, body: bytes, content_type: str, accept: str, context: RequestContext) -> tuple[bytes, str]:
        """Run one request through the user code; returns the response body and its content type.

        Synchronous: the server calls it from a worker thread, and several
        calls may run at once without any lock, so the user code must be
        thread-safe (or the server must run one worker thread). Headers the
        code set on ``context.response_headers`` belong on the response.
        Raises :class:`ApiError` subclasses only (see the module docstring).
        """
        if not context.system_properties:
            context.system_properties = self._system_properties
        # The toolkit passes None when the request has no Content-Type.
        user_content_type = content_type or None
        accept = _effective_accept(accept, self._default_accept)
        transform = self._hooks.get("transform_fn")
        if transform is not None:
            result = self._call(
                transform, self._model, _user_body(body, content_type), user_content_type, accept, context=context
            )
            response = _as_response(result, accept, source="transform_fn")
        else:
            input_fn = self._hooks.get("input_fn")
            if input_fn is not None:
                data = self._call(input_fn, _user_body(body, content_type), user_content_type, context=context)
            else:
                data = self._default_input(body, content_type)
            predict_fn = self._hooks.get("predict_fn")
            prediction = (
                self._call(predict_fn, data, self._model, context=context)
                if predict_fn is not None
                else self._default_predict(data)
            )
            output_fn = self._hooks.get("output_fn")
            if output_fn is not None:
                result = self._call(output_fn, prediction, accept, context=context)
                response = _as_response(result, accept, source="output_fn")
            else:
                response = self._default_output(prediction, accept)
        _check_response_headers(context.response_headers)
        return response

    def _call(self, hook: _Hook, *args: Any, context: RequestContext) -> Any:
        try:
            return hook(*args, context=context)
        except ApiError:
            raise
        except Exception as exc:
            raise self._hook_error(hook.name, exc) from exc

    def _hook_error(self, hook: str, exc: Exception) -> ApiError:
        status = _toolkit_status(exc)
        if status is not None:
            message = str(getattr(exc, "message", "") or exc)
            error = _STATUS_ERRORS.get(status, ApiError)(" ".join(message.split()) or f"{hook} failed")
            # The toolkit lets user code pick any status; keep it even without a class of its own.
            error.status = status
            return error
        detail = f"{type(exc).__name__}: {one_line_error(exc)}"
        if hook == "input_fn" and isinstance(exc, ValueError):
            logger.info("input_fn rejected a request: %s", detail)
            return BadRequestError(f"input_fn rejected the request: {one_line_error(exc)}")
        logger.exception("%s in %s failed", hook, self._entry)
        return ModelError(f"{hook} failed: {detail}")

    def _default_input(self, body: bytes, content_type: str | None) -> Any:
        """The package's own request codecs, decoding to the signature's named arrays."""
        from inference.codecs import decode_request

        return decode_request(body, content_type, self._signature, allow_non_finite=self._allow_non_finite)

    def _default_predict(self, data: Any) -> Any:
        """``model.predict`` for named arrays on a loaded package model, else ``model(data)``."""
        model = self._model
        if _is_loaded_model(model) and _is_named_arrays(data):
            try:
                checked = check_inputs(model.signature, data)
            except PredictionError as exc:
                raise BadRequestError(str(exc)) from exc
            try:
                return model.predict(checked)
            except ModelPackageError as exc:
                logger.exception("the model failed on a request")
                raise ModelError(f"the model failed: {exc}") from exc
        predict = getattr(model, "predict", None)
        target: Callable[..., Any] | None = predict if callable(predict) else model if callable(model) else None
        if target is None:
            raise ModelError(
                f"the model ({type(model).__name__}) has no predict() and is not callable; "
                f"define predict_fn in {self._entry.name}"
            )
        try:
            with _NoGrad(model):
                return target(data)
        except ApiError:
            raise
        except Exception as exc:
            logger.exception("the default predict_fn failed")
            raise ModelError(
                f"the default predict_fn failed calling the {type(model).__name__} model on a "
                f"{type(data).__name__}: {type(exc).__name__}: {one_line_error(exc)}; define predict_fn in "
                f"{self._entry.name}"
            ) from exc

    def _default_output(self, prediction: Any, accept: str) -> tuple[bytes, str]:
        """The package's response codecs for named arrays; JSON for anything else."""
        if _is_named_arrays(prediction):
            from inference.codecs import encode_response

            return encode_response(prediction, accept, self._signature)
        if not _accepts(accept, JSON):
            raise NotAcceptableError(
                f"this model's predictions ({type(prediction).__name__}) can only be returned as {JSON}, "
                f"but Accept is {accept!r}; define output_fn in {self._entry.name} for other media types"
            )
        return _json_bytes(prediction, source="the default output_fn"), JSON


# ---------------------------------------------------------------------------------------------------------------------
# Importing the user code


def _import_user_module(entry: Path, package_name: str) -> ModuleType:
    """Import ``entry`` under a unique module name, with its directory importable for helper modules.

    Two packages loaded into one process may both ship ``inference.py`` and
    helpers with the same names (``utils.py``): the entry module gets a unique
    name, and helper names that an earlier package already registered in
    ``sys.modules`` are set aside while this package's code is imported, so its
    top-level ``import utils`` binds its own file. The earlier package's
    modules are put back afterwards. Imports deferred into hook bodies resolve
    at request time through ``sys.modules`` and ``sys.path``, where ``code/``
    stays (appended) as the toolkit keeps it on ``PYTHONPATH``; across several
    packages such a deferred import finds the first package's module of that
    name, so import helpers at the top of ``inference.py``.
    """
    code_dir = entry.parent.resolve()
    module_name = f"{_MODULE_PREFIX}{re.sub(r'[^0-9A-Za-z_]', '_', package_name)}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, entry)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {entry}: not a Python source file")
    module = importlib.util.module_from_spec(spec)

    set_aside = _set_aside_other_packages_helpers(code_dir, exclude=entry.stem)
    before = set(sys.modules)
    code_path = str(code_dir)
    # The toolkit puts code/ first on PYTHONPATH: a helper wins over an installed module of the same name.
    sys.path.insert(0, code_path)
    # Importing must not write __pycache__/ into the package: it holds exactly the files its manifest lists.
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    # Registered before running, like any import: dataclasses, pickle and typing look modules up by name.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        for name in set(sys.modules) - before:
            loaded = sys.modules.get(name)
            if loaded is not None and _is_under(loaded, code_dir):
                del sys.modules[name]
        sys.modules.update(set_aside)
        # sys.exit() at import time is a failed import too; Ctrl-C is not.
        if not isinstance(exc, Exception | SystemExit):
            raise
        logger.error("importing %s failed", entry, exc_info=exc)
        raise LoadError(_import_error_message(entry, code_dir, exc)) from exc
    finally:
        sys.dont_write_bytecode = writes_bytecode
        if code_path in sys.path:
            sys.path.remove(code_path)
    # Put the earlier package's helpers back; this package's modules stay referenced by its own code.
    for name in set_aside:
        for own in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
            del sys.modules[own]
    sys.modules.update(set_aside)
    # At the end, not the front: one package's file names must not shadow what the server imports later.
    if code_path not in sys.path:
        sys.path.append(code_path)
    return module


def _set_aside_other_packages_helpers(code_dir: Path, *, exclude: str) -> dict[str, ModuleType]:
    """Remove (and return) modules of other packages' code/ that this code/ provides under the same name."""
    other_code_dirs = {
        Path(str(module.__file__)).resolve().parent
        for name, module in list(sys.modules.items())
        if name.startswith(_MODULE_PREFIX) and getattr(module, "__file__", None)
    } - {code_dir}
    set_aside: dict[str, ModuleType] = {}
    for name in _provided_module_names(code_dir) - {exclude}:
        existing = sys.modules.get(name)
        if existing is None:
            continue
        if any(_is_under(existing, other) for other in other_code_dirs):
            for key in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
                set_aside[key] = sys.modules.pop(key)
        elif not _is_under(existing, code_dir):
            # Already imported by the server or a library: Python will hand out that module, not the helper.
            logger.warning(
                "%s/%s is shadowed by the already imported module %r (%s); rename the helper",
                code_dir.name,
                name,
                name,
                getattr(existing, "__file__", "built-in"),
            )
    return set_aside


def _provided_module_names(code_dir: Path) -> set[str]:
    """Top-level module names that files and folders in ``code_dir`` can be imported as."""
    names: set[str] = set()
    for path in code_dir.iterdir():
        if path.is_file() and path.suffix == ".py":
            names.add(path.stem)
        elif path.is_dir() and path.name.isidentifier() and any(path.glob("*.py")):
            names.add(path.name)
    return names


def _is_under(module: ModuleType, directory: Path) -> bool:
    """Whether ``module`` was loaded from a file (or is a package) inside ``directory``."""
    locations = [getattr(module, "__file__", None), *list(getattr(module, "__path__", None) or [])]
    return any(location and Path(location).resolve().is_relative_to(directory) for location in locations)


def _import_error_message(entry: Path, code_dir: Path, exc: BaseException) -> str:
    where = str(entry)
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        where = f"{exc.filename or entry}:{exc.lineno}"
        detail = f"SyntaxError: {exc.msg}"
    else:
        # Point at the user's line that raised, not at importlib's frames.
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve().is_relative_to(code_dir)
        ]
        if frames:
            where = f"{frames[-1].filename}:{frames[-1].lineno}"
        detail = f"{type(exc).__name__}: {one_line_error(exc)}"
    message = f"cannot import user code {entry} (at {where}): {detail}"
    if isinstance(exc, ImportError):
        message += (
            ". Install the missing package in the serving image, or ship it in code/requirements.txt "
            "and set MODEL_SERVER_INSTALL_REQUIREMENTS=true"
        )
    return message


def _collect_hooks(module: ModuleType, entry: Path) -> dict[str, _Hook]:
    """The hooks ``module`` defines, with their context arity checked once, here rather than per request."""
    hooks: dict[str, _Hook] = {}
    for name, parameters in _HOOK_PARAMETERS.items():
        func = getattr(module, name, None)
        if func is None:
            continue
        if not callable(func):
            raise LoadError(f"{entry}: {name} must be a function, got {type(func).__name__}")
        hooks[name] = _Hook(name, func, _takes_context(func, name, parameters, entry))
    request_hooks = [name for name in ("input_fn", "predict_fn", "output_fn") if name in hooks]
    if "transform_fn" in hooks and request_hooks:
        raise LoadError(
            f"{entry} defines transform_fn together with {', '.join(request_hooks)}; the SageMaker toolkit "
            "allows either transform_fn alone or input_fn/predict_fn/output_fn"
        )
    return hooks


def _takes_context(func: Callable[..., Any], name: str, parameters: tuple[str, ...], entry: Path) -> bool:
    """Whether to pass ``context``: one positional parameter more than the hook's arguments.

    The toolkit compares the parameter count with the argument count; a
    parameter with a default (``context=None``) counts, so it receives the context.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return False  # a builtin without introspectable parameters: call it the classic way
    kinds = [p.kind for p in signature.parameters.values()]
    positional = sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds)
    required_keyword_only = [
        p.name
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    expected = ", ".join(parameters)
    if not required_keyword_only:
        if positional == len(parameters) + 1:
            return True
        if positional == len(parameters) or (
            inspect.Parameter.VAR_POSITIONAL in kinds and positional < len(parameters)
        ):
            return False
    raise LoadError(
        f"{entry}: {name}{signature} does not fit the SageMaker hook {name}({expected}) or {name}({expected}, context)"
    )


def _call_at_load(hook: _Hook, entry: Path, *args: Any, context: RequestContext) -> Any:
    try:
        return hook(*args, context=context)
    except Exception as exc:
        logger.error("%s in %s failed", hook.name, entry, exc_info=exc)
        raise LoadError(f"{hook.name} in {entry} failed: {type(exc).__name__}: {one_line_error(exc)}") from exc


def _load_default_model(default_model: Callable[[], Any]) -> Any:
    try:
        return default_model()
    except ModelPackageError:
        raise
    except Exception as exc:
        raise LoadError(f"loading the package's model failed: {type(exc).__name__}: {one_line_error(exc)}") from exc


def _prepare_for_default_predict(model: Any) -> None:
    """Put a PyTorch module returned by model_fn in eval mode, once, for the default predict_fn.

    The PyTorch toolkit's default predict_fn calls ``model.eval()`` on every
    request; doing it once at load gives the same outputs without mutating a
    model that other threads are running.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        model.eval()


# ---------------------------------------------------------------------------------------------------------------------
# Requests and responses


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _user_body(body: bytes, content_type: str | None) -> bytes | str:
    """The body as user hooks receive it: ``str`` for JSON and CSV (as the toolkit does), else bytes."""
    if _media_type(content_type) not in _TEXT_MEDIA_TYPES:
        return body
    charset = "utf-8"
    for parameter in (content_type or "").split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return body.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadRequestError(
            f"the {_media_type(content_type)} body is not valid {charset} text: {one_line_error(exc)}"
        ) from exc


def _media_ranges(accept: str) -> list[str]:
    return [media for media in (_media_type(part) for part in accept.split(",")) if media]


def _effective_accept(accept: str | None, default: str) -> str:
    """The toolkit's rule: a missing or ``*/*`` Accept means the default accept."""
    value = (accept or "").strip()
    return default if not value or value == "*/*" else value


def _accepts(accept: str, media_type: str) -> bool:
    major = media_type.split("/", 1)[0]
    return any(media in (media_type, "*/*", f"{major}/*") for media in _media_ranges(accept))


def _as_response(result: Any, accept: str, *, source: str) -> tuple[bytes, str]:
    """Turn what ``output_fn``/``transform_fn`` returned into body bytes and a content type."""
    # TorchServe handlers return one response per request of the batch; the batch here is one request.
    if (
        isinstance(result, list)
        and len(result) == 1
        and isinstance(result[0], bytes | bytearray | memoryview | str | tuple)
    ):
        result = result[0]
    if isinstance(result, tuple):
        if len(result) != 2 or not isinstance(result[1], str):
            raise ModelError(
                f"{source} returned a tuple of {len(result)} items; expected (body, content_type) with a str "
                "content type"
            )
        body, content_type = result
        return _body_bytes(body, source=source), _checked_content_type(content_type, source)
    if isinstance(result, bytes | bytearray | memoryview | str):
        return _body_bytes(result, source=source), _response_type(accept)
    # Not serialised by the user code: the model server would send it as JSON, and so do we.
    return _body_bytes(result, source=source), JSON


def _body_bytes(body: Any, *, source: str) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if body is None:
        raise ModelError(f"{source} returned None; it must return the response body (bytes, str or a JSON value)")
    return _json_bytes(body, source=source)


def _response_type(accept: str) -> str:
    """The content type of a body returned without one: the first concrete type the client accepts."""
    for media in _media_ranges(accept):
        if "*" not in media:
            return media
    return "application/octet-stream"


def _checked_content_type(value: str, source: str) -> str:
    if not value.strip() or any(char in value for char in "\r\n\x00"):
        raise ModelError(f"{source} returned the content type {value!r}; expected a media type such as {JSON!r}")
    return value.strip()


def _json_bytes(value: Any, *, source: str) -> bytes:
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise ModelError(
            f"{source} returned a {type(value).__name__} that cannot be sent as JSON ({one_line_error(exc)}); "
            "return bytes, a str or a (body, content_type) tuple"
        ) from exc


def _json_default(value: Any) -> Any:
    """What orjson cannot serialise natively: NumPy scalars/odd arrays, PyTorch tensors, sets."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):  # non-contiguous or a dtype orjson does not take directly
        return value.tolist()
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy().tolist()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_response_headers(headers: dict[str, str]) -> None:
    """Reject header values that would corrupt the response; drop headers the server owns."""
    for name in list(headers):
        value = headers[name]
        if not isinstance(name, str) or not isinstance(value, str):
            raise ModelError(f"user code set response header {name!r} to a {type(value).__name__}; use str values")
        if any(char in name + value for char in "\r\n\x00") or not name.strip():
            raise ModelError(f"user code set an invalid response header {name!r}: names and values must be one line")
        if name.lower() in _RESERVED_RESPONSE_HEADERS:
            logger.warning("ignoring response header %r set by user code: the server sets it", name)
            del headers[name]


def _toolkit_status(exc: Exception) -> int | None:
    """The HTTP status of a sagemaker_inference ``BaseInferenceToolkitError``, recognised without importing it."""
    status = getattr(exc, "status_code", None)
    is_toolkit_error = any(cls.__name__ == "BaseInferenceToolkitError" for cls in type(exc).__mro__)
    if is_toolkit_error and isinstance(status, int) and 400 <= status <= 599:
        return status
    return None


def _is_loaded_model(model: Any) -> bool:
    """Duck-typed :class:`model_package.formats.LoadedModel` (the protocol is not runtime-checkable)."""
    return callable(getattr(model, "predict", None)) and hasattr(model, "signature")


def _is_named_arrays(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items())
    )


class _NoGrad:
    """``torch.no_grad()`` for PyTorch modules (as the PyTorch toolkit's default predict_fn uses), else nothing."""

    def __init__(self, model: Any) -> None:
        torch = sys.modules.get("torch")
        self._guard = torch.no_grad() if torch is not None and isinstance(model, torch.nn.Module) else None

    def __enter__(self) -> None:
        if self._guard is not None:
            self._guard.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        if self._guard is not None:
            self._guard.__exit__(*exc_info)


# ---------------------------------------------------------------------------------------------------------------------
# code/requirements.txt


def install_requirements(package_dir: Path, manifest: Manifest, *, timeout: float = _PIP_TIMEOUT_S) -> None:
    """``pip install`` the package's ``code/requirements.txt`` into the serving environment.

    Only for operators who opt in: network-isolated endpoints cannot reach an
    index, so the recommended way is to bake dependencies into the image. Runs
    pip in ``code/`` so relative paths (vendored wheels) resolve there, and
    skips pip's self-version check, which would itself need the network.
    Raises :class:`LoadError` with pip's error line when the install fails.
    """
    if manifest.code is None or manifest.code.requirements is None:
        return
    path = package_dir / manifest.code.requirements
    if not path.is_file():
        raise LoadError(f"{path} does not exist, but the manifest lists it as the user code's requirements")
    command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "-r", str(path)]
    logger.info("installing user code requirements from %s", manifest.code.requirements)
    try:
        completed = subprocess.run(  # a fixed command; the requirements file is the package's own
            command, cwd=path.parent, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(
            f"pip install -r {path} did not finish within {timeout:.0f} s; bake the dependencies into the "
            "serving image instead"
        ) from exc
    except OSError as exc:
        raise LoadError(f"cannot run pip to install {path}: {one_line_error(exc)}") from exc
    if completed.returncode != 0:
        raise LoadError(
            f"pip install -r {path} failed (exit code {completed.returncode}): "
            f"{_pip_error(completed.stderr or completed.stdout)}. Fix {manifest.code.requirements} or bake the "
            "dependencies into the serving image (network-isolated endpoints cannot reach a package index)"
        )
    summary = [line for line in completed.stdout.splitlines() if line.strip()]
    logger.info("pip: %s", summary[-1] if summary else "nothing to install")


def _pip_error(output: str) -> str:
    """pip's ``ERROR:`` and ``Hint:`` lines as one line (its full output goes to the debug log)."""
    logger.debug("pip output:\n%s", output)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    relevant = [line for line in lines if line.startswith(("ERROR:", "Hint:"))] or lines[-1:]
    return " ".join(relevant)[:600] or "no output"


def verify_user_code(package_dir: Path, manifest: Manifest) -> tuple[str, ...]:
    """Import the package's user code and run it on the bundled example, as the server will.

    ``model-package verify`` and ``export``/``import --code`` call this, so a
    ``code/inference.py`` that imports a missing module, or whose hooks fail on
    the package's own example, fails there instead of only at start-up or on
    the first request. The example goes through the request hooks as the JSON
    request ``{"inputs": {name: batch}}`` when the code keeps the default
    ``input_fn`` (a custom ``input_fn``/``transform_fn`` expects a body format
    only the code knows, so those are imported and loaded but not called).
    Returns the hooks the example ran through; raises :class:`LoadError` with
    the reason the server would give.
    """
    from model_package.example import load_arrays
    from model_package.formats import get_format

    handler = UserCodeHandler.load(
        package_dir, manifest, default_model=lambda: get_format(manifest.format).load(package_dir, manifest)
    )
    if handler is None:
        return ()
    hooks = handler.hooks
    inputs = load_arrays(package_dir / manifest.example.inputs)
    if "input_fn" in hooks or "transform_fn" in hooks or any(a.dtype.kind not in "biuf" for a in inputs.values()):
        logger.info("user code imported and loaded; its request hooks take a format only it knows, so not run")
        return ()
    body = orjson.dumps({"inputs": {name: array.tolist() for name, array in inputs.items()}})
    try:
        handler.invoke(body, JSON, JSON, RequestContext())
    except ApiError as exc:
        raise LoadError(
            f"{manifest.code.entry_point if manifest.code else 'user code'} fails on the package's bundled example "
            f"(the server would answer {exc.status}): {exc}"
        ) from exc
    return tuple(hook for hook in ("predict_fn", "output_fn") if hook in hooks)
