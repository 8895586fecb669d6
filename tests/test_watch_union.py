"""One candidate search for all the jails on a file gives each jail what its own search gives.

``SharedSearch`` (``cfban.fail2ban._union``) searches a chunk once for the chains of several
filters, then sorts the lines found among them. These tests hold it against each filter's own
``PatternFinder`` on the same chunks (the same candidate lines), and the daemon's batches with
the shared search against each jail alone and against the plain engine line by line (the same
failures, hosts and times, in the same order), on a generated access log like the benchmark's
and on edge cases: lines outside ASCII or with NUL, lines without a date, comment and empty
lines, CRLF, over-long lines, a last line without a line end.
"""

from __future__ import annotations

import collections
import importlib
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from cfban._resources import filters_dir
from cfban.fail2ban import LineMatcher
from cfban.fail2ban._candidates import CandidateFinder, PatternFinder, finder_for
from cfban.fail2ban._engines import native_available
from cfban.fail2ban._scan import ChunkScanner
from cfban.fail2ban._union import SharedSearch, shareable
from cfban.watch._pipeline import lines_before
from cfban.watch._scan import BatchScanner
from tests.support.failjson import harness_filter, harness_time

pytestmark = pytest.mark.skipif(not native_available(), reason="google-re2 is not installed")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "samples"
STOCK = Path("/etc/fail2ban/filter.d")
#: Stock filters without a native finder (literal probes; several lines at once).
STOCK_OTHER = [str(STOCK / "openhab.conf"), str(STOCK / "mongodb-auth.conf")]


@dataclass(frozen=True)
class Log:
    """A kind of log, the jails that read it and how its lines lose their date."""

    bundled: list[str]
    stock: list[str]
    generator: str
    date: re.Pattern[bytes]


LOGS = {
    "access": Log(
        ["nginx-4xx", "nginx-bad-request", "nginx-botsearch", "nginx-probes"],
        ["nginx-botsearch", "nginx-bad-request"],
        "gen_access_log",
        re.compile(rb"\[[^]]*\] "),
    ),
    "error": Log(
        ["nginx-http-auth", "nginx-forbidden", "nginx-limit-req"],
        ["nginx-http-auth", "nginx-limit-req"],
        "gen_error_log",
        re.compile(rb"^[0-9/]+ [0-9:]+ "),
    ),
}

Failures = list[tuple[int, int, list[tuple[str | None, float | None]]]]


