"""Importing a package's ``code/inference.py`` (under a unique name, with its helpers) and collecting its hooks."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from inference.user_code.context import RequestContext
from model_package.errors import LoadError, ModelPackageError
from model_package.formats.base import one_line_error

logger = logging.getLogger("inference.user_code")

# Prefix of the names user entry modules are imported under (a unique suffix per load).
_MODULE_PREFIX = "_model_user_code_"

#: The positional arguments each hook receives before the optional context (the toolkit's names).
_HOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "pre_model_fn": ("model_dir",),
    "model_fn": ("model_dir",),
    "model_warmup_fn": ("model_dir", "model"),
    "input_fn": ("input_data", "content_type"),
    "predict_fn": ("data", "model"),
    # Ours, not the toolkit's: a list of input_fn results in, a list of predictions out, in order;
    # its optional trailing argument is the list of the requests' contexts (TorchServe's batch convention).
    "predict_batch_fn": ("data", "model"),
    "output_fn": ("prediction", "accept"),
    "transform_fn": ("model", "input_data", "content_type", "accept"),
}


@dataclass(frozen=True)
class _Hook:
    """One user function and whether it takes the trailing ``context`` argument."""

    name: str
    func: Callable[..., Any]
    takes_context: bool

    def __call__(self, *args: Any, context: RequestContext) -> Any:
        return self.func(*args, context) if self.takes_context else self.func(*args)


# ---------------------------------------------------------------------------------------------------------------------
# Importing the user code


def import_user_code(entry: Path, package_name: str) -> ModuleType:
    """Import a package's ``code/inference.py`` as the server does, before anything else of the package loads."""
    return _import_user_module(entry, package_name)


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
    request_hooks = [name for name in ("input_fn", "predict_fn", "predict_batch_fn", "output_fn") if name in hooks]
    if "transform_fn" in hooks and request_hooks:
        raise LoadError(
            f"{entry} defines transform_fn together with {', '.join(request_hooks)}; the SageMaker toolkit "
            "allows either transform_fn alone or input_fn/predict_fn/output_fn"
        )
    if "predict_fn" in hooks and "predict_batch_fn" in hooks:
        raise LoadError(
            f"{entry} defines both predict_fn and predict_batch_fn; define one: predict_batch_fn (a list of inputs "
            "in, a list of predictions out) is batched across concurrent requests, predict_fn runs one request a call"
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
