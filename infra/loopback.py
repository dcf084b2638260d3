"""Reaching a Google API endpoint, real or a local test server (plain text, without credentials).

Tests run the real GAPIC clients against loopback gRPC servers; production talks TLS with the
default credentials. :func:`gapic_client` is the one place that chooses between the two.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def is_loopback(api_endpoint: str) -> bool:
    """Whether ``api_endpoint`` (``host:port``) is on this machine: a local test server, spoken to in plain text."""
    host = api_endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gapic_client(client_class: Any, transport_class: Any, api_endpoint: str) -> tuple[Any, Any]:
    """``client_class`` for ``api_endpoint`` and the channel it owns (``None`` for a real endpoint; close it).

    ``transport_class`` is the client's gRPC transport, used only on loopback: an insecure channel
    with anonymous credentials, which a test server accepts and a real endpoint would refuse.
    """
    if not is_loopback(api_endpoint):
        from google.api_core.client_options import ClientOptions

        return client_class(client_options=ClientOptions(api_endpoint=api_endpoint)), None
    import grpc  # type: ignore[import-untyped]  # grpcio ships no stubs
    from google.auth.credentials import AnonymousCredentials

    channel = grpc.insecure_channel(api_endpoint)
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return client_class(transport=transport_class(channel=channel, credentials=credentials)), channel
