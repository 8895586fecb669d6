"""The list backend (IP list + WAF custom rule) against the Cloudflare emulator."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from cfban.clock import FakeClock, SystemClock
from cfban.cloudflare import (
    BanEntry,
    ListBackend,
    Marker,
    make_backend,
    parse_marker,
)
from cfban.cloudflare._listsetup import create_list, find_list
from cfban.config import Settings
from cfban.errors import AuthError, CloudflareError, ConfigError
from tests.cfemu import (
    ACCOUNT_LISTS_EDIT,
    ACCOUNT_LISTS_READ,
    BASE_URL,
    Emulator,
    Fault,
)
from tests.cfemu.plugin import ServedEmulator

ITEMS = "/accounts/{account_id}/rules/lists/{list_id}/items"
T0 = 1_800_000_000.0


def settings(emu: Emulator, **cloudflare: Any) -> Settings:
    values: dict[str, Any] = {
        "api_token": emu.token,
        "api_url": BASE_URL,
        "backend": "list",
        "zone_id": emu.zone_id,
        "account_id": emu.account_id,
    }
    values.update(cloudflare)
    return Settings.model_validate({"cloudflare": values})


def backend(emu: Emulator, tmp_path: Path, **cloudflare: Any) -> ListBackend:
    made = make_backend(
        settings(emu, **cloudflare), clock=emu.clock, state_dir=tmp_path, transport=emu.transport()
    )
    assert isinstance(made, ListBackend)
    return made


def items(emu: Emulator, name: str = "cfban") -> dict[str, dict[str, Any]]:
    return {i["ip"]: i for i in emu.list_items(name)}


def addresses(count: int) -> list[str]:
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    v4 = [str(ipaddress.IPv4Address(base + n)) for n in range(count - count // 10)]
    v6 = [f"2001:db8:{n:x}:1::/64" for n in range(count // 10)]
    return v4 + v6


@pytest.fixture
def pro() -> Emulator:
    """An account on a paid plan: ten lists allowed, so foreign lists can coexist."""
    return Emulator(clock=FakeClock(), plan="pro")


def test_first_add_creates_list_and_rule(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path, mode="managed_challenge")
    refs = be.add([BanEntry("203.0.113.7", T0, ("sshd",)), BanEntry("2001:db8::/64", None, ())])
    assert [lst["name"] for lst in cf_emulator.lists()] == ["cfban"]
    found = items(cf_emulator)
    assert set(found) == {"203.0.113.7", "2001:db8::/64"}
    # Nothing is read back after a write: ids are learnt when they are needed (removing).
    assert refs == {"203.0.113.7": "", "2001:db8::/64": ""}
    challenge = Marker(T0, ("sshd",), "managed_challenge")  # the list's mode
    assert parse_marker(found["203.0.113.7"]["comment"]) == challenge
    rules = cf_emulator.custom_rules(cf_emulator.zone_id)
    assert len(rules) == 1
    assert rules[0]["expression"] == "(ip.src in $cfban)"
    assert rules[0]["action"] == "managed_challenge"
    assert rules[0]["description"].startswith("cfban v1 rule")


def test_flood_of_5000_addresses_in_few_requests(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    targets = addresses(5000)
    refs = be.add([BanEntry(t, T0, ("nginx-limit-req",)) for t in targets])
    total = len(cf_emulator.log.entries)
    print(f"flood: 5,000 addresses added with {total} API requests")
    assert set(refs) == set(targets)
    assert set(cf_emulator.list_ips("cfban")) == set(targets)
    # lists, create, rule (entry point, create), one POST, one poll: no read-back
    assert total <= 7
    assert cf_emulator.count("GET", ITEMS) == 0
    cf_emulator.log.clear()
    removed = be.remove([(t, refs[t]) for t in targets], not_after=None)
    print(f"flood: 5,000 addresses removed with {len(cf_emulator.log.entries)} API requests")
    assert set(removed) == set(targets)
    assert cf_emulator.list_ips("cfban") == []
    # lists, one paged read for the ids (10 pages of 500), one DELETE, its poll
    assert len(cf_emulator.log.entries) <= 14


def test_setup_is_idempotent_and_keeps_other_rules(pro: Emulator, tmp_path: Path) -> None:
    pro.seed_list("friends")
    first = pro.seed_custom_rule("(ip.src in $friends)", action="skip", description="allow")
    second = pro.seed_custom_rule('(http.request.uri.path eq "/x")', description="someone's")
    lines = backend(pro, tmp_path).setup()
    assert any("created IP list cfban" in line for line in lines)
    assert any("added cfban's custom rule" in line for line in lines)
    rules = pro.custom_rules(pro.zone_id)
    assert rules[:2] == [first, second]  # untouched, same order
    assert rules[2]["ref"] == "cfban_cfban"
    pro.log.clear()
    again = backend(pro, tmp_path).setup()
    assert any("exists" in line for line in again)
    assert any("in place" in line for line in again)
    assert all(e.method == "GET" for e in pro.log.entries)
    assert pro.custom_rules(pro.zone_id) == rules


def test_setup_on_several_zones_and_none(cf_emulator: Emulator, tmp_path: Path) -> None:
    other = cf_emulator.add_zone(name="example.org")
    lines = backend(cf_emulator, tmp_path, zone_ids=[other.id]).setup()
    assert len(cf_emulator.custom_rules(cf_emulator.zone_id)) == 1
    assert len(cf_emulator.custom_rules(other.id)) == 1
    assert sum("created the custom rules entry point" in line for line in lines) == 2
    bare = backend(cf_emulator, tmp_path, zone_id=None).setup()
    assert "no zone configured" in bare[-1]


def test_expiry_is_raised_never_lowered(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    ref = be.add([BanEntry("198.51.100.4", T0, ("sshd",))])["198.51.100.4"]
    cf_emulator.log.clear()
    assert be.add([BanEntry("198.51.100.4", T0 - 60, ("sshd",))]) == {"198.51.100.4": ref}
    assert cf_emulator.count("POST") == 0  # already covered: nothing written
    be.add([BanEntry("198.51.100.4", T0 + 60, ("nginx",))])
    comment = items(cf_emulator)["198.51.100.4"]["comment"]
    assert parse_marker(comment) == Marker(T0 + 60, ("nginx", "sshd"))


def test_two_hosts_not_after(cf_emulator: Emulator, tmp_path: Path) -> None:
    host_a = backend(cf_emulator, tmp_path / "a")
    host_b = backend(cf_emulator, tmp_path / "b")
    host_a.add([BanEntry("203.0.113.7", T0 + 100, ("sshd",)), BanEntry("203.0.113.8", T0, ())])
    host_b.add([BanEntry("203.0.113.7", T0 + 900, ("sshd",))])
    removed = host_a.remove([("203.0.113.7", None), ("203.0.113.8", None)], not_after=T0 + 100)
    assert removed == ["203.0.113.8"]
    assert set(items(cf_emulator)) == {"203.0.113.7"}
    assert host_b.remove([("203.0.113.7", None)], not_after=T0 + 900) == ["203.0.113.7"]
    assert items(cf_emulator) == {}


def test_remove_matches_exactly_despite_prefix_search(
    cf_emulator: Emulator, tmp_path: Path
) -> None:
    be = backend(cf_emulator, tmp_path)
    be.add(
        [BanEntry("1.2.3.4", T0, ()), BanEntry("1.2.3.45", T0, ()), BanEntry("1.2.3.40", T0, ())]
    )
    assert be.remove([("1.2.3.4", None)], not_after=None) == ["1.2.3.4"]
    assert set(items(cf_emulator)) == {"1.2.3.45", "1.2.3.40"}
    assert be.remove([("9.9.9.9", None)], not_after=None) == ["9.9.9.9"]  # absent: removed


def test_foreign_items_lists_and_rules_untouched(pro: Emulator, tmp_path: Path) -> None:
    pro.seed_list("cfban")
    pro.seed_items("cfban", [("203.0.113.7", "added by hand"), ("203.0.113.8", "")])
    pro.seed_list("other")
    pro.seed_items("other", [("203.0.113.9", "cfban v1 exp=1 jails=x")])
    rule = pro.seed_custom_rule("(ip.src in $other)", description="other team")
    be = backend(pro, tmp_path, list_name="cfban")
    refs = be.add([BanEntry("203.0.113.7", T0, ("sshd",)), BanEntry("203.0.113.9", T0, ())])
    assert set(refs) == {"203.0.113.9"}  # .7 is someone else's entry: left as it is
    removed = be.remove(
        [("203.0.113.7", None), ("203.0.113.8", None), ("203.0.113.9", None)], not_after=None
    )
    assert len(removed) == 3
    assert {i["ip"]: i.get("comment", "") for i in pro.list_items("cfban")} == {
        "203.0.113.7": "added by hand",
        "203.0.113.8": "",
    }
    assert pro.list_items("other")[0]["comment"] == "cfban v1 exp=1 jails=x"
    assert pro.custom_rules(pro.zone_id)[0] == rule
    assert {e.target for e in be.list_owned()} == set()


def test_one_write_for_a_large_batch(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    be.add([BanEntry(t, T0, ()) for t in addresses(2500)])
    assert cf_emulator.count("POST", ITEMS) == 1


def test_failed_operation_raises(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    be.setup()
    cf_emulator.options.fail_operations = 1
    with pytest.raises(CloudflareError, match="internal error"):
        be.add([BanEntry("203.0.113.7", T0, ())])
    assert be.add([BanEntry("203.0.113.7", T0, ())])  # the retry lands


def test_list_owned(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    assert be.list_owned() == []
    be.add([BanEntry("203.0.113.7", T0, ("sshd",)), BanEntry("2001:db8::/64", None, ())])
    owned = {e.target: e for e in be.list_owned()}
    assert {t: e.ref for t, e in owned.items()} == {
        t: i["id"] for t, i in items(cf_emulator).items()
    }
    assert owned["203.0.113.7"].expires_at == T0
    assert owned["2001:db8::/64"].scope == cf_emulator.account_id


def test_singles_echoed_as_cidr_still_match(cf_emulator: Emulator, tmp_path: Path) -> None:
    cf_emulator.options.cidr_singles = True
    be = backend(cf_emulator, tmp_path)
    refs = be.add([BanEntry("203.0.113.7", T0, ())])
    assert set(refs) == {"203.0.113.7"}
    assert be.remove([("203.0.113.7", None)], not_after=None) == ["203.0.113.7"]
    assert cf_emulator.list_ips("cfban") == []


def test_check(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    before = {name: ok for name, ok, _ in be.check()}
    assert before == {
        "token": True,
        "ip list": False,
        "permission to ban": True,
        f"custom rule {cf_emulator.zone_id}": False,
    }
    be.setup()
    assert all(ok for _, ok, _ in be.check())


def test_list_backend_needs_an_account(cf_emulator: Emulator, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="account_id"):
        backend(cf_emulator, tmp_path, account_id=None)
    with pytest.raises(ConfigError, match="lowercase"):
        backend(cf_emulator, tmp_path, list_name="Bad-Name")


# -- faults and recovery ----------------------------------------------------------------------


def test_list_writes_survive_faults(cf_emulator: Emulator, tmp_path: Path) -> None:
    be = backend(cf_emulator, tmp_path)
    be.setup()
    cf_emulator.faults.sequence(
        [Fault.server_error(502, html=True), Fault.dropped(), Fault.applied_then_dropped()],
        method="POST",
        path="/accounts/*/rules/lists/*/items",
    )
    cf_emulator.faults.sequence(
        [Fault.rate_limited(retry_after=None, html=False)],
        method="GET",
        path="/accounts/*/rules/lists/bulk_operations/*",
    )
    targets = addresses(50)
    refs = be.add([BanEntry(t, T0, ("sshd",)) for t in targets])
    assert set(refs) == set(targets)
    assert set(cf_emulator.list_ips("cfban")) == set(targets)
    # The POST that landed but lost its answer left an operation pending: the retry met 429
    # (one pending operation per account) and waited it out.
    assert any(e.status == 429 for e in cf_emulator.log.entries)


def test_list_deleted_meanwhile_is_recreated(pro: Emulator, tmp_path: Path) -> None:
    be = backend(pro, tmp_path)
    be.add([BanEntry("203.0.113.7", T0, ())])
    with pro._lock:  # someone deletes the rule and the list in the dashboard
        pro.state.rulesets.clear()
        pro.state.lists.clear()
    # The next write finds the list gone, makes it (and its rule) again and lands.
    assert set(be.add([BanEntry("203.0.113.8", T0, ())])) == {"203.0.113.8"}
    assert pro.list_ips("cfban") == ["203.0.113.8"]
    assert len(pro.custom_rules(pro.zone_id)) == 1


def test_over_loopback_http(
    cf_server: ServedEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")  # httpx and httpcore included: the token must not show
    emu = cf_server.emulator
    emu.options.bulk_polls = 0
    made = make_backend(
        settings(emu, api_url=cf_server.base_url, timeout=5.0),
        clock=SystemClock(),
        state_dir=tmp_path,
    )
    assert isinstance(made, ListBackend)
    try:
        refs = made.add([BanEntry("203.0.113.7", T0, ("sshd",))])
        assert emu.list_ips("cfban") == ["203.0.113.7"]
        assert made.remove([("203.0.113.7", refs["203.0.113.7"])], not_after=None)
        assert emu.list_ips("cfban") == []
    finally:
        made.close()
    assert "HTTP Request" in caplog.text
    assert cf_server.token not in caplog.text


def test_token_without_zone_waf(
    cf_emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = cf_emulator.add_token(permissions=[ACCOUNT_LISTS_EDIT])
    be = backend(cf_emulator, tmp_path, api_token=token.value)
    with pytest.raises(AuthError, match="Zone WAF") as info:
        be.setup()
    assert token.value not in str(info.value)
    # Filling the list still works (a rule made by hand may use it); the gap is logged.
    assert set(be.add([BanEntry("203.0.113.7", T0, ())])) == {"203.0.113.7"}
    assert "custom rule" in caplog.text
    checks = {name: ok for name, ok, _ in be.check()}
    assert checks["ip list"] and checks["permission to ban"]
    assert not checks[f"custom rule {cf_emulator.zone_id}"]
    reader = cf_emulator.add_token(permissions=[ACCOUNT_LISTS_READ])
    checks = {n: ok for n, ok, _ in backend(cf_emulator, tmp_path, api_token=reader.value).check()}
    assert checks["ip list"] and not checks["permission to ban"]


def test_concurrent_list_creation(cf_emulator: Emulator, tmp_path: Path) -> None:
    host_a = backend(cf_emulator, tmp_path / "a")
    http_b = backend(cf_emulator, tmp_path / "b")._http
    account = cf_emulator.account_id
    assert find_list(http_b, account, "cfban") is None  # B looked before A created the list
    host_a.setup()
    created = create_list(http_b, account, "cfban")
    assert created.name == "cfban"
    assert len(cf_emulator.lists()) == 1