def _generated(log: Log, count: int) -> list[bytes]:
    """Lines of the benchmark's generator (the same mix as the benchmark's logs)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        generator = importlib.import_module(log.generator)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    if log.generator == "gen_access_log":
        made = generator.Generator(7, "combined", 0.08, 20, 600, False).lines(count)
    else:
        rng, counts = random.Random(7), collections.Counter[str]()
        made = [generator.line(rng, 1795478400 + n // 4, n, counts) for n in range(count)]
    return [line.encode() for line in made]


def _edge_lines(log: Log, lines: Sequence[bytes]) -> list[bytes]:
    """Odd lines made from real ones: the kinds a finder treats apart."""
    rng = random.Random(5)
    picked = rng.sample(list(lines), 60)
    odd: list[bytes] = []
    for raw in picked[:10]:  # outside ASCII, inside and after what the filters look at
        odd.append(raw + " é".encode())
        cut = raw.rindex(b'"') if b'"' in raw else len(raw)  # in the last quoted field
        odd.append(raw[:cut] + " «é» \udcff".encode(errors="surrogateescape") + raw[cut:])
    odd += [raw.replace(b" ", b"\x00", 1) for raw in picked[10:15]]  # NUL
    odd += [log.date.sub(b"", raw, count=1) for raw in picked[15:45]]  # the last date seen
    odd += [b"#" + raw for raw in picked[45:50]]  # comments
    odd += [raw + b"\r" for raw in picked[50:55]]  # CRLF
    odd += [raw + b"x" * 70_000 for raw in picked[55:57]]  # over-long
    odd += [b"", b"\xff\xfe not text", b"#", b"\x00", b"\r"]
    return odd


def _lines(log: Log) -> list[bytes]:
    rng = random.Random(11)
    lines = _generated(log, 3000)
    samples = [
        raw
        for name in log.bundled
        for raw in (SAMPLES / name).read_bytes().split(b"\n")
        if raw and not raw.startswith(b"#")
    ]
    lines += samples
    odd = _edge_lines(log, samples + rng.sample(lines, 30))  # the samples mostly match
    for raw in odd:  # among the others, so that dates before them count
        lines.insert(rng.randrange(len(lines)), raw)
    return lines


def _names(log: Log, *, stock: bool = True, other: bool = False) -> list[str]:
    names = list(log.bundled)
    if stock and STOCK.is_dir():
        names += [str(STOCK / f"{name}.conf") for name in log.stock]
        if other:
            names += STOCK_OTHER
    return names


def _matchers(names: Sequence[str]) -> list[LineMatcher]:
    search_path = [filters_dir(), STOCK]
    return [LineMatcher(harness_filter(name, {}, search_path=search_path)) for name in names]


def _batches(lines: Sequence[bytes], seed: int) -> list[list[bytes]]:
    sizes = random.Random(seed)
    out: list[list[bytes]] = []
    base = 0
    while base < len(lines):
        out.append(list(lines[base : base + sizes.choice([1, 2, 7, 40, 300, 2000])]))
        base += len(out[-1])
    return out


def _chunk(batch: Sequence[bytes]) -> bytes:
    return b"\n".join(batch) + b"\n"


@pytest.mark.parametrize("kind", sorted(LOGS))
def test_shared_search_gives_each_filter_the_lines_of_its_own_search(kind: str) -> None:
    log = LOGS[kind]
    lines = _lines(log)
    with harness_time():
        finders = [finder_for(m.filter) for m in _matchers(_names(log))]
        assert all(shareable(finder) for finder in finders)
        search = SharedSearch([f for f in finders if isinstance(f, PatternFinder)])
        search.tune(_chunk(lines[:2000]))
        assert search.source is not None and search.source.count("(?:") >= len(finders)
        looked = 0
        for batch in _batches(lines, 3):
            chunk = _chunk(batch)
            for position, starts in enumerate(search.split(chunk)):
                assert starts == list(search.members[position].line_starts(chunk))
                looked += len(starts)
            assert search.split(chunk[:-1]) == search.split(chunk)  # no final line end
    assert looked > 400


def _plain(matchers: Sequence[LineMatcher], lines: Sequence[bytes]) -> Failures:
    """Every line to every matcher in turn, as the per-line loop did."""
    found: Failures = []
    for index, raw in enumerate(lines):
        for position, matcher in enumerate(matchers):
            result = matcher.feed_raw(raw)
            if result is not None and result[1]:
                found.append((index, position, [(f.host, f.time) for f in result[1]]))
    return found


def _alone(
    matchers: Sequence[LineMatcher],
    batches: Sequence[Sequence[bytes]],
    finders: Sequence[CandidateFinder | None],
) -> Failures:
    """Each matcher's own chunk scanner with its own finder, batch by batch."""
    scanners = [
        ChunkScanner(matcher, finder=finder, count_lines=False)
        for matcher, finder in zip(matchers, finders, strict=True)
    ]
    found: Failures = []
    base = 0
    for batch in batches:
        chunk = _chunk(batch)
        hits = [
            (base + lines_before(batch, hit.offset), position, hit.failures)
            for position, scanner in enumerate(scanners)
            for hit in scanner.scan(chunk)
            if hit.failures
        ]
        hits.sort(key=lambda hit: (hit[0], hit[1]))
        found += [(line, jail, [(f.host, f.time) for f in fs]) for line, jail, fs in hits]
        base += len(batch)
    return found


