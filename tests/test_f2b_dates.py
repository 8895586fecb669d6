"""Date detection: datepattern syntax, the default templates, epochs, and fail2ban agreement."""

from __future__ import annotations

import calendar
import json
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfban.errors import FilterError
from cfban.fail2ban._dates import DateDetector
from cfban.fail2ban._datetemplates import DEFAULT_PATTERNS
from cfban.fail2ban._model import DateMatch
from cfban.fail2ban._strptime import plausible_year_regex
from tests.conftest import require_path, require_program

CET = "CET-01CEST-02,M3.5.0,M10.5.0"
NGINX_ACCESS = (
    "{^LN-BEG}%ExY(?P<_sep>[-/.])%m(?P=_sep)%d[T ]%H:%M:%S(?:[.,]%f)?(?:\\s*%z)?\n"
    "^[^\\[]*\\[({DATE})\n"
    "{^LN-BEG}"
)
#: 2026-06-15 12:00:00 UTC: the "now" of most tests (a summer day, CEST in the CET zone).
NOW = float(calendar.timegm((2026, 6, 15, 12, 0, 0)))


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)[:9]))


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the process time zone (``TZ`` + ``tzset``); restored afterwards."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def cet(zone: Callable[[str], None]) -> None:
    zone(CET)


def epoch_of(detector: DateDetector, line: str) -> float | None:
    found = detector.find(line)
    assert found is not None
    return found.epoch


def cut(line: str, found: DateMatch | None) -> str:
    assert found is not None
    return line[: found.start] + line[found.end :]


# --- the default templates -----------------------------------------------------------------

#: One sample per default template (same order), the date text, and its epoch (CET zone).
DEFAULT_SAMPLES: list[tuple[str, str, float]] = [
    (
        "x 2005-01-23T21:59:59.981746+0100 y",
        "2005-01-23T21:59:59.981746+0100",
        utc(2005, 1, 23, 20, 59, 59),
    ),
    (
        "x Sun Jan 23 21:59:59.011 2005 y",
        "Sun Jan 23 21:59:59.011 2005",
        utc(2005, 1, 23, 20, 59, 59),
    ),
    (
        "x Sun Jan 23 2005 21:59:59.011 y",
        "Sun Jan 23 2005 21:59:59.011",
        utc(2005, 1, 23, 20, 59, 59),
    ),
    ("x 23/01/05 21:59:59 y", "23/01/05 21:59:59", utc(2005, 1, 23, 20, 59, 59)),
    (
        "x [31/Oct/2006:09:22:55 -0000] y",
        "31/Oct/2006:09:22:55 -0000",
        utc(2006, 10, 31, 9, 22, 55),
    ),
    ("x 05/20/2008:01:57:39 y", "05/20/2008:01:57:39", utc(2008, 5, 19, 23, 57, 39)),
    ("x 01-27-2012 16:22:44.252 y", "01-27-2012 16:22:44.252", utc(2012, 1, 27, 15, 22, 44)),
    ("1138048799 y", "1138048799", 1138048799.0),
    ("09:15:02 y", "09:15:02", utc(2026, 6, 15, 7, 15, 2)),
    ("<09/16/08@05:03:30> y", "<09/16/08@05:03:30>", utc(2008, 9, 16, 3, 3, 30)),
    ("x 130322 11:46:11 y", "130322 11:46:11", utc(2013, 3, 22, 10, 46, 11)),
    ("x Jul 12, 2011 4:33:30 PM y", "Jul 12, 2011 4:33:30 PM", utc(2011, 7, 12, 14, 33, 30)),
    ("Apr-27-13 02:33:06 y", "Apr-27-13 02:33:06", utc(2013, 4, 27, 0, 33, 6)),
    ("x 20050123T215959 y", "20050123T215959", utc(2005, 1, 23, 20, 59, 59)),
    ("x PDT Apr 16 21:05:29 y", "PDT Apr 16 21:05:29", utc(2026, 4, 17, 4, 5, 29)),
    (
        "x +05:30 Jan 23 21:59:59.011 2005 y",
        "+05:30 Jan 23 21:59:59.011 2005",
        utc(2005, 1, 23, 16, 29, 59),
    ),
    ("x @4000000041f4104f00000000 y", "@4000000041f4104f00000000", float(0x41F4104F)),
]


