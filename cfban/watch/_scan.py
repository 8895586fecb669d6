"""One pass over a batch of a file's lines for every jail that reads the file.

The daemon reads each file once, whatever the number of jails on it: the batch's lines are
joined into one chunk, and each jail's filter finds its candidate lines in that chunk with
searches over the whole chunk (``cfban.fail2ban._scan``); only candidate lines are decoded,
dated and matched, each by the jails whose filter could match it. The failures come back in
line order, jails in their configured order on each line: the order the per-line loop had.

If a jail's scan of a batch fails, that jail falls back to feeding the batch line by line,
so that one bad line costs only itself (as in the per-line loop).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from cfban.errors import CfbanError
from cfban.fail2ban import Failure, LineMatcher
from cfban.fail2ban._scan import ChunkScanner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    """Failures one jail found on one line of a batch."""

    at: int  # where the line starts in the batch (its lines joined by line ends)
    jail: int  # position of the jail in the list given
    failures: list[Failure]


class BatchScanner:
    """Finds the failures of several jails' matchers in batches of one file's lines."""

    def __init__(self) -> None:
        # a scanner per matcher, kept as long as the matcher (a reload builds new ones)
        self._scanners: weakref.WeakKeyDictionary[LineMatcher, ChunkScanner] = (
            weakref.WeakKeyDictionary()
        )
        #: Lines a matcher could not process (each counted once per matcher).
        self.bad_lines: list[tuple[int, str]] = []

    def scanner(self, matcher: LineMatcher) -> ChunkScanner:
        """The chunk scanner of ``matcher`` (made on first use)."""
        scanner = self._scanners.get(matcher)
        if scanner is None:
            scanner = self._scanners[matcher] = ChunkScanner(matcher, count_lines=False)
        return scanner

    def scan(self, matchers: Sequence[LineMatcher], lines: Sequence[bytes]) -> list[Found]:
        """The failures of each matcher in ``lines`` (raw, without line ends), in line order
        (``Found.at``), matchers in order on a line.

        Lines that raised are listed in :attr:`bad_lines` (index, message) and skipped.
        """
        self.bad_lines = []
        if not lines:
            return []
        chunk = b"\n".join(lines) + b"\n"
        found: list[Found] = []
        for position, matcher in enumerate(matchers):
            try:
                hits = self.scanner(matcher).scan(chunk)
            except CfbanError:
                found.extend(self._line_by_line(position, matcher, lines))
                continue
            found.extend(Found(hit.offset, position, hit.failures) for hit in hits if hit.failures)
        if len(matchers) > 1:
            found.sort(key=lambda item: (item.at, item.jail))
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
