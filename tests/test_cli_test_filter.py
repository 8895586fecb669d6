"""``cfban test-filter``: the real command, its exact JSON, its summary and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfban.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "samples"

ACCESS_LOG = (
    # 1: a probe, combined format
    '203.0.113.5 - - [25/Nov/2026:01:39:52 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8"\n'
    # 2: an ordinary request
    '198.51.100.7 - - [25/Nov/2026:01:39:53 +0000] "GET / HTTP/1.1" 200 612 "-" "Mozilla/5.0"\n'
    # 3: empty, 4: a comment: both skipped, as fail2ban-regex does
    "\n"
    "# not a log line\n"
    # 5: a probe in cfban's format, IPv6
    '2001:db8::9 - - [25/Nov/2026:01:40:00 +0000] "GET /x?id=1+UNION+SELECT+1 HTTP/1.1" 200 1 '
    '"-" "-" peer=2400:cb00:1::2 cf="2001:db8::9" xff="-"\n'
    # 6: a probe the site answers 200 (WordPress is there): no match
    '203.0.113.5 - - [25/Nov/2026:01:40:01 +0000] "GET /blog/wp-login.php HTTP/1.1" 200 9 "-" "-"\n'
    # 7: no date at all: still matched, time null
    '203.0.113.6 - - [] "GET /.git/config HTTP/1.1" 403 10 "-" "-"\n'
)
ACCESS_JSON = {
    "lines": 5,
    "matched": 3,
    "ignored": 0,
    "matches": [
        {"line": 1, "ip": "203.0.113.5", "time": 1795570792},
        {"line": 5, "ip": "2001:db8::9", "time": 1795570800},
        {"line": 7, "ip": "203.0.113.6", "time": None},
    ],
}


def _cfban(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFBAN_")}
    env["CFBAN_CONFIG"] = os.devnull
    return subprocess.run(
        [sys.executable, "-m", "cfban", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.fixture
def access_log(tmp_path: Path) -> Path:
    path = tmp_path / "access.log"
    path.write_text(ACCESS_LOG, encoding="utf-8")
    return path


def test_json_is_exact(access_log: Path) -> None:
    out = _cfban("test-filter", "nginx-probes", str(access_log), "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == b""
    assert out.stdout.count(b"\n") == 1
    assert json.loads(out.stdout) == ACCESS_JSON


def test_standard_input() -> None:
    out = _cfban("test-filter", "nginx-probes", "-", "--json", stdin=ACCESS_LOG.encode())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ACCESS_JSON


def test_summary_for_people(access_log: Path) -> None:
    result = CliRunner().invoke(app, ["test-filter", "nginx-probes", str(access_log)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Lines: 5 lines, 0 ignored, 3 matched, 2 missed" in text
    assert "Failregex: 3 hits" in text
    assert "  1) [2] ^<HOST> - " in text  # the dotfile and traversal failregex
    assert "  2) [1] ^<HOST> - " in text  # SQL injection
    assert "  4) [0] " in text
    assert "cfban-access-common.conf" in text
    assert "203.0.113.5" in text and "2001:db8::9" in text
    assert "line 5: 2001:db8::9 at " in text
    assert "Matches without a date: 1" in text


def test_ignored_lines_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        '192.0.2.1 - - [25/Nov/2026:01:39:52 +0000] "GET /favicon.ico HTTP/1.1" 404 1 "-" "-"\n'
        '192.0.2.1 - - [25/Nov/2026:01:39:53 +0000] "GET /nope HTTP/1.1" 404 1 "-" "-"\n'
        '192.0.2.1 - - [25/Nov/2026:01:39:54 +0000] "GET /favicon.ico HTTP/1.1" 200 1 "-" "-"\n',
        encoding="utf-8",
    )
    out = _cfban("test-filter", "nginx-4xx", str(log), "--json")
    assert json.loads(out.stdout) == {
        "lines": 3,
        "matched": 1,
        "ignored": 1,
        "matches": [{"line": 2, "ip": "192.0.2.1", "time": 1795570793}],
    }


def test_filter_options_and_error_log() -> None:
    sample = str(SAMPLES / "nginx-http-auth")
    normal = json.loads(_cfban("test-filter", "nginx-http-auth", sample, "--json").stdout)
    aggressive = json.loads(
        _cfban("test-filter", "nginx-http-auth[mode=aggressive]", sample, "--json").stdout
    )
    fallback = json.loads(
        _cfban("test-filter", "nginx-http-auth[mode=fallback]", sample, "--json").stdout
    )
    assert (normal["matched"], fallback["matched"], aggressive["matched"]) == (7, 3, 10)
    assert normal["lines"] == aggressive["lines"] == 13


def test_filter_by_path_with_options(tmp_path: Path) -> None:
    spec = f"{ROOT / 'filters' / 'nginx-limit-req.conf'}[ngx_limit_req_zones=api]"
    out = _cfban("test-filter", spec, str(SAMPLES / "nginx-limit-req"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [m["ip"] for m in report["matches"]] == [
        "198.51.100.40",
        "198.51.100.42",
        "2001:db8::43",
    ]


def test_invalid_utf8_never_crashes(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(
        b'192.0.2.7 - \xff\xfe [25/Nov/2026:01:39:52 +0000] "GET /.env HTTP/1.1" 404 1 "-" "\xc3"\n'
        b"\x00\x00garbage \x80\x81\n"
        b'192.0.2.8 - - [25/Nov/2026:01:39:53 +0000] "GET /%2e%2e/etc/passwd HTTP/1.1" 400 1'
    )
    out = _cfban("test-filter", "nginx-probes", str(log), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["lines"], report["matched"]) == (3, 2)
    assert [m["ip"] for m in report["matches"]] == ["192.0.2.7", "192.0.2.8"]


def test_missing_log_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    out = _cfban("test-filter", "nginx-probes", str(missing), "--json")
    assert out.returncode == 1
    assert out.stdout == b""
    assert f"log file {missing} does not exist".encode() in out.stderr


def test_broken_filter_exits_78_with_file_and_line(tmp_path: Path, access_log: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text("[Definition]\n\nfailregex = ^<HOST> (unclosed\n", encoding="utf-8")
    out = _cfban("test-filter", str(broken), str(access_log))
    assert out.returncode == 78
    assert f"{broken}:3".encode() in out.stderr


def test_unknown_filter_exits_78(access_log: Path) -> None:
    out = _cfban("test-filter", "no-such-filter", str(access_log))
    assert out.returncode == 78
    assert b"no-such-filter" in out.stderr


def test_missing_filter_file_exits_78(tmp_path: Path, access_log: Path) -> None:
    out = _cfban("test-filter", str(tmp_path / "gone.conf"), str(access_log))
    assert out.returncode == 78
    assert b"gone.conf does not exist" in out.stderr


def test_help_teaches_with_an_example() -> None:
    result = CliRunner().invoke(app, ["test-filter", "--help"])
    assert result.exit_code == 0
    assert "cfban test-filter nginx-probes examples/access.log" in result.output
    assert "--json" in result.output
    assert "nginx-http-auth[mode=aggressive]" in result.output


def test_no_arguments_is_usage() -> None:
    out = _cfban("test-filter")
    assert out.returncode == 2
    assert b"Usage" in out.stdout + out.stderr


def test_the_readme_demo_finds_attackers() -> None:
    out = _cfban("test-filter", "nginx-probes", str(ROOT / "examples" / "access.log"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["lines"] >= 300
    attackers = {m["ip"] for m in report["matches"]}
    assert 3 <= len(attackers) <= 12
    assert report["matched"] >= 20


def test_the_example_config_loads_and_names_bundled_filters() -> None:
    from cfban.config import load_settings
    from cfban.testfilter import open_filter

    settings = load_settings(ROOT / "examples" / "cfban.toml", env={})
    assert settings.dry_run
    assert settings.jails
    for name, jail in settings.jails.items():
        flt = open_filter(jail.filter)
        assert flt.definition.failregex, name


def test_json_path_leaves_the_hook_and_the_full_command_unloaded(access_log: Path) -> None:
    """``cfban test-filter F LOG --json`` answers before the hook's or typer's imports."""
    code = (
        "import os, sys\n"
        "def leave(code):\n"  # the real exit would skip the report below
        "    raise SystemExit(code)\n"
        "os._exit = leave\n"
        f"sys.argv = ['cfban', 'test-filter', 'nginx-probes', {str(access_log)!r}, '--json']\n"
        "from cfban.entry import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    names = ('cfban.intake.hook', 'cfban.cli', 'typer')\n"
        "    loaded = [m for m in names if m in sys.modules]\n"
        "    print(exc.code, loaded, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert json.loads(result.stdout) == ACCESS_JSON
    assert result.stderr.decode().strip() == "0 []"