def test_there_are_seventeen_defaults_and_thirty_one_templates() -> None:
    assert len(DEFAULT_PATTERNS) == len(DEFAULT_SAMPLES) == 17
    detector = DateDetector(None, now=fixed(NOW))
    assert len(detector.templates) == 31
    assert all(t.anchored for t in detector.templates[:14])
    line_begin = DateDetector("{^LN-BEG}", now=fixed(NOW)).templates
    assert len(line_begin) == 17 and all(t.line_begin for t in line_begin)


@pytest.mark.parametrize(("index", "sample"), list(enumerate(DEFAULT_SAMPLES)))
def test_each_default_template_reads_its_sample(
    cet: None, index: int, sample: tuple[str, str, float]
) -> None:
    line, text, epoch = sample
    for pattern in (DEFAULT_PATTERNS[index], None):
        found = DateDetector(pattern, now=fixed(NOW)).find(line)
        assert found is not None, pattern
        assert line[found.start : found.end] == text
        assert found.epoch == epoch


def test_template_14_is_the_1_0_2_form() -> None:
    # 1.0.2 takes no "-" between date and time and no colons in the time
    detector = DateDetector(DEFAULT_PATTERNS[13], logtimezone="UTC", now=fixed(NOW))
    assert detector.find("at 20050123T215959 ok") == DateMatch(3, 18, utc(2005, 1, 23, 21, 59, 59))
    assert detector.find("at 20050123-21:59:59 ok") is None


# --- nginx ----------------------------------------------------------------------------------

ACCESS = '1.2.3.4 - - [20/Jan/2015:19:53:28 +0100] "GET /x HTTP/1.1" 400 150 "-" "-"'


@pytest.mark.parametrize("pattern", [None, NGINX_ACCESS, "^[^\\[]*\\[({DATE})"])
def test_nginx_access_date_is_exact(pattern: str | None) -> None:
    found = DateDetector(pattern, now=fixed(NOW)).find(ACCESS)
    assert found is not None and found.epoch == 1421780008
    assert cut(ACCESS, found) == '1.2.3.4 - - [] "GET /x HTTP/1.1" 400 150 "-" "-"'


def test_bracket_prefix_cuts_only_group_one() -> None:
    line = '1.2.3.4 - - [20/Jan/2015:19:53:28 +0100] "GET"'
    found = DateDetector("^[^\\[]*\\[({DATE})", now=fixed(NOW)).find(line)
    assert cut(line, found) == '1.2.3.4 - - [] "GET"'


def test_nginx_error_log_date_is_local_time(cet: None) -> None:
    detector = DateDetector("{^LN-BEG}", now=fixed(NOW))
    winter = "2015/01/21 10:56:10 [error] 2833#0: *1 no user/password was provided"
    summer = "2015/07/21 10:56:10 [error] 2833#0: *1 no user/password was provided"
    found = detector.find(winter)
    assert found is not None and found.epoch == utc(2015, 1, 21, 9, 56, 10)
    assert cut(winter, found) == " [error] 2833#0: *1 no user/password was provided"
    found = detector.find(summer)
    assert found is not None and found.epoch == utc(2015, 7, 21, 8, 56, 10)


def test_logtimezone_overrides_local_time_but_not_an_explicit_zone(cet: None) -> None:
    detector = DateDetector(None, logtimezone="UTC+0200", now=fixed(NOW))
    assert detector.find("2015/01/21 10:56:10 x") == DateMatch(0, 19, utc(2015, 1, 21, 8, 56, 10))
    assert epoch_of(detector, ACCESS) == 1421780008


