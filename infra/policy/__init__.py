"""The ``model-deploy`` Pulumi policy pack: rules that must never regress on an AWS or GCP stack.

Run it with ``pulumi preview --policy-pack infra/policy`` (or ``pulumi up``); each rule is
a plain function in :mod:`infra.policy.rules` (AWS) or :mod:`infra.policy.gcp_rules` (GCP),
listed with its name in :mod:`infra.policy.policies`.
"""

from infra.policy.policies import POLICY_PACK_NAME, RULES, RuleSpec, build_policies

__all__ = ["POLICY_PACK_NAME", "RULES", "RuleSpec", "build_policies"]
