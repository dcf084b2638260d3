"""Fixtures for the infra tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def current_event_loop() -> Iterator[None]:
    """Give Pulumi's runtime a current event loop.

    Pulumi's mocks schedule work on ``asyncio.get_event_loop()``; any earlier ``asyncio.run()``
    in the same process (the batcher tests use it) leaves the main thread with none, and every
    mock-driven test would then fail with "There is no current event loop".
    """
    policy = asyncio.get_event_loop_policy()
    try:
        loop = policy.get_event_loop()
        created = loop.is_closed()
    except RuntimeError:
        created = True
    if created:
        policy.set_event_loop(policy.new_event_loop())
    yield
