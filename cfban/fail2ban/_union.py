"""One candidate search of a chunk for the filters of several jails that read the same file.

Each filter's :class:`PatternFinder` (``_candidates``) searches the whole chunk for its own
chains, so six jails on one file scan every byte of it six times. :class:`SharedSearch` scans
it once, with one native alternation of every filter's chosen chains, and then sorts each line
found among the filters with one native set match (``re2.Set``) of the same chains on that
line alone: which chains occur in it, hence which filters want it. A chain never spans a line
end (``_fragments``), so each filter gets exactly the lines its own search gives — those where
one of its chains matches, and every line with bytes a native pattern is not trusted with
(outside ASCII, or NUL) — and each jail's results are those of its own scan. The same set
match says which of a filter's failregexes can match the line (those whose chains are in it):
:meth:`SharedSearch.regex_hints` hands that to the short failregex loop (``_oneline``), which
then tries only those, in their order.

:meth:`SharedSearch.finders` gives one :class:`CandidateFinder` per filter, for that filter's
``ChunkScanner``: the first to ask about a chunk has it searched, the others get the lines
kept for that same chunk object. On the first chunk each filter tunes its chains, and the
shared search is kept only if it is no slower there than the separate searches (an
alternation cannot skip ahead with ``memchr`` the way a chain with a literal start can); a
first chunk too small to tell (a live log's) leaves the decision to a later one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from cfban.fail2ban._candidates import (
    TUNING_BYTES,
    CandidateFinder,
    PatternFinder,
    RegexHints,
    _merge,
    _native_starts,
    _unjudged_starts,
)

__all__ = ["SharedSearch", "shareable"]

_NEWLINE = b"\n"
#: The least sample that decides between the shared search and the members' own.
DECISIVE_BYTES = 1 << 16


def shareable(finder: CandidateFinder | None) -> bool:
    """Whether ``finder`` can join a :class:`SharedSearch` (a native pattern finder)."""
    return isinstance(finder, PatternFinder) and finder.native


class SharedSearch:
    """The candidate lines of several native :class:`PatternFinder` s, found in one search."""

    def __init__(self, finders: Sequence[PatternFinder]) -> None:
        self.members = list(finders)
        #: Whether chunks are searched once for all (decided on the first chunk of at
        #: least :data:`DECISIVE_BYTES`).
        self.shared: bool | None = None
        self._decided = False
        self.source: str | None = None
        self._search: Callable[[bytes, int], Any] | None = None
        self._match: Callable[[bytes], list[int] | None] | None = None
        # per chain: the members it belongs to, each with the failregexes that chose it
        # (None for a member with one failregex: nothing to narrow)
        self._owners: list[tuple[tuple[int, tuple[int, ...] | None], ...]] = []
        self._chunk: bytes | None = None
        self._starts: list[list[int]] = []
        self._hints: list[dict[int, tuple[int, ...]]] = []

    def __repr__(self) -> str:
        return f"SharedSearch({self.source or self.members!r})"

    def finders(self) -> list[CandidateFinder]:
        """One finder per member, in order, each giving that member's lines."""
        return [_Member(self, position) for position in range(len(self.members))]

    def forget(self) -> None:
        """Drop the lines kept for the last chunk (and the chunk)."""
        self._chunk = None
        self._starts = []
        self._hints = []

    def line_starts(self, chunk: bytes, position: int) -> Iterable[int]:
        """The start offsets of member ``position``'s candidate lines in ``chunk``."""
        if not self._decided and chunk is not self._chunk:
            self.tune(chunk[: chunk.rfind(_NEWLINE, 0, TUNING_BYTES) + 1] or chunk)
        if not self.shared:
            return self.members[position].line_starts(chunk)
        if chunk is not self._chunk:
            self._starts, self._hints = self.split_hinted(chunk)
            self._chunk = chunk
        return self._starts[position]

    def regex_hints(self, chunk: bytes, position: int) -> RegexHints | None:
        """For member ``position``'s candidate lines in ``chunk`` (searched already), the
        failregexes whose chains are in each line: no other can match it."""
        if chunk is not self._chunk or not self._hints:
            return None
        return self._hints[position]

    def tune(self, sample: bytes) -> None:
        """Let each member choose its chains on ``sample``, then build the shared search and
        keep it if it is no slower on ``sample`` than the members' own searches.

        A sample under :data:`DECISIVE_BYTES` says little (a live log's batch may be one
        line): the shared search is used, and the next chunk asked about tunes again.
        """
        if self._search is None:
            try:
                self._build(sample)
            except Exception:  # noqa: BLE001 - any refusal of the engine: each searches alone
                self.shared, self._decided = False, True
                return
        if len(sample) < DECISIVE_BYTES:
            self.shared = True
            return
        # the native engine builds its automata lazily: warm them before timing
        separate: list[Callable[[], object]] = [
            partial(_all_starts, member, sample) for member in self.members
        ]
        together = partial(self.split, sample)
        warm: list[Callable[[], object]] = [*separate, together]
        for work in warm:
            work()
        cost = sum(_seconds(work) for work in separate)
        self.shared = _seconds(together) <= cost
        self._decided = True

    def _build(self, sample: bytes) -> None:
        import re2

        owners: dict[str, list[tuple[int, tuple[int, ...] | None]]] = {}
        for position, member in enumerate(self.members):
            if not member.chosen:
                member.tune(sample)
            by_regex = member.chosen_by_regex
            for text in member.chosen:
                regexes = tuple(i for i, chosen in enumerate(by_regex) if chosen == text)
                owners.setdefault(text, []).append(
                    (position, regexes if len(by_regex) > 1 else None)
                )
        texts = list(owners)
        self.source = "|".join(f"(?:{text})" for text in texts)
        self._search = self.members[0].compile_native(self.source)
        chains = re2.Set.SearchSet()
        for text in texts:
            chains.Add(text.encode("ascii"))
        chains.Compile()
        self._match = chains.Match
        self._owners = [tuple(owners[text]) for text in texts]

    def split(self, chunk: bytes) -> list[list[int]]:
        """Each member's candidate line starts in ``chunk``, ascending (one search)."""
        return self.split_hinted(chunk)[0]

    def split_hinted(
        self, chunk: bytes
    ) -> tuple[list[list[int]], list[dict[int, tuple[int, ...]]]]:
        """Each member's candidate line starts in ``chunk``, ascending (one search), and
        for a member with several failregexes, which of them can match each line found by
        its chains (the lines with bytes not judged have none: any may)."""
        assert self._search is not None and self._match is not None
        per: list[list[int]] = [[] for _ in self.members]
        hints: list[dict[int, tuple[int, ...]]] = [{} for _ in self.members]
        owners, match, find = self._owners, self._match, chunk.find
        size = len(chunk)
        for start in _native_starts(self._search, chunk):
            end = find(_NEWLINE, start)
            for chain in match(chunk[start : end if end >= 0 else size]) or ():
                for position, regexes in owners[chain]:
                    starts = per[position]
                    if not starts or starts[-1] != start:
                        starts.append(start)
                        if regexes is not None:
                            hints[position][start] = regexes
                    elif regexes is not None:  # several chains of one member in the line
                        known = hints[position]
                        known[start] = tuple(sorted({*known[start], *regexes}))
        odd = _unjudged_starts(chunk)
        if odd:
            per = [list(_merge([starts, odd])) for starts in per]
            for known in hints:  # the chains' verdict on such a line is not trusted
                for start in odd:
                    known.pop(start, None)
        return per, hints


class _Member:
    """One member's view of a :class:`SharedSearch`, as its finder."""

    reports_special_lines = False

    def __init__(self, search: SharedSearch, position: int) -> None:
        self.search = search
        self.position = position

    def __repr__(self) -> str:
        return f"SharedSearch.member({self.position}, {self.search!r})"

    @property
    def own(self) -> PatternFinder:
        """The member's own finder."""
        return self.search.members[self.position]

    def line_starts(self, chunk: bytes) -> Iterable[int]:
        return self.search.line_starts(chunk, self.position)

    def regex_hints(self, chunk: bytes) -> RegexHints | None:
        return self.search.regex_hints(chunk, self.position)


def _all_starts(finder: CandidateFinder, chunk: bytes) -> list[int]:
    return list(finder.line_starts(chunk))


def _seconds(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start
