"""Google Cloud IAM allow-policy evaluation, offline: would Google let this principal use this permission here?

What it models, from Google's documentation:

* **Inheritance**: "The effective allow policy for a resource is the union of the allow policy set
  at that resource and the allow policy inherited from its parent" (Using resource hierarchy for
  access control, https://cloud.google.com/iam/docs/resource-hierarchy-access-control). The
  hierarchy used here: object -> bucket -> project; service account, Cloud Run service, Artifact
  Registry repository, Cloud KMS key (-> key ring) -> project.
* **Deny by default**: a permission is allowed only by a binding of a role that contains it
  (https://cloud.google.com/iam/docs/overview). The programs create no IAM deny policies, so none
  are modelled: :func:`evaluate` never answers "explicitly denied".
* **Roles**: predefined roles from :data:`ROLES_FILE` (the permission lists of Google's roles,
  with their source), custom roles from what the bootstrap declares (``projects/<p>/roles/<id>``).
* **Members**: ``serviceAccount:<email>``, and Workload Identity Federation principals
  ``principal://iam.googleapis.com/<pool>/subject/<google.subject>`` and
  ``principalSet://iam.googleapis.com/<pool>/attribute.<name>/<value>``
  (https://cloud.google.com/iam/docs/principal-identifiers), built from a token's claims by the
  provider's attribute mapping and refused by its attribute condition
  (https://cloud.google.com/iam/docs/workload-identity-federation#mapping and #conditions).
* **IAM Conditions** (a CEL subset): ``resource.name`` with ``==``, ``!=``, ``startsWith``,
  ``resource.type``, ``&&``, ``||``, ``!``, parentheses. ``resource.name`` is recognized for Cloud
  Storage buckets (``projects/_/buckets/<b>``) and objects (``projects/_/buckets/<b>/objects/<o>``)
  only (https://cloud.google.com/iam/docs/conditions-resource-attributes); a condition on any other
  resource raises :class:`UnsupportedPolicy` rather than guess. ``storage.objects.list`` is
  authorized on the bucket, not on object names: callers pass the bucket as the resource.

A role whose table is marked incomplete (only the permissions relevant here are listed) can
prove a grant but never a denial: asking it for a permission it does not list raises
:class:`UnsupportedPolicy`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROLES_FILE: Final = Path(__file__).with_name("gcp_roles.json")
_BUCKET: Final = re.compile(r"^projects/_/buckets/(?P<bucket>[^/]+)(?:/objects/(?P<object>.+))?$")
_PROJECT_CHILD: Final = re.compile(r"^(?P<project>projects/[^/_][^/]*)/.+$")
_KEY: Final = re.compile(r"^(?P<ring>projects/[^/]+/locations/[^/]+/keyRings/[^/]+)/cryptoKeys/[^/]+$")


class UnsupportedPolicy(ValueError):
    """A binding, role or condition this evaluator does not model; it refuses to guess."""


@dataclass(frozen=True)
class Role:
    """A role's permissions; ``complete`` is False when only the relevant ones are listed."""

    name: str
    permissions: frozenset[str]
    complete: bool = True


@functools.cache
def predefined_roles() -> Mapping[str, Role]:
    """The predefined roles of :data:`ROLES_FILE`, by name (``roles/...``)."""
    data = json.loads(ROLES_FILE.read_text())
    return {
        name: Role(name, frozenset(entry["permissions"]), bool(entry["complete"]))
        for name, entry in data["roles"].items()
    }


@dataclass(frozen=True)
class Principal:
    """Who makes a request: every IAM member identifier that designates it."""

    name: str
    members: frozenset[str]

    @classmethod
    def service_account(cls, email: str) -> Principal:
        """A service account (a pipeline identity, once the job has impersonated it)."""
        return cls(email, frozenset({f"serviceAccount:{email}"}))


