"""One table of prod Cloud Run settings and whether the service may go without deletion protection.

Config validation (``tests/infra/test_gcp_config.py``, main virtualenv) and the policy pack
(``tests/infra/test_policy.py``, ``.venv-policy``, which cannot load GCP stack config) are each
checked against the same ``allowed`` column, so the two agree case by case. The stack is named
``prod``, as the config tests load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

STACK: Final = "prod"


@dataclass(frozen=True)
class DecommissionCase:
    """``cloudRun`` settings and ``gcp.decommission`` of a prod stack named :data:`STACK`."""

    id: str
    cloud_run: dict[str, Any]
    decommission: str | None
    allowed: bool

    @property
    def deletion_protection(self) -> bool:
        """What the program declares on the service (``cloudRun.deletionProtection``, on in prod)."""
        return bool(self.cloud_run.get("deletionProtection", True))

    def service_labels(self, stack_labels: dict[str, str]) -> dict[str, str]:
        """The service's labels as the program writes them (``infra/gcp/cloud_run.py``'s ``service_labels``)."""
        return {**stack_labels, **({"decommission": self.decommission} if self.decommission else {})}


CASES: Final = (
    DecommissionCase("protected", {}, None, allowed=True),
    DecommissionCase("unprotected", {"deletionProtection": False}, None, allowed=False),
    DecommissionCase("decommissioned", {"deletionProtection": False}, STACK, allowed=True),
    DecommissionCase(
        "decommission-copied-from-another-stack", {"deletionProtection": False}, "gcp-prod", allowed=False
    ),
)
