"""The access-rules backend against the emulator; also the marker, the dry run, the factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfban.clock import FakeClock
from cfban.cloudflare import (
    AccessRulesBackend,
    Backend,
    BanEntry,
    DryRunBackend,
    Marker,
    format_marker,
    make_backend,
    parse_marker,
)
from cfban.config import Settings
from cfban.errors import AuthError, ConfigError
from tests.cfemu import BASE_URL, ZONE_FIREWALL_READ, Emulator, Fault

RULES = "/zones/{zone_id}/firewall/access_rules/rules"
T0 = 1_800_000_000.0


def settings(emu: Emulator, **cloudflare: Any) -> Settings:
    values: dict[str, Any] = {
        "api_token": emu.token,
        "api_url": BASE_URL,
        "backend": "access-rules",
        "zone_id": emu.zone_id,
        "account_id": emu.account_id,
    }
    values.update(cloudflare)
    return Settings.model_validate({"cloudflare": values})


def backend(emu: Emulator, tmp_path: Path, **cloudflare: Any) -> AccessRulesBackend:
    made = make_backend(
        settings(emu, **cloudflare),
        clock=emu.clock,
        state_dir=tmp_path,
        transport=emu.transport(),
    )
    assert isinstance(made, AccessRulesBackend)
    return made


def ours(emu: Emulator) -> dict[str, dict[str, Any]]:
    return {
        r["configuration"]["value"]: r
        for r in emu.access_rules(emu.zone_id)
        if (r["notes"] or "").startswith("cfban v1 ")
    }


# -- the marker ---------------------------------------------------------------------------


def test_marker_round_trip() -> None:
    marker = Marker.of(T0 + 0.9, ("sshd", "nginx probes", "sshd"))
    text = format_marker(marker)
    assert text.startswith(f"cfban v1 exp={int(T0)} jails=nginx_probes,sshd (until 20")
    assert parse_marker(text) == Marker(T0, ("nginx_probes", "sshd"))
    assert parse_marker(format_marker(Marker(None, ()))) == Marker(None, ())


@pytest.mark.parametrize(
    "foreign",
    ["", None, "cfban: sshd 2026-01-01", "blocked by cfban v1 exp=1", "CFBAN V1 exp=1",
     "cfban v1 exp=soon", "cfban v1 exp=12abc", "cfban v2 exp=1"],
)  # fmt: skip
def test_marker_ignores_foreign_notes(foreign: str | None) -> None:
    assert parse_marker(foreign) is None


@given(
    st.one_of(st.none(), st.integers(0, 10**11)),
    st.lists(st.text(min_size=1, max_size=20), max_size=5),
)
def test_marker_parse_inverts_format(expiry: int | None, jails: list[str]) -> None:
    marker = Marker.of(expiry, jails)
    assert parse_marker(format_marker(marker)) == marker


def test_marker_merge_never_lowers() -> None:
    assert Marker(10, ("a",)).merged(Marker(5, ("b",))) == Marker(10, ("a", "b"))
    assert Marker(10, ()).merged(Marker(None, ())) == Marker(None, ())
    assert Marker(10, ("a",)).covers(Marker(5, ("a",)))
    assert not Marker(10, ("a",)).covers(Marker(11, ("a",)))


# -- add --------------------------------------------------------------------------------------


def test_add_creates_marked_rules(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path, mode="managed_challenge")
    refs = be.add(
        [
            BanEntry("203.0.113.7", T0, ("sshd",)),
            BanEntry("2001:db8:1:2::/64", None, ("nginx",)),
            BanEntry("2001:db8::9", T0, ("nginx",)),
        ]
    )
    rules = ours(cf_emulator)
    assert {r["id"] for r in rules.values()} == set(refs.values())
    v4 = rules["203.0.113.7"]
    assert v4["configuration"]["target"] == "ip" and v4["mode"] == "managed_challenge"
    assert refs["203.0.113.7"] == v4["id"]
    assert parse_marker(v4["notes"]) == Marker(T0, ("sshd",), "managed_challenge")
    assert rules["2001:db8:1:2::/64"]["configuration"]["target"] == "ip_range"
    nginx = Marker(None, ("nginx",), "managed_challenge")
    assert parse_marker(rules["2001:db8:1:2::/64"]["notes"]) == nginx
    assert rules["2001:db8::9"]["configuration"]["target"] == "ip6"
    assert cf_emulator.count("POST", RULES) == 3


def test_add_is_idempotent_and_only_raises_expiry(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    first = be.add([BanEntry("198.51.100.4", T0, ("sshd",))])
    again = be.add([BanEntry("198.51.100.4", T0 - 500, ("sshd",))])
    assert again == first
    assert cf_emulator.count("PATCH") == 0  # nothing to raise
    assert parse_marker(ours(cf_emulator)["198.51.100.4"]["notes"]) == Marker(T0, ("sshd",))
    later = be.add([BanEntry("198.51.100.4", T0 + 600, ("nginx",))])
    assert later == first
    assert len(ours(cf_emulator)) == 1
    notes = ours(cf_emulator)["198.51.100.4"]["notes"]
    assert parse_marker(notes) == Marker(T0 + 600, ("nginx", "sshd"))


def test_replayed_bans_cost_one_listing(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    bans = [BanEntry(f"198.51.100.{n}", T0, ("sshd",)) for n in range(1, 41)]
    refs = be.add(bans)
    cf_emulator.log.clear()
    assert be.add(bans) == refs  # e.g. fail2ban restarted and replays every ban
    assert [(e.method, e.status) for e in cf_emulator.log.entries] == [("GET", 200)]
    bans[0] = BanEntry("198.51.100.1", T0 + 60, ("sshd",))
    cf_emulator.log.clear()
    assert be.add(bans) == refs
    assert [e.method for e in cf_emulator.log.entries] == ["GET", "PATCH"]


def test_same_target_twice_in_one_call_is_one_rule(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    refs = be.add([BanEntry("192.0.2.1", T0, ("a",)), BanEntry("192.0.2.1", None, ("b",))])
    assert list(refs) == ["192.0.2.1"]
    assert parse_marker(ours(cf_emulator)["192.0.2.1"]["notes"]) == Marker(None, ("a", "b"))
    assert cf_emulator.count("POST", RULES) == 1


def test_prefix_access_rules_cannot_express_is_skipped(
    cf_emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    be = backend(cf_emulator, tmp_path)
    assert be.add([BanEntry("2001:db8::/56", T0, ()), BanEntry("10.1.0.0/20", T0, ())]) == {}
    assert cf_emulator.count("POST") == 0
    assert "list backend" in caplog.text


def test_account_level_rules(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path, zone_id=None)
    refs = be.add([BanEntry("203.0.113.9", T0, ("sshd",))])
    rules = cf_emulator.access_rules(cf_emulator.account_id)
    assert [r["id"] for r in rules] == [refs["203.0.113.9"]]
    assert be.list_owned()[0].scope == cf_emulator.account_id
    assert be.remove([("203.0.113.9", refs["203.0.113.9"])], not_after=None) == ["203.0.113.9"]
    assert cf_emulator.access_rules(cf_emulator.account_id) == []


def test_missing_zone_and_account_is_config_error(cf_emulator: Emulator, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="zone_id"):
        backend(cf_emulator, tmp_path, zone_id=None, account_id=None)


def test_missing_edit_permission_names_it(cf_emulator: Emulator, tmp_path: Path) -> None:
    token = cf_emulator.add_token(permissions=[ZONE_FIREWALL_READ])
    be = backend(cf_emulator, tmp_path, api_token=token.value)
    with pytest.raises(AuthError, match="Firewall Services > Edit") as info:
        be.add([BanEntry("203.0.113.7", T0, ())])
    assert token.value not in str(info.value)


# -- remove -----------------------------------------------------------------------------------


def test_manual_unban_is_one_delete(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    refs = be.add([BanEntry("203.0.113.7", T0, ())])
    cf_emulator.log.clear()
    assert be.remove([("203.0.113.7", refs["203.0.113.7"])], not_after=None) == ["203.0.113.7"]
    assert [(e.method, e.status) for e in cf_emulator.log.entries] == [("DELETE", 200)]
    assert ours(cf_emulator) == {}
    # Gone already: still counts as removed, and nothing else is touched; so does a ref that
    # is no rule id (a dry run's).
    assert be.remove([("203.0.113.7", refs["203.0.113.7"])], not_after=None) == ["203.0.113.7"]
    assert be.remove([("203.0.113.7", None)], not_after=T0) == ["203.0.113.7"]
    assert be.remove([("203.0.113.7", "dry-run:203.0.113.7")], not_after=None) == ["203.0.113.7"]


def test_remove_without_ref_finds_the_exact_rule(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    be.add([BanEntry("198.51.100.4", T0, ()), BanEntry("198.51.100.45", T0, ())])
    be.add([BanEntry("2001:db8:1:2::/64", T0, ())])
    assert be.remove([("198.51.100.4", None)], not_after=None) == ["198.51.100.4"]
    assert be.remove([("2001:db8:1:2::/64", None)], not_after=None) == ["2001:db8:1:2::/64"]
    assert set(ours(cf_emulator)) == {"198.51.100.45"}


def test_two_hosts_not_after(cf_emulator: Emulator, tmp_path: Path) -> None:
    host_a = backend(cf_emulator, tmp_path / "a")
    host_b = backend(cf_emulator, tmp_path / "b")
    ref_a = host_a.add([BanEntry("203.0.113.7", T0 + 100, ("sshd",))])["203.0.113.7"]
    ref_b = host_b.add([BanEntry("203.0.113.7", T0 + 900, ("nginx",))])["203.0.113.7"]
    assert ref_a == ref_b
    # Host A's ban expires: host B still holds the address until T0+900, so the rule stays.
    assert host_a.remove([("203.0.113.7", ref_a)], not_after=T0 + 100) == []
    assert parse_marker(ours(cf_emulator)["203.0.113.7"]["notes"]).expires_at == T0 + 900  # type: ignore[union-attr]
    # Host B's expiry passes: now it goes.
    assert host_b.remove([("203.0.113.7", ref_b)], not_after=T0 + 900) == ["203.0.113.7"]
    assert ours(cf_emulator) == {}


def test_expiry_removal_in_bulk_lists_once(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    targets = [f"198.51.100.{n}" for n in range(1, 11)]
    refs = be.add([BanEntry(t, T0, ("sshd",)) for t in targets])
    backend(cf_emulator, tmp_path / "b").add([BanEntry(targets[0], T0 + 900, ("sshd",))])
    cf_emulator.seed_access_rule("198.51.100.77", notes="someone's")
    cf_emulator.log.clear()
    pairs: list[tuple[str, str | None]] = [(t, refs[t]) for t in targets]
    removed = be.remove([*pairs, ("198.51.100.77", None)], not_after=T0)
    assert removed == targets[1:] + ["198.51.100.77"]  # the first is held by host B
    assert [e.method for e in cf_emulator.log.entries] == ["GET"] + ["DELETE"] * 9
    remaining = {r["configuration"]["value"] for r in cf_emulator.access_rules()}
    assert remaining == {targets[0], "198.51.100.77"}


def test_permanent_ban_survives_expiry_based_removal(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    ref = be.add([BanEntry("203.0.113.8", None, ())])["203.0.113.8"]
    assert be.remove([("203.0.113.8", ref)], not_after=T0 + 10**6) == []
    assert be.remove([("203.0.113.8", ref)], not_after=None) == ["203.0.113.8"]


# -- ownership --------------------------------------------------------------------------------


def test_foreign_rules_are_never_touched(cf_emulator: Emulator, tmp_path: Path) -> None:
    emu = cf_emulator
    foreign = [
        emu.seed_access_rule("203.0.113.7", notes="manual block"),
        emu.seed_access_rule("198.51.100.0/24", notes="cfban: sshd old style"),
        emu.seed_access_rule("2001:db8:1:2::/64", mode="whitelist", notes="office"),
        emu.seed_access_rule("192.0.2.50", scope="account", notes="cfban v1 exp=1 jails=x"),
    ]
    before = {r["id"]: r for r in emu.access_rules()}
    be = backend(emu, tmp_path)
    refs = be.add(
        [
            BanEntry("203.0.113.7", T0, ("sshd",)),  # covered by a manual rule: left alone
            BanEntry("2001:db8:1:2::/64", T0, ("sshd",)),  # whitelisted by someone: left alone
            BanEntry("192.0.2.50", T0, ("sshd",)),  # an account rule: the zone gets its own
            BanEntry("203.0.113.99", T0, ("sshd",)),
        ]
    )
    assert set(refs) == {"192.0.2.50", "203.0.113.99"}
    removed = be.remove(
        [("203.0.113.7", None), ("198.51.100.0/24", None), ("2001:db8:1:2::/64", None),
         ("192.0.2.50", None), ("203.0.113.99", refs["203.0.113.99"])],
        not_after=None,
    )  # fmt: skip
    assert len(removed) == 5
    after = {r["id"]: r for r in emu.access_rules()}
    for rule in foreign:
        assert after[rule["id"]] == before[rule["id"]]
    assert set(after) == set(before)
    assert {e.target for e in be.list_owned()} == set()


def test_list_owned_reads_markers(cf_emulator: Emulator, tmp_path: Path) -> None:
    cf_emulator.seed_access_rule("192.0.2.1", notes="not ours")
    be = backend(cf_emulator, tmp_path)
    refs = be.add([BanEntry("192.0.2.2", T0, ("sshd",)), BanEntry("2001:db8::/64", None, ())])
    owned = {e.target: e for e in be.list_owned()}
    assert set(owned) == {"192.0.2.2", "2001:db8::/64"}
    assert owned["192.0.2.2"].ref == refs["192.0.2.2"]
    assert owned["192.0.2.2"].expires_at == T0 and owned["192.0.2.2"].jails == ("sshd",)
    assert owned["2001:db8::/64"].expires_at is None
    assert owned["192.0.2.2"].scope == cf_emulator.zone_id


# -- budget -----------------------------------------------------------------------------------


def test_never_exceeds_the_configured_budget(cf_emulator: Emulator, tmp_path: Path) -> None:
    clock = cf_emulator.clock
    assert isinstance(clock, FakeClock)
    sent: list[float] = []

    def timed(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now())
        return cf_emulator.handler(request)

    be = make_backend(
        settings(cf_emulator, requests_per_window=10, window_seconds=60),
        clock=clock,
        state_dir=tmp_path,
        transport=httpx.MockTransport(timed),
    )
    refs = be.add([BanEntry(f"203.0.113.{n}", T0, ()) for n in range(1, 31)])
    assert len(refs) == 30 and len(sent) == 31  # a listing of cfban's rules, 30 POSTs
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 60) <= 10
    assert sent[-1] - sent[0] >= 120  # 30 requests at 10 per minute


# -- check, dry run, factory ------------------------------------------------------------------


def test_check_reports_token_and_access(cf_emulator: Emulator, tmp_path: Path) -> None:
    checks = backend(cf_emulator, tmp_path).check()
    assert [name for name, _, _ in checks] == ["token", "zone access rules", "permission to ban"]
    assert all(ok for _, ok, _ in checks), checks
    assert checks[2][2] == "the token has 'Zone > Firewall Services > Edit'"
    reader = cf_emulator.add_token(permissions=[ZONE_FIREWALL_READ])
    checks = backend(cf_emulator, tmp_path, api_token=reader.value).check()
    assert [ok for _, ok, _ in checks] == [True, True, False]
    assert "lacks 'Zone > Firewall Services > Edit'" in checks[2][2]
    assert cf_emulator.access_rules() == []  # checking changed nothing


def test_check_accepts_account_tokens(cf_emulator: Emulator, tmp_path: Path) -> None:
    token = cf_emulator.add_token(owner="account")
    checks = dict((n, (ok, d)) for n, ok, d in backend(cf_emulator, tmp_path,
                  api_token=token.value, zone_id=None).check())  # fmt: skip
    assert checks["token"] == (True, "valid and active (account token)")


def test_check_reports_a_bad_token(cf_emulator: Emulator, tmp_path: Path) -> None:
    checks = backend(cf_emulator, tmp_path, api_token="nope").check()
    assert not any(ok for _, ok, _ in checks)
    assert "CLOUDFLARE_API_TOKEN" in checks[0][2]


def test_dry_run_without_token(tmp_path: Path) -> None:
    lines: list[str] = []
    be = make_backend(Settings(), clock=FakeClock(), state_dir=tmp_path, writer=lines.append)
    assert isinstance(be, DryRunBackend) and isinstance(be, Backend)
    assert be.add([BanEntry("203.0.113.7", T0, ("sshd",))]) == {
        "203.0.113.7": "dry-run:203.0.113.7"
    }
    assert [e.target for e in be.list_owned()] == ["203.0.113.7"]
    assert be.remove([("203.0.113.7", None)], not_after=None) == ["203.0.113.7"]
    assert be.list_owned() == []
    assert lines[0].startswith("dry run: would ban 203.0.113.7 (cfban v1 exp=")
    assert lines[1] == "dry run: would unban 203.0.113.7"
    assert be.calls == lines
    assert not be.check()[0][1]
    assert not (tmp_path / "ratelimit").exists()


def test_factory_uses_the_host_budget_file(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    assert isinstance(be, Backend)
    be.add([BanEntry("203.0.113.7", T0, ())])
    assert (tmp_path / "ratelimit").stat().st_size == 8  # one request logged


# -- faults -----------------------------------------------------------------------------------


def test_lost_answers_do_not_duplicate_rules(cf_emulator: Emulator, tmp_path: Path) -> None:
    cf_emulator.faults.sequence(
        [Fault.applied_then_dropped(), Fault.server_error(503), Fault.timeout()],
        method="POST",
        path=RULES,
    )
    be = backend(cf_emulator, tmp_path)
    refs = be.add([BanEntry("203.0.113.7", T0, ()), BanEntry("203.0.113.8", T0, ())])
    assert sorted(refs) == ["203.0.113.7", "203.0.113.8"]
    assert {r["id"] for r in ours(cf_emulator).values()} == set(refs.values())


def test_server_rate_limit_is_waited_out(tmp_path: Path) -> None:
    emu = Emulator(clock=FakeClock(), rate_limit=5, rate_window=30)
    be = backend(emu, tmp_path)  # the local budget (1,200 / 300 s) does not know the server's
    refs = be.add([BanEntry(f"203.0.113.{n}", T0, ()) for n in range(1, 4)])
    refs |= be.add([BanEntry(f"203.0.113.{n}", T0, ()) for n in range(4, 7)])
    assert len(refs) == 6
    assert any(e.status == 429 for e in emu.log.entries)
    assert len(ours(emu)) == 6
