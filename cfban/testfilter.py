"""Run one fail2ban-format filter over one log file and count what it finds.

The library side of ``cfban test-filter`` (the CLI only formats a :class:`FilterReport`),
and what the benchmark in ``bench/`` times. It answers the questions ``fail2ban-regex``
answers: how many lines, how many matched, how many a failregex matched but an ignoreregex
dropped, which failregex matched how often, which date formats were seen, and the failures
themselves (line number, address, time).

The log is read as bytes and each line decoded with replacement characters, so a log with
invalid UTF-8 never stops the run. A final line without a line end is processed too. As in
``fail2ban-regex``, empty lines and lines starting with ``#`` are skipped (so fail2ban's
annotated sample logs can be read as they are); line numbers are those of the file.
"""

from __future__ import annotations

import dataclasses
import io
import math
import mmap
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cfban._lazylog import debug_logger
from cfban.errors import CfbanError, FilterError, LogError
from cfban.fail2ban import Failure, Filter, LineMatcher, decode_line, load_filter
from cfban.fail2ban._engines import SpanSearch, compile_native, native_available
from cfban.fail2ban._filter import not_log_line
from cfban.fail2ban._scan import ChunkScanner, split_chunks

#: How many matched lines a report keeps the text of (for a human summary).
SAMPLE_LINES = 10
#: How many lines the date-format statistics look at.
DATE_SAMPLE_LINES = 1000
_CHUNK = 1 << 20
_CONFIG_SUFFIXES = (".conf", ".local")


