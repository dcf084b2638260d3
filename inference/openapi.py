"""The OpenAPI document of the server's HTTP surface (``openapi.yaml``, shipped next to this module).

The document is written by hand, kept true by ``tests/inference/test_openapi.py`` (every route the app
registers is documented, and a property-based run against a live server checks statuses, media types,
headers and bodies against it), and used by contract tests and API clients.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

#: The document's file name inside the ``inference`` package.
OPENAPI_FILENAME = "openapi.yaml"


def load_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document describing every route of ``model-serve``, as a fresh, mutable dict."""
    text = resources.files("inference").joinpath(OPENAPI_FILENAME).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise TypeError(f"{OPENAPI_FILENAME} does not hold a YAML mapping")
    return document