def test_tz_argument_gives_the_local_zone(zone: Callable[[str], None]) -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    zone("UTC")
    try:
        paris = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database")
    detector = DateDetector("{^LN-BEG}", tz=paris, now=fixed(NOW))
    found = detector.find("2015/07/21 10:56:10 x")
    assert found is not None and found.epoch == utc(2015, 7, 21, 8, 56, 10)


# --- datepattern syntax ---------------------------------------------------------------------


def test_ln_beg_allows_two_leading_non_word_characters() -> None:
    detector = DateDetector("{^LN-BEG}%ExY-%m-%d %H:%M:%S", logtimezone="UTC", now=fixed(NOW))
    assert detector.find("[-2015-01-21 10:56:10] x") == DateMatch(
        2, 21, utc(2015, 1, 21, 10, 56, 10)
    )
    assert detector.find("[--2015-01-21 10:56:10] x") is None
    assert detector.find("x 2015-01-21 10:56:10") is None


def test_none_gives_an_empty_span_and_no_epoch() -> None:
    detector = DateDetector("{NONE}", now=fixed(NOW))
    assert detector.find("2015-01-21 10:56:10 anything") == DateMatch(0, 0, None)
    assert detector.find("") == DateMatch(0, 0, None)


def test_word_boundaries_are_added_unless_unb_or_stars() -> None:
    bounded = DateDetector("%H:%M:%S", now=fixed(NOW))
    assert bounded.find("x10:56:10") is None
    assert bounded.find("10:56:10x") is None
    assert DateDetector("{UNB}%H:%M:%S", now=fixed(NOW)).find("x10:56:10x") is not None
    assert DateDetector("**%H:%M:%S", now=fixed(NOW)).find("x10:56:10 ") is not None
    assert DateDetector("%H:%M:%S**", now=fixed(NOW)).find(" 10:56:10x") is not None


def test_names_make_the_pattern_case_insensitive() -> None:
    detector = DateDetector("%d/%b/%Y:%H:%M:%S %z", now=fixed(NOW))
    assert detector.find("20/JAN/2015:19:53:28 +0100") is not None
    assert detector.find("20/jan/2015:19:53:28 +0100") is not None


def test_lenient_and_exact_directives(cet: None) -> None:
    lenient = DateDetector("%d.%m.%Y %k:%M:%S", logtimezone="UTC", now=fixed(NOW))
    assert lenient.find(" 5.3.2015  7:05:09") == DateMatch(0, 18, utc(2015, 3, 5, 7, 5, 9))
    exact = DateDetector("%Exd.%Exm.%ExY %ExH:%ExM:%ExS", logtimezone="UTC", now=fixed(NOW))
    assert exact.find("05.03.2015 07:05:09") is not None
    assert exact.find("5.3.2015 7:05:09") is None
    two_digit = DateDetector("%y%Exm%Exd %H:%M:%S.%f", logtimezone="UTC", now=fixed(NOW))
    assert two_digit.find("150305 07:05:09.123456") == DateMatch(0, 22, utc(2015, 3, 5, 7, 5, 9))


@pytest.mark.parametrize(
    ("zone_text", "offset_minutes"),
    [("Z", 0), ("UTC", 0), ("GMT", 0), ("+01", 60), ("-0530", -330), ("+05:45", 345)],
)
def test_numeric_and_named_offsets(zone_text: str, offset_minutes: int) -> None:
    detector = DateDetector("%Y-%m-%d %H:%M:%S %z", now=fixed(NOW))
    found = detector.find(f"2015-01-21 10:56:10 {zone_text}")
    assert found is not None
    assert found.epoch == utc(2015, 1, 21, 10, 56, 10) - offset_minutes * 60