@dataclass(slots=True)
class Match:
    """One failure: the 1-based line number, the failure's address and its time (epoch)."""

    line: int
    ip: str
    time: float | None
    regex: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``cfban test-filter --json`` (``time`` an int when it is whole)."""
        when: float | int | None = self.time
        if self.time is not None and float(self.time).is_integer():
            when = int(self.time)
        return {"line": self.line, "ip": self.ip, "time": when}


@dataclass
class FilterReport:
    """What one run of a filter over a log found."""

    filter_name: str
    filter_files: tuple[str, ...]
    failregex: tuple[str, ...]
    ignoreregex: tuple[str, ...]
    source: str
    lines: int = 0
    matched: int = 0
    ignored: int = 0
    matches: list[Match] = field(default_factory=list)
    regex_hits: list[int] = field(default_factory=list)
    sample_lines: list[tuple[int, str]] = field(default_factory=list)
    date_formats: Counter[str] = field(default_factory=Counter)

    @property
    def missed(self) -> int:
        """Lines that no failregex matched and no ignoreregex dropped."""
        return self.lines - self.matched - self.ignored

    def to_json(self) -> dict[str, Any]:
        """The one JSON object ``cfban test-filter --json`` prints (design.md §5)."""
        return {
            "lines": self.lines,
            "matched": self.matched,
            "ignored": self.ignored,
            "matches": [m.to_json() for m in self.matches],
        }

    def json_text(self) -> str:
        """``json.dumps(self.to_json(), separators=(",", ":"))``, written directly: a log
        with many failures has tens of thousands of matches, and this is several times
        faster than building and encoding a dict for each (the ``json`` module is imported
        only for an address or time it cannot write as it is)."""
        counts = f'"lines":{self.lines},"matched":{self.matched},"ignored":{self.ignored}'
        plain: dict[str, str] = {}  # address -> its JSON text
        items = []
        for match in self.matches:
            ip = plain.get(match.ip)
            if ip is None:
                ip = plain[match.ip] = _json_string(match.ip)
            when = match.time
            if when is None:
                stamp = "null"
            elif float(when).is_integer():
                stamp = str(int(when))
            else:
                stamp = _json_float(when)
            items.append(f'{{"line":{match.line},"ip":{ip},"time":{stamp}}}')
        return f'{{{counts},"matches":[{",".join(items)}]}}'


def _json_string(text: str) -> str:
    """``text`` as ``json.dumps`` writes it (printable ASCII without ``"`` or ``\\`` as is)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    import json

    return json.dumps(text)


def _json_float(value: float) -> str:
    """``value`` as ``json.dumps`` writes it (``repr`` when finite)."""
    if math.isfinite(value):
        return repr(value)
    import json

    return json.dumps(value)


def split_filter_spec(spec: str) -> tuple[str, tuple[Path, ...] | None]:
    """``(spec for load_filter, search path)`` for a bundled name or a filter file path.

    ``path/to/f.conf[opt=val]`` becomes ``("f[opt=val]", (path/to,))``; a plain name keeps
    the default search path (``None``: cfban's bundled filters, then fail2ban's).
    """
    bracket = spec.find("[")
    name, options = (spec, "") if bracket < 0 else (spec[:bracket], spec[bracket:])
    looks_like_path = "/" in name or name.endswith(_CONFIG_SUFFIXES) or name.startswith(".")
    if not looks_like_path:
        return spec, None
    path = Path(name).expanduser()
    if not path.is_file():
        raise FilterError(
            f"filter file {name} does not exist",
            hint="pass a bundled filter name (e.g. nginx-probes) or the path of a .conf file",
        )
    stem = path.name
    for suffix in _CONFIG_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + options, (path.resolve().parent,)


def open_filter(spec: str) -> Filter:
    """The filter named by ``spec``: a bundled name or a path, with optional ``[opt=val]``.

    Raises:
        FilterError: the filter cannot be found or read, or a regex of it is invalid.
    """
    name, search_path = split_filter_spec(spec)
    return load_filter(name, search_path=search_path)


def iter_log_lines(stream: BinaryIO) -> Iterator[bytes]:
    """The lines of ``stream`` as bytes without their ``\\n``, read in large chunks."""
    rest = b""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _open_log(log_path: str) -> tuple[BinaryIO, str]:
    if log_path == "-":
        return sys.stdin.buffer, "<stdin>"
    path = Path(log_path).expanduser()
    try:
        return path.open("rb"), str(path)
    except FileNotFoundError:
        raise LogError(
            f"log file {log_path} does not exist",
            hint="pass the path of an nginx access or error log, or - to read standard input",
        ) from None
    except IsADirectoryError:
        raise LogError(f"{log_path} is a directory, not a log file") from None
    except OSError as exc:
        raise LogError(f"cannot read log file {log_path}: {exc.strerror}") from None


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Chunks of complete lines of ``stream``.

    A regular file is mapped only to find where each chunk's last line ends (a page or two
    per chunk); the chunk itself is then read with ``os.pread``, one copy from the page
    cache. Slicing the mapping instead would fault in every page of the file first.
    """
    try:
        size = os.fstat(stream.fileno()).st_size if stream.seekable() else 0
    except (OSError, ValueError, io.UnsupportedOperation):
        size = 0
    if size == 0 or stream.tell() != 0:
        yield from split_chunks(iter(lambda: stream.read(_CHUNK), b""))
        return
    fd = stream.fileno()
    _prime_allocator()
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        start = 0
        while start < size:
            limit = start + _CHUNK
            if limit >= size:
                end = size
            else:
                end = mapped.rfind(b"\n", start, limit) + 1
                if end <= start:  # no line end in a whole chunk: one very long line
                    cut = mapped.find(b"\n", limit)
                    end = size if cut < 0 else cut + 1
            chunk = os.pread(fd, end - start, start)
            if chunk:
                yield chunk
            if len(chunk) < end - start:  # the file was truncated while being read
                start += len(chunk)
                break
            start = end
    stream.seek(start)


def _prime_allocator() -> None:
    """Allocate and free one block larger than any chunk.

    Chunks differ in size by a line or so, and glibc's malloc maps a block of their size
    afresh (zeroed pages, a page fault for each) until it has freed one at least as large;
    after that it serves them from its heap and reuses their pages. Doing so from the first
    chunk on saves a third of the system time of reading a large log.
    """
    block = bytes(2 * _CHUNK)
    del block


def _without_ignoreregex(flt: Filter) -> Filter | None:
    """A twin of ``flt`` with no ignoreregex (tells "ignored" from "missed"), if it has any."""
    if not flt.definition.ignoreregex:
        return None
    twin_definition = dataclasses.replace(flt.definition, ignoreregex=())
    return Filter(twin_definition, dates=flt.dates, now=flt.now)


def run_filter(
    flt: Filter, stream: BinaryIO, *, source: str = "<log>", details: bool = True
) -> FilterReport:
    """Feed every line of ``stream`` through ``flt`` in order; count and collect failures.

    ``details``: also count the date formats of the first lines (what the summary for people
    shows; the JSON form has no use for them).

    Raises:
        LogError: reading ``stream`` failed.
    """
    definition = flt.definition
    report = FilterReport(
        filter_name=definition.name,
        filter_files=tuple(definition.files),
        failregex=tuple(r.text for r in definition.failregex),
        ignoreregex=tuple(r.text for r in definition.ignoreregex),
        source=source,
        regex_hits=[0] * len(definition.failregex),
    )
    matcher = LineMatcher(flt)
    scanner = ChunkScanner(matcher, skip_comments=True)
    twin = _without_ignoreregex(flt)
    base = 0  # lines in the chunks before this one
    tested = 0
    try:
        for chunk in _chunks(stream):
            if details and report.date_formats.total() < DATE_SAMPLE_LINES:
                _count_date_formats(report, flt, chunk)
            for hit in scanner.scan(chunk):
                number = base + hit.index + 1
                if hit.failures:
                    report.matched += 1
                    for failure in hit.failures:
                        _add(report, number, hit.text, failure)
                elif twin is not None and twin.match(hit.text) is not None:
                    report.ignored += 1
            base += scanner.lines
            special = scanner.special if scanner.counts_special else _not_log_lines(chunk)
            tested += scanner.lines - special
    except OSError as exc:
        raise LogError(f"cannot read {source}: {exc.strerror or exc}") from None
    report.lines = tested
    return report


def _add(report: FilterReport, number: int, line: str, failure: Failure) -> None:
    host = failure.host or ""
    report.matches.append(Match(number, host, failure.time, failure.regex_index))
    if 0 <= failure.regex_index < len(report.regex_hits):
        report.regex_hits[failure.regex_index] += 1
    if len(report.sample_lines) < SAMPLE_LINES:
        report.sample_lines.append((number, line))


#: A line end followed by a line that is not a log line: a comment, empty, or just "\r".
_NOT_LOG_LINE = re.compile(rb"\n(?=[#\n]|\r(?:\n|\Z))")


def _not_log_lines(chunk: bytes) -> int:
    """How many lines of ``chunk`` are empty or ``#`` comments (not lines of the log)."""
    first = chunk[:1] in (b"#", b"\n") or chunk[:2] == b"\r\n" or chunk == b"\r"
    if _MAYBE_NOT_LOG_LINE is not None and _MAYBE_NOT_LOG_LINE(chunk, 0) is None:
        return int(first)  # the usual case, found three times faster by the native engine
    return len(_NOT_LOG_LINE.findall(chunk)) + first


