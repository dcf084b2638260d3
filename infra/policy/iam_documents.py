"""IAM policy documents: parsing the JSON, and the questions the rules ask about statements.

A policy document reaches a rule as the JSON text the program built (``json.dumps`` of a
dict, or ``aws.iam.get_policy_document(...).json``) or, from other languages' SDKs, as an
object. IAM itself is lenient about shapes (one statement or a list, one action or a
list, ``Principal: "*"`` or ``{"AWS": [...]}``); :class:`Statement` normalises them so the
rules compare lists.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from infra.policy.props import as_list, json_value

#: Actions that may be granted on ``Resource: "*"`` because IAM cannot scope them further.
#:
#: Each entry is an action pattern (IAM's own ``*`` wildcard, matched case-insensitively)
#: and the reason. The sources are the Service Authorization Reference (actions without a
#: resource type) and SageMaker's documented execution-role policy for endpoints in a VPC.
#: Extend it per organisation with the ``additionalWildcardResourceActions`` policy config
#: rather than by editing this list, so the reasons stay reviewed here.
RESOURCE_WILDCARD_ACTIONS: Final[Mapping[str, str]] = {
    "ecr:GetAuthorizationToken": "returns a registry-wide login token; the action has no resource type",
    "cloudwatch:PutMetricData": "has no resource type (scope it with the cloudwatch:namespace condition key)",
    "ec2:Describe*": "EC2 Describe calls do not support resource-level permissions",
    "ec2:CreateNetworkInterface": "SageMaker VPC mode creates ENIs in your subnets; AWS documents Resource *",
    "ec2:CreateNetworkInterfacePermission": "SageMaker VPC mode; the ENI ids are not known in advance",
    "ec2:DeleteNetworkInterface": "SageMaker VPC mode; the ENI ids are not known in advance",
    "ec2:DeleteNetworkInterfacePermission": "SageMaker VPC mode; the ENI ids are not known in advance",
    "sts:GetCallerIdentity": "has no resource type",
    "xray:PutTraceSegments": "has no resource type",
    "xray:PutTelemetryRecords": "has no resource type",
    "xray:GetSamplingRules": "has no resource type",
    "xray:GetSamplingTargets": "has no resource type",
}

# "*" and "<service>:*": every action, or every action of one service.
_SERVICE_WILDCARD_RE = re.compile(r"^(?:\*|[a-z0-9-]+:\*)$", re.IGNORECASE)

# Condition keys that tie a wildcard principal to fixed accounts, networks or sources; with one
# of them a statement is not public (the same keys S3's own "is this policy public" check uses).
_RESTRICTING_CONDITION_KEYS: Final = frozenset(
    key.lower()
    for key in (
        "aws:SourceArn",
        "aws:SourceAccount",
        "aws:SourceOwner",
        "aws:SourceVpc",
        "aws:SourceVpce",
        "aws:SourceIp",
        "aws:PrincipalAccount",
        "aws:PrincipalArn",
        "aws:PrincipalOrgID",
        "aws:userid",
        "s3:DataAccessPointArn",
        "s3:DataAccessPointAccount",
    )
)


class PolicyDocumentError(ValueError):
    """A policy document that is not JSON or does not have IAM's shape."""


@dataclass(frozen=True)
class Statement:
    """One statement of a policy document, with IAM's single-or-list fields as tuples."""

    index: int
    sid: str | None
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    principal: Any = None
    conditions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def allows(self) -> bool:
        """An ``Allow`` statement (IAM compares the effect case-sensitively; so do we)."""
        return self.effect == "Allow"

    @property
    def label(self) -> str:
        """How a message names the statement: its Sid, else its position."""
        return f"statement {self.sid!r}" if self.sid else f"statement #{self.index + 1}"

    def wildcard_actions(self) -> list[str]:
        """Actions that grant every action (``*``) or every action of a service (``s3:*``)."""
        return [action for action in self.actions if _SERVICE_WILDCARD_RE.match(action)]

    @property
    def on_every_resource(self) -> bool:
        """``Resource: "*"``, or ``NotResource`` (everything except a few)."""
        return "*" in self.resources or bool(self.not_resources)

    @property
    def has_public_principal(self) -> bool:
        """``Principal: "*"`` or ``{"AWS": "*"}``: anyone, including anonymous callers."""
        if self.principal == "*":
            return True
        if isinstance(self.principal, Mapping):
            return "*" in as_list(self.principal.get("AWS"))
        return False

    @property
    def restricted_by_condition(self) -> bool:
        """A condition pins the caller to fixed accounts, networks or sources (with a literal value)."""
        for operator, clauses in self.conditions.items():
            # "...IfExists" passes when the key is absent, so it restricts nobody who omits it.
            if not isinstance(clauses, Mapping) or str(operator).endswith("IfExists"):
                continue
            for key, values in clauses.items():
                if str(key).lower() in _RESTRICTING_CONDITION_KEYS and all(_narrow(value) for value in as_list(values)):
                    return True
        return False


def parse_policy_document(document: Any) -> list[Statement]:
    """The statements of a policy document given as JSON text or an object.

    Raises :class:`PolicyDocumentError` for anything IAM would not accept as a document.
    """
    parsed = json_value(document) if isinstance(document, str) else document
    if not isinstance(parsed, Mapping):
        raise PolicyDocumentError("is not a JSON object with a Statement list")
    raw_statements = as_list(parsed.get("Statement"))
    if not raw_statements:
        raise PolicyDocumentError("has no Statement")
    statements = []
    for index, raw in enumerate(raw_statements):
        if not isinstance(raw, Mapping):
            raise PolicyDocumentError(f"statement #{index + 1} is not an object")
        conditions = raw.get("Condition")
        statements.append(
            Statement(
                index=index,
                sid=raw.get("Sid") if isinstance(raw.get("Sid"), str) else None,
                effect=str(raw.get("Effect", "")),
                actions=_strings(raw.get("Action")),
                not_actions=_strings(raw.get("NotAction")),
                resources=_strings(raw.get("Resource")),
                not_resources=_strings(raw.get("NotResource")),
                principal=raw.get("Principal"),
                conditions=conditions if isinstance(conditions, Mapping) else {},
            )
        )
    return statements


def unscopable_action(action: str, extra_patterns: tuple[str, ...] = ()) -> bool:
    """Whether ``action`` may be granted on ``Resource: "*"`` (see :data:`RESOURCE_WILDCARD_ACTIONS`)."""
    patterns = (*RESOURCE_WILDCARD_ACTIONS, *extra_patterns)
    # fnmatch on the action text: "ec2:Describe*" matches "ec2:DescribeSubnets" and itself, never "ec2:*".
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in patterns)


def _narrow(value: Any) -> bool:
    # A wildcard or an all-addresses CIDR ("0.0.0.0/0") matches everyone, so it restricts nothing.
    return isinstance(value, str) and "*" not in value and not value.endswith("/0")


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in as_list(value))
