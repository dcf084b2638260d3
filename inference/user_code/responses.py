"""Bodies in and out of user code: what hooks receive and how what they return becomes a response."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from inference.codecs.media_types import negotiate, preferred_media_type
from inference.errors import (
    BadRequestError,
    ModelError,
    NotAcceptableError,
)
from model_package.formats.base import one_line_error

logger = logging.getLogger("inference.user_code")
JSON = "application/json"

# The toolkit decodes exactly these request bodies to str before calling user code.
_TEXT_MEDIA_TYPES = frozenset({JSON, "text/csv"})
#: A header name is a token; a value is visible characters, spaces and tabs, in Latin-1 (what the HTTP
#: server encodes): RFC 9110, sections 5.1 and 5.5 (https://www.rfc-editor.org/rfc/rfc9110#section-5.5).
#: Anything else made uvicorn drop the connection without an answer.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Headers user code must not set: the server owns framing (the Open Inference Protocol's
# Inference-Header-Content-Length too: a hook's value would make a client split a JSON answer where
# there is no binary part) and the request id (its logs are keyed by it, and the middleware adds it
# to every response); the hook's return value owns Content-Type.
_RESERVED_RESPONSE_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "x-request-id",
        "inference-header-content-length",
    }
)


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


def _effective_accept(accept: str | None, default: str) -> str:
    """The toolkit's rule: a missing or ``*/*`` Accept means the default accept."""
    value = (accept or "").strip()
    return default if not value or value == "*/*" else value


def _accepts(accept: str, media_type: str) -> bool:
    # The codecs' RFC 9110 negotiation, so q-values count here too (application/json;q=0 excludes JSON).
    try:
        negotiate(accept, (media_type,), media_type)
    except NotAcceptableError:
        return False
    return True


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
    """The content type of a body returned without one: the concrete type the client prefers (q-values count)."""
    return preferred_media_type(accept) or "application/octet-stream"


def _checked_content_type(value: str, source: str) -> str:
    if not value.strip() or not _HEADER_VALUE.fullmatch(value):
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
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise ModelError(
                f"user code set an invalid response header {name!r}: {value!r}; a name is letters, digits and "
                "!#$%&'*+-.^_`|~, a value one line of printable Latin-1 characters (RFC 9110, section 5)"
            )
        if name.lower() in _RESERVED_RESPONSE_HEADERS:
            logger.warning("ignoring response header %r set by user code: the server sets it", name)
            del headers[name]


def _toolkit_status(exc: BaseException) -> int | None:
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
