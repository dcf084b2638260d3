"""Running one request through the hooks (``UserCodeHandler``), with the toolkit's defaults for missing ones."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from inference.codecs.limits import DecodeLimits
from inference.errors import (
    ApiError,
    BadRequestError,
    ModelError,
    NotAcceptableError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from inference.user_code.context import RequestContext
from inference.user_code.importing import (
    _call_at_load,
    _collect_hooks,
    _Hook,
    _import_user_module,
    _load_default_model,
    _prepare_for_default_predict,
)
from inference.user_code.responses import (
    _accepts,
    _as_response,
    _check_response_headers,
    _effective_accept,
    _is_loaded_model,
    _is_named_arrays,
    _json_bytes,
    _NoGrad,
    _toolkit_status,
    _user_body,
)
from model_package.errors import LoadError
from model_package.formats.base import check_inputs, one_line_error
from model_package.manifest import Manifest, Signature

logger = logging.getLogger("inference.user_code")
JSON = "application/json"

# Status codes of the toolkit's BaseInferenceToolkitError that have a class of their own here.
_STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    404: NotFoundError,
    406: NotAcceptableError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    500: ModelError,
}


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
        limits: DecodeLimits | None = None,
    ) -> None:
        """Use :meth:`load`; this only stores what it prepared."""
        self._limits = limits
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
        limits: DecodeLimits | None = None,
    ) -> UserCodeHandler | None:
        """Import the package's user code and load its model; ``None`` when the package has no code.

        ``default_model`` loads the package's model and is called only when the
        code defines no ``model_fn``. ``default_accept`` replaces a missing or
        ``*/*`` Accept header (the toolkit reads it from
        ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``); ``allow_non_finite`` is passed
        to the default ``input_fn``'s codecs, and so are ``limits`` (the decoded-size bound).
        Call this at start-up, before serving: importing briefly changes ``sys.path`` and ``sys.modules``.
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
            limits=limits,
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
        Raises :class:`ApiError` subclasses (see the module docstring), or the package model's
        ``InvalidInputError`` / ``ModelExecutionError`` from the default ``predict_fn``.
        """
        if not context.system_properties:
            context.system_properties = self._system_properties
        # The toolkit passes None when the request has no Content-Type.
        user_content_type = content_type or None
        accept = _effective_accept(accept, self._default_accept)
        transform = self._hooks.get("transform_fn")
        if transform is None and "output_fn" not in self._hooks:
            self._check_default_output(accept)
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
        if hook == "input_fn" and isinstance(exc, ValueError):
            logger.info("input_fn rejected a request: %s: %s", type(exc).__name__, one_line_error(exc))
            return BadRequestError(f"input_fn rejected the request: {one_line_error(exc)}")
        # A failure of the user's code is ours to the client: the server logs the chained exception
        # with the request id; the body names only the hook and the exception type.
        return ModelError(f"{hook} in {self._entry.name} failed with {type(exc).__name__}")

    def _default_input(self, body: bytes, content_type: str | None) -> Any:
        """The package's own request codecs, decoding to the signature's named arrays."""
        from inference.codecs import decode_request

        return decode_request(
            body, content_type, self._signature, allow_non_finite=self._allow_non_finite, limits=self._limits
        )

    def _default_predict(self, data: Any) -> Any:
        """``model.predict`` for named arrays on a loaded package model, else ``model(data)``."""
        model = self._model
        if _is_loaded_model(model) and _is_named_arrays(data):
            # InvalidInputError (4xx) and ModelExecutionError (5xx) reach the server's error mapping as they are.
            return model.predict(check_inputs(model.signature, data))
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
            raise ModelError(
                f"the default predict_fn failed calling the {type(model).__name__} model on a "
                f"{type(data).__name__} with {type(exc).__name__}; define predict_fn in {self._entry.name}"
            ) from exc

    def _check_default_output(self, accept: str) -> None:
        """A 406 now, before any hook or the model runs, for an ``Accept`` the default output_fn cannot answer.

        Without a ``predict_fn`` the predictions of a package's own model are the signature's
        outputs, so the response type is settled exactly; a user ``predict_fn`` may return anything,
        so only an ``Accept`` that admits none of the codecs' types (JSON among them) is refused here.
        """
        from inference.codecs import RESPONSE_MEDIA_TYPES, negotiate, response_media_type

        if "predict_fn" not in self._hooks and _is_loaded_model(self._model):
            response_media_type(accept, self._signature, default=JSON)
        else:
            negotiate(accept, RESPONSE_MEDIA_TYPES, JSON)

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
