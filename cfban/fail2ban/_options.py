"""Filter specs: ``name[opt1=val, opt2="v,with,commas", opt3='x'][opt4=y]``.

This is the syntax a fail2ban jail uses in ``filter = ...`` to pick a filter and hand it
options. The name may also be a path (``path/to/f.conf[opt=val]``). Values are
double-quoted, single-quoted or bare; a bare value cannot contain ``,`` or ``]``. Option
groups may be chained (``][``). Names are ``[\\w\\-.]+`` with an optional ``?cond=val``
suffix. Every value is stripped of surrounding whitespace, as fail2ban does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cfban.errors import FilterError

__all__ = ["format_filter_spec", "parse_filter_spec", "splitwords"]

_SPEC_RE = re.compile(r"([^\[]+)(?:\[(.*)\])?\s*", re.DOTALL)
_NAME = r"[\w\-.]+(?:\?[\w\-.]+=[\w\-.]*)?"
_NAME_RE = re.compile(_NAME)
_OPTION_RE = re.compile(
    r"\s*(?P<name>" + _NAME + r")="
    r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?!"[^"]*"|'[^']*')(?P<bare>[^,\]]*))"""
    r"(?P<sep>,|\]\s*\[|$)",
    re.DOTALL,
)
_TRAILER_RE = re.compile(r",?\s*", re.DOTALL)
_SAFE_BARE_RE = re.compile(r"[^,\]\"'\s](?:[^,\]\"']*[^,\]\"'\s])?", re.DOTALL)


def parse_filter_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``spec`` into the filter name (or path) and its options.

    Raises:
        FilterError: the spec is empty or its option list is malformed.
    """
    whole = _SPEC_RE.fullmatch(spec)
    name = whole.group(1).strip() if whole else ""
    if whole is None or not name:
        raise FilterError(
            f"invalid filter spec {spec!r}: expected name or name[option=value, ...]",
            hint='quote values containing "," or "]": name[opt="a,b"]',
        )
    body = whole.group(2)
    return name, (_parse_options(spec, body) if body else {})


def _parse_options(spec: str, body: str) -> dict[str, str]:
    options: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        found = _OPTION_RE.match(body, pos)
        if found is None or found.end() == pos:
            trailer = _TRAILER_RE.fullmatch(body, pos)
            if trailer is not None:
                break
            raise FilterError(
                f"invalid filter spec {spec!r}: expected option=value at {body[pos : pos + 25]!r}",
                hint='options look like name[opt=val, opt2="a,b"]; quote values with "," or "]"',
            )
        value = next(v for v in found.group("dq", "sq", "bare") if v is not None)
        options[found.group("name").strip()] = value.strip()
        pos = found.end()
    return options


def format_filter_spec(name: str, options: Mapping[str, str]) -> str:
    """The spec that :func:`parse_filter_spec` reads back as ``(name, options)``.

    Raises:
        FilterError: a name is invalid, or a value holds both quote characters or has
            surrounding whitespace (the syntax cannot carry it).
    """
    if not name.strip() or "[" in name or name != name.strip():
        raise FilterError(f"filter name {name!r} cannot be written as a spec")
    parts: list[str] = []
    for key, value in options.items():
        if not _NAME_RE.fullmatch(key):
            raise FilterError(f"option name {key!r} is not valid in a filter spec")
        if value != value.strip():
            raise FilterError(f"option {key!r}: surrounding whitespace is not kept in a spec")
        if value == "" or _SAFE_BARE_RE.fullmatch(value):
            parts.append(f"{key}={value}")
        elif '"' not in value:
            parts.append(f'{key}="{value}"')
        elif "'" not in value:
            parts.append(f"{key}='{value}'")
        else:
            raise FilterError(f"option {key!r}: a value cannot hold both ' and \"")
    return f"{name}[{', '.join(parts)}]" if parts else name


def splitwords(text: str | None) -> list[str]:
    """Split on commas, spaces and newlines, dropping empty words (fail2ban's helper)."""
    if not text:
        return []
    return [word.strip() for word in re.split(r"[ ,\n]+", text) if word.strip()]