def test_zone_abbreviations_are_fixed_offsets() -> None:
    detector = DateDetector("%Y-%m-%d %H:%M:%S %Z", now=fixed(NOW))
    summer = detector.find("2015-07-21 10:56:10 CET")
    assert summer is not None and summer.epoch == utc(2015, 7, 21, 9, 56, 10)  # no DST
    unknown = detector.find("2015-07-21 10:56:10 XYZ")
    assert unknown == DateMatch(0, 23, None)  # text cut, time unusable
    extended = DateDetector("%Y-%m-%d %H:%M:%S %Exz", now=fixed(NOW))
    found = extended.find("2015-07-21 10:56:10 CET+0100")
    assert found is not None and found.epoch == utc(2015, 7, 21, 8, 56, 10)


def test_impossible_dates_are_cut_without_an_epoch() -> None:
    detector = DateDetector("%Y-%m-%d %H:%M:%S", logtimezone="UTC", now=fixed(NOW))
    assert detector.find("2015-02-30 10:56:10 x") == DateMatch(0, 19, None)
    assert detector.find("2015-02-28 10:56:60 x") == DateMatch(0, 19, None)


def test_look_alike_names_are_cut_without_an_epoch() -> None:
    # "(?i)sep" also matches "ſep" (long s); fail2ban then fails to read the month
    detector = DateDetector(None, now=fixed(NOW))
    assert detector.find("ſep 12 10:00:00 x") == DateMatch(0, 15, None)
    assert detector.find("ſat Jan 12 10:00:00 x") == DateMatch(0, 19, None)


def test_epoch_long_epoch_and_embedded_epoch() -> None:
    assert DateDetector("EPOCH", now=fixed(NOW)).find("1421780008.123 x") == DateMatch(
        0, 14, 1421780008.123
    )
    long = DateDetector("LEPOCH", now=fixed(NOW))
    assert long.find("1421780008123 x") == DateMatch(0, 13, 1421780008.123)
    assert long.find("1421780008123456 x") == DateMatch(0, 16, 1421780008.123456)
    embedded = DateDetector(r"ts={EPOCH}", now=fixed(NOW))
    assert embedded.find("a ts=1421780008 b") == DateMatch(2, 15, 1421780008.0)
    audit = DateDetector(None, now=fixed(NOW)).find("type=X msg=audit(1421780008.123:42): y")
    assert audit == DateMatch(17, 31, 1421780008.123)


def test_plausible_year_window_follows_the_clock() -> None:
    assert plausible_year_regex(2026) == r"(?P<Y>(?:200|201|202)\d)"
    assert plausible_year_regex(2027) == r"(?P<Y>(?:200|201|202|203)\d)"
    in_2026 = DateDetector("%ExY-%m-%d %H:%M:%S", logtimezone="UTC", now=fixed(NOW))
    in_2027 = DateDetector(
        "%ExY-%m-%d %H:%M:%S", logtimezone="UTC", now=fixed(utc(2027, 1, 1, 12, 0, 0))
    )
    assert in_2026.find("2029-01-01 00:00:00") is not None
    assert in_2026.find("2030-01-01 00:00:00") is None
    assert in_2026.find("1999-01-01 00:00:00") is None
    assert in_2027.find("2030-01-01 00:00:00") is not None


def test_missing_year_rolls_back_when_more_than_a_day_ahead(zone: Callable[[str], None]) -> None:
    zone("UTC")
    new_year = utc(2026, 1, 1, 0, 0, 10)
    detector = DateDetector("%b %d %H:%M:%S", now=fixed(new_year))
    assert detector.find("Dec 31 23:59:59 x") == DateMatch(0, 15, utc(2025, 12, 31, 23, 59, 59))
    assert detector.find("Jan 01 00:00:05 x") == DateMatch(0, 15, utc(2026, 1, 1, 0, 0, 5))
    assert detector.find("Jan 02 00:00:09 x") == DateMatch(0, 15, utc(2026, 1, 2, 0, 0, 9))
    assert detector.find("Jan 02 00:00:11 x") == DateMatch(0, 15, utc(2025, 1, 2, 0, 0, 11))


