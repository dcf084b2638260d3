"""Entry point the Pulumi CLI runs for ``--policy-pack infra/policy``: serve the pack's policies."""

import sys
from pathlib import Path

# The CLI runs this file as a script from infra/policy; make the repository importable so the
# rules can share infra.config with the program they check (a no-op when it is installed).
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402  (after the path fix)

from infra.policy import POLICY_PACK_NAME, build_policies  # noqa: E402

PolicyPack(POLICY_PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
