"""A filter over a whole chunk of log lines at once, looking only at lines that can match.

:class:`ChunkScanner` gives the same failures, hosts and times as feeding every line of the
chunk to a :class:`LineMatcher` with ``feed_raw``, with work in proportion to the lines that
could match rather than to all lines. It asks a :class:`CandidateFinder` (``_candidates``) for
the lines of the chunk worth a look, found by searches over the whole chunk (C loops over
bytes, no Python call per line), and feeds only those. The lines in between cannot give a
failure; they are handed to the matcher as one lazy :class:`SkippedLines` entry, so their dates
are parsed only if a later line without a date needs "the last date seen" (fail2ban-format.md
§3.6), newest first, as ``LineMatcher`` does for lines its prefilter rules out.

A chunk is complete lines joined by ``\\n`` (a final ``\\n`` is optional). Multi-line filters
(``maxlines > 1``) and filters no finder can narrow get every line fed, as before. One
difference in bookkeeping only: ``Filter.stats["truncated"]`` counts the over-long lines
that were looked at, not those the finder ruled out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cfban.fail2ban._candidates import CandidateFinder, finder_for
from cfban.fail2ban._filter import not_log_line
from cfban.fail2ban._matcher import DatedLines, LineMatcher, SkippedLines
from cfban.fail2ban._model import Failure

__all__ = ["ChunkScanner", "Hit", "SkippedLines", "split_chunks"]

_NEWLINE = b"\n"


@dataclass(slots=True)
class Hit:
    """A line of the chunk the filter had to look at: its index (``-1`` when the scan does
    not count lines), its offset in the chunk, its text and its failures."""

    index: int
    text: str
    failures: list[Failure]
    offset: int = 0


class ChunkScanner:
    """Runs one :class:`LineMatcher` over chunks of raw lines in log order.

    ``skip_comments``: empty lines and lines starting with ``#`` are not lines of the log
    (``fail2ban-regex`` and ``cfban test-filter`` skip them: they are neither matched nor
    looked at for a date). ``finder``: how candidates are found (default: the best the
    filter allows, ``_candidates.finder_for``). ``count_lines``: give each hit its line
    index and :attr:`lines` (a pass over the chunk; without, hits have their offsets only).
    """

    def __init__(
        self,
        matcher: LineMatcher,
        *,
        skip_comments: bool = False,
        finder: CandidateFinder | None = None,
        count_lines: bool = True,
    ) -> None:
        self.matcher = matcher
        self.skip_comments = skip_comments
        self.count_lines = count_lines
        if finder is None:
            finder = finder_for(matcher.filter)
        self.finder = finder
        #: How many lines the last chunk scanned had.
        self.lines = 0
        #: How many of them were empty or comments (when :attr:`counts_special` is true).
        self.special = 0
        #: Whether scans count the empty and comment lines (else the caller must).
        self.counts_special = finder is None or finder.reports_special_lines

    def scan(self, chunk: bytes, dated: DatedLines | None = None) -> list[Hit]:
        """The lines of ``chunk`` that went through the filter, with their failures (if any).

        Lines the finder rules out never appear; a line that was looked at but gave no
        failure appears with an empty list (callers count "ignored" lines from those).
        ``lines`` is then the number of lines in ``chunk``. ``dated``: lines of this chunk
        other scanners with the same ``Filter.date_key`` decoded and dated (filled in turn).
        """
        finder = self.finder
        if finder is None:
            return list(self._every_line(chunk))
        count_lines = self.count_lines
        matcher = self.matcher
        quick, feed = matcher.feed_dated, matcher.feed_candidate
        skip_comments = self.skip_comments
        hits: list[Hit] = []
        special = 0
        index = 0
        counted = 0  # offset up to which newlines are counted into ``index``
        done = 0  # offset up to which lines are fed or handed over as skipped
        size = len(chunk)
        starts = finder.line_starts(chunk)
        hints = finder.regex_hints(chunk)  # after line_starts: the search may make them
        for start in starts:
            end = chunk.find(_NEWLINE, start)
            if end < 0:
                end = size
            raw = chunk[start:end]
            if skip_comments and not_log_line(raw):
                special += 1
                continue
            result = quick(raw, dated, start, hints.get(start) if hints else None)
            if result is None:  # the skipped lines' dates may matter: hand them over first
                if start > done:
                    matcher._pending.append(SkippedLines(chunk, done, start, skip_comments))
                result = feed(raw)
            done = end + 1
            text, failures = result
            if count_lines:
                index += chunk.count(_NEWLINE, counted, start)
                counted = start
            hits.append(Hit(index if count_lines else -1, text, failures, start))
        if count_lines:
            index += chunk.count(_NEWLINE, counted)
            self.lines = index + (size > 0 and chunk[-1] != 0x0A)
        self.special = special
        pending = matcher._pending
        if done < size:
            pending.append(SkippedLines(chunk, done, size, skip_comments))
        if any(isinstance(entry, SkippedLines) for entry in pending):
            matcher._settle()  # keep no reference to the chunk: parse the last date now
        return hits

    def _every_line(self, chunk: bytes) -> Iterator[Hit]:
        feed_raw = self.matcher.feed_raw
        skip_comments = self.skip_comments
        lines = chunk.split(_NEWLINE)
        if chunk.endswith(_NEWLINE):
            lines.pop()
        self.lines = len(lines)
        self.special = 0
        offset = 0
        for index, raw in enumerate(lines):
            start, offset = offset, offset + len(raw) + 1
            if skip_comments and not_log_line(raw):
                self.special += 1
                continue
            result = feed_raw(raw)
            if result is not None:
                yield Hit(index, result[0], result[1], start)


def split_chunks(stream_chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Re-cut a stream of byte blocks into chunks of complete lines (the last may lack ``\\n``)."""
    rest = b""
    for block in stream_chunks:
        if not block:
            continue
        data = rest + block if rest else block
        cut = data.rfind(_NEWLINE)
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        yield data[: cut + 1]
    if rest:
        yield rest
