"""Fixtures for the infra tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.mocks import ensure_event_loop


@pytest.fixture(autouse=True)
def current_event_loop() -> Iterator[None]:
    """Give Pulumi's runtime a current event loop (see :func:`tests.infra.mocks.ensure_event_loop`)."""
    ensure_event_loop()
    yield
