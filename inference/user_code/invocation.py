"""Running one request through the hooks (``UserCodeHandler``), with the toolkit's defaults for missing ones."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
    shown,
)
from inference.response_limits import rows_of
from inference.user_code.context import RequestContext
from inference.user_code.errors import input_problem
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
#: What a hook may raise that is its request's failure, never the server's end: ``sys.exit()`` or a
#: ``KeyboardInterrupt`` raised by user code on input it dislikes stopped the whole server (and, after
#: three requests, a multi-worker one's supervisor). Hooks run on worker threads, where no signal
#: raises these.
_HOOK_FAILURES = (Exception, SystemExit, KeyboardInterrupt)
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


class NotImplementedForHooksError(ApiError):
    """The route exists, but this package's hooks cannot serve it (transform_fn on the Open Inference Protocol)."""

    status = 501


@dataclass
class HookRequest:
    """One request for the hooks: an HTTP body for ``input_fn``, or tensors the protocol decoded already."""

    context: RequestContext
    body: bytes = b""
    content_type: str | None = None
    accept: str | None = None
    tensors: Mapping[str, Any] | None = None
    """Open Inference Protocol requests: decoded by the protocol; input_fn and output_fn do not run."""
    rows: int | None = None
    """Rows of the decoded data, once known (for the response-size check's advice)."""


