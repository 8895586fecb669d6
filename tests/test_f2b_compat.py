"""Compatibility proof: Debian's stock filters, read and run by cfban, agree with fail2ban's
own annotated sample logs, line by line, under fail2ban's test harness rules (§5.2).

Debian ships the sample logs of its own fail2ban version next to its filters, so filters and
samples are of one generation. As in fail2ban's harness, ``<HOST>`` is compiled with DNS
alternatives and hosts are taken raw (no resolution), the time zone is
``CET-01CEST-02,M3.5.0,M10.5.0`` and "now" is 2005-08-14 10:00 UTC.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfban.fail2ban import Filter, RegexSource
from tests.conftest import require_path
from tests.support.failjson import (
    SampleReport,
    check_samples,
    greedy_before_host,
    harness_filter,
    harness_time,
    read_samples,
)

pytestmark = pytest.mark.real

FILTER_DIR = Path("/etc/fail2ban/filter.d")
SAMPLE_DIR = Path("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs")

#: Stock filters whose samples cfban does not fully agree with, and why.
KNOWN_DIFFERENCES: dict[str, str] = {}


def _stock_filters_with_samples() -> list[str]:
    if not FILTER_DIR.is_dir() or not SAMPLE_DIR.is_dir():
        return ["nginx-bad-request"]  # collected so the test can skip or fail with a reason
    return sorted(
        path.stem
        for path in FILTER_DIR.glob("*.conf")
        if not path.name.endswith("common.conf") and (SAMPLE_DIR / path.stem).is_file()
    )


STOCK_FILTERS = _stock_filters_with_samples()
NGINX_FILTERS = [name for name in STOCK_FILTERS if name.startswith("nginx-")]


def _make_filter(name: str, options: dict[str, str]) -> Filter:
    return harness_filter(name, options, search_path=[FILTER_DIR])


@functools.cache
def _report(name: str) -> SampleReport:
    with harness_time():
        samples = read_samples(SAMPLE_DIR / name, name)
        return check_samples(samples, lambda options: _make_filter(name, options))


@pytest.fixture(autouse=True)
def _needs_fail2ban() -> Iterator[None]:
    require_path(FILTER_DIR, "fail2ban's stock filters (apt-get install fail2ban)")
    require_path(SAMPLE_DIR, "fail2ban's sample logs (apt-get install fail2ban)")
    yield


def test_every_nginx_annotation_agrees() -> None:
    assert NGINX_FILTERS, "no nginx filter with sample logs"
    checked = agreed = 0
    problems: list[str] = []
    for name in NGINX_FILTERS:
        report = _report(name)
        checked += report.checked
        agreed += report.agreed
        problems += [f"{name}: {p}" for p in report.problems]
        problems += [f"{name}: unused {u}" for u in report.unused_regexes()]
    annotations = sum(
        len({(s.path, s.lineno) for s in read_samples(SAMPLE_DIR / name, name) if s.expect})
        for name in NGINX_FILTERS
    )
    print(
        f"nginx samples: {agreed}/{checked} checks agree "
        f"({annotations} failJSON annotations, some checked under several modes)"
    )
    assert checked >= 40  # 42 checks of 36 annotations in Debian 12's fail2ban 1.0.2
    assert not problems, "\n".join(problems)


def test_the_check_notices_disagreement() -> None:
    """The harness is not vacuous: a filter missing its later failregexes must be caught."""

    def crippled(options: dict[str, str]) -> Filter:
        full = _make_filter("nginx-http-auth", options)
        definition = dataclasses.replace(full.definition, failregex=full.definition.failregex[:1])
        return Filter(definition, dates=full.dates, now=full.now)

    with harness_time():
        samples = read_samples(SAMPLE_DIR / "nginx-http-auth", "nginx-http-auth")
        report = check_samples(samples, crippled)
    assert any("not matched, but should match" in p for p in report.problems)
    lax = harness_filter("nginx-http-auth", {}, search_path=[FILTER_DIR])
    lax = Filter(
        dataclasses.replace(
            lax.definition, failregex=(RegexSource(r"^x .* <HOST> y", "failregex"),)
        ),
        dates=lax.dates,
        now=lax.now,
    )
    assert greedy_before_host(lax) == [0]
    assert 0 < report.agreed < report.checked


def _params() -> list[object]:
    params: list[object] = []
    for name in STOCK_FILTERS:
        marks = []
        if name in KNOWN_DIFFERENCES:
            marks.append(pytest.mark.xfail(reason=KNOWN_DIFFERENCES[name], strict=True))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", _params())
def test_stock_filter_agrees_with_its_samples(name: str) -> None:
    report = _report(name)
    assert report.checked > 0
    problems = report.problems + [f"unused {u}" for u in report.unused_regexes()]
    assert not problems, "\n".join(problems[:20])
    with harness_time():
        assert greedy_before_host(_make_filter(name, {})) == []


def test_summary_of_stock_filters() -> None:
    fully = [name for name in STOCK_FILTERS if _agrees(name)]
    lines = sum(_report(name).checked for name in STOCK_FILTERS)
    print(
        f"stock filters agreeing fully with their samples: {len(fully)}/{len(STOCK_FILTERS)} "
        f"({lines} test lines); known differences: {KNOWN_DIFFERENCES or 'none'}"
    )
    assert len(STOCK_FILTERS) >= 80
    assert sorted(set(STOCK_FILTERS) - set(fully)) == sorted(KNOWN_DIFFERENCES)


def _agrees(name: str) -> bool:
    try:
        report = _report(name)
    except Exception:  # a filter cfban cannot load counts as a disagreement
        return False
    return not report.problems and not report.unused_regexes()


def test_load_filter_finds_stock_filters_by_default() -> None:
    from cfban.fail2ban import load_filter
    from cfban.fail2ban._api import SYSTEM_FILTER_DIR, default_search_path

    assert default_search_path()[-1] == SYSTEM_FILTER_DIR
    now = 1_795_000_000.0  # 2026-11-18
    flt = load_filter('nginx-limit-req[ngx_limit_req_zones="one"]', now=lambda: now)
    line = (
        "2026/11/14 22:13:20 [error] 7#7: *9 limiting requests, excess: 5.1 by zone "
        '"{zone}", client: [2001:DB8::9], server: example.com, request: "GET / HTTP/1.1"'
    )
    with harness_time():
        failure = flt.match(line.format(zone="one"))
        assert flt.match(line.format(zone="two")) is None
    assert failure is not None
    assert failure.host == "2001:db8::9"
    assert failure.lines == (line.format(zone="one"),)
    assert failure.time == 1_794_690_800  # 22:13:20 CET (the harness zone) = 21:13:20 UTC
