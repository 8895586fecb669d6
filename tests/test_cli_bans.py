"""The ban commands, driven as a real ``cfban`` process against the loopback emulator."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfban.cli import app
from tests.cfemu import Emulator, Fault
from tests.cfemu.plugin import ServedEmulator

BAN_COMMANDS = ["ban", "unban", "list", "sync", "setup", "check", "deliver"]
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
DRY_RUN = "dry run: no API token configured; Cloudflare calls are printed, not made"


def write_config(path: Path, emu: Emulator | None = None, extra: str = "") -> Path:
    """A configuration for the emulator's zone (test networks allowed)."""
    zone = f'zone_id = "{emu.zone_id}"\naccount_id = "{emu.account_id}"\n' if emu else ""
    path.write_text(
        f"[realip]\nallow_test_nets = true\n\n[cloudflare]\n{zone}timeout = 5\n{extra}",
        encoding="utf-8",
    )
    return path


def cfban_env(
    tmp: Path,
    server: ServedEmulator | None = None,
    *,
    token: str | None = None,
    state: str = "state",
) -> dict[str, str]:
    """The environment of a cfban process: nothing from this machine leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CFBAN_") and k != "CLOUDFLARE_API_TOKEN"
    }
    config = tmp / "cfban.toml"
    if not config.exists():
        write_config(config, server.emulator if server else None)
    env.update(CFBAN_CONFIG=str(config), CFBAN_STATE_DIR=str(tmp / state))
    if server is not None:
        env.update(CFBAN_API_URL=server.base_url, CLOUDFLARE_API_TOKEN=token or server.token)
    return env


def run_cfban(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cfban", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("command", BAN_COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"cfban {command}" in result.output


def test_dry_run_says_so_once_and_records(tmp_path: Path) -> None:
    env = cfban_env(tmp_path)
    out = run_cfban(env, "ban", "198.51.100.7", "--jail", "sshd", "--bantime", "1h")
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(
        rf"banned 198\.51\.100\.7 \(jail sshd, until {WHEN}\): "
        r"recorded \(dry run, nothing sent to Cloudflare\)\n",
        out.stdout,
    )
    assert out.stderr.count(DRY_RUN) == 1
    assert "dry run: would ban 198.51.100.7 (cfban v1 exp=" in out.stderr
    listed = json.loads(run_cfban(env, "list", "--json").stdout)
    assert [b["target"] for b in listed["bans"]] == ["198.51.100.7"]
    check = run_cfban(env, "check")
    assert check.returncode == 1 and "FAIL  token: no API token configured" in check.stdout


def test_ban_list_unban_against_cloudflare(tmp_path: Path, cf_server: ServedEmulator) -> None:
    env = cfban_env(tmp_path, cf_server)
    emu = cf_server.emulator
    out = run_cfban(env, "ban", "198.51.100.7", "--jail", "sshd", "--bantime", "600")
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(
        rf"banned 198\.51\.100\.7 \(jail sshd, until {WHEN}\): delivered to Cloudflare\n",
        out.stdout,
    )
    assert out.stderr == ""
    [rule] = emu.access_rules()
    assert rule["configuration"]["value"] == "198.51.100.7"
    assert rule["notes"].startswith("cfban v1 exp=")
    v6 = run_cfban(env, "ban", "2001:db8:5::17", "--bantime", "-1")
    assert v6.stdout == (
        "banned 2001:db8:5::17 as 2001:db8:5::/64 (jail manual, permanent): "
        "delivered to Cloudflare\n"
    )
    listed = json.loads(run_cfban(env, "list", "--json").stdout)
    assert [(b["target"], b["jails"], b["state"]) for b in listed["bans"]] == [
        ("198.51.100.7", ["sshd"], "delivered"),
        ("2001:db8:5::/64", ["manual"], "delivered"),
    ]
    assert listed["queued"] == {"add": 0, "remove": 0}
    remote = json.loads(run_cfban(env, "list", "--remote", "--json").stdout)["remote"]
    assert sorted(e["target"] for e in remote) == ["198.51.100.7", "2001:db8:5::/64"]
    text = run_cfban(env, "list").stdout.splitlines()
    assert re.fullmatch(rf"198\.51\.100\.7 +sshd +{WHEN} +block +delivered", text[0])
    assert text[-1] == "2 bans; 0 adds and 0 removes queued"
    un = run_cfban(env, "unban", "198.51.100.7")
    assert un.returncode == 0
    assert un.stdout.splitlines()[0] == "unbanned 198.51.100.7 (jails sshd): done at Cloudflare"
    # a manual unban allows the address for a while, so no other host bans it again
    assert re.fullmatch(
        rf"allowed 198\.51\.100\.7 \(until {WHEN}\) on the shared allowlist: no host bans it "
        r"meanwhile \(cfban disallow to end it now\)",
        un.stdout.splitlines()[1],
    )
    rules = emu.access_rules()
    assert [r["configuration"]["value"] for r in rules if r["mode"] != "whitelist"] == [
        "2001:db8:5::/64"
    ]
    assert [r["configuration"]["value"] for r in rules if r["mode"] == "whitelist"] == [
        "198.51.100.7"
    ]
    check = run_cfban(env, "check")
    assert check.returncode == 0, check.stdout
    assert all(line.startswith("ok ") for line in check.stdout.splitlines())


def test_refused_and_invalid_addresses(tmp_path: Path, cf_server: ServedEmulator) -> None:
    env = cfban_env(tmp_path, cf_server)
    for address, reason in [
        ("10.1.2.3", "private"),
        ("104.16.0.1", "Cloudflare's own range"),
        ("127.0.0.1", "loopback"),
    ]:
        out = run_cfban(env, "ban", address)
        assert out.returncode == 1 and out.stdout == ""
        assert out.stderr.startswith(f"cfban: error: refusing to ban {address}")
        assert reason in out.stderr
    bad = run_cfban(env, "ban", "not-an-ip")
    assert bad.returncode == 1
    assert bad.stderr.startswith("cfban: error: 'not-an-ip' is not an IP address")
    usage = run_cfban(env, "ban", "198.51.100.1", "--bantime", "soon")
    assert usage.returncode == 2 and "not a duration" in usage.stderr
    assert cf_server.emulator.access_rules() == []
    assert json.loads(run_cfban(env, "list", "--json").stdout)["bans"] == []


def test_bad_configuration_exits_78(tmp_path: Path) -> None:
    env = cfban_env(tmp_path)
    (tmp_path / "cfban.toml").write_text("[cloudflare]\nbackend = 'carrier-pigeon'\n")
    for args in (["ban", "198.51.100.1"], ["list"], ["deliver"], ["check"]):
        out = run_cfban(env, *args)
        assert out.returncode == 78, (args, out.stderr)
        assert out.stderr.startswith("cfban: error: invalid configuration in ")


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/client/v4"


def test_cloudflare_down_queues_then_deliver_sends(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    env = cfban_env(tmp_path, cf_server)
    down = dict(env, CFBAN_API_URL=_closed_port_url())
    out = run_cfban(down, "ban", "198.51.100.9", "--jail", "web")
    assert out.returncode == 0
    assert out.stdout.startswith("banned 198.51.100.9 (jail web, until ")
    assert out.stdout.endswith(
        ": queued (the delivery deadline passed); it goes out with the next cfban run\n"
    )
    assert "cannot connect to the Cloudflare API" in out.stderr
    listed = json.loads(run_cfban(down, "list", "--json").stdout)["bans"]
    assert listed[0]["state"] == "pending" and listed[0]["attempts"] >= 1
    failed = run_cfban(down, "deliver", "--deadline", "1")
    assert failed.returncode == 1 and "1 operations still queued" in failed.stderr
    ok = run_cfban(env, "deliver")
    assert ok.returncode == 0, ok.stderr
    # the op is in backoff after the failures; deliver waits for it within its deadline
    assert ok.stdout.startswith("added 1, removed 0, kept 0 (held by another host), refused 0;")
    assert [r["configuration"]["value"] for r in cf_server.emulator.access_rules()] == [
        "198.51.100.9"
    ]


def test_sync_pushes_missing_and_removes_expired_never_foreign(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    env = cfban_env(tmp_path, cf_server)
    emu = cf_server.emulator
    emu.seed_access_rule("192.0.2.50", notes="added by hand")
    emu.seed_access_rule("192.0.2.51", notes="cfban v1 exp=1000 jails=old (expired)")
    emu.seed_access_rule("192.0.2.52", notes="cfban v1 exp=never jails=other-host")
    assert run_cfban(env, "ban", "198.51.100.1").returncode == 0
    [ours] = [r for r in emu.access_rules() if r["configuration"]["value"] == "198.51.100.1"]
    with emu.client() as client:  # someone deletes cfban's rule in the dashboard
        path = f"/zones/{emu.zone_id}/firewall/access_rules/rules/{ours['id']}"
        assert client.delete(path).status_code == 200
    dry = run_cfban(env, "sync", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would expire here: 0",
        "would push again: 1 (198.51.100.1)",
        "would remove at Cloudflare (expired): 1 (192.0.2.51)",
        "kept (held by another host): 1 (192.0.2.52)",
        "in sync: 0",
    ]
    assert len(emu.access_rules()) == 3  # a dry run changes nothing
    real = run_cfban(env, "sync")
    assert real.returncode == 0, real.stderr
    assert "added 1, removed 1, kept 0" in real.stdout
    values = sorted(r["configuration"]["value"] for r in emu.access_rules())
    assert values == ["192.0.2.50", "192.0.2.52", "198.51.100.1"]
    pruned = run_cfban(env, "sync", "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "remove at Cloudflare (not held here): 1 (192.0.2.52)" in pruned.stdout
    values = sorted(r["configuration"]["value"] for r in emu.access_rules())
    assert values == ["192.0.2.50", "198.51.100.1"]  # the foreign rule is never touched


def test_setup_reports(tmp_path: Path, cf_server: ServedEmulator) -> None:
    env = cfban_env(tmp_path, cf_server)
    write_config(tmp_path / "cfban.toml", cf_server.emulator, 'backend = "list"\n')
    out = run_cfban(env, "setup")
    assert out.returncode == 0, out.stderr
    assert "created IP list cfban" in out.stdout
    again = run_cfban(env, "setup")
    assert again.returncode == 0 and "created" not in again.stdout


SECRET = "cfut_SeCrEt_do_not_print_0123456789abcdef"


def test_the_token_appears_nowhere(tmp_path: Path, cf_server: ServedEmulator) -> None:
    emu = cf_server.emulator
    emu.add_token(SECRET)
    outputs: list[str] = []
    crash_logs = set(Path("/tmp").glob("cfban-crash-*.log"))
    for token, state in ((SECRET, "good"), (SECRET[::-1], "bad")):
        env = cfban_env(tmp_path, cf_server, token=token, state=state)
        for args in (
            ["ban", "198.51.100.3", "--jail", "j"],
            ["list", "--json"],
            ["list", "--remote", "--json"],
            ["deliver", "--deadline", "2"],
            ["sync"],
            ["check"],
            ["unban", "198.51.100.3"],
        ):
            out = run_cfban(env, *args)
            outputs += [out.stdout, out.stderr]
        db = (tmp_path / state / "cfban.sqlite3").read_bytes()
        assert SECRET.encode() not in db and SECRET[::-1].encode() not in db
    joined = "\n".join(outputs)
    assert "rejected the API token" in joined  # the bad-token run did fail, and said why
    for log in set(Path("/tmp").glob("cfban-crash-*.log")) - crash_logs:
        joined += log.read_text()
    assert SECRET not in joined and SECRET[::-1] not in joined
    assert "cfut_SeCrEt" not in joined and "fedcba9876543210" not in joined


def test_concurrent_ban_processes_all_queue_and_land(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    env = cfban_env(tmp_path, cf_server)
    run_cfban(env, "list")  # create the database first, as an installed host has it
    args = [sys.executable, "-m", "cfban", "ban", "--jail", "web"]
    procs = [
        subprocess.Popen([*args, f"198.51.100.{i}"], env=env, stdout=subprocess.PIPE, text=True)
        for i in range(1, 5)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert all(o.startswith("banned 198.51.100.") for o in outputs)
    out = run_cfban(env, "deliver")
    assert out.returncode == 0 and out.stdout.endswith("; 0 queued\n")
    values = sorted(r["configuration"]["value"] for r in cf_server.emulator.access_rules())
    assert values == sorted(f"198.51.100.{i}" for i in range(1, 5))


def test_a_backend_that_cannot_work_fails_before_committing(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    env = cfban_env(tmp_path, cf_server)
    write_config(tmp_path / "cfban.toml")  # a token, but no zone or account
    out = run_cfban(env, "ban", "198.51.100.1")
    assert out.returncode == 78
    assert out.stderr.startswith("cfban: error: the access-rules backend needs a zone")
    assert json.loads(run_cfban(env, "list", "--json").stdout)["bans"] == []


def test_a_hanging_cloudflare_holds_ban_up_only_for_the_deadline(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    emu = cf_server.emulator
    write_config(tmp_path / "cfban.toml", emu, "deliver_deadline = 1.5\n")
    env = cfban_env(tmp_path, cf_server)
    emu.faults.always(Fault.timeout(20), method="POST", times=100)
    started = time.monotonic()
    out = run_cfban(env, "ban", "198.51.100.4")
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert ": queued (" in out.stdout
    assert elapsed < 10, elapsed  # ~1.5 s deadline plus the interpreter's start
    emu.faults.clear()
    assert run_cfban(env, "deliver").returncode == 0
    assert [r["configuration"]["value"] for r in emu.access_rules()] == ["198.51.100.4"]


def test_deliver_linger_sends_what_a_zero_deadline_left_queued(
    tmp_path: Path, cf_server: ServedEmulator
) -> None:
    emu = cf_server.emulator
    write_config(tmp_path / "cfban.toml", emu, "deliver_deadline = 0\n")
    env = cfban_env(tmp_path, cf_server)
    out = run_cfban(env, "ban", "198.51.100.5")
    assert out.returncode == 0 and ": queued (the delivery deadline passed)" in out.stdout
    assert emu.access_rules() == []
    out = run_cfban(env, "deliver", "--linger", "0.3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("added 1, removed 0\n")
    assert [r["configuration"]["value"] for r in emu.access_rules()] == ["198.51.100.5"]
