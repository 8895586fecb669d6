"""The per-line pipeline (fail2ban-format.md §2.4-2.7), with hand-built filters and dates."""

from __future__ import annotations

import calendar
import re
import time

from cfban.fail2ban import DateMatch, Filter, FilterDefinition, LineMatcher, RegexSource
from cfban.fail2ban._filter import MAX_LINE_CHARS, decode_line
from cfban.fail2ban._search import normalize_host

NOW = 1_421_780_000.0  # 2015-01-20 18:53:20 UTC
_ERROR_DATE = re.compile(r"^(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)")
_ACCESS_DATE = re.compile(r"^[^\[]*\[(\d\d)/Jan/(\d{4}):(\d\d):(\d\d):(\d\d) \+0000\]")


class StubDates:
    """Two date shapes, read as UTC: ``2015/01/20 19:53:28`` and ``[20/Jan/2015:19:53:28 +0000]``.

    Like fail2ban, the error-log date is cut whole and only the inside of the access-log
    brackets is cut. ``NONE`` at the line start stands for a ``{NONE}`` template.
    """

    def find(self, line: str) -> DateMatch | None:
        if line.startswith("NONE"):
            return DateMatch(0, 0, None)
        found = _ERROR_DATE.match(line)
        if found:
            y, mo, d, h, mi, s = (int(g) for g in found.groups())
            return DateMatch(0, found.end(), calendar.timegm((y, mo, d, h, mi, s)))
        found = _ACCESS_DATE.match(line)
        if found:
            d, y, h, mi, s = (int(g) for g in found.groups())
            end = found.end() - 1
            return DateMatch(end - 26, end, calendar.timegm((y, 1, d, h, mi, s)))
        return None