def test_yearless_results_follow_a_moving_clock(zone: Callable[[str], None]) -> None:
    zone("UTC")
    clock = [utc(2026, 12, 31, 23, 0, 0)]
    detector = DateDetector("%b %d %H:%M:%S", now=lambda: clock[0])
    assert detector.find("Dec 31 22:00:00") == DateMatch(0, 15, utc(2026, 12, 31, 22, 0, 0))
    clock[0] = utc(2027, 1, 2, 0, 0, 0)
    assert detector.find("Dec 31 22:00:00") == DateMatch(0, 15, utc(2026, 12, 31, 22, 0, 0))
    assert detector.find("Jan 01 22:00:00") == DateMatch(0, 15, utc(2027, 1, 1, 22, 0, 0))


def test_time_only_is_today_or_yesterday(zone: Callable[[str], None]) -> None:
    zone("UTC")
    detector = DateDetector("{^LN-BEG}%H:%M:%S", now=fixed(NOW))
    assert detector.find("11:59:59 x") == DateMatch(0, 8, utc(2026, 6, 15, 11, 59, 59))
    assert detector.find("12:00:01 x") == DateMatch(0, 8, utc(2026, 6, 14, 12, 0, 1))


def test_twelve_hour_clock() -> None:
    detector = DateDetector("%Y-%m-%d %I:%M:%S %p", logtimezone="UTC", now=fixed(NOW))
    assert epoch_of(detector, "2015-01-21 12:05:00 AM") == utc(2015, 1, 21, 0, 5, 0)
    assert epoch_of(detector, "2015-01-21 12:05:00 pm") == utc(2015, 1, 21, 12, 5, 0)
    assert epoch_of(detector, "2015-01-21 01:05:00 PM") == utc(2015, 1, 21, 13, 5, 0)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("%Y-%m-%q", "unknown or unescaped '%'"), ("%H:%M:%S\n%H:%M:%S", "repeats"), ("(%H", "regex")],
)
def test_bad_datepatterns_are_filter_errors(pattern: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        DateDetector(pattern, now=fixed(NOW))


def test_bad_logtimezone_is_a_filter_error() -> None:
    with pytest.raises(FilterError, match="logtimezone 'Europe/Paris'"):
        DateDetector(None, logtimezone="Europe/Paris", now=fixed(NOW))


def test_default_keyword_adds_nothing_as_in_fail2ban() -> None:
    assert len(DateDetector("{DEFAULT}", now=fixed(NOW)).templates) == 31  # nothing: defaults
    assert len(DateDetector("", now=fixed(NOW)).templates) == 31
    assert len(DateDetector("EPOCH\n{DEFAULT}", now=fixed(NOW)).templates) == 1


def test_templates_of_multi_line_values_keep_their_order() -> None:
    detector = DateDetector(NGINX_ACCESS, now=fixed(NOW))
    assert len(detector.templates) == 35
    assert detector.templates[0].name.startswith("{^LN-BEG}%ExY")
    assert detector.templates[1].name.startswith("^[^\\[]*\\[(%ExY")
    iso = "2015-01-20T19:53:28+01:00 1.2.3.4 GET"
    assert detector.find(iso) == DateMatch(0, 25, 1421780008.0)


# --- the fast path agrees with trying every template ----------------------------------------

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
FULL_MONTHS = (
    "January February March April May June July August September October November December"
).split()
DAYS = "Mon Tue Wed Thu Fri Sat Sun".split()
ZONES = ["+0100", "-0500", "+05:30", "+01", "Z", "UTC", "GMT", "CET", "PST", "XYZ", "utc", "-1200"]
PREFIXES = ["", "", "", " ", "[", "- ", "-- ", "host sshd[42]: ", "1.2.3.4 - - [", "(", "x"]
SUFFIXES = ["", " message", '] "GET / HTTP/1.1" 404 0', ": error", "x", ".123", ",5 rest"]


def generate_lines(seed: int, count: int, year: int) -> list[str]:
    """Log lines with dates in every default format, valid and not, in varied surroundings."""
    rnd = random.Random(seed)
    lines: list[str] = []
    for _ in range(count):
        y = rnd.choice([year, year, year - 1, year + 1, 2005, 2015, 1999, year + 3, year + 4])
        mo = rnd.randint(1, 12)
        odd = rnd.random() < 0.15
        d = rnd.choice([29, 30, 31, 0, 32]) if odd and rnd.random() < 0.5 else rnd.randint(1, 28)
        hour = rnd.choice([24, 29]) if odd and rnd.random() < 0.3 else rnd.randint(0, 23)
        mi = 60 if odd and rnd.random() < 0.3 else rnd.randint(0, 59)
        se = rnd.choice([60, 61]) if odd and rnd.random() < 0.3 else rnd.randint(0, 59)
        dd, hh, mm, ss, yy = f"{d:02d}", f"{hour:02d}", f"{mi:02d}", f"{se:02d}", f"{y % 100:02d}"
        mon = rnd.choice([MONTHS[mo - 1], MONTHS[mo - 1].upper(), FULL_MONTHS[mo - 1]])
        day = rnd.choice(DAYS)
        frac = rnd.choice(["", "", ".123", ",456789"])
        tz = rnd.choice(["", "", " " + rnd.choice(ZONES), rnd.choice(ZONES)])
        sd = rnd.choice([dd, str(d).rjust(2), str(d)])
        k = rnd.choice([hh, str(hour).rjust(2), str(hour)])
        forms = [
            f"{y}-{mo:02d}-{dd} {hh}:{mm}:{ss}{frac}{tz}",
            f"{y}/{mo:02d}/{dd} {hh}:{mm}:{ss}",
            f"{y}.{mo:02d}.{dd}T{hh}:{mm}:{ss}{frac}{tz}",
            f"{mon} {sd} {k}:{mm}:{ss}{frac}",
            f"{day} {mon} {sd} {k}:{mm}:{ss} {y}",
            f"{day} {mon} {sd} {y} {k}:{mm}:{ss}",
            f"{dd}/{mo:02d}/{y} {k}:{mm}:{ss}",
            f"{dd}-{mo:02d}-{yy} {k}:{mm}:{ss}",
            f"{dd}/{mon}/{y}:{hh}:{mm}:{ss}{tz}",
            f"{dd}-{mon}-{y} {hh}:{mm}:{ss}{frac}",
            f"{mo:02d}/{dd}/{y}:{hh}:{mm}:{ss}",
            f"{mo:02d}-{dd}-{y} {k}:{mm}:{ss}{frac}",
            str(rnd.randint(1000000000, 1999999999)) + rnd.choice(["", ".123", ".123456"]),
            str(rnd.randint(1000000000000, 1999999999999)) + rnd.choice(["", "123", ".5"]),
            f"{hh}:{mm}:{ss}",
            f"<{mo:02d}/{dd}/{yy}@{hh}:{mm}:{ss}>",
            f"{yy}{mo:02d}{dd} {hh}:{mm}:{ss}",
            f"{mon} {dd}, {y} {rnd.randint(0, 13)}:{mm}:{ss} {rnd.choice(['AM', 'pm'])}",
            f"{mon}-{dd}-{yy} {k}:{mm}:{ss}",
            f"{y}{mo:02d}{dd}T{hh}{mm}{ss}{frac}{tz}",
            f"{rnd.choice(['PDT', 'CET', 'XYZ', 'Foo'])} {day} {mon} {sd} {k}:{mm}:{ss}",
            f"{rnd.choice(ZONES)} {mon} {sd} {k}:{mm}:{ss} {y}",
            "@4000" + "".join(rnd.choice("0123456789abcdef") for _ in range(20)),
            f"audit({rnd.randint(1000000000, 1999999999)}.{rnd.randint(100, 999)}:42)",
        ]
        line = rnd.choice(PREFIXES) + rnd.choice(forms) + rnd.choice(SUFFIXES)
        if rnd.random() < 0.1:
            line += " also " + rnd.choice(forms)
        lines.append(line)
    return lines


PATTERNS: list[tuple[str | None, str | None]] = [
    (None, None),
    (NGINX_ACCESS, None),
    ("{^LN-BEG}", None),
    (None, "UTC+0200"),
    ("%b %d %H:%M:%S\n{NONE}", None),
    ("{DATE}", None),
    ("%ExY%Exm%Exd\n%H:%M:%S\n(?P<x>a)(\\d+)?", None),
    ("%c\n%Y %j %H:%M\n%y %U %a %H:%M\n%Y %W %A\n{UNB}%d.%m.%Y", "CET"),
    ("^EPOCH\nLEPOCH\n{DEFAULT}\n%x %X %Exz", "GMT-0100"),
    ("%b %d %l:%M %p\n%B %Exd %Exk:%ExM", "Z"),
]
#: Text that case-insensitive or Unicode-aware matching lets through: long s, Kelvin sign,
#: full-width and Arabic-Indic digits.
LOOK_ALIKE_LINES = [
    "ſep 12 10:00:00 x",
    "ſat Jan 12 10:00:00 x",
    "Jan 12 10:00:00 2015 \u212a",
    "\uff11\uff12/Jan/2015:10:00:00 +0100 x",
    "2015-01-\u0661\u0662 10:00:00 x",
    "\u0661\u0664\u0662\u0661\u0667\u0668\u0660\u0660\u0660\u0668 x",
    "\x00\x00Jan 12 10:00:00 x",
]

#: Lines for the rarer directives of the patterns above.
RARE_LINES = [
    "Sun Jan 23 21:59:59 2005 x",
    "2015 032 10:56 x",
    "2015 366 10:56 x",
    "15 05 Tue 10:56 x",
    "2015 00 Monday x",
    "2015 52 Sunday x",
    "21.01.2015 x",
    "01/21/15 10:56:10 CET+0100 x",
    "01/21/15 10:56:10 A x",
    "01/21/15 10:56:10 Q-0130 x",
    "Jan 21  9:56 pm x",
    "January 21 23:56 x",
    "1421780008123456 x",
    "[1421780008] x",
]


@pytest.mark.parametrize(("pattern", "logtimezone"), PATTERNS)
def test_fast_path_agrees_with_the_template_loop(
    cet: None, pattern: str | None, logtimezone: str | None
) -> None:
    detector = DateDetector(pattern, logtimezone=logtimezone, now=fixed(NOW))
    lines = generate_lines(11, 1500, 2026) + RARE_LINES + LOOK_ALIKE_LINES
    assert [detector.find(line) for line in lines] == [
        detector.find_exhaustive(line) for line in lines
    ]
    assert sum(detector.find(line) is not None for line in lines) > 50


DEFAULTS = DateDetector(None, now=fixed(NOW))
NGINX = DateDetector(NGINX_ACCESS, now=fixed(NOW))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789:/-.T +[]@JanFebMarDecMonSunAPMZUTCx\x00 ", max_size=12),
            st.text(alphabet="ſ\u212a\uff11\u0662\u00e9epSatun 01:", max_size=12),
            st.sampled_from([ACCESS, "2015/01/21 10:56:10", "Jan 23 21:59:59", "1421780008.5"]),
        ),
        max_size=6,
    ).map("".join)
)
def test_find_never_raises_and_agrees_on_arbitrary_text(text: str) -> None:
    for detector in (DEFAULTS, NGINX):
        found = detector.find(text)
        assert found == detector.find_exhaustive(text)
        if found is not None:
            assert 0 <= found.start <= found.end <= len(text)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_find_never_raises_on_any_unicode(text: str) -> None:
    for detector in (DEFAULTS, NGINX):
        detector.find(text)


