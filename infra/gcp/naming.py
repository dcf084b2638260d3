"""Names and URIs the GCP components derive from the stack config, without calling GCP."""

from __future__ import annotations

import hashlib
import re
from typing import Final

from infra.config.gcp_limits import SERVICE_ACCOUNT_ID

#: Where the serving entrypoint looks for a package first (the SageMaker convention, kept everywhere).
MODEL_DIR: Final = "/opt/ml/model"
#: The serving container's port (the entrypoint binds $PORT, which Cloud Run sets to this).
CONTAINER_PORT: Final = 8080
HEALTH_ROUTE: Final = "/health"
PREDICT_ROUTE: Final = "/predict"


def service_account_id(base: str, suffix: str) -> str:
    """A 6-30 character service-account id ``<base>-<suffix>`` (``base`` cut and cleaned to fit).

    >>> service_account_id("digits-dev", "run-sa")
    'digits-dev-run-sa'
    """
    text = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", base.lower())).strip("-")
    if not text[:1].isalpha():
        text = "m" + text
    text = text[: SERVICE_ACCOUNT_ID.maximum - len(suffix) - 1].rstrip("-")
    account_id = f"{text}-{suffix}"
    problem = SERVICE_ACCOUNT_ID.problem(account_id)
    if problem:  # only a suffix breaking the rule could get here: a programming error
        raise ValueError(f"service account id {account_id!r} {problem}")
    return account_id


def member_slug(member: str) -> str:
    """A short, stable logical-name part for an IAM member (reordering the list replaces nothing)."""
    return hashlib.sha256(member.encode()).hexdigest()[:8]
