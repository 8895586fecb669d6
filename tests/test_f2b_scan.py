"""The chunk scanner finds exactly what the plain engine finds: same lines, hosts, times.

The plain engine is ``LineMatcher.feed_raw`` on every line with the full failregex loop; the
scanner
(``cfban.fail2ban._scan``) looks only at the candidate lines its finder returns. Both run over
every stock fail2ban filter with its own sample log and over every bundled filter with its
samples, with each finder (native chain, literal probes), in one chunk and cut into small
chunks, with and without comment lines; then over hypothesis-made lines.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfban._resources import filters_dir
from cfban.fail2ban import Filter, FilterDefinition, LineMatcher, RegexSource
from cfban.fail2ban._candidates import CandidateFinder, LiteralFinder, finder_for, pattern_finder
from cfban.fail2ban._engines import native_available
from cfban.fail2ban._scan import ChunkScanner, split_chunks
from tests.support.failjson import (
    BUNDLED,
    BUNDLED_SAMPLES,
    STOCK_FILTERS,
    STOCK_SAMPLES,
    filter_options,
    harness_filter,
    harness_time,
    read_samples,
    stock_with_samples,
)

Found = list[tuple[int, list[tuple[str | None, float | None, int]]]]


STOCK = stock_with_samples()


def _special(raw: bytes) -> bool:
    return not raw or raw[0] == 0x23 or raw == b"\r"


def plain(flt: Filter, data: bytes, *, skip_comments: bool) -> Found:
    """What ``feed_raw`` line by line finds with fail2ban's full failregex loop (not the
    short one of ``_oneline``): (line index, [(host, time, regex)])."""
    flt._one_line = None
    matcher = LineMatcher(flt)
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    found: Found = []
    for index, raw in enumerate(lines):
        if skip_comments and _special(raw):
            continue
        result = matcher.feed_raw(raw)
        if result is not None and result[1]:
            found.append((index, [(f.host, f.time, f.regex_index) for f in result[1]]))
    return found


def _cut(data: bytes, every: int) -> Iterator[bytes]:
    if every <= 0:
        yield data
        return
    lines = data.split(b"\n")
    tail = lines.pop()
    for start in range(0, len(lines), every):
        yield b"".join(line + b"\n" for line in lines[start : start + every])
    if tail:
        yield tail


def scanned(
    flt: Filter,
    data: bytes,
    *,
    skip_comments: bool,
    finder: CandidateFinder | None,
    every: int = 0,
) -> Found:
    """What the scanner finds, the log cut into chunks of ``every`` lines (0: one chunk)."""
    scanner = ChunkScanner(LineMatcher(flt), skip_comments=skip_comments, finder=finder)
    found: Found = []
    base = 0
    for chunk in _cut(data, every):
        hits = scanner.scan(chunk)
        if skip_comments and scanner.counts_special:
            lines = chunk.split(b"\n")
            if chunk.endswith(b"\n"):
                lines.pop()
            assert scanner.special == sum(map(_special, lines)), chunk
            assert scanner.lines == len(lines)
        for hit in hits:
            if hit.failures:
                found.append(
                    (base + hit.index, [(f.host, f.time, f.regex_index) for f in hit.failures])
                )
        base += scanner.lines
    return found


def finders(flt: Filter) -> dict[str, CandidateFinder | None]:
    """Every way of finding candidates that applies to ``flt``."""
    out: dict[str, CandidateFinder | None] = {"default": finder_for(flt)}
    native = pattern_finder(flt) if not flt._multiline else None
    if native is not None:
        out["native"] = native
    python = pattern_finder(flt, native=False) if not flt._multiline else None
    if python is not None:
        out["python re"] = python
    out["without re2"] = finder_for(flt, native=False)
    prefilter = flt.prefilter
    if prefilter is not None and prefilter.plain_text_safe:
        for label, group in (("required", prefilter.required), ("any_of", prefilter.any_of)):
            if group:
                out[label] = LiteralFinder(p.encode() for p in group)
    return out


def _option_sets(path: Path, name: str) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for sample in read_samples(path, name):
        options = filter_options(sample.options)
        seen.setdefault(repr(sorted(options.items())), options)
    return list(seen.values()) or [{}]


def _check(make: Any, name: str, data: bytes, option_sets: Sequence[dict[str, str]]) -> None:
    for options in option_sets:
        flt = make(options)
        for skip_comments in (True, False):
            expected = plain(make(options), data, skip_comments=skip_comments)
            for label, finder in finders(flt).items():
                for every in (0, 5):
                    flt = make(options)
                    got = scanned(
                        flt,
                        data,
                        skip_comments=skip_comments,
                        finder=finders(flt)[label],
                        every=every,
                    )
                    assert got == expected, (name, options, label, every, skip_comments, finder)


@pytest.mark.real
@pytest.mark.parametrize("name", STOCK or ["(no fail2ban)"])
def test_stock_filter_scan_equals_plain_engine(name: str) -> None:
    if not STOCK:
        pytest.skip("fail2ban's stock filters and samples are not installed")
    path = STOCK_SAMPLES / name
    with harness_time():
        _check(
            lambda o: harness_filter(name, o, search_path=[STOCK_FILTERS]),
            name,
            path.read_bytes(),
            _option_sets(path, name),
        )


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_filter_scan_equals_plain_engine(name: str) -> None:
    path = BUNDLED_SAMPLES / name
    search = [filters_dir(), STOCK_FILTERS]
    with harness_time():
        _check(
            lambda o: harness_filter(name, o, search_path=search),
            name,
            path.read_bytes(),
            _option_sets(path, name),
        )


def test_native_finder_is_used_where_installed() -> None:
    with harness_time():
        flt = harness_filter("nginx-probes", {}, search_path=[filters_dir()])
    if native_available():
        assert pattern_finder(flt) is not None
        assert type(finder_for(flt)).__name__ == "PatternFinder"
    assert type(finder_for(flt, native=False)).__name__ in (
        "Cheapest",
        "LiteralFinder",
        "PatternFinder",
    )


def test_split_chunks_keeps_every_byte_and_cuts_at_line_ends() -> None:
    blocks = [b"a\nb", b"c\n", b"", b"d", b"\ne\nf"]
    chunks = list(split_chunks(iter(blocks)))
    assert b"".join(chunks) == b"".join(blocks)
    assert all(c.endswith(b"\n") for c in chunks[:-1])
    assert chunks[-1] == b"f"


# -- hypothesis: lines made from the samples, mutated -------------------------------------


@functools.cache
def _sample_lines() -> list[bytes]:
    lines: list[bytes] = []
    for name in BUNDLED:
        lines += [
            raw
            for raw in (BUNDLED_SAMPLES / name).read_bytes().split(b"\n")
            if raw and not raw.startswith(b"#")
        ]
    return lines


_NOISE = st.sampled_from(
    [b"[", b"]", b'"', b" ", b"\x00", b"\r", b"\xc3\xa9", b"\xff", b"404", b"/.env", b"-", b"::1"]
)


@st.composite
def _line(draw: st.DrawFn) -> bytes:
    lines = _sample_lines()
    raw = draw(st.sampled_from(lines))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(raw)))
        if draw(st.booleans()):
            raw = raw[:at] + draw(_NOISE) + raw[at:]
        else:
            raw = raw[:at] + raw[at + draw(st.integers(1, 8)) :]
    return raw


@functools.cache
def _bundled(name: str) -> tuple[Filter, dict[str, CandidateFinder | None]]:
    with harness_time():
        flt = harness_filter(name, {}, search_path=[filters_dir()])
    return flt, finders(flt)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_line() | st.binary(max_size=40), min_size=1, max_size=40), cut=st.integers(0, 5)
)
def test_scan_equals_plain_engine_on_made_up_lines(lines: list[bytes], cut: int) -> None:
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n"
    for name in BUNDLED:
        flt, ways = _bundled(name)
        with harness_time():
            expected = plain(flt, data, skip_comments=True)
            for label, finder in ways.items():
                got = scanned(flt, data, skip_comments=True, finder=finder, every=cut)
                assert got == expected, (name, label)


def test_mapped_chunks_cut_at_line_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cfban import testfilter

    monkeypatch.setattr(testfilter, "_CHUNK", 16)
    data = b"short\n" + b"x" * 40 + b"\nab\ncd\n" + b"tail without end"
    path = tmp_path / "log"
    path.write_bytes(data)
    with path.open("rb") as stream:
        chunks = list(testfilter._chunks(stream))
    assert b"".join(chunks) == data
    assert all(chunk.endswith(b"\n") for chunk in chunks[:-1])
    assert any(len(chunk) > 16 for chunk in chunks)  # the long line stays whole
    with path.open("rb") as stream:
        assert sum(map(len, testfilter._chunks(stream))) == stream.tell() == len(data)


@pytest.mark.parametrize("chunk", [64, 700, 1 << 20])
def test_reports_are_the_same_from_a_file_and_a_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Line numbers and counts whatever the chunk size, from a mapped file or a stream, with
    comments, empty lines, a line longer than a chunk and a last line without its end."""
    import io

    from cfban import testfilter

    monkeypatch.setattr(testfilter, "_CHUNK", chunk)
    sample = (BUNDLED_SAMPLES / "nginx-http-auth").read_bytes()
    long_line = b"2026/11/25 01:39:52 [error] 1#1: *1 " + b"x" * 900 + b", client: 192.0.2.9"
    data = b"\n\n# note\n" + sample + b"\r\n" + long_line + b"\n\n" + sample.rstrip(b"\n")
    path = tmp_path / "error.log"
    path.write_bytes(data)

    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    flt = testfilter.open_filter("nginx-http-auth")
    with path.open("rb") as stream:
        mapped = testfilter.run_filter(flt, stream)
    flt = testfilter.open_filter("nginx-http-auth")
    piped = testfilter.run_filter(flt, Pipe(data))
    assert mapped.json_text() == piped.json_text()
    assert mapped.matched > 2 and mapped.matches[-1].line == data.count(b"\n") + 1
    assert mapped.lines == sum(1 for raw in data.split(b"\n") if not _special(raw))


