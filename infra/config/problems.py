"""Turn pydantic's validation errors into :class:`ConfigError` in the stack config's own words.

pydantic knows the path (by YAML key, thanks to the aliases) and the bad input; this
module adds what a platform engineer needs next: the full namespaced key, what is
allowed, and for a misspelled key the closest valid one.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from infra.config.errors import MISSING, ConfigError, did_you_mean, format_key

_QUOTED_RE = re.compile(r"'([^']*)'")

# pydantic error types -> what to tell the user (the value is printed before the message).
_TYPE_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
}


def from_validation_error(exc: ValidationError, root: type[BaseModel]) -> ConfigError:
    """One :class:`ConfigError` for the first problem, carrying all of them (``str`` counts the rest)."""
    # Unknown keys first: a misspelled key also makes the key it was meant to be "missing", and the
    # misspelling is the cause worth reporting.
    errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
    return ConfigError.collect([_problem(error, root) for error in errors])


def _problem(error: ErrorDetails, root: type[BaseModel]) -> ConfigError:
    loc: list[str | int] = list(error["loc"])
    is_map_key = bool(loc) and loc[-1] == "[key]"
    if is_map_key:
        loc.pop()  # pydantic marks a bad *key* of a mapping with a trailing "[key]"
    key = format_key(loc)
    kind = error["type"]
    value: object = error.get("input", MISSING)
    ctx: dict[str, Any] = dict(error.get("ctx") or {})

    if kind == "model_deploy":  # our own checks (infra.config.fields.fail): the message is final
        return ConfigError(key, value, str(ctx.get("message", error["msg"])))
    if kind == "missing":
        info = _field(root, loc)
        hint = f": {info.description}" if info is not None and info.description else ""
        return ConfigError(key, MISSING, f"is required{hint}")
    if kind == "extra_forbidden":
        return ConfigError(key, MISSING, _unknown_key_message(root, loc))
    if kind == "literal_error":
        choices = _QUOTED_RE.findall(str(ctx.get("expected", "")))
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return ConfigError(key, value, f"is not one of {', '.join(choices)}{hint}")
    if kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
        if kind == "string_type" and isinstance(value, (int, float, bool)):
            message += " (quote it in YAML: an unquoted 1.10 is the number 1.1)"
        return ConfigError(key, value, message)
    for bound, words in (("ge", "at least"), ("gt", "greater than"), ("le", "at most"), ("lt", "less than")):
        if bound in ctx:
            return ConfigError(key, value, f"must be {words} {ctx[bound]}")
    text = error["msg"]
    return ConfigError(key, value, text[:1].lower() + text[1:])


def _unknown_key_message(root: type[BaseModel], loc: Sequence[str | int]) -> str:
    bad = str(loc[-1])
    parent = _model_at(root, loc[:-1])
    if parent is None:
        return "is not a known key"
    known = [info.alias or name for name, info in parent.model_fields.items()]
    namespace, sep, _ = bad.rpartition(":")
    if sep and len(loc) == 1:
        # Top level: compare within the key's namespace, without the shared "model-deploy:" that makes
        # every key look alike to difflib.
        known = [k.partition(":")[2] for k in known if k.startswith(f"{namespace}:")]
        hint = did_you_mean(bad.partition(":")[2], known)
        hint = hint.replace("did you mean ", f"did you mean {namespace}:") if hint else ""
    else:
        hint = did_you_mean(bad, known)
    if hint:
        return f"is not a known key{hint}"
    return f"is not a known key; known keys here: {', '.join(known)}"


def _field(root: type[BaseModel], loc: Sequence[str | int]) -> FieldInfo | None:
    parent = _model_at(root, loc[:-1]) if loc else None
    if parent is None:
        return None
    for name, info in parent.model_fields.items():
        if (info.alias or name) == loc[-1]:
            return info
    return None


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that validated the value at ``loc`` (``None`` if it is not a model)."""
    current: Any = root
    for part in loc:
        current = unwrap_annotation(current)
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if get_origin(current) in (tuple, list) and args else None
        elif inspect.isclass(current) and issubclass(current, BaseModel):
            current = next(
                (info.annotation for name, info in current.model_fields.items() if (info.alias or name) == part),
                None,
            )
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = unwrap_annotation(current)
    return current if inspect.isclass(current) and issubclass(current, BaseModel) else None


def unwrap_annotation(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
