"""``cfban check`` reads the logs: Cloudflare edges as clients, forged headers from direct peers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cfban.realip import NetworkSet, load_ranges
from cfban.realip._logcheck import inspect_log
from tests.support.intake import clean_env

GOOD = (
    '203.0.113.7 - - [25/Nov/2026:01:39:52 +0000] "GET / HTTP/1.1" 200 6 "-" "curl/8" '
    'peer=172.70.34.9 cf="203.0.113.7" xff="-"\n'
)
EDGE = '172.70.34.9 - - [25/Nov/2026:01:39:52 +0000] "GET / HTTP/1.1" 200 6 "-" "curl/8"\n'
DIRECT = (
    '192.0.2.44 - - [25/Nov/2026:01:39:52 +0000] "GET / HTTP/1.1" 200 6 "-" "curl/8" '
    'peer=192.0.2.44 cf="198.51.100.9" xff="-"\n'
)


def _sets(tmp_path: Path) -> tuple[NetworkSet, NetworkSet]:
    from cfban.config import load_settings

    settings = load_settings(None, env={"CFBAN_STATE_DIR": str(tmp_path), "CFBAN_CONFIG": ""})
    ranges = load_ranges(settings)
    return ranges.networks, ranges.networks


def test_clean_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(GOOD * 20)
    findings = inspect_log(log, *_sets(tmp_path))
    assert findings.lines == 20
    assert findings.problems() == []


def test_edges_and_direct_peers_are_reported(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(GOOD * 5 + EDGE * 3 + DIRECT * 2)
    findings = inspect_log(log, *_sets(tmp_path))
    assert (findings.edge_clients, findings.direct_with_header) == (3, 2)
    problems = " ".join(findings.problems())
    assert "Cloudflare edge" in problems and "nginx-snippet" in problems
    assert "reachable directly" in problems


def test_missing_log_is_reported(tmp_path: Path) -> None:
    findings = inspect_log(tmp_path / "nope.log", *_sets(tmp_path))
    assert findings.unreadable and findings.problems()


def test_check_command_fails_on_a_bad_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(EDGE * 4)
    config = tmp_path / "cfban.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[jails.probes]\nfilter = "nginx-probes"\nlogpath = ["{log}"]\n'
    )
    env = clean_env()
    out = subprocess.run(
        [sys.executable, "-m", "cfban", "--config", str(config), "check"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert out.returncode == 1
    assert f"FAIL  log {log}" in out.stdout
    assert "Cloudflare edge" in out.stdout
