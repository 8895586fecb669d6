"""The short failregex loop (``_oneline``) gives what fail2ban's full loop gives.

Every stock filter with its sample log and every bundled filter with its samples, line by line
through two matchers of the same filter, one with the short loop and one without: the same
failures (host, time, groups, matched lines, regex index) on every line, and the same
``no failure id`` and ``truncated`` counts. Then the cases the samples may lack: an
ignoreregex that drops a match, a failure without an id, a line without a date.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cfban._resources import filters_dir
from cfban.fail2ban import Filter, FilterDefinition, LineMatcher, RegexSource
from cfban.fail2ban._oneline import OneLine
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

STOCK = stock_with_samples()


def _both(make: object) -> tuple[Filter, Filter]:
    assert callable(make)
    short, full = make(), make()
    full._one_line = None
    return short, full


def _same_on_every_line(short: Filter, full: Filter, lines: list[str]) -> int:
    """Feed ``lines`` to both; assert equal results; the number of failures found."""
    a, b = LineMatcher(short), LineMatcher(full)
    found = 0
    for number, line in enumerate(lines, 1):
        got, expected = a.feed(line), b.feed(line)
        assert got == expected, (short.name, number, line)
        found += len(got)
    assert short.stats == full.stats, short.name
    return found


def _check(name: str, path: Path, search: list[Path]) -> None:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    option_sets = {repr(sorted(filter_options(s.options).items())): filter_options(s.options)
                   for s in read_samples(path, name)} or {"": {}}  # fmt: skip
    with harness_time():
        for options in option_sets.values():
            short, full = _both(lambda o=options: harness_filter(name, o, search_path=search))
            _same_on_every_line(short, full, lines)


@pytest.mark.real
@pytest.mark.parametrize("name", STOCK or ["(no fail2ban)"])
def test_stock_filter_short_loop_equals_full_loop(name: str) -> None:
    if not STOCK:
        pytest.skip("fail2ban's stock filters and samples are not installed")
    _check(name, STOCK_SAMPLES / name, [STOCK_FILTERS])


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_filter_short_loop_equals_full_loop(name: str) -> None:
    _check(name, BUNDLED_SAMPLES / name, [filters_dir(), STOCK_FILTERS])


def test_bundled_access_filters_take_the_short_loop() -> None:
    with harness_time():
        for name in BUNDLED:
            flt = harness_filter(name, {}, search_path=[filters_dir(), STOCK_FILTERS])
            assert OneLine.fits(flt.compiled, maxlines=flt.definition.maxlines), name


EDGE = FilterDefinition(
    name="edge",
    failregex=tuple(
        RegexSource(text, "failregex")
        for text in (
            r"^\s*<HOST> refused user <F-USER>\S+</F-USER>",
            r"^\s*nobody(?: <F-ID>\S+</F-ID>)? from \S+$",
            r"^\s*<HOST> (?:login|auth) failed(?: for <F-ALT_USER>\S+</F-ALT_USER>)?",
        )
    ),
    ignoreregex=(RegexSource(r"^\s*192\.0\.2\.9 ", "ignoreregex"),),
    datepattern="^%Y-%m-%d %H:%M:%S",
)


def test_edge_cases_short_loop_equals_full_loop() -> None:
    def make() -> Filter:
        return Filter(EDGE, now=lambda: 1_796_000_000.0)

    short, full = _both(make)
    assert short._one_line is not None
    lines = [
        "2026-12-03 10:00:00 198.51.100.7 refused user alice",
        "2026-12-03 10:00:01 192.0.2.9 refused user bob",  # dropped by the ignoreregex
        "2026-12-03 10:00:02 nobody from 203.0.113.5",  # a match without a failure id
        "198.51.100.8 login failed for carol",  # no date: the last date seen
        "2026-12-03 10:00:03 2001:DB8::0001 auth failed",  # an address to normalise
        "2026-13-45 10:00:04 198.51.100.9 login failed",  # a date that names no time
        "2026-12-03 10:00:05 ::ffff:198.51.100.10 refused user dave" + " " * 70_000,
    ]
    assert _same_on_every_line(short, full, lines) == 4  # not the line with month 13
    assert short.stats["no failure id"] == 1
