"""One pass over a batch of a file's lines for every jail that reads the file.

The daemon reads each file once, whatever the number of jails on it: the batch's lines are
joined into one chunk, and each jail's filter finds its candidate lines in that chunk with
searches over the whole chunk (``cfban.fail2ban._scan``); only candidate lines are decoded,
dated and matched, each by the jails whose filter could match it (jails whose filters date
lines alike - the same ``datepattern`` - decode and date each line once). The failures come back in
line order, jails in their configured order on each line: the order the per-line loop had.

If a jail's scan of a batch fails, that jail falls back to feeding the batch line by line,
so that one bad line costs only itself (as in the per-line loop).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from operator import itemgetter
from typing import NamedTuple, cast

from cfban.errors import CfbanError
from cfban.fail2ban import Failure, LineMatcher
from cfban.fail2ban._candidates import PatternFinder, finder_for
from cfban.fail2ban._matcher import DatedLines
from cfban.fail2ban._scan import ChunkScanner
from cfban.fail2ban._union import SharedSearch, shareable

log = logging.getLogger(__name__)

_LINE_THEN_JAIL = itemgetter(0, 1)


class Found(NamedTuple):
    """Failures one jail found on one line of a batch (a tuple: cheap to make and to sort)."""

    at: int  # where the line starts in the batch (its lines joined by line ends)
    jail: int  # position of the jail in the list given
    failures: list[Failure]


class BatchScanner:
    """Finds the failures of several jails' matchers in batches of one file's lines."""

    def __init__(self) -> None:
        # the scanners of each list of matchers read together (a reload builds a new
        # pipeline, hence new scanners)
        self._groups: dict[tuple[LineMatcher, ...], _Group] = {}
        #: Lines a matcher could not process (each counted once per matcher).
        self.bad_lines: list[tuple[int, str]] = []

    def group(self, matchers: Sequence[LineMatcher]) -> _Group:
        """The scanners of ``matchers`` read together (made on first use)."""
        key = tuple(matchers)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
        return group

    def scan(self, matchers: Sequence[LineMatcher], lines: Sequence[bytes]) -> list[Found]:
        """The failures of each matcher in ``lines`` (raw, without line ends), in line order
        (``Found.at``), matchers in order on a line.

        Lines that raised are listed in :attr:`bad_lines` (index, message) and skipped.
        """
        self.bad_lines = []
        if not lines:
            return []
        chunk = b"\n".join(lines) + b"\n"
        group = self.group(matchers)
        found: list[Found] = []
        dated: dict[object, DatedLines] = {}  # jails whose filters date lines alike share
        try:
            for position, (matcher, scanner) in enumerate(
                zip(matchers, group.scanners, strict=True)
            ):
                key = matcher.filter.date_key
                try:
                    hits = scanner.scan(chunk, dated.setdefault(key, {}) if key else None)
                except CfbanError:
                    found.extend(self._line_by_line(position, matcher, lines))
                    continue
                found.extend(
                    Found(hit.offset, position, hit.failures) for hit in hits if hit.failures
                )
        finally:
            group.forget()
        if len(matchers) > 1:
            found.sort(key=_LINE_THEN_JAIL)
        return found

    def _line_by_line(
        self, position: int, matcher: LineMatcher, lines: Sequence[bytes]
    ) -> list[Found]:
        found: list[Found] = []
        offset = 0
        for index, raw in enumerate(lines):
            at, offset = offset, offset + len(raw) + 1
            try:
                result = matcher.feed_raw(raw)
            except CfbanError as exc:
                self.bad_lines.append((index, str(exc)))
                continue
            if result is not None and result[1]:
                found.append(Found(at, position, result[1]))
        return found


class _Group:
    """The chunk scanners of matchers that read one file, sharing one candidate search among
    those whose filters have a native pattern finder."""

    def __init__(self, matchers: Sequence[LineMatcher]) -> None:
        finders = [finder_for(matcher.filter) for matcher in matchers]
        native = [position for position, finder in enumerate(finders) if shareable(finder)]
        self.shared: SharedSearch | None = None
        if len(native) > 1:
            self.shared = SharedSearch([cast(PatternFinder, finders[p]) for p in native])
            for position, member in zip(native, self.shared.finders(), strict=True):
                finders[position] = member
        self.scanners = [
            ChunkScanner(matcher, finder=finder, count_lines=False)
            for matcher, finder in zip(matchers, finders, strict=True)
        ]

    def forget(self) -> None:
        """Keep nothing of the last chunk."""
        if self.shared is not None:
            self.shared.forget()
