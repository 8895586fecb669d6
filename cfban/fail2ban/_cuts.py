"""What a date cut allows, and which ASCII characters a regex item can match.

The failregexes see a log line with its date cut out (fail2ban-format.md §2.4). A part of a
match may therefore span the place of the date in the raw line, unless the text before the
date cannot end with any character the part can match, or the part starts after the longest
text a line-anchored template allows before the date. :func:`template_cut` reads both facts
from a date template; :func:`charset` gives the characters of one regex item, over ASCII (the
native candidate search only judges ASCII lines).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from cfban.fail2ban._prefilter import date_cut

__all__ = ["REPEATS", "ZERO_WIDTH", "Cut", "charset", "template_cut"]

_ASCII = frozenset(chr(c) for c in range(128))
_DIGIT = frozenset("0123456789")
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE = frozenset(" \t\n\r\f\v\x1c\x1d\x1e\x1f")
_CATEGORIES: dict[Any, frozenset[str]] = {
    sre.CATEGORY_DIGIT: _DIGIT,
    sre.CATEGORY_NOT_DIGIT: _ASCII - _DIGIT,
    sre.CATEGORY_WORD: _WORD,
    sre.CATEGORY_NOT_WORD: _ASCII - _WORD,
    sre.CATEGORY_SPACE: _SPACE,
    sre.CATEGORY_NOT_SPACE: _ASCII - _SPACE,
    sre.CATEGORY_LINEBREAK: frozenset("\n"),
    sre.CATEGORY_NOT_LINEBREAK: _ASCII - frozenset("\n"),
}
REPEATS = frozenset(
    {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
)
ZERO_WIDTH = frozenset({sre.AT, sre.ASSERT, sre.ASSERT_NOT})


class Cut:
    """What one date template allows before the date: its possible last characters (ASCII;
    ``None``: any) and its longest length (``None``: unbounded)."""

    __slots__ = ("last_chars", "max_len")

    def __init__(self, last_chars: frozenset[str] | None, max_len: int | None) -> None:
        self.last_chars, self.max_len = last_chars, max_len

    def allows(self, chars: frozenset[str], offset: int) -> bool:
        """Can a part matching only ``chars``, at least ``offset`` into a match, not straddle?"""
        if self.max_len == 0 or (self.max_len is not None and offset >= self.max_len):
            return True
        return self.last_chars is not None and not chars & self.last_chars


def _fold(chars: Iterable[str]) -> frozenset[str]:
    out = set(chars)
    out.update(c.swapcase() for c in list(out) if c.isalpha())
    return frozenset(out) & _ASCII


def charset(op: Any, av: Any, flags: int) -> frozenset[str] | None:
    """The ASCII characters a single-character item can match (``None``: not such an item)."""
    fold = flags & re.IGNORECASE
    if op is sre.LITERAL:
        char = frozenset(chr(av)) & _ASCII
        return _fold(char) if fold else char
    if op is sre.NOT_LITERAL:
        return _ASCII - (_fold(chr(av)) if fold else frozenset(chr(av)))
    if op is sre.ANY:
        return _ASCII if flags & re.DOTALL else _ASCII - frozenset("\n")
    if op is sre.IN:
        chars: set[str] = set()
        negate = False
        for sub_op, sub_av in av:
            if sub_op is sre.NEGATE:
                negate = True
            elif sub_op is sre.LITERAL:
                chars.add(chr(sub_av))
            elif sub_op is sre.RANGE:
                low, high = sub_av
                chars.update(chr(c) for c in range(low, min(high, 127) + 1))
            elif sub_op is sre.CATEGORY and sub_av in _CATEGORIES:
                chars.update(_CATEGORIES[sub_av])
            else:
                return None
        found = _fold(chars) if fold else frozenset(chars) & _ASCII
        return _ASCII - found if negate else found
    return None


def _last_chars(items: list[tuple[Any, Any]], flags: int) -> tuple[frozenset[str] | None, bool]:
    """The characters ``items`` can end with (``None``: unknown), and whether they may match
    nothing at all."""
    out: set[str] = set()
    for op, av in reversed(items):
        if op in ZERO_WIDTH:
            continue
        chars = charset(op, av, flags)
        empty_ok = False
        if chars is None:
            if op is sre.SUBPATTERN:
                chars, empty_ok = _last_chars(list(av[3]), (flags | av[1]) & ~av[2])
            elif op in REPEATS:
                chars, empty_ok = _last_chars(list(av[2]), flags)
                empty_ok = empty_ok or av[0] == 0
            if chars is None:
                return None, False
        out.update(chars)
        if not empty_ok:
            return frozenset(out), False
    return frozenset(out), True


def _anchored(items: list[tuple[Any, Any]], flags: int) -> bool:
    """Whether a match can only start at the start of the line."""
    return (
        bool(items)
        and not flags & re.MULTILINE
        and items[0][0] is sre.AT
        and items[0][1] in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)
    )


@lru_cache(maxsize=1024)  # every filter on fail2ban's default dates cuts the same templates
def template_cut(regex: re.Pattern[str]) -> Cut:
    """The :class:`Cut` of one date template (group 1 is the date), never to be changed: it
    is made once per template.

    A template searched through the line (not anchored at its start) may match anywhere, so
    whatever precedes its match precedes the date too: its last characters are known only if
    the template's own text before the date cannot be empty.
    """
    known = date_cut(regex)
    try:
        parsed = sre_parse.parse(regex.pattern, regex.flags & ~re.UNICODE)
    except (re.error, RecursionError, OverflowError):  # pragma: no cover - it compiled
        return Cut(None, None)
    items = list(parsed)
    index = next(
        (i for i, (op, av) in enumerate(items) if op is sre.SUBPATTERN and av[0] == 1), None
    )
    if index is None:
        return Cut(None, known.max_len)
    flags = (regex.flags | parsed.state.flags) & (re.IGNORECASE | re.DOTALL | re.MULTILINE)
    chars, may_be_empty = _last_chars(items[:index], flags)
    if may_be_empty and not _anchored(items, flags):
        chars = None
    return Cut(chars, known.max_len)