@dataclass(frozen=True)
class WorkloadIdentityProvider:
    """A pool's OIDC provider: how a token's claims become a federated principal, if at all."""

    pool: str
    """``projects/<number>/locations/global/workloadIdentityPools/<id>``."""
    attribute_mapping: Mapping[str, str]
    """``google.subject`` / ``attribute.<name>`` -> ``assertion.<claim>`` (only plain claims are modelled)."""
    attribute_condition: str | None = None

    def principal(self, claims: Mapping[str, str]) -> Principal | None:
        """The federated principal for a token with ``claims``; ``None`` when STS would refuse the token."""
        if self.attribute_condition and not _Cel(self.attribute_condition).evaluate({"assertion": dict(claims)}):
            return None
        base = f"iam.googleapis.com/{self.pool}"
        members = {f"principalSet://{base}/*"}
        for target, source in self.attribute_mapping.items():
            if not source.startswith("assertion.") or not source[len("assertion.") :].isidentifier():
                raise UnsupportedPolicy(f"attribute mapping {target} = {source!r}: only assertion.<claim> is modelled")
            value = claims.get(source[len("assertion.") :])
            if value is None:
                continue
            if target == "google.subject":
                members.add(f"principal://{base}/subject/{value}")
            elif target.startswith("attribute."):
                members.add(f"principalSet://{base}/{target}/{value}")
        return Principal(str(claims.get("sub", "?")), frozenset(members))


@dataclass(frozen=True)
class Binding:
    """One role binding (one member) in a resource's allow policy, optionally conditional."""

    role: str
    member: str
    condition: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome, and which binding decided it (for messages)."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass
class Policies:
    """Every allow policy in play: bindings by resource, custom roles, and where buckets live."""

    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    custom_roles: dict[str, Role] = field(default_factory=dict)
    bucket_projects: dict[str, str] = field(default_factory=dict)
    """``projects/_/buckets/<b>`` -> ``projects/<p>``: a bucket's name does not say its project."""

    def grant(self, resource: str, role: str, member: str, condition: str | None = None) -> None:
        """Add ``member`` to ``role`` on ``resource`` (a conditional binding when ``condition`` is given)."""
        self.bindings.setdefault(resource, []).append(Binding(role, member, condition))

    def define_role(self, name: str, permissions: Iterable[str]) -> None:
        """A custom role ``projects/<p>/roles/<id>``."""
        self.custom_roles[name] = Role(name, frozenset(permissions))

    def role(self, name: str) -> Role:
        """The role ``name``; an unknown role is an error (never an empty role)."""
        found = self.custom_roles.get(name) or predefined_roles().get(name)
        if found is None:
            raise UnsupportedPolicy(
                f"role {name} is not in the role table ({ROLES_FILE.name}) nor a declared custom role"
            )
        return found

    def lineage(self, resource: str) -> Iterator[str]:
        """``resource`` and its ancestors, nearest first."""
        current: str | None = resource
        while current is not None:
            yield current
            current = self._parent(current)

    def _parent(self, resource: str) -> str | None:
        bucket = _BUCKET.match(resource)
        if bucket:
            if bucket["object"] is not None:
                return f"projects/_/buckets/{bucket['bucket']}"
            parent = self.bucket_projects.get(resource)
            if parent is None:
                raise UnsupportedPolicy(f"no project known for bucket {resource}")
            return parent
        key = _KEY.match(resource)
        if key:
            return key["ring"]
        child = _PROJECT_CHILD.match(resource)
        return child["project"] if child else None


def evaluate(policies: Policies, principal: Principal, permission: str, resource: str) -> Decision:
    """Whether Google would allow ``principal`` ``permission`` on ``resource`` (full IAM resource name)."""
    incomplete: list[str] = []
    for node in policies.lineage(resource):
        for binding in policies.bindings.get(node, []):
            if binding.member not in principal.members:
                continue
            role = policies.role(binding.role)
            if permission not in role.permissions:
                if not role.complete:
                    incomplete.append(role.name)
                continue
            if binding.condition is not None and not _condition_holds(binding.condition, resource):
                continue
            where = "" if node == resource else f" (inherited from {node})"
            condition = f" if {binding.condition}" if binding.condition else ""
            return Decision(True, f"{binding.role} on {node}{where}{condition}")
    if incomplete:
        raise UnsupportedPolicy(
            f"{principal.name} / {permission} on {resource}: the table of {', '.join(sorted(set(incomplete)))} "
            "is incomplete, so a denial cannot be proven"
        )
    return Decision(False, f"no binding on {resource} or its ancestors grants {permission} to {principal.name}")


def granted_permissions(policies: Policies, principal: Principal, resource: str) -> frozenset[str]:
    """Every permission some binding on ``resource``'s lineage gives ``principal`` there (conditions applied)."""
    found: set[str] = set()
    for node in policies.lineage(resource):
        for binding in policies.bindings.get(node, []):
            if binding.member in principal.members and (
                binding.condition is None or _condition_holds(binding.condition, resource)
            ):
                found |= policies.role(binding.role).permissions
    return frozenset(found)


