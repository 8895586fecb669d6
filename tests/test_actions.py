"""Per-jail actions and escalation: a challenge where the challenge applies, a repeat
offender blocked, on both backends and on a plan with one list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfban.clock import FakeClock
from cfban.cloudflare import parse_marker
from cfban.config import Settings
from tests.cfemu import Emulator, serve
from tests.cfemu._state import Plan
from tests.controls_support import IP, advance, bans_at_cloudflare, host
from tests.test_cli_bans import cfban_env, run_cfban, write_config

# (backend, plan, max_lists) → where a challenge goes, and where the escalated block goes
CASES: dict[str, tuple[str, Plan, int, str, str]] = {
    "access-rules": ("access-rules", "free", 1, "managed_challenge", "block"),
    "list, several lists": (
        "list",
        "pro",
        10,
        "list cfban_managed_challenge: managed_challenge",
        "list cfban: block",
    ),
    "list, Free plan": ("list", "free", 1, "managed_challenge", "list cfban: block"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_challenge_first_then_block_for_a_repeat_offender(tmp_path: Path, case: str) -> None:
    kind, plan, max_lists, challenged, blocked = CASES[case]
    emu = Emulator(clock=FakeClock(), plan=plan)
    with host(tmp_path, emu, "a", kind, cloudflare={"max_lists": max_lists}) as a:
        first = a.ban(IP, jail="web")
        assert (first.action, first.delivered) == ("managed_challenge", True)
        assert bans_at_cloudflare(emu) == {IP: challenged}
        [view] = a.list_bans()
        assert view.action == "managed_challenge"
        assert [e.action for e in a.list_remote()] == ["managed_challenge"]
        advance(emu, 700)  # the ban ends and is removed
        assert a.deliver(deadline=None).removed == [IP]
        assert bans_at_cloudflare(emu) == {}
        second = a.ban(IP, jail="web")  # a repeat offender: escalated to a block
        assert (second.action, second.delivered) == ("block", True)
        assert bans_at_cloudflare(emu) == {IP: blocked}
        assert [e.action for e in a.list_remote()] == ["block"]


def test_escalation_while_a_challenge_stands_makes_the_entry_a_block(tmp_path: Path) -> None:
    emu = Emulator(clock=FakeClock())
    jails = {"web": {"filter": "x", "action": "managed_challenge", "bantime": 3600},
             "ssh": {"filter": "y", "action": "block"}}  # fmt: skip
    with host(tmp_path, emu, "a", "access-rules", jails=jails) as a:
        a.ban(IP, jail="web")
        assert bans_at_cloudflare(emu) == {IP: "managed_challenge"}
        a.ban(IP, jail="ssh")  # the stricter action of both holders wins
        [rule] = emu.access_rules()
        assert rule["mode"] == "block"
        marker = parse_marker(rule["notes"])
        assert marker is not None and marker.action == "block"
        assert marker.jails == ("ssh", "web")


def test_action_and_escalation_are_validated() -> None:
    base = {"filter": "x"}
    for bad in ({"action": "tarpit"}, {"escalate_after": -1}):
        with pytest.raises(ValueError):
            Settings.model_validate({"jails": {"web": {**base, **bad}}})
    rules = Settings.model_validate(
        {"cloudflare": {"mode": "js_challenge"}, "jails": {"web": base}}
    ).rules()
    assert rules.jail("web").action == "js_challenge"  # [cloudflare] mode is the default
    assert rules.jail(None).action == "js_challenge"


def test_setup_and_check_cover_every_list_and_rule_and_touch_nothing_else(
    tmp_path: Path,
) -> None:
    emu = Emulator(clock=FakeClock(), plan="pro")
    emu.seed_access_rule("203.0.113.99", notes="added by hand")
    emu.seed_list("theirs")
    emu.seed_items("theirs", [("203.0.113.98", "by hand")])
    emu.seed_custom_rule("(ip.src eq 203.0.113.97)", description="someone else's")
    with serve(emu) as base_url:
        write_config(
            tmp_path / "cfban.toml",
            emu,
            'backend = "list"\nmax_lists = 10\n\n[jails.web]\nfilter = "nginx-probes"\n'
            'action = "managed_challenge"\nescalate_after = 1\n',
        )
        env = cfban_env(tmp_path)
        env.update(CFBAN_API_URL=base_url, CLOUDFLARE_API_TOKEN=emu.token)
        before = run_cfban(env, "check")
        assert before.returncode != 0
        assert "list cfban_managed_challenge missing" in before.stdout
        out = run_cfban(env, "setup")
        assert out.returncode == 0, out.stderr
        assert "created IP list cfban " in out.stdout
        assert "created IP list cfban_managed_challenge " in out.stdout
        rules = {r["expression"]: r["action"] for r in emu.custom_rules()}
        assert rules["(ip.src in $cfban)"] == "block"
        assert rules["(ip.src in $cfban_managed_challenge)"] == "managed_challenge"
        check = run_cfban(env, "check")
        assert check.returncode == 0, check.stdout
        assert "list cfban_managed_challenge: 0 items" in check.stdout
        assert "custom rule present (managed_challenge)" in check.stdout
        assert "custom rule present (block)" in check.stdout
        assert "shared allowlist" in check.stdout
        ban = run_cfban(env, "ban", IP, "--jail", "web")
        assert ban.returncode == 0, ban.stderr
        assert "managed_challenge" in ban.stdout
        listed = json.loads(run_cfban(env, "list", "--json").stdout)["bans"]
        assert [(b["target"], b["action"]) for b in listed] == [(IP, "managed_challenge")]
        assert run_cfban(env, "unban", IP).returncode == 0
        assert run_cfban(env, "sync", "--prune").returncode == 0
    # nothing cfban did not make was changed
    assert [(r["configuration"]["value"], r["notes"]) for r in emu.access_rules()
            if r["mode"] != "whitelist"] == [("203.0.113.99", "added by hand")]  # fmt: skip
    assert [(i["ip"], i["comment"]) for i in emu.list_items("theirs")] == [
        ("203.0.113.98", "by hand")
    ]
    theirs = [r for r in emu.custom_rules() if r["expression"] == "(ip.src eq 203.0.113.97)"]
    assert [(r["action"], r["description"]) for r in theirs] == [("block", "someone else's")]


def test_holds_made_before_actions_existed_are_blocks(tmp_path: Path) -> None:
    from cfban.state import MIGRATIONS, Database, StateStore, migrate

    clock = FakeClock()
    db = Database.open(tmp_path)
    migrate(db, clock, MIGRATIONS[:3])  # a state written by the version before actions
    with db.write() as conn:
        conn.execute(
            "INSERT INTO holders (target, jail, address, banned_at, expires_at) "
            "VALUES ('198.51.100.7', 'sshd', '198.51.100.7', 0, NULL)"
        )
        conn.execute("INSERT INTO bans (target, state, updated_at) VALUES ('198.51.100.7', "
                     "'delivered', 0)")  # fmt: skip
    db.close()
    with StateStore.open(tmp_path, clock) as store:
        [view] = store.bans()
        assert view.action == "block"
        assert store.held_targets()["198.51.100.7"].action == "block"


def test_markers_carry_the_action() -> None:
    from cfban.cloudflare import Marker, format_marker

    old = "cfban v1 exp=1767225600 jails=sshd (until 2026-01-01T00:00:00Z)"
    assert parse_marker(old) == Marker(1767225600.0, ("sshd",), "block")
    challenge = Marker(1767225600.0, ("web",), "managed_challenge")
    text = format_marker(challenge)
    assert text == (
        "cfban v1 exp=1767225600 jails=web act=managed_challenge (until 2026-01-01T00:00:00Z)"
    )
    assert parse_marker(text) == challenge
    assert format_marker(Marker(None, ("ssh",))) == "cfban v1 exp=never jails=ssh (permanent)"
    merged = challenge.merged(Marker(1.0, ("ssh",), "block"))
    assert (merged.action, merged.jails) == ("block", ("ssh", "web"))
    assert not challenge.covers(Marker(1.0, ("web",), "block"))
    assert Marker(None, ("web",), "block").covers(challenge)


def test_one_list_for_a_challenge_mode_reports_its_action(tmp_path: Path) -> None:
    emu = Emulator(clock=FakeClock())
    cf = {"mode": "managed_challenge"}
    with host(tmp_path, emu, "a", "list", cloudflare=cf, jails={}) as a:
        assert a.ban(IP).delivered
        assert bans_at_cloudflare(emu) == {IP: "list cfban: managed_challenge"}
        assert [e.action for e in a.list_remote()] == ["managed_challenge"]
