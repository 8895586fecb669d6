"""The stateful side of a filter: lines fed in log order, failures out.

A :class:`LineMatcher` holds what a compiled ``_filter.Filter`` needs across lines: the
``maxlines`` buffer with ``<SKIPLINES>``, the "line without a date takes the last date if it
is under 60 s old" rule (fail2ban-format.md §3.6) and ``<F-MLFID>`` sessions (§2.7). A chunk
scan (``_scan``) hands it the lines it ruled out as :class:`SkippedLines`, whose dates are
parsed only if a later line without a date needs them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from cfban.fail2ban._filter import MAX_LINE_CHARS, Filter, decode_line, not_log_line
from cfban.fail2ban._model import DateMatch, Failure
from cfban.fail2ban._oneline import OneLine
from cfban.fail2ban._search import Search, TupleLine

__all__ = ["DatedLines", "LineMatcher", "SkippedLines"]

_LAST_DATE_MAX_AGE = 60.0
_MLFID_CACHE_SIZE = 100
_MLFID_CACHE_SECONDS = 300.0
_PENDING_LIMIT = 1024  # skipped lines kept for their date at most, and their length
_PENDING_LONG_LINE = 2048


#: Lines already decoded and dated, by their offset in a chunk: (text, date found).
DatedLines = dict[int, tuple[str, "DateMatch | None"]]


class SkippedLines:
    """Lines of a chunk (``chunk[start:end]``) that a scan ruled out: dates parsed on demand.

    ``skip_comments``: empty and ``#`` lines are not log lines (never looked at for a date).
    """

    __slots__ = ("chunk", "end", "skip_comments", "start")

    def __init__(self, chunk: bytes, start: int, end: int, skip_comments: bool) -> None:
        self.chunk, self.start, self.end, self.skip_comments = chunk, start, end, skip_comments

    def __len__(self) -> int:
        return self.end - self.start

    def newest_first(self) -> Iterator[bytes]:
        """The lines, last first (without their line ends)."""
        chunk, start, end = self.chunk, self.start, self.end
        if end > start and chunk[end - 1] == 0x0A:
            end -= 1
        skip_comments = self.skip_comments
        while True:
            cut = chunk.rfind(b"\n", start, end)
            raw = chunk[cut + 1 if cut >= 0 else start : end]
            if not (skip_comments and not_log_line(raw)):
                yield raw
            if cut < 0:
                return
            end = cut


class LineMatcher:
    """The stateful side of a filter: feed lines in log order, get failures out.

    Holds the ``maxlines`` buffer, the last date seen (a line without a date takes it while it
    is under 60 s old) and the ``<F-MLFID>`` sessions (100 entries, 5 minutes).

    Lines the filter's prefilter rules out are not date-parsed when fed; they are kept until a
    line needs the last date (or :data:`_PENDING_LIMIT` pile up) and only then parsed, newest
    first: the last date is the same as if every line had been parsed.
    """

    def __init__(self, flt: Filter) -> None:
        self.filter = flt
        self.buffer: list[TupleLine] = []
        self._last_date: float | None = None
        self._last_date_text = ""
        self._pending: list[str | bytes | SkippedLines] = []
        self.sessions: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    @property
    def last_date(self) -> float | None:
        """The epoch of the last line with a valid date (or the last ``known_time``)."""
        if self._pending:
            self._settle()
        return self._last_date

    @last_date.setter
    def last_date(self, value: float | None) -> None:
        if self._pending:
            self._settle()  # its date text stays the last one seen
        self._last_date = value

    @property
    def last_date_text(self) -> str:
        """The date text of the last line with a valid date."""
        if self._pending:
            self._settle()
        return self._last_date_text

    @last_date_text.setter
    def last_date_text(self, value: str) -> None:
        if self._pending:
            self._settle()
        self._last_date_text = value

    def _settle_skipped(self, line: str | bytes) -> None:
        """Settle the skipped lines now: too many are kept, or ``line`` (the last) is long."""
        if len(line) > MAX_LINE_CHARS:  # count it as truncated (it may have fewer chars)
            self.filter._cap(line if isinstance(line, str) else decode_line(line))
        self._settle()  # bounds what pending lines hold: 1024 lines of 2 KiB

    def _settle(self) -> None:
        """Parse the dates of the skipped lines, newest first, until one has a valid date."""
        pending = self._pending[:]
        self._pending.clear()  # in place: a chunk scan holds this very list
        for raw in reversed(pending):
            if isinstance(raw, SkippedLines):
                if any(self._take_date(line) for line in raw.newest_first()):
                    return
            elif self._take_date(raw):
                return

    def _take_date(self, raw: str | bytes) -> bool:
        """Make the date of ``raw`` the last date if it has a valid one."""
        text = raw if isinstance(raw, str) else decode_line(raw)
        line = text.rstrip("\r\n")[:MAX_LINE_CHARS]
        found = self.filter.dates.find(line)
        if found is not None and found.end > found.start and found.epoch is not None:
            self._last_date = found.epoch
            self._last_date_text = line[found.start : found.end]
            return True
        return False

    def feed(
        self,
        line: str,
        *,
        known_time: float | None = None,
        check_all: bool = False,
        candidate: bool = False,
    ) -> list[Failure]:
        """The failures completed by ``line``.

        ``known_time`` skips date detection (a journal entry, whose time is known);
        ``check_all`` tries every failregex, as fail2ban's sample tests do, and also returns
        ``nofail`` matches and pending session matches (``host`` ``None``); ``candidate``: a
        candidate finder chose the line, the literal prefilter is not asked again.
        """
        flt = self.filter
        one_line = flt._one_line
        might_match = None if candidate else flt._might_match
        if might_match is not None and not might_match(line):
            if known_time is not None:
                flt._cap(line)  # counts a truncated line
                self.last_date = known_time
                return []
            pending = self._pending
            pending.append(line)
            if len(line) > _PENDING_LONG_LINE or len(pending) >= _PENDING_LIMIT:
                self._settle_skipped(line)
            return []
        line = flt._cap(line)
        now = flt.now()
        epoch: float | None
        if known_time is not None:
            tline, epoch = ("", "", line), known_time
            self.last_date = known_time
        else:
            found = flt.dates.find(line)
            tline, epoch = ("", "", line), None
            text = ""
            if found is not None:
                text = line[found.start : found.end]
                epoch = found.epoch if text else None
            if text and epoch is not None:
                self._pending.clear()  # this date supersedes the skipped lines' dates
                tline = (line[: found.start], text, line[found.end :])  # type: ignore[union-attr]
                self._last_date, self._last_date_text = epoch, text
            else:
                if self._pending:
                    self._settle()
                last = self._last_date
                fresh = last is not None and last > now - _LAST_DATE_MAX_AGE
                if text:  # a date that names no valid time: cut, but no epoch
                    tline = (line[: found.start], text, line[found.end :])  # type: ignore[union-attr]
                if fresh:
                    tline, epoch = ("", self._last_date_text, line), last
                elif found is not None and not text:
                    epoch = now
        if one_line is not None and not check_all:
            return one_line.failures(tline, epoch)
        if flt._multiline:
            self.buffer.append(tline)
            self.buffer = self.buffer[-flt.definition.maxlines :]
            lines = self.buffer
        else:
            lines = [tline]
        found_failures = Search(flt, lines, epoch, self, check_all=check_all).run()
        if check_all:
            return found_failures
        return [f for f in found_failures if f.host is not None and "nofail" not in f.groups]

    def _dated(
        self,
        one_line: OneLine,
        line: str,
        start: int,
        end: int,
        epoch: float,
        only: tuple[int, ...] | None = None,
    ) -> list[Failure]:
        """The failures of ``line``, whose date (``line[start:end]``) is valid."""
        self._pending.clear()  # this date supersedes the skipped lines' dates
        text = line[start:end]
        self._last_date, self._last_date_text = epoch, text
        return one_line.failures((line[:start], text, line[end:]), epoch, only)

    def feed_dated(
        self,
        raw: bytes,
        dated: DatedLines | None = None,
        at: int = 0,
        only: tuple[int, ...] | None = None,
    ) -> tuple[str, list[Failure]] | None:
        """``feed_raw`` in fewer steps for the usual line: a single-line filter's line with a
        valid date. ``None``, with nothing done, for any other line (then use
        :meth:`feed_candidate` or :meth:`feed_raw`). The literal prefilter is not asked: only
        a candidate finder's lines should come here (the prefilter only narrows).

        ``dated``: the text and date of lines already found by matchers whose filters have
        this one's ``date_key``, by their offset ``at`` in one chunk (the jails on one file
        decode and date a line once). ``only``: the failregexes that can match the line
        (``OneLine.failures``), when the candidate search knows."""
        one_line = self.filter._one_line
        if one_line is None or len(raw) > MAX_LINE_CHARS:
            return None
        known = dated.get(at) if dated is not None else None
        if known is None:
            line = decode_line(raw)
            found = self.filter.dates.find(line)
            if dated is not None:
                dated[at] = (line, found)
        else:
            line, found = known
        if found is None or found.epoch is None or found.end <= found.start:
            return None
        return line, self._dated(one_line, line, found.start, found.end, found.epoch, only)

    def feed_candidate(self, raw: bytes) -> tuple[str, list[Failure]]:
        """``feed_raw`` for a line a candidate finder chose (``_candidates``): the literal
        prefilter is not asked again (it only narrows, so results are the same)."""
        line = decode_line(raw)
        return line, self.feed(line, candidate=True)

    def feed_raw(self, raw: bytes) -> tuple[str, list[Failure]] | None:
        """Decode (``decode_line``, UTF-8) and feed one raw line: ``(text, failures)``.

        ``None`` when the prefilter rules the line out: it gives no failure (its text is made
        only if a later line needs its date). The same result as ``feed(decode_line(raw))``,
        with less work for the lines that cannot match.
        """
        might_match = self.filter._might_match_plain
        if might_match is not None and not might_match(raw.decode("utf-8", "replace")):
            pending = self._pending
            pending.append(raw)
            if len(raw) > _PENDING_LONG_LINE or len(pending) >= _PENDING_LIMIT:
                self._settle_skipped(raw)
            return None
        line = decode_line(raw)
        return line, self.feed(line)

    def session(self, mlfid: str) -> dict[str, Any] | None:
        """The cached groups of session ``mlfid``, if it is known and not expired."""
        entry = self.sessions.get(mlfid)
        if entry is None:
            return None
        if entry[0] <= self.filter.now():
            del self.sessions[mlfid]
            return None
        return entry[1]

    def remember(self, mlfid: str, groups: dict[str, Any]) -> None:
        """Start caching session ``mlfid``."""
        now = self.filter.now()
        while len(self.sessions) >= _MLFID_CACHE_SIZE:
            self.sessions.popitem(last=False)
        self.sessions[mlfid] = (now + _MLFID_CACHE_SECONDS, groups)
