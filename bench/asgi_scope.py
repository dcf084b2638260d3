"""The ASGI scope of one HTTP POST, for benchmarks that call the app in process, without sockets."""

from __future__ import annotations

from typing import Any


def post_scope(path: str, content_type: str, body_length: int) -> dict[str, Any]:
    """What uvicorn hands the app for ``POST path`` with these headers (copy it per call: apps write to it)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(body_length).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }
