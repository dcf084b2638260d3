"""Where a stack lets its batch jobs read and write: the ``batchInputUri`` / ``batchOutputUri`` stack outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.verify_common import UsageError, output_value


def require_within(outputs: Mapping[str, Any], flag: str, uri: str, key: str) -> None:
    """Refuse ``uri`` outside the prefix the stack output ``key`` names (no outputs: nothing to compare).

    The job's identity may use only that prefix; a job elsewhere would fail on an access error
    after minutes of provisioning, so the command refuses it up front.
    """
    allowed = output_value(outputs, (key,))
    if allowed is None:
        return
    if not (uri.rstrip("/") + "/").startswith(allowed.rstrip("/") + "/"):
        verb = "read" if flag == "--input" else "write"
        raise UsageError(
            f"{flag} {uri} is outside {allowed}, the only place the stack's job identity may {verb} "
            f"batch data ({key} of the stack outputs)"
        )