@settings(max_examples=300, deadline=None)
@given(text=st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,4}){2,4}\Z") | st.ip_addresses(v=4).map(str))
def test_plain_ipv4_shortcut_equals_ipaddress(text: str) -> None:
    import ipaddress

    from cfban.fail2ban._search import normalize_host

    try:
        expected = str(ipaddress.ip_address(text))
    except ValueError:
        expected = text
    assert normalize_host.__wrapped__(text) == expected


_DATES = st.datetimes(  # a summer of CET/CEST, both switches included
    min_value=datetime.datetime(2024, 3, 30), max_value=datetime.datetime(2024, 11, 2)
)


@settings(max_examples=300, deadline=None)
@given(moments=st.lists(_DATES, min_size=1, max_size=30), zone=st.sampled_from(["", " +0200"]))
def test_minute_cache_gives_the_parse_of_every_date(moments: list[Any], zone: str) -> None:
    from cfban.fail2ban._dates import _UNSEEN, DateDetector

    with harness_time():
        cached = DateDetector(None)
        plain = DateDetector(None)
        plain._same_minute = lambda *args: _UNSEEN  # type: ignore[method-assign]
        for moment in moments:
            for shape in ("%Y/%m/%d %H:%M:%S", "[%d/%b/%Y:%H:%M:%S"):
                line = moment.strftime(shape) + zone + " client 192.0.2.1"
                got, want = cached.find(line), plain.find(line)
                assert (got and got.epoch) == (want and want.epoch), line


