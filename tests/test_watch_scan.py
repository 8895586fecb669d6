"""The daemon's one pass per file finds what each jail's per-line matching finds, in order."""

from __future__ import annotations

import gc
import random
from collections.abc import Callable
from pathlib import Path

from cfban._resources import filters_dir
from cfban.clock import FakeClock
from cfban.config import load_settings
from cfban.fail2ban import DateMatch, LineMatcher
from cfban.realip import GuardStats, Resolver, load_ranges
from cfban.watch._jails import JailRuntime, build_jails
from cfban.watch._metrics import Metrics
from cfban.watch._pipeline import Pipeline, lines_before
from cfban.watch._scan import BatchScanner
from tests.support.failjson import harness_filter, harness_time

SAMPLES = Path(__file__).resolve().parent / "samples"
ACCESS = ["nginx-4xx", "nginx-bad-request", "nginx-botsearch", "nginx-probes"]


def _lines() -> list[bytes]:
    lines: list[bytes] = []
    for name in [*ACCESS, "nginx-forbidden", "nginx-http-auth"]:
        lines += [
            raw
            for raw in (SAMPLES / name).read_bytes().split(b"\n")
            if raw and not raw.startswith(b"#")
        ]
    random.Random(7).shuffle(lines)
    return lines + [b"", b"\xff\xfe not text", b"x" * 70_000]


def _matchers() -> list[LineMatcher]:
    with harness_time():
        return [
            LineMatcher(harness_filter(name, {}, search_path=[filters_dir()])) for name in ACCESS
        ]


def test_one_pass_equals_each_jail_line_by_line() -> None:
    lines = _lines()
    expected: list[tuple[int, int, list[tuple[str | None, float | None]]]] = []
    with harness_time():
        plain = _matchers()
        for index, raw in enumerate(lines):
            for position, matcher in enumerate(plain):
                result = matcher.feed_raw(raw)
                if result is not None and result[1]:
                    expected.append((index, position, [(f.host, f.time) for f in result[1]]))
        scanner = BatchScanner()
        matchers = _matchers()
        got: list[tuple[int, int, list[tuple[str | None, float | None]]]] = []
        base = 0
        sizes = random.Random(3)
        while base < len(lines):
            batch = lines[base : base + sizes.randint(1, 40)]
            for found in scanner.scan(matchers, batch):
                line = base + lines_before(batch, found.at)
                got.append((line, found.jail, [(f.host, f.time) for f in found.failures]))
            base += len(batch)
    assert len(expected) > 50
    assert {position for _, position, _ in expected} == set(range(len(ACCESS)))
    assert got == expected


def test_empty_batch_finds_nothing() -> None:
    assert BatchScanner().scan(_matchers(), []) == []


def _pipeline(tmp_path: Path) -> tuple[Pipeline, list[JailRuntime]]:
    conf = tmp_path / "cfban.toml"
    conf.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[realip]\nallow_test_nets = true\n'
        + "".join(
            f'[jails.{name}]\nfilter = "{name}"\nlogpath = ["{tmp_path / "access.log"}"]\n'
            'maxretry = 2\nfindtime = "1d"\nbantime = "1h"\n'
            for name in ACCESS
        ),
        encoding="utf-8",
    )
    settings = load_settings(conf, env={})
    ranges = load_ranges(settings)
    clock = FakeClock(1795478400.0)
    jails = build_jails(settings, now=clock.now, ranges=ranges, stats=GuardStats())
    return Pipeline(Resolver.from_settings(settings, ranges), Metrics()), jails


def test_process_lines_decides_what_process_decides(tmp_path: Path) -> None:
    lines = _lines()
    lines += [line.replace(b"203.0.113.", b"127.0.0.") for line in lines[:60]]  # refused
    one, one_jails = _pipeline(tmp_path)
    expected = [
        (d.jail, d.decision.address)
        for raw in lines
        for jail in one_jails
        for d in one.process(jail, raw, live=False)
    ]
    many, many_jails = _pipeline(tmp_path)
    got = [
        (d.jail, d.decision.address)
        for start in range(0, len(lines), 25)
        for d in many.process_lines(many_jails, lines[start : start + 25], live=False, source="x")
    ]
    assert expected and got == expected
    assert many.metrics.failures == one.metrics.failures
    assert many.metrics.refused == one.metrics.refused and one.metrics.refused.total() > 0


def test_refused_failures_leave_no_garbage_cycles(tmp_path: Path) -> None:
    """A refusal is counted, not raised: a raised one's traceback would hold the batch's
    frame, and so the whole batch, until the cyclic collector ran."""
    lines = [line.replace(b"203.0.113.", b"127.0.0.") for line in _lines()]
    many, jails = _pipeline(tmp_path)
    many.process_lines(jails, lines, live=False, source="x")  # first use: caches, tuning
    before = sum(many.metrics.refused.values())
    gc.collect()
    gc.disable()
    try:
        for start in range(0, len(lines), 25):
            many.process_lines(jails, lines[start : start + 25], live=False, source="x")
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert sum(many.metrics.refused.values()) - before > 50


def _date_finds(jails: list[JailRuntime]) -> list[int]:
    """Count the date detections of every jail's filter from now on (one counter for all)."""
    calls = [0]
    for jail in jails:
        detector = jail.matcher.filter.dates
        find = detector.find

        def counted(line: str, find: Callable[[str], DateMatch | None] = find) -> DateMatch | None:
            calls[0] += 1
            return find(line)

        detector.find = counted  # type: ignore[method-assign]
    return calls


def test_jails_that_date_lines_alike_decode_and_date_each_line_once(tmp_path: Path) -> None:
    lines = _lines()
    (tmp_path / "shared").mkdir()
    (tmp_path / "alone").mkdir()
    shared, jails = _pipeline(tmp_path / "shared")
    assert len({jail.matcher.filter.date_key for jail in jails}) == 1  # one clock, one pattern
    calls = _date_finds(jails)
    decided = shared.process_lines(jails, lines, live=False, source="access.log")
    alone, others = _pipeline(tmp_path / "alone")
    for jail in others:
        jail.matcher.filter.date_key = None  # nothing shared
    calls_alone = _date_finds(others)
    assert alone.process_lines(others, lines, live=False, source="access.log") == decided
    assert len(decided) > 5
    assert 0 < calls[0] < calls_alone[0] * 0.8
