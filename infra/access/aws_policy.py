"""AWS IAM policy evaluation, offline: would AWS allow this principal this action on this resource?

This follows AWS's documented evaluation logic, for the policy types the model-deploy programs
create (identity policies, S3 bucket policies, KMS key policies, role trust policies):

* "Policy evaluation logic" and "Cross-account policy evaluation logic" (IAM User Guide,
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html and
  .../reference_policies_evaluation-logic-cross-account.html): an explicit deny in any policy
  wins; within one account an allow in the identity policy *or* in a resource policy that names
  the principal suffices; across accounts both the identity policy and the resource policy must
  allow.
* KMS keys are the exception: "No AWS principal has any permissions to a KMS key unless [...]
  the key policy" allows it, directly or by delegating to the account's IAM policies with a
  statement for the account principal (KMS Developer Guide, "Key policies in AWS KMS",
  https://docs.aws.amazon.com/kms/latest/developerguide/key-policies.html).
* Condition operators, ``...IfExists``, ``Null``, ``ForAnyValue:`` / ``ForAllValues:`` and the
  rule that a *negated* operator (``StringNotEquals``, ``StringNotLike``, ``ArnNotEquals``,
  ``ArnNotLike``, ``NumericNotEquals``) is true when the key is absent from the request
  (".../reference_policies_elements_condition_operators.html"; "If the key that you specify in
  a policy condition is not present in the request context, the values do not match" for the
  positive operators).
* ARN matching: each of the six colon-separated parts is matched separately; ``*`` and ``?``
  match within a part, and in the resource part ``*`` spans ``/`` (".../reference_policies_elements_resource.html").
  Action names and condition-key names are case-insensitive, values are case-sensitive.

Anything it does not model (``NotPrincipal``, permissions boundaries, SCPs, session policies,
multi-valued context keys under a single-valued operator) raises :class:`UnsupportedPolicy`
instead of guessing: a test that silently mis-evaluates would prove nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

PolicyDocument = Mapping[str, Any]
ContextValue = str | tuple[str, ...]

_NEGATED: Final = frozenset(
    {"stringnotequals", "stringnotequalsignorecase", "stringnotlike", "arnnotequals", "arnnotlike", "numericnotequals"}
)


_OPERATORS: Final = frozenset(
    {
        "stringequals",
        "stringequalsignorecase",
        "stringlike",
        "arnequals",
        "arnlike",
        "bool",
        "null",
        "numericequals",
        "numericlessthan",
        "numericlessthanequals",
        "numericgreaterthan",
        "numericgreaterthanequals",
        *_NEGATED,
    }
)


class UnsupportedPolicy(ValueError):
    """A policy uses an element or operator this evaluator does not model."""


@dataclass(frozen=True)
class Principal:
    """An IAM role, as the session a pipeline job gets by assuming it."""

    role_arn: str
    """``arn:<partition>:iam::<account>:role[/<path>]/<name>``."""

    @property
    def account(self) -> str:
        """The account the role lives in."""
        return self.role_arn.split(":")[4]

    @property
    def partition(self) -> str:
        """``aws``, ``aws-cn``…"""
        return self.role_arn.split(":")[1]

    @property
    def role_name(self) -> str:
        """The role's name, without its path."""
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def session_arn(self) -> str:
        """What the request is signed as: ``arn:<p>:sts::<account>:assumed-role/<name>/<session>``."""
        return f"arn:{self.partition}:sts::{self.account}:assumed-role/{self.role_name}/github-actions"


@dataclass(frozen=True)
class Request:
    """One authorization request: a principal calling an action on a resource."""

    principal: Principal
    action: str
    """``service:Action``."""
    resource: str
    """The resource's ARN, or ``*`` for actions without resource-level permissions."""
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    """Request-specific condition keys (``s3:x-amz-server-side-encryption``, ``iam:PassedToService``…)."""

    def context_value(self, key: str) -> ContextValue | None:
        """The value of condition key ``key`` (case-insensitive), global keys included."""
        wanted = key.lower()
        for name, value in self.full_context().items():
            if name.lower() == wanted:
                return value
        return None

    def full_context(self) -> dict[str, ContextValue]:
        """The request's own keys plus the global ones AWS always sets for a role session."""
        return {
            "aws:PrincipalArn": self.principal.role_arn,
            "aws:PrincipalAccount": self.principal.account,
            "aws:PrincipalType": "AssumedRole",
            "aws:SecureTransport": "true",  # SDKs and the Pulumi providers always use HTTPS
            **self.context,
        }


