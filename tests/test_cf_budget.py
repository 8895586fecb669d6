"""What list writes cost, the mirror's multi-host guarantees, and the on_full policies."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from cfban.clock import FakeClock
from cfban.cloudflare import BanEntry, ListFullError, parse_marker
from tests.cfemu import Emulator
from tests.test_cf_lists import backend

T0 = 1_800_000_000.0
ITEMS = "/accounts/{account_id}/rules/lists/{list_id}/items"


def addresses(count: int, start: int = 0) -> list[str]:
    base = int(ipaddress.IPv4Address("100.64.0.0")) + start
    return [str(ipaddress.IPv4Address(base + n)) for n in range(count)]


def comments(emu: Emulator) -> dict[str, str]:
    return {i["ip"]: i["comment"] for i in emu.list_items("cfban")}


@pytest.fixture
def emu() -> Emulator:
    made = Emulator(clock=FakeClock())
    made.options.items_per_page = 500
    made.options.bulk_polls = 10**6  # only time completes an operation, as at Cloudflare
    made.options.bulk_seconds = 0.5
    return made


def test_a_write_costs_the_same_whatever_the_list_holds(emu: Emulator, tmp_path: Path) -> None:
    be = backend(emu, tmp_path)
    be.add([BanEntry(t, T0, ("seed",)) for t in addresses(6000)])
    for size_before in (6000, 6001):
        emu.log.clear()
        be.add([BanEntry(addresses(1, start=size_before)[0], T0, ("sshd",))])
        # the list (is the mirror exact?), the write, one poll at its expected completion
        assert [(e.method, e.status) for e in emu.log.entries] == [
            ("GET", 200),
            ("POST", 200),
            ("GET", 200),
        ]
    assert len(emu.list_ips("cfban")) == 6002


def test_a_new_process_trusts_the_mirror_file(emu: Emulator, tmp_path: Path) -> None:
    backend(emu, tmp_path).add([BanEntry(t, T0, ()) for t in addresses(1500)])
    emu.log.clear()
    again = backend(emu, tmp_path)  # e.g. the next hook's deliverer
    again.add([BanEntry("203.0.113.7", T0, ())])
    assert emu.count("GET", ITEMS) == 0  # no read of the list
    assert emu.count() == 3  # list, write, poll (the rule is checked once an hour per host)


def test_another_hosts_longer_marker_is_merged_not_shortened(emu: Emulator, tmp_path: Path) -> None:
    host_a = backend(emu, tmp_path / "a")
    host_b = backend(emu, tmp_path / "b")
    host_a.add([BanEntry("203.0.113.7", T0 + 100, ("sshd",))])
    host_b.add([BanEntry("203.0.113.7", T0 + 900, ("nginx",))])
    # A's mirror still says T0 + 100; the list's modified_on tells A someone else wrote
    host_a.add([BanEntry("203.0.113.7", T0 + 200, ("sshd",))])
    marker = parse_marker(comments(emu)["203.0.113.7"])
    assert marker is not None and marker.expires_at == T0 + 900
    assert marker.jails == ("nginx", "sshd")
    # and A does not remove what B still holds
    assert host_a.remove([("203.0.113.7", None)], not_after=T0 + 200) == []
    assert "203.0.113.7" in comments(emu)


def test_a_person_adding_an_item_is_seen(emu: Emulator, tmp_path: Path) -> None:
    be = backend(emu, tmp_path)
    be.add([BanEntry("203.0.113.7", T0, ())])
    emu.seed_items("cfban", [("203.0.113.9", "allowlisted by hand")])
    assert be.add([BanEntry("203.0.113.9", T0, ())]) == {}  # not cfban's: left alone
    assert comments(emu)["203.0.113.9"] == "allowlisted by hand"


def test_few_removes_search_many_read_once(emu: Emulator, tmp_path: Path) -> None:
    be = backend(emu, tmp_path)
    targets = addresses(3000)
    be.add([BanEntry(t, T0, ()) for t in targets])
    emu.log.clear()
    assert be.remove([(targets[0], None), (targets[1], None)], not_after=None)
    assert emu.count("GET", ITEMS) == 2  # one search each, no page of the whole list
    emu.log.clear()
    assert len(be.remove([(t, None) for t in targets[2:]], not_after=None)) == 2998
    assert emu.count("GET", ITEMS) == 6  # ids for 2,998: one read of 6 pages
    assert emu.count("DELETE", ITEMS) == 1
    assert emu.list_items("cfban") == []


def test_idle_settle_learns_ids_when_cheap(emu: Emulator, tmp_path: Path) -> None:
    be = backend(emu, tmp_path)
    refs = be.add([BanEntry(t, T0, ()) for t in addresses(1000)])
    assert set(refs.values()) == {""}
    assert be.settle() == {}  # a write just happened: not idle yet
    emu.clock.sleep(11)
    learnt = be.settle()
    assert learnt == {i["ip"]: i["id"] for i in emu.list_items("cfban")}
    emu.log.clear()
    be.remove([(t, None) for t in addresses(1000)], not_after=None)
    assert emu.count("GET", ITEMS) == 0  # the ids were known


def test_one_pending_operation_per_host(emu: Emulator, tmp_path: Path) -> None:
    first = backend(emu, tmp_path)
    second = backend(emu, tmp_path)
    first.add([BanEntry("203.0.113.1", T0, ())])
    second.add([BanEntry("203.0.113.2", T0, ())])
    assert not any(e.status == 429 for e in emu.log.entries)
    assert (tmp_path / "list-operation.lock").exists()


# -- a full list -----------------------------------------------------------------------------


def _fill(emu: Emulator, own: int, foreign: int) -> list[str]:
    """A list holding ``own`` cfban items ending at T0 + i and ``foreign`` others."""
    emu.seed_list("cfban")
    ips = addresses(own + foreign, start=100_000)
    emu.seed_items(
        "cfban",
        [(ip, f"cfban v1 exp={int(T0) + i} jails=old") for i, ip in enumerate(ips[:own])]
        + [(ip, "someone else's") for ip in ips[own:]],
    )
    return ips


def test_evict_makes_room_with_cfbans_soonest_ending_items(emu: Emulator, tmp_path: Path) -> None:
    ips = _fill(emu, own=9990, foreign=5)
    be = backend(emu, tmp_path, on_full="evict")
    new = addresses(20)
    refs = be.add([BanEntry(t, T0 + 86400, ("sshd",)) for t in new])
    assert set(refs) == set(new)
    listed = comments(emu)
    assert len(listed) == 10_000
    assert set(new) <= set(listed)
    assert all(ip in listed for ip in ips[9990:])  # foreign items untouched
    assert not any(ip in listed for ip in ips[:15])  # the 15 soonest-ending cfban items
    assert all(ip in listed for ip in ips[15:9990])


def test_hold_adds_what_fits_and_reports(emu: Emulator, tmp_path: Path) -> None:
    _fill(emu, own=9995, foreign=0)
    be = backend(emu, tmp_path, on_full="hold")
    new = addresses(10)
    with pytest.raises(ListFullError, match="5 ban\\(s\\) wait"):
        be.add([BanEntry(t, T0 + 86400, ()) for t in new])
    assert len(comments(emu)) == 10_000
    for _ in range(2):
        emu.clock.sleep(20)
        emu.log.clear()
        with pytest.raises(ListFullError):  # now known to be full: no write is tried
            be.add([BanEntry(t, T0 + 86400, ()) for t in new])
        assert [e.method for e in emu.log.entries] == ["GET"]  # the list, nothing else


def test_spill_uses_access_rules_a_few_per_round(emu: Emulator, tmp_path: Path) -> None:
    _fill(emu, own=10_000, foreign=0)
    be = backend(emu, tmp_path, on_full="spill")
    new = addresses(5)
    with pytest.raises(ListFullError):
        be.add([BanEntry(t, T0 + 86400, ("sshd",)) for t in new])
    spilled = {r["configuration"]["value"] for r in emu.access_rules()}
    assert len(spilled) == 3
    # the next round spills the rest; the first three stay where they are
    assert set(be.add([BanEntry(t, T0 + 86400, ("sshd",)) for t in new])) == set(new)
    assert {r["configuration"]["value"] for r in emu.access_rules()} == set(new)
    assert len(emu.access_rules()) == 5
    assert {e.target for e in be.list_owned()} >= set(new)
    removed = be.remove([(t, None) for t in new], not_after=None)
    assert set(removed) == set(new)
    assert emu.access_rules() == []


def test_a_deleted_list_is_made_again_and_refilled(emu: Emulator, tmp_path: Path) -> None:
    from cfban.delivery import deliver
    from cfban.state import StateStore

    store = StateStore.open(tmp_path, emu.clock)
    be = backend(emu, tmp_path)
    held = addresses(30)
    for target in held:
        store.hold(address=target, target=target, jail="j", expires_at=None)
    deliver(store, be, clock=emu.clock, state_dir=tmp_path)
    assert set(emu.list_ips("cfban")) == set(held)
    with emu._lock:  # someone deletes the rule, then the list, in the dashboard
        emu.state.rulesets.clear()
        emu.state.lists.clear()
    store.hold(address="203.0.113.7", target="203.0.113.7", jail="j", expires_at=None)
    emu.clock.sleep(5)
    report = deliver(store, be, clock=emu.clock, state_dir=tmp_path)
    assert report.queue_depth == 0
    assert set(emu.list_ips("cfban")) == {*held, "203.0.113.7"}  # nothing lost
    assert len(emu.custom_rules(emu.zone_id)) == 1