def _together(
    matchers: Sequence[LineMatcher], batches: Sequence[Sequence[bytes]], *, shared: bool
) -> tuple[Failures, list[CandidateFinder | None]]:
    """The daemon's batches: one shared search (or, with ``shared`` false, the members'
    own searches behind it); and each jail's own finder, with the chains it chose."""
    scanner = BatchScanner()
    group = scanner.group(matchers)
    assert group.shared is not None
    group.shared.tune(_chunk([raw for batch in batches for raw in batch][:2000]))
    assert group.shared.shared is not None
    group.shared.shared = shared
    found: Failures = []
    base = 0
    for batch in batches:
        for item in scanner.scan(matchers, batch):
            line = base + lines_before(batch, item.at)
            found.append((line, item.jail, [(f.host, f.time) for f in item.failures]))
        assert scanner.bad_lines == []
        base += len(batch)
    own = [getattr(s.finder, "own", s.finder) for s in group.scanners]
    return found, own


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
@pytest.mark.parametrize("other", [False, True], ids=["nginx", "with-other-finders"])
@pytest.mark.parametrize("kind", sorted(LOGS))
def test_batches_find_what_each_jail_finds_alone(kind: str, shared: bool, other: bool) -> None:
    log = LOGS[kind]
    names = _names(log, other=other)
    lines = _lines(log)
    batches = _batches(lines, 4)
    with harness_time():
        expected = _plain(_matchers(names), lines)
        together, finders = _together(_matchers(names), batches, shared=shared)
        # the same chains (chosen on the first chunk, by timing) for the jails alone
        assert all(isinstance(f, PatternFinder) for f in finders[: len(finders) - 2 * other])
        alone = _alone(_matchers(names), batches, finders)
    assert {jail for _, jail, _ in together} >= set(range(len(log.bundled)))
    assert len(together) > 200
    assert any(not lines[line].isascii() for line, _, _ in together)
    assert together == alone
    if kind != "access":  # undated failing lines take the last date seen
        assert any(not log.date.search(lines[line]) for line, _, _ in together)
    assert alone == expected


def test_the_group_shares_only_native_finders() -> None:
    log = LOGS["access"]
    names = _names(log, other=True)
    if len(names) == len(log.bundled):
        pytest.skip("fail2ban's stock filters are not installed")
    with harness_time():
        group = BatchScanner().group(_matchers(names))
    assert group.shared is not None
    assert len(group.shared.members) == len(log.bundled) + len(log.stock)
    assert [type(s.finder).__name__ for s in group.scanners[-2:]] == ["LiteralFinder", "NoneType"]


def test_one_native_jail_keeps_its_own_finder() -> None:
    with harness_time():
        group = BatchScanner().group(_matchers(["nginx-botsearch"]))
    assert group.shared is None
    assert isinstance(group.scanners[0].finder, PatternFinder)


def test_the_first_large_chunk_decides_and_the_last_is_not_kept() -> None:
    log = LOGS["access"]
    lines = _generated(log, 4000)
    with harness_time():
        matchers = _matchers(log.bundled)
        scanner = BatchScanner()
        group = scanner.group(matchers)
        assert group.shared is not None
        for raw in lines[:3]:  # a live log's batches: too small to tell, shared meanwhile
            scanner.scan(matchers, [raw])
            assert group.shared.shared is True and not group.shared._decided
        scanner.scan(matchers, lines[3:])
    assert group.shared.shared is not None and group.shared._decided
    assert group.shared._chunk is None and group.shared._starts == []


def test_regex_hints_name_every_failregex_that_can_match_a_line() -> None:
    """For a filter with several failregexes, the shared search says which of them can match
    each line (their chains are in it): every failregex that matches the line (date cut out)
    is among them, and on lines outside ASCII it says nothing."""
    log = LOGS["access"]
    lines = _lines(log)
    chunk = _chunk(lines)
    with harness_time():
        matchers = _matchers(_names(log))
        group = BatchScanner().group(matchers)
        assert group.shared is not None
        group.shared.tune(chunk[: 1 << 18])
        group.shared.shared = True
        checked = narrowed = 0
        for matcher, scanner in zip(matchers, group.scanners, strict=True):
            finder = scanner.finder
            assert finder is not None
            starts = list(finder.line_starts(chunk))
            hints = finder.regex_hints(chunk)
            regexes = matcher.filter.compiled.failregex
            if len(regexes) == 1:
                assert not hints
                continue
            assert hints is not None and set(hints) <= set(starts)
            for start, only in hints.items():
                line = chunk[start : chunk.index(b"\n", start)]
                assert line.isascii() and b"\x00" not in line
                text = line.decode()
                found = matcher.filter.dates.find(text)
                if found is None:
                    continue
                cut = text[: found.start] + text[found.end :] + "\n"
                matching = {i for i, r in enumerate(regexes) if r.pattern.search(cut)}
                assert matching <= set(only), (matcher.filter, text)
                checked += 1
                narrowed += len(only) < len(regexes)
    assert checked > 200 and narrowed > 100