#: A line end before a line that may not be a log line (``None``: no native engine).
_MAYBE_NOT_LOG_LINE: SpanSearch | None = (
    compile_native(r"\n[\n#\r]") if native_available() else None
)


def _count_date_formats(report: FilterReport, flt: Filter, chunk: bytes) -> None:
    """Count the date formats of the first :data:`DATE_SAMPLE_LINES` lines of the log."""
    for raw in chunk.split(b"\n", DATE_SAMPLE_LINES)[:DATE_SAMPLE_LINES]:
        if report.date_formats.total() >= DATE_SAMPLE_LINES:
            return
        if not not_log_line(raw):
            _count_date_format(report, flt, decode_line(raw))


def _count_date_format(report: FilterReport, flt: Filter, line: str) -> None:
    """Count which date template the first lines use (the first template that matches)."""
    for template in getattr(flt.dates, "templates", ()):
        regex = getattr(template, "regex", None)
        if regex is not None and regex.search(line) is not None:
            report.date_formats[str(getattr(template, "name", regex.pattern))] += 1
            return
    report.date_formats["(no date)"] += 1


def scan_log(spec: str, log_path: str, *, details: bool = True) -> FilterReport:
    """Load filter ``spec`` and run it over the log at ``log_path`` (``-``: standard input).

    ``details``: as for :func:`run_filter`.

    Raises:
        FilterError: the filter cannot be loaded (exit code 78).
        LogError: the log cannot be read (exit code 1).
    """
    flt = open_filter(spec)
    debug = debug_logger(__name__)
    if debug is not None:
        debug.debug("filter %s from %s", flt.name, ", ".join(flt.definition.files))
    stream, source = _open_log(log_path)
    try:
        return run_filter(flt, stream, source=source, details=details)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def json_fast_path(args: list[str]) -> int | None:
    """``cfban test-filter FILTER LOG --json`` without building the command line (its
    imports cost a tenth of a second): the exit code, or ``None`` to let the full command
    line run (other arguments, or an error, which it then reports as usual)."""
    if len(args) != 3 or args.count("--json") != 1:
        return None
    spec, log_path = (arg for arg in args if arg != "--json")
    if any(arg.startswith("-") and arg != "-" for arg in (spec, log_path)):
        return None
    try:
        report = scan_log(spec, log_path, details=False)
    except CfbanError:
        return None  # the full command line reports it, with its exit code
    sys.stdout.write(report.json_text() + "\n")
    sys.stdout.flush()
    return 0
