"""Run a package's user code on its bundled example, as the server will, at packaging time."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

from inference.errors import ApiError
from inference.user_code.context import RequestContext
from inference.user_code.invocation import JSON, UserCodeHandler
from model_package.errors import LoadError
from model_package.manifest import Manifest

logger = logging.getLogger("inference.user_code")


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
    return tuple(hook for hook in ("predict_fn", "predict_batch_fn", "output_fn") if hook in hooks)