def test_json_fast_path_prints_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from cfban.cli import app
    from cfban.testfilter import json_fast_path

    log = str(BUNDLED_SAMPLES / "nginx-4xx")
    assert json_fast_path(["nginx-4xx", log, "--json"]) == 0
    fast = capsys.readouterr().out
    slow = CliRunner().invoke(app, ["test-filter", "nginx-4xx", log, "--json"])
    assert slow.exit_code == 0
    assert fast == slow.stdout and '"matched":' in fast
    assert json_fast_path(["no-such-filter", log, "--json"]) is None  # errors: the full CLI
    assert json_fast_path(["nginx-4xx", log]) is None
    assert json_fast_path(["-v", "nginx-4xx", log]) is None


def test_json_text_is_what_json_dumps_writes() -> None:
    """The hand-written JSON of the fast path, byte for byte ``json.dumps``'s, also for
    addresses and times it must escape or spell out."""
    import json

    from cfban.testfilter import FilterReport, Match

    report = FilterReport("f", (), (), (), "<log>", lines=9, matched=7, ignored=1)
    hosts = ["192.0.2.1", "2001:db8::1", 'a"b', "c\\d", "\u00e9x", "tab\there", "\x7f", ""]
    times: list[float | None] = [1795570792.0, 1795570792.25, None, 1e20, 0.1, float("inf")]
    times += [float("nan"), -3.0]
    report.matches = [
        Match(number, host, when, 0)
        for number, (host, when) in enumerate(zip(hosts, times, strict=True), start=1)
    ]
    report.matches.append(Match(99, "192.0.2.1", 5.5, 1))  # an address seen before
    want = json.dumps(report.to_json(), separators=(",", ":"))
    assert report.json_text() == want
    empty = FilterReport("f", (), (), (), "<log>")
    assert empty.json_text() == json.dumps(empty.to_json(), separators=(",", ":"))


