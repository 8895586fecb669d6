"""The fail2ban hook's fast path: ``cfban ban|unban IP ... --background``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cfban.intake.hook import parse
from tests.support.intake import clean_env
from tests.support.waiting import wait_until


@pytest.mark.parametrize(
    ("argv", "fast"),
    [
        (["ban", "203.0.113.1", "--background"], True),
        (["--config", "c.toml", "ban", "203.0.113.1", "--jail", "j", "--bantime", "-1",
          "--background"], True),
        (["ban", "--jail=j", "203.0.113.1", "-t", "1h", "--background"], True),
        (["unban", "203.0.113.1", "-j", "j", "--background"], True),
        (["ban", "203.0.113.1"], False),  # interactive: the full command delivers inline
        (["ban", "203.0.113.1", "--background", "--json"], False),
        (["unban", "203.0.113.1", "--bantime", "1h", "--background"], False),
        (["list", "--background"], False),
        (["ban", "--background"], False),
        (["--help"], False),
    ],
)  # fmt: skip
def test_only_exact_background_calls_take_the_fast_path(argv: list[str], fast: bool) -> None:
    assert (parse(argv) is not None) is fast


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    env.update(CFBAN_CONFIG=str(tmp_path / "none.toml"), CFBAN_STATE_DIR=str(tmp_path / "s"))
    (tmp_path / "none.toml").write_text("[realip]\nallow_test_nets = true\n")
    return subprocess.run(
        [sys.executable, "-m", "cfban", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_background_ban_is_queued_then_delivered(tmp_path: Path) -> None:
    out = _run(tmp_path, "ban", "203.0.113.44", "--jail", "j", "--bantime", "1h", "--background")
    assert out.returncode == 0, out.stderr
    assert "queued" in out.stdout and "dry run" in out.stdout

    def delivered() -> bool:
        listed = _run(tmp_path, "list", "--json")
        return '"state": "delivered"' in listed.stdout

    wait_until(delivered, timeout=20)


def test_background_refusals_and_bad_input(tmp_path: Path) -> None:
    refused = _run(tmp_path, "ban", "10.0.0.1", "--background")
    assert refused.returncode == 1
    assert "cfban: error:" in refused.stderr and "10.0.0.1" in refused.stderr
    invalid = _run(tmp_path, "ban", "not-an-ip", "--background")
    assert invalid.returncode == 1
    assert "not-an-ip" in invalid.stderr
    bad_time = _run(tmp_path, "ban", "203.0.113.45", "--bantime", "soon", "--background")
    assert bad_time.returncode != 0
    assert "soon" in bad_time.stderr


def test_the_fast_path_and_the_full_command_say_the_same(tmp_path: Path) -> None:
    """The first call has no cached rules (the full command runs), the next ones take the
    fast path: the same outcome gives the same line."""
    seen: dict[str, list[str]] = {"ban": [], "unban": []}
    for ip in ("203.0.113.61", "203.0.113.62", "203.0.113.63"):
        banned = _run(tmp_path, "ban", ip, "--jail", "j", "--bantime", "-1", "--background")
        unbanned = _run(tmp_path, "unban", ip, "--jail", "j", "--background")
        assert banned.returncode == unbanned.returncode == 0, banned.stderr + unbanned.stderr
        seen["ban"].append(banned.stdout.replace(ip, "IP"))
        seen["unban"].append(unbanned.stdout.replace(ip, "IP"))
    assert (tmp_path / "s" / "rules.json").exists()  # the fast path had its rules
    assert len(set(seen["ban"])) == 1 and len(set(seen["unban"])) == 1, seen
    assert seen["ban"][0] == (
        "banned IP (jail j, permanent): queued; a background cfban delivers it (dry run)\n"
    )