def _as_array(value: Any) -> Any:
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"a {type(value).__name__} of mixed or non-numeric values is no tensor")
    return array


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
        if not {"predict_fn", "predict_batch_fn", "transform_fn"} & set(hooks):
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

    @property
    def batched(self) -> bool:
        """Whether the code defines ``predict_batch_fn``: requests then go through the adaptive batcher."""
        return "predict_batch_fn" in self._hooks

    def invoke(self, body: bytes, content_type: str, accept: str, context: RequestContext) -> tuple[bytes, str]:
        """Run one request through the user code; returns the response body and its content type.

        Synchronous: the server calls it from a worker thread, and several
        calls may run at once without any lock, so the user code must be
        thread-safe (or the server must run one worker thread). Headers the
        code set on ``context.response_headers`` belong on the response.
        Raises :class:`ApiError` subclasses (see the module docstring), or the package model's
        ``InvalidInputError`` / ``ModelExecutionError`` from the default ``predict_fn``.
        """
        outcome = self.run_batch([HookRequest(context, body=body, content_type=content_type, accept=accept)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        result: tuple[bytes, str] = outcome
        return result

    def predict_tensors(self, inputs: Mapping[str, Any], context: RequestContext) -> dict[str, Any]:
        """One Open Inference Protocol request: decoded tensors through the prediction hook, tensors back."""
        outcome = self.run_batch([HookRequest(context, tensors=inputs)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        result: dict[str, Any] = outcome
        return result

    def run_batch(self, requests: Sequence[HookRequest]) -> list[Any]:
        """Run several requests; one outcome each, in order: the response (or tensors) or the exception.

        ``input_fn`` and ``output_fn`` run per request, so one bad body fails only its own request;
        ``predict_batch_fn`` runs once over every request whose input was decoded, and an exception
        from it is raised (the batcher then re-runs the requests one by one to find the failing one).
        """
        outcomes: list[Any] = [None] * len(requests)
        for request in requests:
            if not request.context.system_properties:
                request.context.system_properties = self._system_properties
        transform = self._hooks.get("transform_fn")
        if transform is not None:
            for index, request in enumerate(requests):
                outcomes[index] = self._capture(self._transform, transform, request)
            return outcomes
        data: dict[int, Any] = {}
        for index, request in enumerate(requests):
            decoded = self._capture(self._input, request)
            if isinstance(decoded, Exception):
                outcomes[index] = decoded
            else:
                data[index] = decoded
                request.rows = rows_of(decoded)
        predictions = self._predict(requests, data)
        for index, prediction in predictions.items():
            request = requests[index]
            if isinstance(prediction, Exception):
                outcomes[index] = prediction
            elif request.tensors is not None:
                outcomes[index] = self._capture(self._as_output_tensors, prediction, request)
            else:
                outcomes[index] = self._capture(self._output, prediction, request)
        return outcomes

    def _transform(self, transform: _Hook, request: HookRequest) -> tuple[bytes, str]:
        if request.tensors is not None:
            raise NotImplementedForHooksError(
                f"{self._entry.name} defines transform_fn, which takes a whole HTTP body: the Open Inference "
                "Protocol's tensors cannot go through it; use /invocations or the KServe V1 route"
            )
        accept = _effective_accept(request.accept, self._default_accept)
        result = self._call(
            transform,
            self._model,
            _user_body(request.body, request.content_type),
            request.content_type or None,  # the toolkit passes None when the request has no Content-Type
            accept,
            context=request.context,
        )
        response = _as_response(result, accept, source="transform_fn")
        _check_response_headers(request.context.response_headers)
        return response

    def _input(self, request: HookRequest) -> Any:
        """The request's data for the prediction hook: ``input_fn``'s result, or the decoded tensors."""
        if request.tensors is not None:
            # The Open Inference Protocol's body is tensors already: input_fn (body -> data) has nothing to parse.
            return dict(request.tensors)
        if "output_fn" not in self._hooks:
            # A 406 now, before any hook or the model runs.
            self._check_default_output(_effective_accept(request.accept, self._default_accept))
        input_fn = self._hooks.get("input_fn")
        if input_fn is None:
            return self._default_input(request.body, request.content_type)
        return self._call(
            input_fn,
            _user_body(request.body, request.content_type),
            request.content_type or None,
            context=request.context,
        )

    def _predict(self, requests: Sequence[HookRequest], data: Mapping[int, Any]) -> dict[int, Any]:
        """Predictions (or the exception each request failed with) for the requests whose data was decoded."""
        batch_fn = self._hooks.get("predict_batch_fn")
        if batch_fn is None:
            predict_fn = self._hooks.get("predict_fn")
            return {
                index: self._capture(self._call, predict_fn, item, self._model, context=requests[index].context)
                if predict_fn is not None
                else self._capture(self._default_predict, item)
                for index, item in data.items()
            }
        if not data:
            return {}
        indices = list(data)
        contexts = [requests[index].context for index in indices]
        result = self._call_batch(batch_fn, [data[index] for index in indices], contexts)
        return dict(zip(indices, result, strict=True))

    def _call_batch(self, hook: _Hook, items: list[Any], contexts: list[RequestContext]) -> list[Any]:
        try:
            result = hook.func(items, self._model, contexts) if hook.takes_context else hook.func(items, self._model)
        except ApiError:
            raise
        except _HOOK_FAILURES as exc:
            raise self._hook_error(hook.name, exc) from exc
        if not isinstance(result, Sequence) or isinstance(result, str | bytes) or len(result) != len(items):
            got = f"{len(result)} items" if isinstance(result, Sequence) else f"a {type(result).__name__}"
            raise ModelError(
                f"predict_batch_fn in {self._entry.name} returned {got} for {len(items)} inputs; it must return "
                "a list with one prediction per input, in order"
            )
        return list(result)

    def _output(self, prediction: Any, request: HookRequest) -> tuple[bytes, str]:
        accept = _effective_accept(request.accept, self._default_accept)
        output_fn = self._hooks.get("output_fn")
        if output_fn is not None:
            result = self._call(output_fn, prediction, accept, context=request.context)
            response = _as_response(result, accept, source="output_fn")
        else:
            response = self._default_output(prediction, accept)
        _check_response_headers(request.context.response_headers)
        return response

    def _as_output_tensors(self, prediction: Any, request: HookRequest) -> dict[str, Any]:
        """A prediction as the signature's named outputs, for the Open Inference Protocol's response."""
        _check_response_headers(request.context.response_headers)  # they reach this response too
        names = [spec.name for spec in self._signature.outputs]
        if not isinstance(prediction, Mapping):
            prediction = {names[0]: prediction} if len(names) == 1 else prediction
        if isinstance(prediction, Mapping) and set(names) <= set(prediction):
            try:
                return {name: _as_array(prediction[name]) for name in names}
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"the prediction of {self._entry.name} cannot be sent as tensors: {one_line_error(exc)}"
                ) from exc
        raise ModelError(
            f"the prediction hook in {self._entry.name} returned a {type(prediction).__name__}; the Open Inference "
            f"Protocol needs the signature's outputs ({', '.join(names)}) as arrays: return a dict "
            "{name: array} (or one array for a single output), or call /invocations, whose output_fn may shape it"
        )

    @staticmethod
    def _capture(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)``, or the exception it raised (one request's failure must not end the others')."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            return exc

    def _call(self, hook: _Hook, *args: Any, context: RequestContext) -> Any:
        try:
            return hook(*args, context=context)
        except ApiError:
            raise
        except _HOOK_FAILURES as exc:
            raise self._hook_error(hook.name, exc) from exc

    def _hook_error(self, hook: str, exc: BaseException) -> ApiError:
        status = _toolkit_status(exc)
        if status is not None:
            message = str(getattr(exc, "message", "") or exc)
            error = _STATUS_ERRORS.get(status, ApiError)(" ".join(message.split()) or f"{hook} failed")
            # The toolkit lets user code pick any status; keep it even without a class of its own.
            error.status = status
            return error
        problem = input_problem(hook, exc)
        if problem is not None:
            logger.info("%s rejected a request: %s: %s", hook, type(exc).__name__, one_line_error(exc))
            return problem
        # A failure of the user's code is ours to the client: the server logs the chained exception
        # with the request id; the body names only the hook and the exception type.
        return ModelError(f"{hook} in {self._entry.name} failed with {type(exc).__name__}")

    def _default_input(self, body: bytes, content_type: str | None) -> Any:
        """The package's own request codecs, decoding to the signature's named arrays."""
        from inference.codecs import decode_request

        decoded = decode_request(
            body, content_type, self._signature, allow_non_finite=self._allow_non_finite, limits=self._limits
        )
        # Checked against the signature before any hook runs (as the Open Inference Protocol's tensors
        # are): rows of the wrong width are the client's 400 here, not an InvalidInputError raised
        # inside predict_fn, which the server must count as the code's failure (500).
        return check_inputs(self._signature, decoded)

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
                f"but Accept is {shown(accept)}; define output_fn in {self._entry.name} for other media types"
            )
        return _json_bytes(prediction, source="the default output_fn"), JSON
