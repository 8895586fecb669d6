"""cfban's bundled filters (``filters/``) against their annotated sample logs (``tests/samples``).

Each sample log is in fail2ban's ``# failJSON:`` format and is checked under fail2ban's test
harness rules (fail2ban-format.md §5.2): every annotated line matches or not as annotated,
with the expected host, time and groups; no line is matched by two failregexes; every
failregex of every option set is hit by at least one sample. A second set of tests runs the
real ``fail2ban-regex`` over the same files and requires the same counts as cfban's engine,
and a third proves no regex backtracks badly on 1 MB hostile lines.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hypothesis
import pytest
from hypothesis import strategies as st

from cfban._resources import filters_dir
from cfban.fail2ban import Filter, load_filter
from cfban.testfilter import open_filter, run_filter
from tests.conftest import require_program
from tests.support.failjson import (
    SampleReport,
    check_samples,
    filter_options,
    harness_time,
    read_samples,
)

ROOT = Path(__file__).resolve().parent.parent
FILTERS = filters_dir()
SAMPLES = Path(__file__).resolve().parent / "samples"
BUNDLED = sorted(p.stem for p in FILTERS.glob("*.conf") if not p.stem.endswith("-common"))
ACCESS_FILTERS = ["nginx-4xx", "nginx-bad-request", "nginx-botsearch", "nginx-probes"]

#: The fewest annotated test lines each sample log must keep (a guard against lost samples).
MIN_SAMPLES = {
    "nginx-4xx": 20,
    "nginx-bad-request": 12,
    "nginx-botsearch": 15,
    "nginx-forbidden": 5,
    "nginx-http-auth": 30,
    "nginx-limit-req": 18,
    "nginx-probes": 40,
}


def _spec(name: str, options: dict[str, str]) -> str:
    if not options:
        return name
    return name + "[" + ", ".join(f"{k}={json.dumps(v)}" for k, v in options.items()) + "]"


def _harness_filter(name: str, options: dict[str, str]) -> Filter:
    # Every sample date has a year, so "now" only decides the window of plausible years
    # (%ExY): fail2ban takes it from the real clock, so do we.
    return load_filter(_spec(name, options), search_path=[FILTERS])


@functools.cache
def _report(name: str) -> SampleReport:
    with harness_time():
        samples = read_samples(SAMPLES / name, name)
        return check_samples(samples, lambda options: _harness_filter(name, options))


def test_the_bundle() -> None:
    assert BUNDLED == sorted(MIN_SAMPLES)
    assert {p.name for p in FILTERS.glob("cfban-*-common.conf")} == {
        "cfban-access-common.conf",
        "cfban-error-common.conf",
    }


@pytest.mark.parametrize("name", BUNDLED)
def test_samples_agree(name: str) -> None:
    report = _report(name)
    assert report.checked >= MIN_SAMPLES[name]
    assert not report.problems, "\n".join(report.problems)
    assert not report.unused_regexes(), report.unused_regexes()


@pytest.mark.parametrize("name", BUNDLED)
def test_samples_have_near_misses(name: str) -> None:
    samples = read_samples(SAMPLES / name, name)
    misses = [s for s in samples if not s.must_match]
    assert len(misses) >= 2, "every filter needs lines that must not match"


@pytest.mark.parametrize("name", ACCESS_FILTERS)
def test_access_filters_read_both_formats(name: str) -> None:
    """Each access-log filter has matching samples in combined and in cfban's format."""
    samples = [s for s in read_samples(SAMPLES / name, name) if s.must_match]
    cfban_format = [s for s in samples if " peer=" in s.line]
    assert cfban_format and len(cfban_format) < len(samples)
    assert any(s.expect and "cfip" in s.expect for s in cfban_format)


def test_cfban_format_groups() -> None:
    """PEER, CFIP and XFF carry the raw fields, whatever the client put in the headers."""
    flt = load_filter("nginx-4xx", search_path=[FILTERS])
    line = (
        '2001:db8::7 - - [25/Nov/2026:02:39:52 +0100] "GET /x HTTP/1.1" 404 153 "-" "-" '
        'peer=2400:cb00:1::2 cf="junk, 192.0.2.1 \\x22 x" xff="198.51.100.1, 10.0.0.1"'
    )
    failure = flt.match(line)
    assert failure is not None
    assert failure.host == "2001:db8::7"
    assert failure.groups["peer"] == "2400:cb00:1::2"
    assert failure.groups["cfip"] == "junk, 192.0.2.1 \\x22 x"
    assert failure.groups["xff"] == "198.51.100.1, 10.0.0.1"
    combined = flt.match('192.0.2.9 - - [25/Nov/2026:02:39:52 +0100] "GET /x HTTP/1.1" 404 1')
    assert combined is not None
    assert combined.host == "192.0.2.9"
    assert "peer" not in combined.groups


