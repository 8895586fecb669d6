"""A compiled fail2ban filter: prefilter, date cut, then the regexes (``_search``), per line.

:class:`Filter` is the compiled filter. ``Filter.match(line)`` is pure: one line in, at most
one :class:`Failure` out (fail2ban-format.md §2.4). What needs memory across lines lives in a
``_matcher.LineMatcher``. :func:`decode_line` and :func:`not_log_line` say what a raw line of
a log is to a filter.

Lines longer than :data:`MAX_LINE_CHARS` (64 KiB) are cut to that length before matching, so
one hostile line cannot make a regex run for long; ``Filter.stats["truncated"]`` counts them.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from cfban.clock import SystemClock
from cfban.fail2ban._dates import DateDetector
from cfban.fail2ban._model import DateMatch, Failure, FilterDefinition
from cfban.fail2ban._oneline import OneLine
from cfban.fail2ban._prefilter import Prefilter, date_cut
from cfban.fail2ban._prefilter import build as build_prefilter
from cfban.fail2ban._regex import CompiledFilter, compile_filter
from cfban.fail2ban._search import Search, TupleLine

__all__ = ["MAX_LINE_CHARS", "DateFinder", "Filter", "decode_line", "not_log_line"]

MAX_LINE_CHARS = 64 * 1024
_LINE_ENDS = ("\r", "\n")


class DateFinder(Protocol):
    """What the matcher needs from a date detector."""

    def find(self, line: str) -> DateMatch | None: ...


def decode_line(raw: bytes, encoding: str = "utf-8") -> str:
    """Text of one raw log line: bad bytes become U+FFFD, line ends and NUL padding go.

    NUL runs at either end (what ``copytruncate`` log rotation leaves) are removed; NULs inside
    the line become U+FFFD rather than vanishing, so that deleting them can never join two
    fragments into text a regex would match.
    """
    text = raw.decode(encoding, "replace")
    if text[-1:] in _LINE_ENDS:
        text = text.rstrip("\r\n")
    if "\x00" in text:
        text = text.strip("\x00").replace("\x00", "\ufffd")
    return text


class Filter:
    """A compiled fail2ban filter.

    ``dates`` finds and parses the date of a line (by default a ``DateDetector`` for the
    definition's ``datepattern``, with ``tz`` for dates without a zone); ``now`` gives the
    current epoch time (used for ``{NONE}`` dates). ``stats`` counts lines the matcher had to
    treat specially (``truncated``).
    ``prefilter`` (``None`` to switch it off) lets lines that cannot give a failure skip date
    detection and the regexes (``_prefilter``); results are the same with and without it.

    Raises:
        FilterError: a regex of ``definition`` does not compile or lacks a failure id.
    """

    def __init__(
        self,
        definition: FilterDefinition,
        *,
        dates: DateFinder | None = None,
        now: Callable[[], float] | None = None,
        tz: datetime.tzinfo | None = None,
    ) -> None:
        self.definition = definition
        self.now: Callable[[], float] = now or SystemClock().now
        #: Filters with equal keys find the same date in any line (``None``: a date finder
        #: of the caller's, never assumed equal to another's).
        self.date_key: object | None = None
        if dates is None:  # first: a bad datepattern is reported before a bad regex
            dates = DateDetector(
                definition.datepattern, logtimezone=definition.logtimezone, tz=tz, now=self.now
            )
            self.date_key = (definition.datepattern, definition.logtimezone, tz, self.now)
        self.dates = dates
        self.compiled: CompiledFilter = compile_filter(definition)
        self.stats: Counter[str] = Counter()
        self._multiline = definition.maxlines > 1
        compiled = self.compiled
        self._precheck_ignore = (
            bool(compiled.ignoreregex) and len(compiled.ignoreregex) < len(compiled.failregex) - 2
        )
        self._might_match: Callable[[str], bool] | None = None
        self._might_match_plain: Callable[[str], bool] | None = None
        self._prefilter: Prefilter | None = None
        #: The short failregex loop, for a filter it fits (else ``Search``, the full loop).
        self._one_line = (
            OneLine(compiled, usedns=definition.usedns, stats=self.stats)
            if OneLine.fits(compiled, maxlines=definition.maxlines)
            else None
        )
        if not self._multiline:
            cuts = None
            if isinstance(dates, DateDetector):
                cuts = [date_cut(template.regex) for template in dates.templates]
            self.prefilter = build_prefilter(
                compiled.prefregex.pattern if compiled.prefregex is not None else None,
                (regex.pattern for regex in compiled.failregex),
                cuts,
            )

    @property
    def prefilter(self) -> Prefilter | None:
        """The literal prefilter in use (``None``: every line goes through the pipeline)."""
        return self._prefilter

    @prefilter.setter
    def prefilter(self, value: Prefilter | None) -> None:
        self._prefilter = value
        self._might_match = value.might_match if value is not None else None
        self._might_match_plain = None
        if value is not None and value.plain_text_safe:
            self._might_match_plain = value.might_match

    @property
    def name(self) -> str:
        """The filter's name."""
        return self.definition.name

    def match(self, line: str) -> Failure | None:
        """The failure in ``line`` (one log line, without its line end), or ``None``.

        Pure: a line without a date gives ``time=None``; a ``<F-NOFAIL>`` match is no failure.
        Only the first matching failregex counts, as in fail2ban. The line is matched alone
        (no ``maxlines`` buffer, no ``<F-MLFID>`` session): use a :class:`LineMatcher` for those.
        """
        might_match = self._might_match
        if might_match is not None and not might_match(line):
            self._cap(line)
            return None
        tline, epoch = self._split_date(self._cap(line))
        if self._one_line is not None:
            failures = self._one_line.failures(tline, epoch)
            return failures[0] if failures else None
        for failure in Search(self, [tline], epoch, None, check_all=False).run():
            if failure.host is not None and "nofail" not in failure.groups:
                return failure
        return None

    def all_matches(self, line: str) -> list[Failure]:
        """Every failregex that matches ``line`` (fail2ban's ``checkAllRegex`` test mode).

        ``<F-NOFAIL>`` matches are included, with ``nofail`` in their groups.
        """
        might_match = self._might_match
        if might_match is not None and not might_match(line):
            self._cap(line)
            return []
        tline, epoch = self._split_date(self._cap(line))
        return Search(self, [tline], epoch, None, check_all=True).run()

    def _cap(self, line: str) -> str:
        if len(line) > MAX_LINE_CHARS:
            line = line.rstrip("\r\n")
            if len(line) > MAX_LINE_CHARS:
                self.stats["truncated"] += 1
                return line[:MAX_LINE_CHARS]
            return line
        if line[-1:] in _LINE_ENDS:
            return line.rstrip("\r\n")
        return line

    def _split_date(self, line: str) -> tuple[TupleLine, float | None]:
        found = self.dates.find(line)
        if found is None:
            return ("", "", line), None
        text = line[found.start : found.end]
        if not text:
            return ("", "", line), self.now()
        return (line[: found.start], text, line[found.end :]), found.epoch


def not_log_line(raw: bytes) -> bool:
    """Whether ``raw`` is empty, ``\\r`` or a ``#`` comment: not a line of the log for
    ``fail2ban-regex`` and ``cfban test-filter``, which skip such lines (sample logs)."""
    return not raw or raw[0] == 0x23 or raw == b"\r"
