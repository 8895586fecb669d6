"""Which lines of a chunk can give a failure: searches over the whole chunk, not per line.

A :class:`CandidateFinder` returns the start offsets of the lines of a chunk (raw bytes, lines
joined by ``\\n``) that a filter must look at; every other line is sure to give no failure.
Two kinds, tried in this order by :func:`finder_for`:

* :class:`PatternFinder` (``_fragments``): one native regex (``google-re2``) for all the
  failregexes of a filter, each reduced to a part every match contains and that a date cut
  cannot split, searched through the chunk at once. Lines with bytes it cannot judge (not
  ASCII, or NUL) are always candidates.
* :class:`LiteralFinder`: the probes of the literal prefilter (``_prefilter``), each found
  with ``bytes.find`` through the chunk.

Both only narrow: a candidate line still goes through the whole per-line pipeline (its
literal prefilter, date, regexes), so results are those of the plain engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from cfban.fail2ban._prefilter import Prefilter

if TYPE_CHECKING:
    from cfban.fail2ban._matcher import Filter

__all__ = ["CandidateFinder", "LiteralFinder", "PatternFinder", "finder_for"]

_NEWLINE = b"\n"
#: Bytes a native pattern does not judge the way Python's ``re`` on decoded text would.
_UNJUDGED = re.compile(rb"[\x00\x80-\xff]")


class CandidateFinder(Protocol):
    """Finds the lines of a chunk a filter must look at."""

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        """Start offsets of candidate lines, ascending, each once."""
        ...


def _starts_of(chunk: bytes, probe: bytes) -> list[int]:
    """Start offsets of the lines that contain ``probe``, ascending."""
    starts: list[int] = []
    find, rfind = chunk.find, chunk.rfind
    position = 0
    while True:
        at = find(probe, position)
        if at < 0:
            return starts
        starts.append(rfind(_NEWLINE, 0, at) + 1)
        end = find(_NEWLINE, at + len(probe))
        if end < 0:
            return starts
        position = end + 1


def _merge(groups: list[list[int]]) -> Iterable[int]:
    if len(groups) == 1:
        return groups[0]
    merged: set[int] = set()
    for starts in groups:
        merged.update(starts)
    return sorted(merged)


class LiteralFinder:
    """Lines that contain at least one of ``probes`` (UTF-8 bytes)."""

    def __init__(self, probes: Iterable[bytes]) -> None:
        self.probes = tuple(dict.fromkeys(probes))

    def __repr__(self) -> str:
        return f"LiteralFinder({self.probes!r})"

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        return _merge([_starts_of(chunk, probe) for probe in self.probes])


class PatternFinder:
    """Lines where ``pattern`` (a compiled native regex over bytes) matches, and lines with
    bytes outside ASCII or NUL (which the native pattern is not trusted with)."""

    def __init__(self, pattern: object, source: str) -> None:
        self.pattern = pattern
        self.source = source

    def __repr__(self) -> str:
        return f"PatternFinder({self.source!r})"

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        starts: list[int] = []
        rfind, find = chunk.rfind, chunk.find
        search = self.pattern.search  # type: ignore[attr-defined]
        position, size = 0, len(chunk)
        while position < size:
            found = search(chunk, position)
            if found is None:
                break
            at = found.start()
            starts.append(rfind(_NEWLINE, 0, at) + 1)
            end = find(_NEWLINE, max(at, found.end() - 1))
            if end < 0:
                break
            position = end + 1
        if chunk.isascii() and b"\x00" not in chunk:
            return starts
        odd = [rfind(_NEWLINE, 0, m.start()) + 1 for m in _UNJUDGED.finditer(chunk)]
        return _merge([starts, odd])


def _literal_finder(prefilter: Prefilter | None) -> LiteralFinder | None:
    if prefilter is None or not prefilter.plain_text_safe:
        return None
    groups = [group for group in (prefilter.required, prefilter.any_of) if group]
    if not groups:
        return None
    best = max(groups, key=lambda group: (min(len(p) for p in group), -len(group)))
    return LiteralFinder(p.encode("utf-8") for p in best)


def finder_for(flt: Filter, *, native: bool = True) -> CandidateFinder | None:
    """The best finder for ``flt``, or ``None`` (every line must be looked at).

    ``native``: allow the native regex finder when ``google-re2`` is installed.
    """
    if flt._multiline:
        return None
    if native:
        from cfban.fail2ban._fragments import pattern_finder

        found = pattern_finder(flt)
        if found is not None:
            return found
    return _literal_finder(flt.prefilter)