def make(*failregex: str, now: float = NOW, **kwargs: object) -> Filter:
    ignore = kwargs.pop("ignoreregex", ())
    pref = kwargs.pop("prefregex", None)
    definition = FilterDefinition(
        name="demo",
        failregex=tuple(RegexSource(r, "failregex") for r in failregex),
        ignoreregex=tuple(RegexSource(r, "ignoreregex") for r in ignore),  # type: ignore[attr-defined]
        prefregex=RegexSource(pref, "prefregex") if pref else None,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    return Filter(definition, dates=StubDates(), now=lambda: now)


ACCESS = '192.0.2.7 - - [20/Jan/2015:19:53:28 +0000] "GET /x HTTP/1.1" 400 0 "-" "-"'
ERROR = (
    "2015/01/20 19:53:28 [error] 2833#0: *1 limiting requests, excess: 1.0 by zone "
    '"one", client: 192.0.2.8, server: example.com, request: "GET / HTTP/1.1"'
)


def test_date_text_is_cut_without_placeholder() -> None:
    access = make(r'^<HOST> - \S+ \[\] "[^"]*" 400 ')
    failure = access.match(ACCESS)
    assert failure is not None
    assert failure.host == "192.0.2.7"
    assert failure.time == calendar.timegm((2015, 1, 20, 19, 53, 28))
    assert failure.lines == (ACCESS,)  # the original line, date included
    error = make(r"^\s\[error\] \d+#\d+: \*\d+ limiting requests, .*client: <HOST>,")
    assert error.match(ERROR) is not None
    assert make(r"^\[error\].*client: <HOST>,").match(ERROR) is None  # leading space kept


def test_buffer_ends_with_newline() -> None:
    assert make(r"client: <HOST>$").match("client: 192.0.2.1") is not None
    assert make(r"client: <HOST>\Z").match("client: 192.0.2.1") is None
    assert make(r"client: <HOST>\n\Z").match("client: 192.0.2.1") is not None


def test_search_not_match_and_first_regex_wins() -> None:
    flt = make(r"from <HOST>", r"user \w+ from <HOST>")
    failure = flt.match("x user bob from 192.0.2.1")
    assert failure is not None
    assert failure.regex_index == 0
    assert [f.regex_index for f in flt.all_matches("x user bob from 192.0.2.1")] == [0, 1]


def test_no_date_gives_no_time_and_none_template_gives_now() -> None:
    flt = make(r"from <HOST>")
    no_date = flt.match("from 192.0.2.1")
    assert no_date is not None
    assert no_date.time is None
    none = flt.match("NONE from 192.0.2.1")
    assert none is not None
    assert none.time == NOW


PREF = r"^\s\[error\] \d+#\d+: \*\d+ <F-CONTENT>.+</F-CONTENT>, client: <ADDR>, server: \S+$"
AUTH_LINE = (
    '2015/01/20 19:53:28 [error] 1#0: *2 user "bob" was not found, client: 192.0.2.9, server: s'
)


def test_prefregex_content_narrows_the_buffer_and_groups_merge() -> None:
    flt = make(r'^user "<F-USER>[^"]+</F-USER>" was not found$', prefregex=PREF)
    failure = flt.match(AUTH_LINE)
    assert failure is not None
    assert failure.host == "192.0.2.9"
    assert failure.groups["user"] == "bob"
    assert "content" not in failure.groups
    # failregexes see only the content: a regex for the client part no longer matches
    assert make(r"client: <ADDR>", prefregex=PREF).match(AUTH_LINE) is None
    assert make(r"^x", prefregex=PREF).match("no prefix here") is None


def test_failregex_none_does_not_erase_prefregex_groups() -> None:
    pref = r"^<F-USER>\w+</F-USER> <F-CONTENT>.+</F-CONTENT>$"
    flt = make(r"^(?:as <F-USER>\w+</F-USER> )?from <HOST>$", prefregex=pref)
    failure = flt.match("amy from 192.0.2.1")
    assert failure is not None
    assert failure.groups["user"] == "amy"
    failure = flt.match("amy as bob from 192.0.2.1")
    assert failure is not None
    assert failure.groups["user"] == "bob"


def test_ignoreregex_precheck_only_with_few_ignoreregexes() -> None:
    ignore = [r"client: 192\.0\.2\.9"]
    regexes = [r'^user "<F-USER>[^"]+</F-USER>" was not found$', r"^a$", r"^b$", r"^c$"]
    two = make(*regexes[:2], prefregex=PREF, ignoreregex=ignore)
    four = make(*regexes, prefregex=PREF, ignoreregex=ignore)
    assert two.match(AUTH_LINE) is not None  # post-check sees only the content
    assert four.match(AUTH_LINE) is None  # pre-check on the whole line


def test_ignoreregex_post_check() -> None:
    flt = make(r"from <HOST>", ignoreregex=[r"from 192\.0\.2\.1\b"])
    assert flt.match("from 192.0.2.1") is None
    assert flt.match("from 192.0.2.10") is not None


def test_host_normalisation() -> None:
    flt = make(r"from <HOST> ")
    cases = {
        "::ffff:192.0.2.1": "192.0.2.1",
        "[2001:DB8::0:1]": "2001:db8::1",
        "2001:db8:0:0:0:0:0:1": "2001:db8::1",
        "999.1.1.1": "999.1.1.1",
        "010.001.002.003": "010.001.002.003",
    }
    for raw, host in cases.items():
        failure = flt.match(f"from {raw} x")
        assert failure is not None, raw
        assert failure.host == host
    assert normalize_host("::ffff:10.0.0.1") == "10.0.0.1"
    assert normalize_host("192.0.2.77", "24") == "192.0.2.0/24"
    assert normalize_host("host.example") == "host.example"


def test_failure_id_rules() -> None:
    fid = make(r"session <F-ID>\S+</F-ID> from <HOST>")
    failure = fid.match("session abc from 192.0.2.1")
    assert failure is not None
    assert failure.host == "abc"
    assert failure.groups["ip"] == "192.0.2.1"
    same = fid.match("session 192.0.2.1 from 192.0.2.1")
    assert same is not None
    assert same.host == "192.0.2.1"
    assert "ip" not in same.groups
    dns = make(r"from <DNS>$")
    named = dns.match("from bad.example")
    assert named is None  # usedns=no: names are never failures
    literal = dns.match("from 192.0.2.3")
    assert literal is not None
    assert literal.host == "192.0.2.3"
    raw = make(r"from <HOST>$", usedns="raw").match("from bad.example")
    assert raw is not None
    assert raw.host == "bad.example"


def test_nofail_and_alt_user() -> None:
    flt = make(
        r"^ok <F-NOFAIL>login</F-NOFAIL> from <HOST>$",
        r"^bad (?:<F-USER>\w+</F-USER>|as <F-ALT_USER_1>\w+</F-ALT_USER_1>) from <HOST>$",
        r"^odd <F-ALT_USER1>\w+</F-ALT_USER1> from <HOST>$",
    )
    assert flt.match("ok login from 192.0.2.1") is None
    assert flt.all_matches("ok login from 192.0.2.1")[0].groups["nofail"] == "login"
    failure = flt.match("bad as eve from 192.0.2.1")
    assert failure is not None
    assert failure.groups["user"] == "eve"
    # as in fail2ban, only a "_N" suffix is dropped: alt_user1 stands in for "user1"
    odd = flt.match("odd joe from 192.0.2.1")
    assert odd is not None
    assert odd.groups["user1"] == "joe"
    assert "user" not in odd.groups


def test_line_matcher_reuses_a_recent_date() -> None:
    dated = "2015/01/20 18:53:00 from 192.0.2.1"
    stateful = LineMatcher(make(r"from <HOST>"))
    first = stateful.feed(dated)
    second = stateful.feed("from 192.0.2.2")
    assert [f.time for f in first + second] == [NOW - 20, NOW - 20]
    stale = LineMatcher(make(r"from <HOST>", now=NOW + 61))
    stale.feed(dated)
    assert [f.time for f in stale.feed("from 192.0.2.2")] == [None]


def test_maxlines_buffer_and_skiplines() -> None:
    flt = make(r"^conn \d+ from <HOST><SKIPLINES>^conn \d+ auth failed$", maxlines=5)
    matcher = LineMatcher(flt)
    assert matcher.feed("conn 1 from 192.0.2.1") == []
    assert matcher.feed("noise") == []
    found = matcher.feed("conn 1 auth failed")
    assert [f.host for f in found] == ["192.0.2.1"]
    assert found[0].lines == ("conn 1 from 192.0.2.1", "conn 1 auth failed")
    assert [line[2] for line in matcher.buffer] == ["noise"]  # skipped lines stay


def test_mlfid_sessions_merge_lines() -> None:
    flt = make(
        r"^\[<F-MLFID>\d+</F-MLFID>\] <F-NOFAIL>connect</F-NOFAIL> from <ADDR>$",
        r"^\[<F-MLFID>\d+</F-MLFID>\] bad password for <F-USER>\w+</F-USER>$",
        r"^\[<F-MLFID>\d+</F-MLFID>\] <F-NOFAIL><F-MLFFORGET>closed</F-MLFFORGET></F-NOFAIL>$",
    )
    matcher = LineMatcher(flt)
    assert matcher.feed("[7] connect from 192.0.2.5") == []
    failures = matcher.feed("[7] bad password for root")
    assert [(f.host, f.groups["user"]) for f in failures] == [("192.0.2.5", "root")]
    assert len(failures[0].lines) == 2  # the session's lines count as its attempts
    assert matcher.feed("[7] closed") == []
    assert "7" not in matcher.sessions
    assert matcher.feed("[8] bad password for root") == []  # id still unknown: pending
    # several users in one session: fail2ban no longer takes the close as "no failure"
    matcher.feed("[9] connect from 192.0.2.6")
    matcher.feed("[9] bad password for root")
    again = matcher.feed("[9] bad password for admin")
    assert again[0].groups["users"] == "admin\nroot"
    assert [f.host for f in matcher.feed("[9] closed")] == ["192.0.2.6"]


def test_decode_line() -> None:
    assert decode_line(b"caf\xc3\xa9 \xff\xfe ok\r\n") == "caf\u00e9 \ufffd\ufffd ok"
    assert decode_line(b"\x00\x00from 1.2.3.4\x00\n") == "from 1.2.3.4"
    assert decode_line(b"a\x00b") == "a\ufffdb"


def test_long_lines_are_truncated_and_counted() -> None:
    flt = make(r"^<HOST> x")
    long_line = "192.0.2.1 x " + "a" * (2 * MAX_LINE_CHARS)
    started = time.perf_counter()
    failure = flt.match(long_line)
    assert time.perf_counter() - started < 1.0
    assert failure is not None
    assert len(failure.lines[0]) == MAX_LINE_CHARS
    assert flt.stats["truncated"] == 1