def _condition_holds(condition: str, resource: str) -> bool:
    match = _BUCKET.match(resource)
    if match is None:
        raise UnsupportedPolicy(
            f"condition {condition!r} on {resource}: resource attributes are modelled for Cloud Storage only"
        )
    kind = "storage.googleapis.com/Object" if match["object"] is not None else "storage.googleapis.com/Bucket"
    return _Cel(condition).evaluate({"resource": {"name": resource, "type": kind}})


# --- a CEL subset --------------------------------------------------------------------------------

_TOKEN: Final = re.compile(
    r"\s*(?:(?P<string>'[^'\\]*'|\"[^\"\\]*\")|(?P<op>==|!=|&&|\|\||[!().,])|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)


class _Cel:
    """Recursive descent over: or := and ('||' and)*; and := unary ('&&' unary)*;
    unary := '!' unary | primary; primary := '(' or ')' | operand [('=='|'!=') operand]
    | operand '.startsWith(' string ')'; operand := string | path (a.b.c) | true | false."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None:
                raise UnsupportedPolicy(f"condition {text!r}: cannot read it at {text[position:]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match[kind]))
            position = match.end()
        self.index = 0
        self.variables: Mapping[str, object] = {}

    def evaluate(self, variables: Mapping[str, object]) -> bool:
        self.index = 0
        self.variables = variables
        value = self._or()
        if self.index != len(self.tokens):
            raise UnsupportedPolicy(f"condition {self.text!r}: unexpected {self.tokens[self.index][1]!r}")
        return bool(value)

    def _peek(self) -> str | None:
        return self._at(self.index)

    def _at(self, index: int) -> str | None:
        return self.tokens[index][1] if index < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.index >= len(self.tokens):
            raise UnsupportedPolicy(f"condition {self.text!r} ends too early")
        token = self.tokens[self.index]
        if expected is not None and token[1] != expected:
            raise UnsupportedPolicy(f"condition {self.text!r}: expected {expected!r}, found {token[1]!r}")
        self.index += 1
        return token

    def _or(self) -> bool:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value or right
        return value

    def _and(self) -> bool:
        value = self._unary()
        while self._peek() == "&&":
            self._take()
            right = self._unary()
            value = value and right
        return value

    def _unary(self) -> bool:
        if self._peek() == "!":
            self._take()
            return not self._unary()
        return self._primary()

    def _primary(self) -> bool:
        if self._peek() == "(":
            self._take()
            value = self._or()
            self._take(")")
            return value
        left = self._operand()
        if self._peek() in ("==", "!="):
            operator = self._take()[1]
            right = self._operand()
            return (left == right) if operator == "==" else (left != right)
        if self._peek() == ".":
            self._take()
            method = self._take()[1]
            if method != "startsWith":
                raise UnsupportedPolicy(f"condition {self.text!r}: function {method!r} is not modelled")
            self._take("(")
            argument = self._operand()
            self._take(")")
            return isinstance(left, str) and isinstance(argument, str) and left.startswith(argument)
        if isinstance(left, bool):
            return left
        raise UnsupportedPolicy(f"condition {self.text!r}: {left!r} is not a boolean")

    def _operand(self) -> object:
        kind, value = self._take()
        if kind == "string":
            return value[1:-1]
        if kind != "name":
            raise UnsupportedPolicy(f"condition {self.text!r}: unexpected {value!r}")
        if value in ("true", "false"):
            return value == "true"
        current: object = self.variables.get(value)
        if current is None:
            raise UnsupportedPolicy(f"condition {self.text!r}: unknown variable {value!r}")
        # A path a.b: '.' then a name that is not a method call (those are followed by '(').
        while self._peek() == "." and self._at(self.index + 2) != "(":
            self._take()
            attribute = self._take()[1]
            if not isinstance(current, Mapping) or attribute not in current:
                raise UnsupportedPolicy(f"condition {self.text!r}: unknown attribute {value}.{attribute}")
            current = current[attribute]
            value = f"{value}.{attribute}"
        return current


__all__ = [
    "ROLES_FILE",
    "Binding",
    "Decision",
    "Policies",
    "Principal",
    "Role",
    "UnsupportedPolicy",
    "WorkloadIdentityProvider",
    "evaluate",
    "granted_permissions",
    "predefined_roles",
]
