"""GCP IAM grants: which pulumi-gcp resources grant roles, and the ``(role, members)`` each grants.

pulumi-gcp has three resources per IAM-enabled thing (155 of each in pulumi-gcp 10): an
additive ``...IamMember`` (``role`` + ``member``), an authoritative-per-role ``...IamBinding``
(``role`` + ``members``) and an authoritative ``...IamPolicy`` (``policy_data``, the JSON of
``gcp.organizations.get_iam_policy``). Recognising them by the type token's class name keeps
the rules right for every one of them without a hand-kept list (the pack's virtualenv has no
pulumi-gcp to ask).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from infra.policy.props import as_list, get, json_value

#: An IAM resource's type token, e.g. ``gcp:storage/bucketIAMMember:BucketIAMMember``.
_IAM_TYPE_RE: Final = re.compile(r"^gcp:[^:]+:\w*(?:Iam|IAM)(?P<kind>Member|Binding|Policy)$")

#: Principals that mean "anyone": every caller, or every caller with a Google account.
PUBLIC_MEMBERS: Final = frozenset({"allUsers", "allAuthenticatedUsers"})


class IamPolicyDataError(ValueError):
    """``policy_data`` that is not the JSON of an IAM policy."""


@dataclass(frozen=True)
class Grant:
    """One role granted to principals by one resource (or by one binding of its policy)."""

    role: str
    members: tuple[str, ...]
    role_at: str
    """Where a message says the role is: ``role``, or ``policy_data binding #2``."""
    members_at: str
    """Where a message says the members are: ``member``, ``members``, or ``policy_data binding #2``."""


def iam_kind(resource_type: str) -> str | None:
    """``"Member"``, ``"Binding"`` or ``"Policy"`` for a pulumi-gcp IAM resource type, else ``None``."""
    match = _IAM_TYPE_RE.match(resource_type)
    return match.group("kind") if match else None


def grants(resource_type: str, props: Any, *, members: bool = True) -> Iterator[Grant]:
    """The grants of an IAM resource (nothing for other types).

    ``members=False`` leaves the members of a member or binding resource unread, so a rule
    about roles does not wait on a member that is unknown during preview (a new service
    account's email). Raises :class:`IamPolicyDataError` for unparsable ``policy_data``.
    """
    kind = iam_kind(resource_type)
    if kind == "Member":
        member = (str(get(props, "member")),) if members else ()
        yield Grant(str(get(props, "role")), member, "role", "member")
    elif kind == "Binding":
        names = tuple(str(name) for name in as_list(get(props, "members"))) if members else ()
        yield Grant(str(get(props, "role")), names, "role", "members")
    elif kind == "Policy":
        document = get(props, "policyData")
        if document is None:
            return
        parsed = json_value(document) if isinstance(document, str) else document
        if not isinstance(parsed, Mapping):
            raise IamPolicyDataError(
                "is not the JSON of an IAM policy (gcp.organizations.get_iam_policy(...).policy_data)"
            )
        for index, binding in enumerate(as_list(parsed.get("bindings"))):
            names = tuple(str(name) for name in as_list(get(binding, "members")))
            where = f"policy_data binding #{index + 1}"
            yield Grant(str(get(binding, "role")), names, where, where)
