"""Media types: parsing ``Content-Type`` and negotiating ``Accept`` (RFC 9110, sections 8.3 and 12.5.1).

Both headers repeat verbatim across the requests of one client, so the parsed
forms are cached: the server pays for the regular expressions once per
distinct header value, not once per request.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

from inference.errors import NotAcceptableError, UnsupportedMediaTypeError, shown

# RFC 9110 token characters; media types, parameter names and unquoted values are tokens.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_TYPE_RE = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})")
# `*( OWS ";" OWS [ parameter ] )`: empty parameters (`text/csv;`) are legal. Whitespace around
# "=" is not, but some clients send it and refusing them would help nobody.
_PARAM_RE = re.compile(rf"[ \t]*;[ \t]*(?:({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED}))?")
_TRAILING_RE = re.compile(r"[ \t]*")
# Splits an Accept header on commas that are not inside a quoted parameter value.
_ACCEPT_ELEMENT_RE = re.compile(rf'(?:[^,"]|{_QUOTED})+')
_QVALUE_RE = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")
_CACHE_SIZE = 256

# (type/subtype, ((name, value), ...)): hashable, so it can live in an lru_cache.
_Parsed = tuple[str, tuple[tuple[str, str], ...]]


def accept_header(headers: Mapping[str, str]) -> str | None:
    """A request's ``Accept``, its field lines joined by commas as RFC 9110 (5.3) allows for a list.

    ``headers.get`` read only the first line: ``Accept: image/png`` then ``Accept: text/csv`` was a 406.
    """
    getlist = getattr(headers, "getlist", None)
    lines = getlist("accept") if getlist is not None else ([headers["accept"]] if "accept" in headers else [])
    return ", ".join(lines) if lines else None


def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` value into the lowercased ``type/subtype`` and its parameters.

    Parameter names are lowercased and quoted values unquoted; ``charset``
    values are lowercased too (``charset=UTF-8`` gives ``utf-8``), other
    values keep their case.
    A missing or blank header gives ``("", {})`` so that callers apply their
    own default. Raises :class:`UnsupportedMediaTypeError` for a malformed value.
    """
    if header is None or not header.strip():
        return "", {}
    media_type, params = _parse_cached(header)
    return media_type, dict(params)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(header: str) -> _Parsed:
    parsed = _parse(header)
    if parsed is None:
        raise UnsupportedMediaTypeError(
            f"malformed Content-Type {header!r}; expected 'type/subtype' optionally followed by "
            "'; name=value' parameters, e.g. 'application/json; charset=utf-8'"
        )
    return parsed


def _parse(text: str) -> _Parsed | None:
    match = _TYPE_RE.match(text)
    if match is None:
        return None
    media_type = f"{match.group(1)}/{match.group(2)}".lower()
    params: list[tuple[str, str]] = []
    pos = match.end()
    while (param := _PARAM_RE.match(text, pos)) is not None and param.end() > pos:
        name, value = param.group(1), param.group(2)
        if name is not None:
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            name = name.lower()
            # Charset names are case-insensitive (RFC 9110, 8.3.2); other values may not be.
            params.append((name, value.lower() if name == "charset" else value))
        pos = param.end()
    trailing = _TRAILING_RE.match(text, pos)
    if trailing is None or trailing.end() != len(text):
        return None
    return media_type, tuple(params)


def negotiate(accept: str | None, available: Sequence[str], default: str) -> str:
    """Pick the response media type for an ``Accept`` header, as RFC 9110 describes.

    Each type in ``available`` gets the q-value of the most specific range that
    matches it (``type/subtype`` over ``type/*`` over ``*/*``), so
    ``*/*, text/csv;q=0`` excludes CSV. The highest q-value above 0 wins; on a
    tie ``default`` wins if it is among the tied types, else the earliest in
    ``available`` (the server's preference). Range parameters other than ``q``
    are ignored. A missing or blank header, or one with no parseable range,
    gives ``default``. Raises :class:`NotAcceptableError` listing ``available``
    when every type is excluded.
    """
    if accept is None or not accept.strip():
        return default
    return _negotiate_cached(accept, tuple(available), default)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _negotiate_cached(accept: str, available: tuple[str, ...], default: str) -> str:
    ranges = _parse_accept(accept)
    if not ranges:
        # Nothing we could read: answering in the default beats refusing a client over a typo.
        return default
    best: str | None = None
    best_q = 0.0
    for media_type in available:
        q = _quality(media_type, ranges)
        if q > best_q or (q == best_q and q > 0 and media_type == default):
            best, best_q = media_type, q
    if best is None:
        raise NotAcceptableError(
            f"cannot produce any media type listed in Accept {shown(accept)}; supported: {', '.join(available)}"
        )
    return best


def preferred_media_type(accept: str) -> str | None:
    """The concrete type (no wildcard) ``accept`` ranks highest above q=0, the earliest on a tie; ``None`` if none.

    For a body whose producer (user code) gave no type: it is labelled with what the client prefers.
    """
    best: str | None = None
    best_q = 0.0
    for main, sub, q in _parse_accept(accept):
        if "*" not in (main, sub) and q > best_q:
            best, best_q = f"{main}/{sub}", q
    return best


def _parse_accept(accept: str) -> list[tuple[str, str, float]]:
    """``(type, subtype, q)`` per well-formed range; malformed ranges are skipped (RFC 9110 allows ignoring)."""
    ranges: list[tuple[str, str, float]] = []
    for element in _ACCEPT_ELEMENT_RE.findall(accept):
        if not element.strip():
            continue
        parsed = _parse(element)
        if parsed is None:
            continue
        media_type, params = parsed
        main, sub = media_type.split("/")
        if main == "*" and sub != "*":
            continue
        # The first "q" ends the media type's parameters; anything after it is an accept-extension.
        q_text = next((value for name, value in params if name == "q"), None)
        if q_text is None:
            q = 1.0
        elif _QVALUE_RE.match(q_text):
            q = float(q_text)
        else:
            continue
        ranges.append((main, sub, q))
    return ranges


def _quality(media_type: str, ranges: list[tuple[str, str, float]]) -> float:
    main, sub = media_type.split("/")
    best_specificity = -1
    q = 0.0
    for range_main, range_sub, range_q in ranges:
        if range_main == main and range_sub == sub:
            specificity = 2
        elif range_main == main and range_sub == "*":
            specificity = 1
        elif range_main == "*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, q = specificity, range_q
        elif specificity == best_specificity:
            q = max(q, range_q)
    return q
