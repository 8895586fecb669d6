"""The shared allowlist: two hosts on one emulator account, an address allowed (or manually
unbanned) on host A is not banned again by host B, not by its ban, its sync or its daemon's
commit path, until the allowance lapses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cfban import allowance
from cfban.allowlist import AllowEntry, AllowList
from cfban.clock import FakeClock
from cfban.cloudflare._allow import format_allow, parse_allow
from cfban.errors import RefusedError
from cfban.intake.commit import Intake
from cfban.realip import GuardStats
from tests.cfemu import Emulator
from tests.cfemu.plugin import ServedEmulator
from tests.controls_support import IP, advance, allowed_at_cloudflare, bans_at_cloudflare, host
from tests.test_cli_bans import cfban_env, run_cfban

KINDS = ["access-rules", "list"]


def _refused_by_b(b_intake: Intake) -> str:
    with pytest.raises(RefusedError) as caught:
        b_intake.plan(IP, "web")
    return str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_allowed_on_a_is_never_banned_by_b_until_it_lapses(tmp_path: Path, kind: str) -> None:
    emu = Emulator(clock=FakeClock())
    with host(tmp_path, emu, "a", kind) as a, host(tmp_path, emu, "b", kind) as b:
        assert b.ban(IP, jail="web").delivered
        assert IP in bans_at_cloudflare(emu)
        done = allowance.allow(a, IP, seconds=3600, note="office NAT")
        assert done.shared and done.entry.target == IP
        assert bans_at_cloudflare(emu) == {}  # the live ban (B's) is lifted
        assert allowed_at_cloudflare(emu) == [IP]
        [rule] = [r for r in emu.access_rules() if r["mode"] == "whitelist"]
        assert rule["scope"]["id"] == emu.account_id  # every zone of the account honours it
        assert rule["notes"].startswith("cfban v1 allow exp=") and "office NAT" in rule["notes"]
        report = b.sync()  # B still held the ban: its sync does not add it again
        assert IP not in report.repushed
        assert bans_at_cloudflare(emu) == {}
        assert b.list_bans() == []
        with pytest.raises(RefusedError) as caught:
            b.ban(IP, jail="web")
        assert "on the shared allowlist" in str(caught.value) and "office NAT" in str(caught.value)
        # B's daemon commits through its own intake over B's state: refused too
        stats = GuardStats()
        daemon_intake = Intake(b.rules, b.store, stats=stats)
        assert "on the shared allowlist" in _refused_by_b(daemon_intake)
        assert stats.refused["allowlist"] == 1
        assert bans_at_cloudflare(emu) == {}
        advance(emu, 3601)  # the allowance lapses: bans work again
        assert daemon_intake.plan(IP, "web")[0].target == IP
        result = b.ban(IP, jail="web")
        assert result.delivered
        assert IP in bans_at_cloudflare(emu)
        assert allowed_at_cloudflare(emu) == []  # the lapsed rule was cleaned up


@pytest.mark.parametrize("kind", KINDS)
def test_a_manual_unban_on_a_keeps_b_from_banning_again(tmp_path: Path, kind: str) -> None:
    emu = Emulator(clock=FakeClock())
    cf = {"unban_allow": "10m"}
    with (
        host(tmp_path, emu, "a", kind, cloudflare=cf) as a,
        host(tmp_path, emu, "b", kind, cloudflare=cf) as b,
    ):
        assert b.ban(IP, jail="web", bantime=86400).delivered
        result = a.unban(IP)  # a person clears the address on host A
        assert result.removed and result.allowed is not None
        assert result.allowed.note.startswith("manual unban on ")
        assert bans_at_cloudflare(emu) == {}
        assert allowed_at_cloudflare(emu) == [IP]
        b.sync()
        assert bans_at_cloudflare(emu) == {}  # B held it for a day: not re-added
        with pytest.raises(RefusedError):
            b.ban(IP, jail="web")
        advance(emu, 601)
        assert b.ban(IP, jail="web").delivered
        assert IP in bans_at_cloudflare(emu)


def test_allow_refuses_a_range_it_covers_and_disallow_ends_it(tmp_path: Path) -> None:
    emu = Emulator(clock=FakeClock())
    with host(tmp_path, emu, "a", "access-rules") as a, host(tmp_path, emu, "b", "list") as b:
        allowance.allow(a, "198.51.100.0/24", seconds=None, note="")
        with pytest.raises(RefusedError, match="shared allowlist"):
            b.ban("198.51.100.0/24", network=True)
        with pytest.raises(RefusedError, match=r"shared allowlist \(198\.51\.100\.0/24"):
            b.ban("198.51.100.9")
        assert allowance.disallow(a, "198.51.100.0/24")
        assert not allowance.disallow(a, "198.51.100.0/24")
        b.refresh_allowlist(force=True)
        assert b.ban("198.51.100.9").delivered
        with pytest.raises(RefusedError, match="an IP Access Rule takes one address"):
            allowance.allow(a, "198.51.100.0/25", seconds=None, note="")


def test_allowing_never_touches_rules_cfban_did_not_make(tmp_path: Path) -> None:
    emu = Emulator(clock=FakeClock())
    emu.seed_access_rule(IP, notes="blocked by hand", scope="account")
    emu.seed_access_rule("198.51.100.8", mode="whitelist", notes="a partner", scope="account")
    with host(tmp_path, emu, "a", "access-rules") as a:
        with pytest.raises(RefusedError, match="cfban did not make"):
            allowance.allow(a, IP, seconds=60, note="")
        listed = allowance.refresh(a, force=True)
        assert listed.entries == ()  # someone else's whitelist rule is not cfban's entry
    notes = sorted((r["configuration"]["value"], r["mode"], r["notes"]) for r in emu.access_rules())
    assert notes == [(IP, "block", "blocked by hand"),
                     ("198.51.100.8", "whitelist", "a partner")]  # fmt: skip


def test_the_hook_fast_path_honours_the_copy(tmp_path: Path) -> None:
    from cfban.allowlist import save
    from cfban.rules import Rules
    from cfban.state import StateStore

    clock = FakeClock()
    rules = Rules(state_dir=tmp_path, allow_test_nets=True)
    save(tmp_path, [AllowEntry("198.51.100.0/24", clock.now() + 60)], clock.now())
    with StateStore.open(tmp_path, clock) as store:
        intake = Intake(rules, store)
        with pytest.raises(RefusedError, match="shared allowlist"):
            intake.ban(IP, "sshd")
        clock.advance(61)
        assert intake.ban(IP, "sshd").hold.target == IP


def test_allow_markers_round_trip() -> None:
    notes = format_allow(1767225600, "office  NAT\n")
    assert notes == "cfban v1 allow exp=1767225600 (until 2026-01-01T00:00:00Z) office NAT"
    assert parse_allow(notes) == (1767225600.0, "office NAT")
    assert parse_allow(format_allow(None, "")) == (None, "")
    assert parse_allow("cfban v1 exp=1 jails=x") is None  # a ban marker is not an allow
    assert AllowList((AllowEntry("2001:db8::/48", None),)).covering("2001:db8:0:1::/64", 0)


def test_cli_allow_disallow_allowed(tmp_path: Path, cf_server: ServedEmulator) -> None:
    env = cfban_env(tmp_path, cf_server)
    assert run_cfban(env, "ban", IP).returncode == 0
    out = run_cfban(env, "allow", IP, "--for", "1h", "--note", "office")
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(
        rf"allowed {re.escape(IP)} \(until .* UTC\) at Cloudflare; its ban was lifted\n",
        out.stdout,
    )
    listed = run_cfban(env, "allowed")
    assert listed.returncode == 0 and IP in listed.stdout and "office" in listed.stdout
    refused = run_cfban(env, "ban", IP)
    assert refused.returncode == 1
    assert "refusing to ban 198.51.100.7: it is on the shared allowlist" in refused.stderr
    assert run_cfban(env, "disallow", IP).stdout == f"{IP} is off the shared allowlist\n"
    assert run_cfban(env, "allowed").stdout == "0 allowed\n"
    bad = run_cfban(env, "allow", IP, "--for", "soon")
    assert bad.returncode != 0


def test_b_daemon_refuses_while_allowed_and_bans_after(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    import time

    from cfban.config import load_settings
    from cfban.watch import Daemon, WatchOptions
    from tests.support.logs import PROBE, log_date

    emu = cf_server.emulator
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "access.log"
    conf = tmp_path / "b.toml"
    conf.write_text(
        f'state_dir = "{tmp_path / "b"}"\n[realip]\nallow_test_nets = true\n'
        f'[cloudflare]\nzone_id = "{emu.zone_id}"\naccount_id = "{emu.account_id}"\n'
        f'[jails.probes]\nfilter = "nginx-probes"\nlogpath = ["{log}"]\nmaxretry = 2\n'
        'findtime = "10m"\nbantime = "1h"\n',
        encoding="utf-8",
    )
    settings = load_settings(conf, env=cf_server.env())
    host_a = cfban_env(tmp_path, cf_server, state="a")
    allowed = run_cfban(host_a, "allow", IP, "--for", "3s")
    assert allowed.returncode == 0, allowed.stderr
    lapses = time.time() + 3
    log.write_text(PROBE.format(ip=IP, date=log_date()) * 2)
    daemon = Daemon(settings, WatchOptions(poll=0.05, exit_idle=0.3, from_start=True))
    daemon.run()
    assert daemon.stats.refused["allowlist"] == 1  # the jail decided, the allowlist refused
    assert bans_at_cloudflare(emu) == {}
    time.sleep(max(0.0, lapses - time.time()) + 0.2)
    with log.open("a") as handle:
        handle.write(PROBE.format(ip=IP, date=log_date()) * 2)
    again = Daemon(settings, WatchOptions(poll=0.05, exit_idle=0.3, from_start=True))
    again.run()
    assert again.metrics.bans["probes"] == 1
    assert bans_at_cloudflare(emu) == {IP: "block"}


def test_the_hook_fast_path_applies_the_action_and_the_allowlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys
    import time

    from cfban.allowlist import save
    from cfban.intake import hook
    from tests.support.intake import clean_env

    config = tmp_path / "cfban.toml"
    config.write_text(
        '[realip]\nallow_test_nets = true\n[jails.web]\nfilter = "nginx-probes"\n'
        'action = "managed_challenge"\n',
        encoding="utf-8",
    )
    env = clean_env()
    env.update(CFBAN_CONFIG=str(config), CFBAN_STATE_DIR=str(tmp_path / "s"))
    full = subprocess.run([sys.executable, "-m", "cfban", "list"], env=env, timeout=60,
                          capture_output=True, text=True)  # fmt: skip
    assert full.returncode == 0, full.stderr  # the full command wrote the rules snapshot
    for key in ("CFBAN_CONFIG", "CFBAN_STATE_DIR"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setattr(hook, "ensure_deliverer", lambda *args: True)  # no background run
    assert hook.fast_path(["ban", IP, "--jail", "web", "--background"]) == 0
    assert "(jail web, until " in capsys.readouterr().out
    assert hook.fast_path(["ban", "198.51.100.8", "--jail", "web", "--background"]) == 0
    assert ", managed_challenge): queued" in capsys.readouterr().out
    save(tmp_path / "s", [AllowEntry("198.51.100.0/24", time.time() + 60)], time.time())
    assert hook.fast_path(["ban", "198.51.100.9", "--jail", "web", "--background"]) == 1
    assert "it is on the shared allowlist" in capsys.readouterr().err
