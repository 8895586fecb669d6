"""Two hosts, one Cloudflare account: no host removes a ban the other still holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfban.bans import BanService
from cfban.clock import FakeClock
from cfban.config import Settings
from tests.cfemu import Emulator
from tests.cfemu.plugin import ServedEmulator
from tests.test_cli_bans import cfban_env, run_cfban

IP = "198.51.100.7"


def _host(tmp_path: Path, emu: Emulator, name: str, kind: str) -> BanService:
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / name),
            "realip": {"allow_test_nets": True},
            "cloudflare": {"api_token": emu.token, "zone_id": emu.zone_id,
                           "account_id": emu.account_id, "backend": kind},
        }
    )  # fmt: skip
    assert isinstance(emu.clock, FakeClock)
    return BanService(settings, clock=emu.clock, transport=emu.transport())


def _remote(service: BanService) -> dict[str, float | None]:
    return {e.target: e.expires_at for e in service.list_remote()}


@pytest.mark.parametrize("kind", ["access-rules", "list"])
@pytest.mark.parametrize("shorter_first", [True, False])
def test_shorter_expiry_leaves_the_entry_until_the_longer_ends(
    tmp_path: Path, cf_emulator: Emulator, kind: str, shorter_first: bool
) -> None:
    clock = cf_emulator.clock
    assert isinstance(clock, FakeClock)
    with _host(tmp_path, cf_emulator, "a", kind) as a, _host(tmp_path, cf_emulator, "b", kind) as b:
        order = [(a, 600, "sshd"), (b, 3600, "web")]
        expiries = {}
        for host, bantime, jail in order if shorter_first else order[::-1]:
            result = host.ban(IP, jail=jail, bantime=bantime)
            assert result.delivered and result.expires_at is not None
            expiries[jail] = float(int(result.expires_at))
        longest = expiries["web"]
        assert longest > expiries["sshd"] + 2000
        assert _remote(a) == {IP: longest}  # the longest expiry wins at Cloudflare
        clock.advance(700)
        report = a.deliver(deadline=None)  # host a's ban has expired
        assert report.kept == [IP] and report.removed == []
        assert a.list_bans() == []
        assert _remote(a) == {IP: longest}  # host b still holds it
        clock.advance(3000)
        report = b.deliver(deadline=None)
        assert report.removed == [IP]
        assert _remote(b) == {}
        assert b.list_bans() == []


def test_jail_unban_keeps_and_manual_unban_removes(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    host_a = cfban_env(tmp_path, cf_server, state="a")
    host_b = cfban_env(tmp_path, cf_server, state="b")
    emu = cf_server.emulator
    assert run_cfban(host_a, "ban", IP, "--jail", "sshd", "--bantime", "1h").returncode == 0
    assert run_cfban(host_b, "ban", IP, "--jail", "web", "--bantime", "1d").returncode == 0
    [rule] = emu.access_rules()
    # fail2ban on host a lifts its ban: the entry stays, host b holds it for longer
    out = run_cfban(host_a, "unban", IP, "--jail", "sshd")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"unbanned {IP} (jails sshd): the entry stays at Cloudflare, "
        "another host holds it for longer\n"
    )
    assert [r["id"] for r in emu.access_rules()] == [rule["id"]]
    assert json.loads(run_cfban(host_a, "list", "--json").stdout)["bans"] == []
    remote = json.loads(run_cfban(host_a, "list", "--remote", "--json").stdout)["remote"]
    assert [(e["target"], e["jails"]) for e in remote] == [(IP, ["sshd", "web"])]
    # a person unbans it on host a: removed at Cloudflare, whoever holds it
    out = run_cfban(host_a, "unban", IP)
    assert out.returncode == 0
    assert out.stdout.splitlines()[0] == f"unbanned {IP}: done at Cloudflare"
    assert [r["mode"] for r in emu.access_rules()] == ["whitelist"]  # allowed for a while