@pytest.mark.real
@pytest.mark.parametrize("name", [*STOCK, *(f"bundled:{n}" for n in BUNDLED)] or ["(none)"])
def test_every_chain_variant_finds_every_matching_line(name: str) -> None:
    """Whatever variant the tuning picks, no line the regex matches can be missed."""
    if not native_available() or name == "(none)":
        pytest.skip("google-re2 is not installed")
    import re2

    bundled = name.startswith("bundled:")
    stem = name.removeprefix("bundled:")
    path = (BUNDLED_SAMPLES if bundled else STOCK_SAMPLES) / stem
    search = [filters_dir(), STOCK_FILTERS] if bundled else [STOCK_FILTERS]
    with harness_time():
        for options in _option_sets(path, stem):
            flt = harness_filter(stem, options, search_path=search)
            finder = pattern_finder(flt)
            if finder is None:
                continue
            matcher = LineMatcher(flt)
            for raw in path.read_bytes().split(b"\n"):
                result = None if _special(raw) else matcher.feed_raw(raw)
                if result is None or not raw.isascii() or b"\x00" in raw:
                    continue
                for failure in result[1]:
                    for text in finder.options[failure.regex_index]:
                        assert re2.compile(text.encode()).search(raw), (stem, text, raw)


def test_skipped_lines_after_a_settle_still_give_the_last_date() -> None:
    """A candidate without a date settles the skipped lines before it; the lines skipped
    after that must still reach the matcher (a later dateless candidate takes their date)."""
    definition = FilterDefinition(
        name="dateless",
        failregex=(RegexSource(r"^\s*bad <HOST>", "failregex"),),
        datepattern="^%Y-%m-%d %H:%M:%S",
        logtimezone="UTC",
    )
    lines = [b"2026-12-03 10:00:00 ok", b"bad 192.0.2.1", b"2026-12-03 11:00:00 ok"]
    data = b"\n".join([*lines, b"bad 192.0.2.2"]) + b"\n"

    def make() -> Filter:
        return Filter(definition, now=lambda: 1_796_295_630.0)  # 2026-12-03 11:00:30 UTC

    expected = plain(make(), data, skip_comments=False)
    assert expected[-1] == (3, [("192.0.2.2", 1_796_295_600.0, 0)])
    got = scanned(make(), data, skip_comments=False, finder=LiteralFinder([b"bad"]))
    assert got == expected
