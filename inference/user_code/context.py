"""The per-request context user code sees: SageMaker custom attributes and TorchServe's ``Context`` calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The SageMaker header that carries opaque per-request attributes in both directions.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"


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
