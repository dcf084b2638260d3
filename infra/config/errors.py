"""The one exception stack-config validation raises, and the helpers that word it.

Every problem names the full config key (``model-deploy:aws.endpoint.variants[0].instanceType``),
the bad value and what is allowed, on one line, so ``pulumi preview`` prints something a
platform engineer can act on without reading a traceback.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final


class _Missing(enum.Enum):
    # An enum member is a singleton that survives copying and pickling, so ``is`` works.
    MISSING = "MISSING"


#: Pass as ``value`` when the key is absent or the key name itself is wrong.
MISSING: Final = _Missing.MISSING

_MAX_SHOWN_CHARS = 200  # long enough for a package URI with its digest
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ConfigError(Exception):
    """A stack config value is missing, malformed or contradicts another value.

    ``str(error)`` is one line: ``<key>: <value> <message>``, plus ``(and N more
    problems)`` when validation found several; all of them are in :attr:`problems`.
    """

    exit_code: int = 2  # a usage error, like model-package's bad-argument errors

    def __init__(self, key: str, value: object, message: str) -> None:
        self.key = key
        self.value = value
        # Messages are printed as one line by Pulumi and CI logs; never let a newline split them.
        self.message = " ".join(message.split())
        self.problems: tuple[ConfigError, ...] = (self,)
        super().__init__(self.key, self.value, self.message)

    @classmethod
    def collect(cls, problems: Sequence[ConfigError]) -> ConfigError:
        """The first of ``problems``, carrying all of them (``problems`` must not be empty)."""
        first = problems[0]
        error = cls(first.key, first.value, first.message)
        error.problems = tuple(problems)
        return error

    @property
    def first_problem(self) -> str:
        """The first problem alone, without the count of the others."""
        if self.value is MISSING:
            return f"{self.key}: {self.message}"
        return f"{self.key}: {describe_value(self.value)} {self.message}"

    def __str__(self) -> str:
        more = len(self.problems) - 1
        suffix = f" (and {more} more problems)" if more else ""  # worded like model_package's manifest errors
        return self.first_problem + suffix


def describe_value(value: object) -> str:
    """A short, one-line rendering of a config value for an error message."""
    if isinstance(value, Mapping):
        keys = ", ".join(str(key) for key in list(value)[:4])
        return "{" + keys + (", …" if len(value) > 4 else "") + "}"
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} entries]"
    shown = repr(value)
    if len(shown) > _MAX_SHOWN_CHARS:
        shown = shown[: _MAX_SHOWN_CHARS - 1] + "…"
    return shown


def format_key(parts: Sequence[str | int]) -> str:
    """``("model-deploy:aws", "endpoint", "variants", 0, "name")`` -> ``model-deploy:aws.endpoint.variants[0].name``.

    The first part is the namespaced Pulumi config key and is kept as it is; map keys
    that are not identifiers (tag keys such as ``app.kubernetes.io/name``) are quoted.
    """
    if not parts:
        return "(stack config)"
    text = str(parts[0])
    for part in parts[1:]:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER_RE.match(part):
            text += f".{part}"
        else:
            text += f'["{part}"]'
    return text


def suggest(value: str, choices: Iterable[str], *, limit: int = 3) -> list[str]:
    """Up to ``limit`` of ``choices`` closest to ``value`` (difflib's ratio), best first."""
    return difflib.get_close_matches(value, list(choices), n=limit, cutoff=0.6)


def did_you_mean(value: str, choices: Iterable[str], *, limit: int = 3) -> str:
    """``"; did you mean a, b?"`` or ``""`` when nothing is close."""
    close = suggest(value, choices, limit=limit)
    return f"; did you mean {', '.join(close)}?" if close else ""