@dataclass(frozen=True)
class ResourcePolicy:
    """A resource-based policy, and what kind of resource carries it."""

    document: PolicyDocument
    account: str
    """The account that owns the resource."""
    kind: Literal["s3", "kms", "other"] = "other"
    """``kms``: the key policy is required (IAM alone grants nothing)."""


@dataclass(frozen=True)
class Decision:
    """The outcome, and the statement (``<policy>/<Sid>``) that decided it, for error messages."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def evaluate(
    request: Request,
    identity_policies: Mapping[str, PolicyDocument],
    resource_policy: ResourcePolicy | None = None,
    *,
    resource_account: str | None = None,
) -> Decision:
    """Whether AWS would allow ``request``, given the principal's identity policies (name → document).

    ``resource_policy`` is the policy on the resource itself (bucket policy, key policy), if any;
    ``resource_account`` is the resource's account when there is no resource policy (default:
    the principal's, i.e. a same-account request).
    """
    owner = resource_policy.account if resource_policy else (resource_account or request.principal.account)
    identity_matches = {name: _matching(request, document) for name, document in identity_policies.items()}
    resource_matches = (
        _matching(request, resource_policy.document, resource_principal=True) if resource_policy else ([], [], [])
    )
    for name, (denies, _, _) in identity_matches.items():
        if denies:
            return Decision(False, f"explicit deny in identity policy {name}/{denies[0]}")
    if resource_matches[0]:
        return Decision(False, f"explicit deny in the resource policy ({resource_matches[0][0]})")

    identity_allow = next((f"{name}/{allows[0]}" for name, (_, allows, _) in identity_matches.items() if allows), None)
    direct = resource_matches[1]  # statements naming the principal (role or session) itself
    delegated = resource_matches[2]  # statements naming the principal's account: IAM decides
    cross_account = owner != request.principal.account

    if resource_policy is not None and resource_policy.kind == "kms":
        # The key policy must allow; a statement for the account hands the decision to IAM.
        if direct:
            return Decision(True, f"key policy allows the principal ({direct[0]})")
        if delegated and identity_allow:
            return Decision(True, f"key policy delegates to IAM ({delegated[0]}); {identity_allow}")
        if delegated:
            return Decision(False, "key policy delegates to IAM, and no identity policy allows it")
        return Decision(False, "the key policy does not allow the principal or its account")
    if cross_account:
        if not (direct or delegated):
            return Decision(False, f"cross-account: the resource policy of account {owner} does not allow it")
        if not identity_allow:
            return Decision(False, "cross-account: no identity policy allows it")
        return Decision(True, f"{identity_allow}; resource policy {(direct or delegated)[0]}")
    if direct:
        return Decision(True, f"resource policy allows the principal ({direct[0]})")
    if identity_allow:
        return Decision(True, identity_allow)
    return Decision(False, "implicit deny: no policy allows it")


def _matching(
    request: Request, document: PolicyDocument, *, resource_principal: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """(denies, direct allows, allows for the principal's whole account) of the statements that apply."""
    denies: list[str] = []
    allows: list[str] = []
    account_allows: list[str] = []
    statements = document.get("Statement", [])
    for index, statement in enumerate([statements] if isinstance(statements, Mapping) else statements):
        sid = str(statement.get("Sid", f"#{index}"))
        if "NotPrincipal" in statement:
            raise UnsupportedPolicy(f"statement {sid}: NotPrincipal is not modelled")
        scope: Literal["principal", "account", "none"] = "principal"
        if resource_principal:
            scope = _principal_scope(request.principal, statement.get("Principal"))
            if scope == "none":
                continue
        if not _applies(request, statement):
            continue
        if statement.get("Effect") == "Deny":
            denies.append(sid)
        elif scope == "account":
            account_allows.append(sid)
        else:
            allows.append(sid)
    return denies, allows, account_allows


def _principal_scope(principal: Principal, element: Any) -> Literal["principal", "account", "none"]:
    """Whether a resource-policy ``Principal`` names the principal itself, its account, or neither."""
    if element is None:
        raise UnsupportedPolicy("a resource-policy statement without Principal")
    if element == "*":
        return "principal"
    values = element.get("AWS", []) if isinstance(element, Mapping) else []
    values = [values] if isinstance(values, str) else list(values)
    account_root = f"arn:{principal.partition}:iam::{principal.account}:root"
    for value in values:
        if value == "*" or value in (principal.role_arn, principal.session_arn):
            return "principal"
        if value in (account_root, principal.account):
            return "account"
    return "none"


def _applies(request: Request, statement: Mapping[str, Any]) -> bool:
    if "Action" in statement:
        if not any(_action_matches(pattern, request.action) for pattern in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_action_matches(pattern, request.action) for pattern in _as_list(statement["NotAction"])):
            return False
    else:
        raise UnsupportedPolicy(f"statement {statement.get('Sid', '?')} has neither Action nor NotAction")
    if "Resource" in statement:
        if not any(arn_matches(pattern, request.resource) for pattern in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(arn_matches(pattern, request.resource) for pattern in _as_list(statement["NotResource"])):
            return False
    elif "Principal" not in statement:  # trust policies have no Resource: the role is implied
        raise UnsupportedPolicy(f"statement {statement.get('Sid', '?')} has neither Resource nor NotResource")
    return all(
        _condition_holds(operator, key, values, request)
        for operator, block in statement.get("Condition", {}).items()
        for key, values in block.items()
    )


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    # IAM knows only * and ? (no [..] classes as in fnmatch).
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def _like(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case=ignore_case).match(value) is not None


def _action_matches(pattern: str, action: str) -> bool:
    return _like(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM's ARN matching: part by part (six colon-separated parts), ``*``/``?`` within each."""
    if pattern == "*":
        return True
    if arn == "*":
        return False  # a resource-less action matches only "Resource": "*"
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return _like(pattern, arn)
    return all(_like(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _condition_holds(operator: str, key: str, expected: Any, request: Request) -> bool:
    expected_values = [str(value).lower() if isinstance(value, bool) else str(value) for value in _as_list(expected)]
    qualifier, _, base = operator.rpartition(":")
    base_lower = base.lower()
    if_exists = base_lower.endswith("ifexists")
    if if_exists:
        base_lower = base_lower.removesuffix("ifexists")
    if base_lower not in _OPERATORS:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    actual = request.context_value(key)
    if base_lower == "null":
        absent = actual is None
        return all((value.lower() == "true") == absent for value in expected_values)
    if qualifier:
        values = () if actual is None else ((actual,) if isinstance(actual, str) else actual)
        if qualifier.lower() == "forallvalues":
            return all(any(_compare(base_lower, value, e) for e in expected_values) for value in values)
        if qualifier.lower() == "foranyvalue":
            return any(_compare(base_lower, value, e) for value in values for e in expected_values)
        raise UnsupportedPolicy(f"condition qualifier {qualifier!r}")
    if actual is None:
        return if_exists or base_lower in _NEGATED
    if not isinstance(actual, str):
        raise UnsupportedPolicy(f"multi-valued key {key} under the single-valued operator {operator}")
    if base_lower in _NEGATED:
        positive = base_lower.replace("not", "", 1)
        return not any(_compare(positive, actual, value) for value in expected_values)
    return any(_compare(base_lower, actual, value) for value in expected_values)


def _compare(operator: str, actual: str, expected: str) -> bool:
    if operator == "stringequals":
        return actual == expected
    if operator == "stringequalsignorecase":
        return actual.lower() == expected.lower()
    if operator == "stringlike":
        return _like(expected, actual)
    if operator in ("arnequals", "arnlike"):
        return arn_matches(expected, actual)
    if operator == "bool":
        return actual.lower() == expected.lower()
    if operator.startswith("numeric"):
        a, e = float(actual), float(expected)
        comparisons = {
            "numericequals": a == e,
            "numericlessthan": a < e,
            "numericlessthanequals": a <= e,
            "numericgreaterthan": a > e,
            "numericgreaterthanequals": a >= e,
        }
        if operator in comparisons:
            return comparisons[operator]
    raise UnsupportedPolicy(f"condition operator {operator!r}")


__all__ = [
    "ContextValue",
    "Decision",
    "PolicyDocument",
    "Principal",
    "Request",
    "ResourcePolicy",
    "UnsupportedPolicy",
    "arn_matches",
    "evaluate",
]
