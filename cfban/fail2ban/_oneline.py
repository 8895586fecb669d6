"""The failregex loop for one line of a plain single-line filter, in fewer steps.

Most filters are single-line, have no ``prefregex`` and no ``<F-MLFID>`` sessions. For them
fail2ban's loop (``_search.Search``) reduces to: the first failregex that matches the line
(date cut out) decides; an ignoreregex that matches the same text drops it; the failure id
comes from its groups. :class:`OneLine` does exactly that, with what ``Search`` computes per
line (the regex list, the group filters) computed once per filter: the same failures, the same
``no failure id`` count, at a fraction of the cost per line. ``tests/test_f2b_oneline.py``
compares the two on every stock and bundled filter's sample lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from cfban.fail2ban._model import Failure
from cfban.fail2ban._regex import CompiledFilter
from cfban.fail2ban._search import INTERNAL_KEYS, TupleLine, failure_host

__all__ = ["OneLine"]

#: Groups the full loop gives a meaning of its own: a failregex that captures one goes there.
_SPECIAL_GROUPS = INTERNAL_KEYS | {"mlfid", "nofail"}

_Regex = tuple[int, Callable[[str], Any], tuple[tuple[str, str], ...]]


class OneLine:
    """The failures of one line of a plain single-line filter (its compiled regexes), as
    ``Search(...).run()`` without ``check_all`` followed by the matcher's filter (a host, no
    ``nofail``)."""

    __slots__ = ("_ignores", "_regexes", "_stats", "_subsets", "_usedns")

    def __init__(self, compiled: CompiledFilter, *, usedns: str, stats: Counter[str]) -> None:
        self._regexes: tuple[_Regex, ...] = tuple(
            (index, regex.pattern.search, regex.alt_names)
            for index, regex in enumerate(compiled.failregex)
        )
        self._ignores = tuple(regex.pattern.search for regex in compiled.ignoreregex)
        self._usedns = usedns
        self._stats = stats  # the filter's: "no failure id" is counted there
        self._subsets: dict[tuple[int, ...], tuple[_Regex, ...]] = {}

    @classmethod
    def fits(cls, compiled: CompiledFilter, *, maxlines: int) -> bool:
        """Whether a filter of these regexes and ``maxlines`` is one this loop gives the full
        loop's results for."""
        return (
            maxlines <= 1
            and compiled.prefregex is None
            and not any(
                _SPECIAL_GROUPS.intersection(regex.pattern.groupindex) or regex.has_skiplines
                for regex in compiled.failregex
            )
        )

    def failures(
        self, tline: TupleLine, epoch: float | None, only: tuple[int, ...] | None = None
    ) -> list[Failure]:
        """The failures of the line ``tline`` (before the date, the date, after it).

        ``only``: the failregexes (ascending indexes) that can match this line, when a
        candidate search knows the others cannot (their chains are not in it); the first of
        them that matches is then the first of all that matches."""
        before, date, after = tline
        text = before + after + "\n"
        regexes = self._regexes
        if only is not None:
            subset = self._subsets.get(only)
            if subset is None:
                subset = self._subsets[only] = tuple(regexes[index] for index in only)
            regexes = subset
        for index, search, alt_names in regexes:
            found = search(text)
            if found is None:
                continue
            for ignore in self._ignores:
                if ignore(text) is not None:
                    return []
            captured: dict[str, Any] = found.groupdict()
            for alt, target in alt_names:
                value = captured.get(alt)
                if value and not captured.get(target):
                    captured[target] = value
            groups = {key: value for key, value in captured.items() if value is not None}
            host = failure_host(groups, self._usedns)
            if host is None:
                self._stats["no failure id"] += 1
                return []
            return [Failure(host, epoch, groups, (before + date + after,), index)]
        return []
