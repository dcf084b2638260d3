"""Reading resource properties the way the policy engine hands them over.

The engine passes properties under their *wire* names (camelCase: ``kmsKeyArn``, not
``kms_key_arn``), wrapped in read-only proxies that are ``Mapping``/``Sequence`` but not
``dict``/``list``, and raises :class:`UnknownValueError` when a rule touches a value that
is not known yet (during ``pulumi preview``). These helpers keep the rules free of that
plumbing: missing keys read as ``None``, and unknowns either propagate (resource rules:
the engine then reports "can't run during preview" and enforces the rule at ``pulumi up``)
or become :data:`UNKNOWN` (stack rules, which must keep checking the other resources).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from pulumi_policy.proxy import UnknownValueError

__all__ = ["UNKNOWN", "Unknown", "as_list", "as_mapping", "get", "get_or_unknown", "json_value", "truthy"]


class Unknown:
    """The type of :data:`UNKNOWN`: a value the engine does not know yet."""

    def __repr__(self) -> str:
        return "UNKNOWN"


#: A property value that is not known during preview (stack rules only; see the module docstring).
UNKNOWN: Final = Unknown()


def get(props: Any, *path: str | int) -> Any:
    """The value at ``path`` in nested mappings/sequences, or ``None`` if any step is missing.

    Raises :class:`UnknownValueError` (from the engine's proxies) if a step is unknown.
    """
    value = props
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, Sequence) or isinstance(value, str | bytes) or step >= len(value):
                return None
            value = value[step]
        else:
            if not isinstance(value, Mapping) or step not in value:
                return None
            value = value[step]
    return value


def get_or_unknown(props: Any, *path: str | int) -> Any:
    """:func:`get`, but an unknown value reads as :data:`UNKNOWN` instead of raising."""
    try:
        return get(props, *path)
    except UnknownValueError:
        return UNKNOWN


def as_list(value: Any) -> list[Any]:
    """``None`` -> ``[]``; a sequence (not a string) -> its items; anything else -> ``[value]``.

    IAM documents allow a single string or a list in the same place (``"Action": "s3:GetObject"``).
    """
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(_iterate(value))
    return [value]


def as_mapping(value: Any) -> Mapping[str, Any] | None:
    """``value`` if it is a mapping, a JSON object string parsed, else ``None``.

    Provider configuration (``defaultTags``) reaches the engine either as an object or as
    its JSON text, depending on the provider and engine version.
    """
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        parsed = json_value(value)
        return parsed if isinstance(parsed, Mapping) else None
    return None


def json_value(text: str) -> Any:
    """Parse JSON text; ``None`` if it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def truthy(value: Any) -> bool:
    """A boolean property: ``True``/``"true"`` (providers serialise some booleans as strings)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def _iterate(value: Sequence[Any]) -> Iterator[Any]:
    # Index explicitly: the engine's list proxy checks each item for unknowns in __getitem__.
    for index in range(len(value)):
        yield value[index]