def _option_sets(name: str) -> list[dict[str, str]]:
    sets: dict[str, dict[str, str]] = {}
    for sample in read_samples(SAMPLES / name, name):
        options = filter_options(sample.options)
        sets[json.dumps(options, sort_keys=True)] = options
    return list(sets.values())


# --- no catastrophic backtracking ------------------------------------------------------

_MB = 1 << 20


def _hostile_lines() -> list[str]:
    """Lines of about 1 MB built to make a careless regex backtrack."""
    access = '192.0.2.1 - - [] "GET /'
    error = " [error] 1#1: *1 "
    fake_client = ', client: 192.0.2.1, server: s, request: "GET / HTTP/1.1", host: "h'
    return [
        access + "../" * (_MB // 3),
        access + "%2e%2e" * (_MB // 6) + ' HTTP/1.1" 404',
        access + "union+" * (_MB // 6),
        access + "'+or+" * (_MB // 5) + '" 200 1',
        access + ";" * _MB,
        access + "/wp-login.php" * (_MB // 13) + '" 404 1 "-" "-" peer=',
        "192.0.2.1 - " + " " * _MB + '[] "GET / HTTP/1.1" 404 1',
        '192.0.2.1 - - [] "GET / HTTP/1.1" 404 1 "-" "-" peer=x cf="' + '"' * _MB,
        error + 'user "' + '": password mismatch' + fake_client * (_MB // 70),
        error + 'open() "' + '" failed (2: No such file or directory)' + fake_client * 9000,
        error + "limiting requests, excess: " + "1" * _MB,
        "1" * _MB,
        "[" * _MB,
    ]


def _compiled_regexes(name: str) -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for options in _option_sets(name):
        flt = load_filter(_spec(name, options), search_path=[FILTERS])
        compiled = flt.compiled
        for regex in (*compiled.failregex, *compiled.ignoreregex):
            out.append((f"{_spec(name, options)}: {regex.source.text[:60]}", regex.pattern))
    return out


@pytest.mark.parametrize("name", BUNDLED)
def test_no_catastrophic_backtracking(name: str) -> None:
    hostile = _hostile_lines()
    slowest = 0.0
    for where, pattern in _compiled_regexes(name):
        for line in hostile:
            start = time.perf_counter()
            pattern.search(line + "\n")
            elapsed = time.perf_counter() - start
            slowest = max(slowest, elapsed)
            assert elapsed < 2.0, f"{where} took {elapsed:.2f} s on a hostile 1 MB line"
    assert slowest > 0


# --- the real fail2ban agrees ----------------------------------------------------------

_LINES_RE = re.compile(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", re.M)


def _fail2ban_counts(program: str, log: Path, spec: str) -> tuple[int, int, int]:
    out = subprocess.run(
        [program, str(log), spec], capture_output=True, text=True, timeout=100, check=False
    )
    found = _LINES_RE.search(out.stdout)
    assert out.returncode == 0 and found, out.stdout[-2000:] + out.stderr[-2000:]
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def _cfban_counts(log: Path, spec: str) -> tuple[int, int, int]:
    with log.open("rb") as stream:
        report = run_filter(open_filter(spec), stream, source=str(log))
    return report.lines, report.ignored, report.matched


def _cross_check(program: str, cases: list[tuple[Path, str]]) -> list[str]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs = list(pool.map(lambda case: _fail2ban_counts(program, *case), cases))
    problems = []
    for (log, spec), fail2ban in zip(cases, theirs, strict=True):
        ours = _cfban_counts(log, spec)
        if ours != fail2ban:
            problems.append(
                f"{log.name} with {spec}: cfban (lines, ignored, matched) = {ours}, "
                f"fail2ban-regex = {fail2ban}"
            )
    return problems


@pytest.mark.real
def test_fail2ban_regex_agrees_on_the_samples() -> None:
    program = require_program("fail2ban-regex")
    cases = [
        (SAMPLES / name, _spec(str(FILTERS / f"{name}.conf"), options))
        for name in BUNDLED
        for options in _option_sets(name)
    ]
    assert len(cases) >= len(BUNDLED) + 5
    problems = _cross_check(program, cases)
    assert not problems, "\n".join(problems)


@pytest.mark.real
@pytest.mark.parametrize("fmt", ["combined", "cfban"])
def test_fail2ban_regex_agrees_on_a_generated_log(tmp_path: Path, fmt: str) -> None:
    program = require_program("fail2ban-regex")
    log = tmp_path / f"access-{fmt}.log"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_access_log.py"), "-n", "4000",
         "--attack-rate", "0.1", "--scanners", "40", "--format", fmt, "--seed", "7",
         "-o", str(log)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    expected = json.loads(Path(f"{log}.expected.json").read_text())
    cases = [(log, str(FILTERS / f"{name}.conf")) for name in ACCESS_FILTERS]
    problems = _cross_check(program, cases)
    assert not problems, "\n".join(problems)
    assert _cfban_counts(log, "nginx-botsearch")[2] == expected["botsearch"]
    assert _cfban_counts(log, "nginx-probes")[2] == expected["probes"]


@pytest.mark.real
def test_fail2ban_reads_them_from_filter_d(tmp_path: Path) -> None:
    """Copied into a fail2ban configuration's filter.d, every bundled filter loads in a jail."""
    client = require_program("fail2ban-client")
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf, ignore=shutil.ignore_patterns("jail.d"))
    (conf / "jail.d").mkdir()
    for path in FILTERS.glob("*.conf"):
        shutil.copy(path, conf / "filter.d" / path.name)
    log = tmp_path / "empty.log"
    log.write_text("", encoding="utf-8")
    specs = [
        *BUNDLED,
        "nginx-http-auth[mode=aggressive]",
        "nginx-limit-req[ngx_limit_req_zones=api]",
    ]
    jails = "\n".join(
        f"[t{n}]\nenabled = true\nfilter = {spec}\nlogpath = {log}\nbackend = polling\n"
        for n, spec in enumerate(specs)
    )
    (conf / "jail.local").write_text(jails, encoding="utf-8")
    test = subprocess.run(
        [client, "-c", str(conf), "-t"], capture_output=True, text=True, timeout=60
    )
    assert test.returncode == 0 and "OK" in test.stdout + test.stderr, test.stderr
    dump = subprocess.run(
        [client, "-c", str(conf), "-d"], capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr
    for n in range(len(specs)):
        assert f"'t{n}', 'addfailregex'" in dump.stdout


# --- the address can only come from nginx's own field ------------------------------------

_FRAGMENTS = [
    "/.env", "/wp-login.php", "../", "%2e%2e/", "union+select", ";wget", "$(id)", " ", "[", "]",
    '"', "\\", "-", "192.0.2.66", "2001:db8::66", " - - [] ", '"GET /.env HTTP/1.1" 404 1',
    " 404 ", " 400 0 ", ' peer=192.0.2.66 cf="192.0.2.66" xff="192.0.2.66"',
    "[25/Nov/2026:01:39:52 +0000]", ", client: 192.0.2.66, server: x", "x",
]  # fmt: skip


def _nginx_escape(text: str) -> str:
    """What nginx does to a variable in an access log line (escape=default)."""
    return "".join(
        c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else f"\\x{ord(c):02X}" for c in text
    )


@pytest.mark.parametrize("name", ACCESS_FILTERS)
def test_access_filters_only_ever_name_the_first_field(name: str) -> None:
    """Whatever a client writes into the request, user, Referer, User-Agent or forwarded
    headers, a failure's address is the line's first field ($remote_addr)."""
    flt = load_filter(name, search_path=[FILTERS])
    client_text = st.lists(st.sampled_from(_FRAGMENTS), max_size=6).map("".join)
    attack = st.sampled_from(["", "wp-login.php", "phpmyadmin/", ".env", "cgi-bin/x"])
    target_text = st.tuples(attack, client_text).map("".join)
    matched: list[str] = []

    @hypothesis.settings(max_examples=200, deadline=None, derandomize=True)
    @hypothesis.given(
        ip=st.sampled_from(["203.0.113.5", "2001:db8::5"]),
        user=client_text,
        method=st.sampled_from(["GET", "POST", "HEAD"]),
        target=target_text,
        status=st.sampled_from([200, 400, 403, 404, 444, 500]),
        referer=client_text,
        agent=client_text,
        cfban_format=st.booleans(),
        cf=client_text,
    )
    def check(
        ip: str, user: str, method: str, target: str, status: int, referer: str, agent: str,
        cfban_format: bool, cf: str,
    ) -> None:  # fmt: skip
        user_field = user.replace(" ", "_").replace('"', "") or "-"  # nginx: the decoded name
        line = (
            f"{ip} - {user_field} [25/Nov/2026:01:39:52 +0000] "
            f'"{method} /{_nginx_escape(target)} HTTP/1.1" {status} 12 '
            f'"{_nginx_escape(referer)}" "{_nginx_escape(agent)}"'
        )
        if cfban_format:
            line += f' peer=172.70.34.9 cf="{_nginx_escape(cf)}" xff="-"'
        failure = flt.match(line)
        if failure is not None:
            assert failure.host == ip, line
            matched.append(line)

    check()
    assert len(matched) >= 3, "the property was hardly exercised"
