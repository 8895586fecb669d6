"""The literal prefilter never changes a result: same failures with it and without it.

Unit tests pin what ``required_literals``/``requirements`` may take from a regex (nothing from
optional, alternative, repeated-zero, look-around or case-insensitive parts) and the date-cut
case (a literal that only exists once the date is cut out). Property tests feed generated
lines (fail2ban's sample lines, mutated, with probes and literals spliced in or cut out)
through two matchers, one with the prefilter and one without, for every stock filter that has
a sample log and every bundled filter, and require equal failures, line by line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfban._resources import filters_dir
from cfban.clock import FakeClock
from cfban.fail2ban import (
    Failure,
    Filter,
    FilterDefinition,
    LineMatcher,
    RegexSource,
    decode_line,
    load_filter,
)
from cfban.fail2ban._prefilter import (
    DateCut,
    date_cut,
    probes,
    required_literals,
    requirements,
    uncut_literal,
)
from tests.support.failjson import (
    BUNDLED,
    BUNDLED_SAMPLES,
    STOCK_FILTERS,
    STOCK_SAMPLES,
    Sample,
    filter_options,
    harness_filter,
    harness_time,
    options_key,
    read_samples,
    stock_with_samples,
)

EXTRA_TEXT = [
    "2005-08-14 10:00:00 ",
    "[14/Aug/2005:10:00:01 +0200]",
    "Aug 14 11:59:59 ",
    "1124013600 ",
    " 192.0.2.1 ",
    "[2001:db8::1]",
    "\ufffd",
    "\x00",
    "\n",
]


STOCK = stock_with_samples()
Case = tuple[Filter, Filter, tuple[str, ...]]  # with prefilter, without, sample lines


def _compiled(regex: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(regex, flags)


# --- what may be taken from a regex -------------------------------------------------------


def test_mandatory_literals_are_found_across_groups() -> None:
    literals = required_literals(_compiled(r"^(?P<a>\d+) foo(?:bar) \[x\]"))
    assert " foobar [x]" in literals


def test_optional_alternative_and_repeated_parts_give_no_literal() -> None:
    pattern = _compiled(r"^a(?:opt)?b(?:one|two)c(?:rep)*d(?=look)e(?!neg)f")
    literals = required_literals(pattern)
    for text in ("opt", "one", "two", "rep", "look", "neg"):
        assert not any(text in literal for literal in literals)
    assert set(literals) <= {"a", "b", "c", "d", "e", "f"}


def test_an_alternation_requires_one_of_its_alternatives() -> None:
    assert ("GET", "POST", "HEAD") in requirements(_compiled(r"x (?:GET|POST|HEAD) y"))
    assert requirements(_compiled(r"(?:GET|\d+)")) == []  # one alternative needs no literal


def test_a_repeat_of_at_least_one_keeps_its_literal() -> None:
    assert "abc" in required_literals(_compiled(r"(?:abc\d)+"))
    assert "abc" in required_literals(_compiled(r"(?:abc\d){2,5}"))


def test_case_insensitive_parts_and_newlines_give_no_literal() -> None:
    assert required_literals(_compiled(r"(?i)failed for")) == []
    assert required_literals(_compiled(r"failed for", re.IGNORECASE)) == []
    assert required_literals(_compiled(r"ab(?i:CASE)cd")) == ["ab", "cd"]
    assert all("\n" not in lit for lit in required_literals(_compiled(r"one\ntwo$")))


def test_probes_cover_every_place_a_date_can_be_cut() -> None:
    literal = "said hello  world"
    head, tail = probes(literal)
    for cut in range(1, len(literal)):
        before, after = literal[:cut], literal[cut:]
        raw = "x" + before + "2005-08-14 10:00:00" + after + "x"
        assert head in raw or tail in raw


def test_what_a_date_template_tells_of_the_text_before_the_date() -> None:
    assert date_cut(_compiled(r"^[^\[]*\[(\d+)")) == DateCut(frozenset("["), None)
    assert date_cut(_compiled(r"^(?:\W{0,2})?(\d+)")) == DateCut(None, 2)
    assert date_cut(_compiled(r"^(\d+)")) == DateCut(None, 0)
    assert date_cut(_compiled(r"(?=^|\b|\W)(\d+)")) == DateCut(None, None)
    assert date_cut(_compiled(r"(?i)^x(\d+)")) == DateCut(None, 1)  # X, x, and look-alikes


def test_a_literal_is_used_alone_only_where_no_cut_can_split_it() -> None:
    bracket = [DateCut(frozenset("["), None)]
    line_start = [DateCut(None, 2)]
    regex = _compiled(r"^\S+ said \[\] (?:a|b) hello world")
    assert uncut_literal(regex, bracket) == " hello world"  # " said [] " holds a "["
    assert uncut_literal(regex, line_start) == " hello world"
    assert uncut_literal(_compiled(r"^\S+ said \[\]"), line_start) is None  # may start at 1
    assert uncut_literal(_compiled(r"^\S\S+ said \[\]"), line_start) == " said []"
    assert uncut_literal(_compiled(r"\S\S+ said \[\]"), line_start) == " said []"
    assert uncut_literal(_compiled(r"^\(\( abc \d+"), line_start) is None
    assert uncut_literal(regex, [DateCut(None, None)]) is None


# --- the date cut and the last-date rule --------------------------------------------------


def _definition(failregex: str, datepattern: str | None = None) -> FilterDefinition:
    return FilterDefinition(
        name="t", failregex=(RegexSource(failregex, "failregex"),), datepattern=datepattern
    )


def _pair(definition: FilterDefinition, now: float) -> tuple[Filter, Filter]:
    clock = FakeClock(now)
    on, off = Filter(definition, now=clock.now), Filter(definition, now=clock.now)
    off.prefilter = None
    return on, off


def test_a_literal_that_spans_the_date_cut_still_matches() -> None:
    definition = _definition(r"^<HOST> said hello  world$")
    on, off = _pair(definition, 1124013600.0)
    assert on.prefilter is not None
    line = "192.0.2.7 said hello 2005-08-14 10:00:00 world"
    assert "hello  world" not in line
    expected = off.match(line)
    assert expected is not None and expected.host == "192.0.2.7"
    assert on.match(line) == expected
    assert LineMatcher(on).feed(line) == LineMatcher(off).feed(line)


def test_literals_next_to_a_cut_date_still_match() -> None:
    cases = [  # (failregex, datepattern, line)
        (r"^<HOST> x\[\]y$", r"^[^\[]*\[({DATE})", "192.0.2.1 x[14/Aug/2005:10:00:00 +0200]y"),
        (r"^\(\( abc <HOST>$", r"{^LN-BEG}", "((2005-08-14 10:00:00 abc 192.0.2.1"),
        (r"^\(\( abc <HOST>$", None, "((2005-08-14 10:00:00 abc 192.0.2.1"),
    ]
    for failregex, datepattern, line in cases:
        on, off = _pair(_definition(failregex, datepattern), 1124013600.0)
        expected = off.match(line)
        assert expected is not None and expected.host == "192.0.2.1", (failregex, datepattern)
        assert on.match(line) == expected
        assert LineMatcher(on).feed(line) == LineMatcher(off).feed(line)


def test_a_dateless_line_takes_the_date_of_a_skipped_line() -> None:
    definition = _definition(r"^fail from <HOST>$")
    now = 1124013600.0 + 30  # the dated lines are under 60 s old
    on, off = _pair(definition, now)
    lines = [
        "2005-08-14 10:00:00 noise",
        "2005-08-14 10:00:05 more noise",
        "not a date at all",
        "fail from 192.0.2.9",
    ]
    results = []
    for flt in (on, off):
        matcher = LineMatcher(flt)
        results.append([matcher.feed(line) for line in lines])
    assert results[0] == results[1]
    (failure,) = results[0][-1]
    assert failure.time == off.dates.find("2005-08-14 10:00:05 x").epoch  # type: ignore[union-attr]
    assert failure.lines == ("2005-08-14 10:00:05fail from 192.0.2.9",)


def test_many_skipped_lines_keep_the_last_date() -> None:
    definition = _definition(r"^fail from <HOST>$")
    now = 1124013600.0 + 30
    on, off = _pair(definition, now)
    lines = ["2005-08-14 10:00:01 noise"] + ["no date here"] * 3000 + ["fail from 192.0.2.9"]
    results = []
    for flt in (on, off):
        matcher = LineMatcher(flt)
        results.append([matcher.feed(line) for line in lines][-1])
        assert matcher.last_date == off.dates.find(lines[0]).epoch  # type: ignore[union-attr]
    assert results[0] == results[1] and results[0]


def test_feed_raw_equals_feed_of_the_decoded_line() -> None:
    flt = load_filter("nginx-botsearch")
    raws = [
        b'192.0.2.1 - - [14/Aug/2005:10:00:00 +0200] "GET /wp-login.php HTTP/1.1" 404 12 "-" "x"',
        b'192.0.2.2 - - [14/Aug/2005:10:00:00 +0200] "GET / HTTP/1.1" 200 12 "-" "x"\r',
        b"\x00\x00junk \xff\xfe \x00 404 \r",
        b"",
    ]
    via_raw, via_text = LineMatcher(flt), LineMatcher(load_filter("nginx-botsearch"))
    for raw in raws:
        result = via_raw.feed_raw(raw)
        expected = via_text.feed(decode_line(raw))
        assert (result[1] if result is not None else []) == expected
        if result is not None:
            assert result[0] == decode_line(raw)
    assert via_raw.last_date == via_text.last_date


# --- every stock filter with samples and every bundled filter ------------------------------


@functools.cache
def _stock_cases(name: str) -> list[Case]:
    samples = read_samples(STOCK_SAMPLES / name, name)
    return _cases(samples, lambda opts: harness_filter(name, opts, search_path=[STOCK_FILTERS]))


@functools.cache
def _bundled_cases(name: str) -> list[Case]:
    path = BUNDLED_SAMPLES / name
    samples = read_samples(path, name) if path.is_file() else []
    cases = _cases(samples, lambda opts: harness_filter(name, opts, search_path=[filters_dir()]))
    return cases or _cases([], lambda opts: load_filter(name))


def _cases(samples: list[Sample], make: Callable[[dict[str, str]], Filter]) -> list[Case]:
    by_options: dict[str, tuple[dict[str, str], list[str]]] = {}
    for sample in samples:
        key = options_key(sample.options)
        by_options.setdefault(key, (filter_options(sample.options), []))[1].append(sample.line)
    if not by_options:
        by_options[""] = ({}, ["no sample"])
    cases = []
    for options, lines in by_options.values():
        on, off = make(options), make(options)
        off.prefilter = None
        cases.append((on, off, tuple(lines)))
    return cases


def _lines_strategy(cases: list[Case]) -> st.SearchStrategy[list[str]]:
    lines = sorted({line for _, _, sample in cases for line in sample})
    pieces = sorted(
        {p for on, _, _ in cases if on.prefilter for p in on.prefilter.any_of}
        | {
            lit
            for on, _, _ in cases
            for r in on.compiled.failregex
            for lit in required_literals(r.pattern)
        }
        | set(EXTRA_TEXT)
    )
    base = st.sampled_from(lines)
    piece = st.sampled_from(pieces) | st.text(max_size=6)

    @st.composite
    def mutated(draw: st.DrawFn) -> str:
        line = draw(base)
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(line)))
            j = draw(st.integers(i, min(len(line), i + 12)))
            if draw(st.booleans()):
                line = line[:i] + line[j:]  # cut a piece out (maybe a literal)
            else:
                line = line[:i] + draw(piece) + line[j:]  # splice one in
        return line

    return st.lists(base | mutated() | piece, min_size=1, max_size=6)


def _same_results(cases: list[Case], data: st.DataObject) -> None:
    on, off, _ = data.draw(st.sampled_from(cases))
    check_all = data.draw(st.booleans())
    lines = data.draw(_lines_strategy(cases))
    with_prefilter, without = LineMatcher(on), LineMatcher(off)
    for line in lines:
        got: list[Failure] = with_prefilter.feed(line, check_all=check_all)
        want = without.feed(line, check_all=check_all)
        assert got == want, line
        assert on.match(line) == off.match(line), line


@pytest.mark.skipif(not STOCK, reason="fail2ban's stock filters and samples are not installed")
@pytest.mark.parametrize("name", STOCK)
def test_stock_filter_gives_the_same_failures_with_and_without_prefilter(name: str) -> None:
    with harness_time():
        cases = _stock_cases(name)

        @settings(max_examples=12, deadline=None, derandomize=True, database=None)
        @given(st.data())
        def check(data: st.DataObject) -> None:
            _same_results(cases, data)

        check()


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_filter_gives_the_same_failures_with_and_without_prefilter(name: str) -> None:
    with harness_time():
        cases = _bundled_cases(name)
        assert all(on.prefilter is not None for on, _, _ in cases)

        @settings(max_examples=60, deadline=None, derandomize=True, database=None)
        @given(st.data())
        def check(data: st.DataObject) -> None:
            _same_results(cases, data)

        check()


@pytest.mark.skipif(not STOCK, reason="fail2ban's stock filters and samples are not installed")
def test_most_stock_filters_get_a_prefilter() -> None:
    with harness_time():
        have = [name for name in STOCK if any(on.prefilter for on, _, _ in _stock_cases(name))]
    assert len(have) >= len(STOCK) // 2, sorted(set(STOCK) - set(have))
