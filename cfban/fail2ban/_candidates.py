"""Which lines of a chunk can give a failure: searches over the whole chunk, not per line.

A :class:`CandidateFinder` returns the start offsets of the lines of a chunk (raw bytes, lines
joined by ``\\n``) that a filter must look at; every other line is sure to give no failure.
Two kinds, tried in this order by :func:`finder_for`:

* :class:`PatternFinder` (built by :func:`pattern_finder`): one native regex
  (``google-re2``, ``_engines``) for all the failregexes of a filter, each reduced to a part
  every match contains and that a date cut cannot split (``_fragments``), searched through the
  chunk at once. Lines with bytes it cannot judge (not ASCII, or NUL) are always candidates.
* :class:`LiteralFinder`: the probes of the literal prefilter (``_prefilter``), each found
  with ``bytes.find`` through the chunk.

Without ``google-re2`` the chains without gaps are searched with Python's ``re`` instead, and
:class:`Cheapest` picks that or the literal finder on the first chunk.

Both only narrow: a candidate line still goes through the whole per-line pipeline (its
literal prefilter, date, regexes), so results are those of the plain engine.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from cfban.fail2ban._cuts import template_cut
from cfban.fail2ban._engines import SpanSearch, compile_native, compile_python, native_available
from cfban.fail2ban._fragments import GAP_TEXT, chain_pieces, variants
from cfban.fail2ban._prefilter import Prefilter

if TYPE_CHECKING:
    from cfban.fail2ban._filter import Filter

__all__ = [
    "CandidateFinder",
    "Cheapest",
    "LiteralFinder",
    "PatternFinder",
    "RegexHints",
    "finder_for",
    "pattern_finder",
]

_NEWLINE = b"\n"
#: Candidate line start -> the indexes (ascending) of the only failregexes that can match it.
RegexHints = Mapping[int, tuple[int, ...]]
#: Bytes a native pattern does not judge the way Python's ``re`` on decoded text would.
_UNJUDGED = re.compile(rb"[\x00\x80-\xff]")


class CandidateFinder(Protocol):
    """Finds the lines of a chunk a filter must look at.

    ``reports_special_lines``: every empty line and ``#`` comment is among the candidates.
    """

    @property
    def reports_special_lines(self) -> bool: ...

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        """Start offsets of candidate lines, ascending, each once."""
        ...

    def regex_hints(self, chunk: bytes) -> RegexHints | None:
        """Asked after :meth:`line_starts`: for some candidate lines of ``chunk``, by start
        offset, the only failregexes that can match them (``None``, or a line left out: any
        may)."""
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

    reports_special_lines = False

    def __init__(self, probes: Iterable[bytes]) -> None:
        self.probes = tuple(dict.fromkeys(probes))

    def __repr__(self) -> str:
        return f"LiteralFinder({self.probes!r})"

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        return _merge([_starts_of(chunk, probe) for probe in self.probes])

    def regex_hints(self, chunk: bytes) -> RegexHints | None:
        return None


#: What one candidate line costs the per-line pipeline, roughly (seconds): the weight of a
#: variant's candidate count against its search time when choosing variants.
CANDIDATE_COST = 8e-6
#: How much of the first chunk the variants are tried on (about 1,200 nginx log lines).
TUNING_BYTES = 1 << 18


class PatternFinder:
    """Lines where a native regex matches, and lines with bytes outside ASCII or NUL (which the
    native pattern is not trusted with).

    ``options`` holds, per failregex, chains that each match a superset of its lines
    (``_fragments.variants``); on the first chunk each failregex's fastest one, counting
    candidates at :data:`CANDIDATE_COST`, is chosen, and the chosen ones are searched as one
    alternation, or one by one if that is faster (an alternation of chains that start
    differently cannot skip ahead with ``memchr``). Any choice gives the same lines to the
    exact match, so results never depend on it.
    """

    reports_special_lines = False

    def __init__(
        self,
        options: list[list[str]],
        compile_native: Callable[[str], SpanSearch],
        *,
        native: bool = True,
    ) -> None:
        self.options = options
        self.compile_native = compile_native
        #: Whether ``compile_native`` is the native engine's (else Python's ``re``).
        self.native = native
        #: The chain chosen for each failregex, once tuned (duplicates dropped).
        self.chosen: list[str] = []
        #: The chain chosen for each failregex, in failregex order.
        self.chosen_by_regex: list[str] = []
        self.source: str | None = None
        self._searches: list[SpanSearch] = []

    def __repr__(self) -> str:
        return f"PatternFinder({self.source or self.options!r})"

    def tune(self, sample: bytes) -> None:
        """Choose each failregex's chain, and one alternation or one search per failregex,
        by trying them on ``sample``."""
        chosen: list[str] = []
        alone = 0.0  # what the chosen chains cost searched one by one
        for texts in self.options:
            best, best_cost = texts[0], math.inf
            for text in texts:
                cost = self._cost(self.compile_native(text), sample)
                if cost < best_cost:
                    best, best_cost = text, cost
            chosen.append(best)
            alone += best_cost
        self.chosen_by_regex = chosen
        unique = self.chosen = list(dict.fromkeys(chosen))
        self.source = "|".join(f"(?:{text})" for text in unique)
        union = self.compile_native(self.source)
        if len(unique) == 1 or self._cost(union, sample) <= alone:
            self._searches = [union]
        else:
            self._searches = [self.compile_native(text) for text in unique]
            self.source = " ; ".join(unique)

    @staticmethod
    def _cost(search: SpanSearch, sample: bytes) -> float:
        start = time.perf_counter()
        count = len(_native_starts(search, sample))
        return time.perf_counter() - start + count * CANDIDATE_COST

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        if not self._searches:
            self.tune(chunk[: chunk.rfind(_NEWLINE, 0, TUNING_BYTES) + 1] or chunk)
        found = [_native_starts(search, chunk) for search in self._searches]
        unjudged = _unjudged_starts(chunk)
        if unjudged:
            found.append(unjudged)
        return _merge(found)

    def regex_hints(self, chunk: bytes) -> RegexHints | None:
        return None  # one search for all the chains: it does not say which one matched


_last_judged: list[tuple[bytes, bool]] = []


def _judged(chunk: bytes) -> bool:
    """Whether every byte of ``chunk`` is ASCII and none is NUL; remembered for the last
    chunk, which the finders of several jails on one file ask about in turn."""
    if _last_judged and _last_judged[0][0] is chunk:
        return _last_judged[0][1]
    plain = chunk.isascii() and b"\x00" not in chunk
    _last_judged[:] = [(chunk, plain)]
    return plain


def _unjudged_starts(chunk: bytes) -> list[int]:
    """Start offsets of the lines of ``chunk`` with a byte outside ASCII or NUL: a native
    pattern is not trusted with them, so they are candidates of every pattern finder."""
    if _judged(chunk):
        return []
    rfind = chunk.rfind
    return [rfind(_NEWLINE, 0, m.start()) + 1 for m in _UNJUDGED.finditer(chunk)]


def _native_starts(search: SpanSearch, chunk: bytes) -> list[int]:
    starts: list[int] = []
    rfind, find = chunk.rfind, chunk.find
    position, size = 0, len(chunk)
    while position < size:
        found = search(chunk, position)
        if found is None:
            break
        at, past = found
        if at >= size:
            break  # an empty line "after" the final line end
        starts.append(rfind(_NEWLINE, 0, at) + 1)
        end = find(_NEWLINE, max(at, past - 1))
        if end < 0:
            break
        position = end + 1
    return starts


def _literal_finder(prefilter: Prefilter | None) -> LiteralFinder | None:
    if prefilter is None or not prefilter.plain_text_safe:
        return None
    groups = [group for group in (prefilter.required, prefilter.any_of) if group]
    if not groups:
        return None
    best = max(groups, key=lambda group: (min(len(p) for p in group), -len(group)))
    return LiteralFinder(p.encode("utf-8") for p in best)


def pattern_finder(flt: Filter, *, native: bool = True) -> PatternFinder | None:
    """A :class:`PatternFinder` for ``flt``'s failregexes, or ``None`` (a failregex without a
    usable chain, dates the cut rules cannot place, or a multi-line filter).

    With ``google-re2`` (and ``native``) the chains are searched by it. Without, Python's
    ``re`` searches them, but only chain variants without gaps: ``re`` backtracks, and a
    gap (``[^\\n]*?``) between parts could make a long line cost quadratic time.
    """
    templates = getattr(flt.dates, "templates", None)
    if not templates or flt._multiline:  # several lines match as one: no line on its own
        return None
    engine = compile_native if native and native_available() else compile_python
    compiled: dict[str, SpanSearch] = {}

    def compile_chain(text: str) -> SpanSearch:  # each text once: checked here, tuned later
        search = compiled.get(text)
        if search is None:
            search = compiled[text] = engine(text)
        return search

    cuts = [template_cut(t.regex) for t in templates]
    options: list[list[str]] = []
    for regex in flt.compiled.failregex:
        pieces = chain_pieces(regex.pattern, cuts)
        found = variants(pieces) if pieces is not None else []
        if engine is compile_python:
            found = [text for text in found if GAP_TEXT not in text]
        if not found:
            return None
        options.append(found)
    try:
        for texts in options:
            for text in texts:
                compile_chain(text)
    except Exception:  # noqa: BLE001 - any refusal of the engine: use the fallback
        return None
    return PatternFinder(options, compile_chain, native=engine is compile_native)


def finder_for(flt: Filter, *, native: bool = True) -> CandidateFinder | None:
    """The best finder for ``flt``, or ``None`` (every line must be looked at).

    ``native``: allow the native regex finder when ``google-re2`` is installed.
    """
    if flt._multiline:
        return None
    native = native and native_available()
    chains = pattern_finder(flt, native=native)
    if native and chains is not None:
        return chains
    literal = _literal_finder(flt.prefilter)
    if chains is None or literal is None:
        return chains or literal
    return Cheapest([chains, literal])


class Cheapest:
    """The cheapest of several finders for a filter, chosen on the first chunk (its search
    time, counting candidates at :data:`CANDIDATE_COST`). Each gives the exact match a
    superset of the lines that can match, so the choice never changes results."""

    reports_special_lines = False

    def __init__(self, finders: list[CandidateFinder]) -> None:
        self.finders = finders
        self.chosen: CandidateFinder | None = None

    def __repr__(self) -> str:
        return f"Cheapest({self.chosen or self.finders!r})"

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        if self.chosen is None:
            sample = chunk[: chunk.rfind(_NEWLINE, 0, TUNING_BYTES) + 1] or chunk
            costs = []
            for finder in self.finders:
                start = time.perf_counter()
                count = len(list(finder.line_starts(sample)))
                costs.append(time.perf_counter() - start + count * CANDIDATE_COST)
            self.chosen = self.finders[costs.index(min(costs))]
        return self.chosen.line_starts(chunk)

    def regex_hints(self, chunk: bytes) -> RegexHints | None:
        return None if self.chosen is None else self.chosen.regex_hints(chunk)