@pytest.mark.parametrize("filler", ["a1 ", "1:2 ", "\x00[", "x" * 7, "Jan 1 "])
def test_long_lines_stay_fast(filler: str) -> None:
    # the nginx datepatterns are all anchored: a megabyte costs next to nothing
    megabyte = (filler * (1_000_000 // len(filler)))[:1_000_000]
    for detector in (NGINX, DateDetector("{^LN-BEG}", now=fixed(NOW))):
        started = time.perf_counter()
        detector.find(megabyte)
        assert time.perf_counter() - started < 1.0
    # unanchored default templates are searched through the line, as in fail2ban: linear,
    # a few microseconds a character; the matcher caps lines at 64 KiB
    capped = megabyte[: 64 * 1024]
    started = time.perf_counter()
    DEFAULTS.find(capped)
    assert time.perf_counter() - started < 5.0


# --- fail2ban itself ------------------------------------------------------------------------

REFERENCE = r"""
import json, sys
from fail2ban.server.mytime import MyTime
from fail2ban.server.datedetector import DateDetector
request = json.load(sys.stdin)
MyTime.setTime(request["now"])
results = []
for line in request["lines"]:
    detector = DateDetector()  # a fresh detector per line: no reordering by hits
    for pattern in filter(None, (p.strip() for p in (request["pattern"] or "").split("\n"))):
        detector.appendTemplate(pattern)
    detector.default_tz = request["logtimezone"]
    match, template = detector.matchTime(line)
    if match is None:
        results.append(None)
        continue
    start, end = match.start(1), match.end(1)
    try:
        date = detector.getTime(line[start:end], (match, template)) if end > start else None
    except Exception:  # an unknown zone abbreviation: fail2ban drops the line
        date = None
    results.append([start, end, float(date[0]) if date else None])
json.dump(results, sys.stdout)
"""


@pytest.mark.real
@pytest.mark.parametrize("tz_name", [CET, "EST+05EDT,M3.2.0,M11.1.0"])
def test_dates_agree_with_fail2ban_1_0_2(zone: Callable[[str], None], tz_name: str) -> None:
    # the interpreter fail2ban runs with (its own script's shebang) can import it
    script = Path(require_program("fail2ban-regex"))
    python = script.read_text(encoding="utf-8").splitlines()[0].removeprefix("#!").split()[0]
    require_path(Path(python), "the Python that runs fail2ban")
    zone(tz_name)
    now = float(int(time.time()))  # fail2ban's %ExY window comes from the real clock
    year = time.localtime(now).tm_year
    lines = generate_lines(7, 400, year) + [
        ACCESS,
        "2015/01/21 10:56:10 [error] 2833#0: *1 x",
        "2026-03-29 02:30:00 in the spring gap",
        "2026-10-25 02:30:00 in the autumn overlap",
        "2026-03-08 02:30:00 x",
        "2026-11-01 01:30:00 x",
        f"Dec 31 23:59:59 {year}",
        "ABC Jan 23 12:00:00 unknown zone",
        *RARE_LINES,
        *LOOK_ALIKE_LINES,
    ]
    compared = 0
    for pattern, logtimezone in PATTERNS:
        request = {"now": now, "pattern": pattern, "logtimezone": logtimezone, "lines": lines}
        completed = subprocess.run(
            [python, "-c", REFERENCE],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        expected = json.loads(completed.stdout)
        detector = DateDetector(pattern, logtimezone=logtimezone, now=fixed(now))
        for line, want in zip(lines, expected, strict=True):
            found = detector.find(line)
            got = None if found is None else [found.start, found.end, found.epoch]
            assert got == want, (pattern, line)
            compared += want is not None and want[2] is not None
    assert compared > 1000
