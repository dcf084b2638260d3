"""Whether a gRPC endpoint is a local test server (spoken to in plain text, without credentials)."""

from __future__ import annotations

import ipaddress


def is_loopback(api_endpoint: str) -> bool:
    """Whether ``api_endpoint`` (``host:port``) is on this machine: a local test server, spoken to in plain text."""
    host = api_endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
