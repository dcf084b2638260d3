"""Record the boto3 calls a command really makes: every client botocore creates reports its operations.

botocore emits ``before-parameter-build.<service>.<operation>`` with the operation model and the
caller's parameters before it serializes a request (botocore docs, "Event system"; client.py
``_make_api_call``). Registering on each new client's event system sees every call of every
client, however the command builds its session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.session

from infra.access.aws_sdk_calls import SdkCall


@contextmanager
def recording() -> Iterator[list[SdkCall]]:
    """Within the block, every boto3/botocore call is appended to the yielded list."""
    calls: list[SdkCall] = []
    original = botocore.session.Session.create_client

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append(SdkCall(model.service_model.service_name, model.name, dict(params)))

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", record)
        return client

    botocore.session.Session.create_client = create_client
    try:
        yield calls
    finally:
        botocore.session.Session.create_client = original
