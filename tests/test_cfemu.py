"""Tests of the Cloudflare API emulator itself, against the facts in shared/cloudflare-api.md."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from cfban.clock import FakeClock
from tests.cfemu import (
    ACCOUNT_LISTS_READ,
    ACCOUNT_RULESETS_EDIT,
    BASE_URL,
    IPV4_CIDRS,
    IPV6_CIDRS,
    ZONE_FIREWALL_READ,
    ZONE_WAF_EDIT,
    Emulator,
    Fault,
)
from tests.cfemu.plugin import ServedEmulator

ROOT = Path(__file__).resolve().parent.parent
ZONE_RULES = "/zones/{zone_id}/firewall/access_rules/rules"
ITEMS = "/accounts/{account_id}/rules/lists/{list_id}/items"
ENTRY = "/rulesets/phases/http_request_firewall_custom/entrypoint"


@pytest.fixture
def api(cf_emulator: Emulator) -> httpx.Client:
    return cf_emulator.client()


def zone_rules(emu: Emulator) -> str:
    return f"/zones/{emu.zone_id}/firewall/access_rules/rules"


def lists_path(emu: Emulator) -> str:
    return f"/accounts/{emu.account_id}/rules/lists"


def result(resp: httpx.Response) -> Any:
    body = resp.json()
    assert resp.is_success, body
    assert body["success"] is True and body["errors"] == [] and "messages" in body
    return body["result"]


def error(resp: httpx.Response, status: int, code: int) -> dict[str, Any]:
    body = resp.json()
    assert resp.status_code == status, body
    assert body["success"] is False and body["result"] is None
    assert body["errors"][0]["code"] == code, body
    first: dict[str, Any] = body["errors"][0]
    return first


def add_rule(api: httpx.Client, emu: Emulator, value: str, target: str = "ip", **kw: Any) -> Any:
    body = {"mode": "block", "configuration": {"target": target, "value": value}, **kw}
    return api.post(zone_rules(emu), json=body)


# -- envelope, auth, tokens ------------------------------------------------------------------


def test_verify_envelope_and_rate_limit_headers(api: httpx.Client) -> None:
    resp = api.get("/user/tokens/verify")
    assert set(resp.json()) == {"success", "errors", "messages", "result"}
    token = result(resp)
    assert token["status"] == "active" and len(token["id"]) == 32
    assert resp.headers["Ratelimit"].startswith('"default";r=1199;')
    assert resp.headers["Ratelimit-Policy"] == '"default";q=1200;w=300'


@pytest.mark.parametrize("header", [None, "Token abc", "Bearer", "Bearer a b"])
def test_missing_or_malformed_authorization(cf_emulator: Emulator, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=BASE_URL, transport=cf_emulator.transport()) as raw:
        err = error(raw.get("/user/tokens/verify", headers=headers), 400, 6003)
    assert err["error_chain"][0]["code"] == 6111


def test_unknown_token_and_legacy_credentials(cf_emulator: Emulator) -> None:
    with cf_emulator.client(token="nope") as bad:
        assert error(bad.get("/user/tokens/verify"), 401, 1000)["message"] == "Invalid API Token"
        error(bad.get(zone_rules(cf_emulator)), 401, 1000)
    with httpx.Client(base_url=BASE_URL, transport=cf_emulator.transport()) as raw:
        legacy = {"X-Auth-Email": "a@example.com", "X-Auth-Key": "k"}
        error(raw.get("/zones", headers=legacy), 400, 9103)


def test_account_token_verifies_only_at_account_endpoint(cf_emulator: Emulator) -> None:
    token = cf_emulator.add_token(owner="account")
    with cf_emulator.client(token=token.value) as api:
        error(api.get("/user/tokens/verify"), 401, 1000)
        resp = api.get(f"/accounts/{cf_emulator.account_id}/tokens/verify")
        assert result(resp)["id"] == token.id
        assert resp.json()["messages"][0]["message"] == "This API Token is valid and active"
    with cf_emulator.client() as user_api:
        error(user_api.get(f"/accounts/{cf_emulator.account_id}/tokens/verify"), 401, 1000)


def test_disabled_token_verifies_as_disabled_but_cannot_call(cf_emulator: Emulator) -> None:
    token = cf_emulator.add_token(status="disabled")
    with cf_emulator.client(token=token.value) as api:
        assert result(api.get("/user/tokens/verify"))["status"] == "disabled"
        error(api.get(zone_rules(cf_emulator)), 401, 1000)


def test_permission_sets(cf_emulator: Emulator) -> None:
    token = cf_emulator.add_token(permissions=[ACCOUNT_LISTS_READ, ZONE_FIREWALL_READ])
    with cf_emulator.client(token=token.value) as api:
        assert result(api.get(lists_path(cf_emulator))) == []
        assert result(api.get(zone_rules(cf_emulator))) == []
        err = error(api.post(lists_path(cf_emulator), json={"name": "x", "kind": "ip"}), 403, 10000)
        assert err["message"] == "Authentication error"
        error(add_rule(api, cf_emulator, "198.51.100.4"), 403, 10000)
        entry = f"/zones/{cf_emulator.zone_id}{ENTRY}"
        error(api.get(entry), 403, 10000)
    assert cf_emulator.lists() == [] and cf_emulator.access_rules() == []


def test_token_limited_to_other_zone(cf_emulator: Emulator) -> None:
    other = cf_emulator.add_zone(name="other.example")
    token = cf_emulator.add_token(zones=[other.id])
    with cf_emulator.client(token=token.value) as api:
        assert result(api.get(f"/zones/{other.id}"))["name"] == "other.example"
        error(api.get(f"/zones/{cf_emulator.zone_id}"), 403, 10000)
        assert [z["id"] for z in result(api.get("/zones"))] == [other.id]


def test_routing_errors(api: httpx.Client, cf_emulator: Emulator) -> None:
    err = error(api.get("/zones/not-an-id/firewall/access_rules/rules"), 400, 7003)
    assert "perhaps your object identifier is invalid" in err["message"]
    assert api.get("/zones/not-an-id").json()["errors"][1]["code"] == 7000
    error(api.get("/no/such/thing"), 400, 7003)
    error(api.delete(zone_rules(cf_emulator)), 405, 10405)
    error(api.post(zone_rules(cf_emulator), content=b"{nope"), 400, 6007)
    error(api.get(f"/zones/{'f' * 32}"), 403, 10000)


def test_zone_account_and_ips(api: httpx.Client, cf_emulator: Emulator) -> None:
    zone = result(api.get(f"/zones/{cf_emulator.zone_id}"))
    assert zone["account"]["id"] == cf_emulator.account_id
    assert cf_emulator.account_id.startswith("acc0") and len(cf_emulator.account_id) == 32
    assert [z["id"] for z in result(api.get("/zones", params={"name": "example.com"}))] == [
        cf_emulator.zone_id
    ]
    assert result(api.get(f"/accounts/{cf_emulator.account_id}"))["id"] == cf_emulator.account_id
    with httpx.Client(base_url=BASE_URL, transport=cf_emulator.transport()) as anonymous:
        ips = result(anonymous.get("/ips"))
    assert len(ips["ipv4_cidrs"]) == 15 and len(ips["ipv6_cidrs"]) == 7
    assert ips["ipv4_cidrs"][0] == "173.245.48.0/20" and ips["ipv6_cidrs"][-1] == "2c0f:f248::/32"
    assert tuple(ips["ipv4_cidrs"]) == IPV4_CIDRS and tuple(ips["ipv6_cidrs"]) == IPV6_CIDRS
    assert len(ips["etag"]) == 32
    for cidr in IPV4_CIDRS + IPV6_CIDRS:
        ipaddress.ip_network(cidr)


# -- IP Access Rules ---------------------------------------------------------------------------


def test_access_rule_create_get_patch_delete(api: httpx.Client, cf_emulator: Emulator) -> None:
    rule = result(add_rule(api, cf_emulator, "198.51.100.4", notes="cfban: sshd"))
    assert rule["configuration"] == {"target": "ip", "value": "198.51.100.4"}
    assert rule["mode"] == "block" and "block" in rule["allowed_modes"] and len(rule["id"]) == 32
    path = f"{zone_rules(cf_emulator)}/{rule['id']}"
    assert result(api.get(path))["notes"] == "cfban: sshd"
    same = {"target": "ip", "value": "198.51.100.4"}
    patched = result(
        api.patch(path, json={"mode": "managed_challenge", "configuration": same, "notes": "n2"})
    )
    assert (patched["mode"], patched["notes"]) == ("managed_challenge", "n2")
    assert result(api.request("DELETE", path, json={"cascade": "none"})) == {"id": rule["id"]}
    assert error(api.delete(path), 404, 10001)["message"] == "firewallaccessrules.api.not_found"
    other = result(add_rule(api, cf_emulator, "198.51.100.5"))
    assert result(api.delete(f"{zone_rules(cf_emulator)}/{other['id']}")) == {"id": other["id"]}
    assert cf_emulator.access_rules() == []


def test_access_rule_patch_needs_the_unchanged_configuration(
    api: httpx.Client, cf_emulator: Emulator
) -> None:
    rule = result(add_rule(api, cf_emulator, "198.51.100.4", notes="n1"))
    path = f"{zone_rules(cf_emulator)}/{rule['id']}"
    missing = error(api.patch(path, json={"mode": "block", "notes": "n2"}), 400, 10014)
    assert "mode and configuration are required" in missing["message"]
    changed = {"target": "ip", "value": "198.51.100.5"}
    body = {"mode": "block", "configuration": changed, "notes": "n2"}
    refused = error(api.patch(path, json=body), 400, 10014)
    assert refused["message"].startswith("firewallaccessrules.api.validation_error:")
    assert "configuration cannot be changed" in refused["message"]
    assert result(api.get(path))["notes"] == "n1"  # nothing changed
    cf_emulator.options.patch_requires_configuration = False
    assert result(api.patch(path, json={"notes": "n3"}))["notes"] == "n3"


def test_access_rule_duplicate(api: httpx.Client, cf_emulator: Emulator) -> None:
    result(add_rule(api, cf_emulator, "2001:DB8:100::CF", target="ip6"))
    err = error(add_rule(api, cf_emulator, "2001:db8:100::cf", target="ip6"), 400, 10009)
    assert err["message"] == "firewallaccessrules.api.duplicate_of_existing"
    assert len(cf_emulator.access_rules()) == 1


@pytest.mark.parametrize(
    ("target", "value", "accepted"),
    [
        ("ip", "203.0.113.7", True),
        ("ip", "2001:db8::1", False),  # IPv6 needs ip6
        ("ip6", "2001:db8::1", True),
        ("ip6", "203.0.113.7", False),
        ("ip", "203.0.113.0/24", False),
        ("ip_range", "203.0.0.0/16", True),
        ("ip_range", "203.0.113.0/24", True),
        ("ip_range", "10.0.0.0/8", False),
        ("ip_range", "203.0.113.7/32", False),
        ("ip_range", "2001:db8::/32", True),
        ("ip_range", "2001:db8::/48", True),
        ("ip_range", "2001:db8::/64", True),
        ("ip_range", "2001:db8::/56", False),
        ("ip_range", "2001:db8::1/128", False),
        ("asn", "AS13335", True),
        ("country", "DE", False),  # Enterprise only
        ("hostname", "example.com", False),
    ],
)
def test_access_rule_targets(
    api: httpx.Client, cf_emulator: Emulator, target: str, value: str, accepted: bool
) -> None:
    resp = add_rule(api, cf_emulator, value, target=target)
    if accepted:
        result(resp)
    else:
        assert error(resp, 400, 10014)["message"].startswith(
            "firewallaccessrules.api.validation_error:"
        )


def test_country_block_on_enterprise() -> None:
    emu = Emulator(plan="enterprise", clock=FakeClock())
    with emu.client() as api:
        assert result(add_rule(api, emu, "DE", target="country"))["configuration"]["value"] == "DE"


def test_access_rule_invalid_mode(api: httpx.Client, cf_emulator: Emulator) -> None:
    body = {"mode": "nuke", "configuration": {"target": "ip", "value": "203.0.113.7"}}
    error(api.post(zone_rules(cf_emulator), json=body), 400, 10014)


def test_access_rule_pagination(api: httpx.Client, cf_emulator: Emulator) -> None:
    for n in range(45):
        cf_emulator.seed_access_rule(f"192.0.2.{n}")
    pages = [api.get(zone_rules(cf_emulator), params={"page": p}).json() for p in (1, 2, 3, 4)]
    assert [len(p["result"]) for p in pages] == [20, 20, 5, 0]
    info = pages[0]["result_info"]
    assert info == {"page": 1, "per_page": 20, "count": 20, "total_count": 45, "total_pages": 3}
    seen = {r["id"] for p in pages for r in p["result"]}
    assert len(seen) == 45
    assert len(result(api.get(zone_rules(cf_emulator), params={"per_page": 1000}))) == 45
    error(api.get(zone_rules(cf_emulator), params={"per_page": 1001}), 400, 1004)


def test_access_rule_filters(api: httpx.Client, cf_emulator: Emulator) -> None:
    cf_emulator.seed_access_rule("1.2.3.4", notes="cfban: Attack 26/02")
    cf_emulator.seed_access_rule("1.2.3.45", notes="other tool", mode="challenge")
    cf_emulator.seed_access_rule("2001:db8::1", notes="cfban")

    def values(**params: str) -> list[str]:
        found = result(api.get(zone_rules(cf_emulator), params=params))
        return sorted(r["configuration"]["value"] for r in found)

    assert values(**{"configuration.value": "1.2.3.4"}) == ["1.2.3.4"]  # exact, not prefix
    assert values(**{"configuration.value": "2001:DB8::1"}) == ["2001:db8::1"]
    assert values(notes="attack") == ["1.2.3.4"]  # case-insensitive substring
    assert values(notes="CFBAN") == ["1.2.3.4", "2001:db8::1"]
    assert values(**{"configuration.target": "ip6"}) == ["2001:db8::1"]
    assert values(mode="challenge", notes="cfban") == []
    assert values(mode="challenge", notes="cfban", match="any") == ["1.2.3.4", "1.2.3.45"] + [
        "2001:db8::1"
    ]
    ordered = result(api.get(zone_rules(cf_emulator), params={"order": "mode"}))
    assert ordered[0]["mode"] == "block" and ordered[-1]["mode"] == "challenge"


def test_account_level_rules_and_inheritance(api: httpx.Client, cf_emulator: Emulator) -> None:
    account_rules = f"/accounts/{cf_emulator.account_id}/firewall/access_rules/rules"
    rule = result(
        api.post(
            account_rules,
            json={"mode": "block", "configuration": {"target": "ip", "value": "203.0.113.9"}},
        )
    )
    assert rule["scope"]["type"] == "organization"
    listed = result(api.get(zone_rules(cf_emulator)))
    assert [r["id"] for r in listed] == [rule["id"]]  # inherited into the zone listing
    error(api.delete(f"{zone_rules(cf_emulator)}/{rule['id']}"), 404, 10001)
    cf_emulator.options.zone_lists_account_rules = False
    assert result(api.get(zone_rules(cf_emulator))) == []
    assert result(api.delete(f"{account_rules}/{rule['id']}")) == {"id": rule["id"]}


# -- Lists and bulk operations -------------------------------------------------------------------


def make_list(api: httpx.Client, emu: Emulator, name: str = "cfban") -> dict[str, Any]:
    made: dict[str, Any] = result(api.post(lists_path(emu), json={"name": name, "kind": "ip"}))
    return made


def wait_op(api: httpx.Client, emu: Emulator, op_id: str) -> list[str]:
    """Poll an operation to its end; the statuses seen."""
    seen: list[str] = []
    while not seen or seen[-1] in ("pending", "running"):
        op = result(api.get(f"{lists_path(emu)}/bulk_operations/{op_id}"))
        assert op["id"] == op_id
        seen.append(op["status"])
        assert len(seen) < 20
    return seen


def write_items(
    api: httpx.Client, emu: Emulator, lst: dict[str, Any], method: str, body: Any
) -> str:
    resp = api.request(method, f"{lists_path(emu)}/{lst['id']}/items", json=body)
    op_id: str = result(resp)["operation_id"]
    return op_id


@pytest.mark.parametrize("name", ["CfBan", "cf-ban", "a" * 51, "", "cf ban"])
def test_list_name_validation(api: httpx.Client, cf_emulator: Emulator, name: str) -> None:
    error(api.post(lists_path(cf_emulator), json={"name": name, "kind": "ip"}), 400, 1004)


def test_list_create_get_update_delete(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = make_list(api, cf_emulator)
    assert lst["kind"] == "ip" and lst["num_items"] == 0 and len(lst["id"]) == 32
    assert lst["num_referencing_filters"] == 0 and lst["created_on"].endswith("Z")
    assert [x["name"] for x in result(api.get(lists_path(cf_emulator)))] == ["cfban"]
    path = f"{lists_path(cf_emulator)}/{lst['id']}"
    assert result(api.put(path, json={"description": "banned"}))["description"] == "banned"
    error(api.put(path, json={"name": "renamed"}), 400, 1004)
    error(api.post(lists_path(cf_emulator), json={"name": "cfban", "kind": "ip"}), 400, 10027)
    error(api.post(lists_path(cf_emulator), json={"name": "second", "kind": "ip"}), 400, 10026)
    error(api.post(lists_path(cf_emulator), json={"name": "h", "kind": "hostname"}), 400, 1004)
    assert result(api.delete(path)) == {"id": lst["id"]}
    error(api.get(path), 404, 10001)


def test_items_land_asynchronously(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = make_list(api, cf_emulator)
    body = [{"ip": "203.0.113.7", "comment": "cfban sshd"}, {"ip": "2001:DB8::/64"}]
    op_id = write_items(api, cf_emulator, lst, "POST", body)
    assert cf_emulator.list_items("cfban") == []  # not yet applied
    assert cf_emulator.count("POST", ITEMS) == 1
    assert wait_op(api, cf_emulator, op_id) == ["running", "completed"]
    items = result(api.get(f"{lists_path(cf_emulator)}/{lst['id']}/items"))
    assert [i["ip"] for i in items] == ["203.0.113.7", "2001:db8::/64"]
    assert items[0]["comment"] == "cfban sshd" and len(items[0]["id"]) == 32
    one = result(api.get(f"{lists_path(cf_emulator)}/{lst['id']}/items/{items[0]['id']}"))
    assert one == items[0]
    final = result(api.get(f"{lists_path(cf_emulator)}/bulk_operations/{op_id}"))
    assert final["status"] == "completed" and final["completed"].endswith("Z")
    assert result(api.get(f"{lists_path(cf_emulator)}/{lst['id']}"))["num_items"] == 2


def test_bulk_poll_counts_and_clock(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = make_list(api, cf_emulator)
    cf_emulator.options.bulk_polls = 3
    op_id = write_items(api, cf_emulator, lst, "POST", [{"ip": "192.0.2.1"}])
    assert wait_op(api, cf_emulator, op_id) == ["pending", "running", "running", "completed"]
    cf_emulator.options.bulk_polls = 0
    op_id = write_items(api, cf_emulator, lst, "POST", [{"ip": "192.0.2.2"}])
    assert wait_op(api, cf_emulator, op_id) == ["completed"]
    cf_emulator.options.bulk_polls = 100
    write_items(api, cf_emulator, lst, "POST", [{"ip": "192.0.2.3"}])
    cf_emulator.advance(2.0)  # bulk_seconds passes on the fake clock: completes unpolled
    assert len(result(api.get(f"{lists_path(cf_emulator)}/{lst['id']}/items"))) == 3


def test_one_pending_operation_per_account(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = make_list(api, cf_emulator)
    op_id = write_items(api, cf_emulator, lst, "POST", [{"ip": "192.0.2.1"}])
    resp = api.post(f"{lists_path(cf_emulator)}/{lst['id']}/items", json=[{"ip": "192.0.2.2"}])
    error(resp, 429, 10062)
    wait_op(api, cf_emulator, op_id)
    write_items(api, cf_emulator, lst, "POST", [{"ip": "192.0.2.2"}])


def test_item_validation(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = make_list(api, cf_emulator)
    items = f"{lists_path(cf_emulator)}/{lst['id']}/items"
    dup = [{"ip": "192.0.2.1"}, {"ip": "192.0.2.1/32"}]
    error(api.post(items, json=dup), 400, 10028)
    error(api.post(items, json=[{"ip": "192.0.2.300"}]), 400, 10035)
    error(api.post(items, json=[{"ip": "10.0.0.0/7"}]), 400, 10035)
    error(api.post(items, json=[{"ip": "2001:db8::/11"}]), 400, 10035)
    error(
        api.post(items, json=[{"ip": "192.0.2.1"}, {"hostname": {"url_hostname": "a"}}]), 400, 10056
    )
    error(api.post(items, json=[{"asn": 13335}]), 400, 10058)
    error(api.post(items, json={"ip": "192.0.2.1"}), 400, 1004)  # must be a bare array
    error(api.post(items, json=[{"ip": "192.0.2.1", "comment": "x" * 501}]), 400, 1004)
    cf_emulator.options.legacy_v6_items = True
    err = error(api.post(items, json=[{"ip": "2001:db8::1"}]), 400, 10035)
    assert err["message"] == (
        "invalid value for ip at position 0: filters.api.IPv6 CIDRs should have a prefix length"
        " from /12 to /64 inclusive"
    )
    cf_emulator.options.legacy_v6_items = False
    wait_op(api, cf_emulator, write_items(api, cf_emulator, lst, "POST", [{"ip": "2001:db8::1"}]))
    assert cf_emulator.list_ips("cfban") == ["2001:db8::1"]


def test_upsert_search_replace_delete(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = make_list(api, cf_emulator)
    items = f"{lists_path(cf_emulator)}/{lst['id']}/items"
    first = [{"ip": "1.2.3.4", "comment": "old"}, {"ip": "1.2.3.45"}, {"ip": "9.9.9.9"}]
    wait_op(api, cf_emulator, write_items(api, cf_emulator, lst, "POST", first))
    before = {i["ip"]: i for i in cf_emulator.list_items("cfban")}
    wait_op(
        api,
        cf_emulator,
        write_items(api, cf_emulator, lst, "POST", [{"ip": "1.2.3.4", "comment": "new"}]),
    )
    after = {i["ip"]: i for i in cf_emulator.list_items("cfban")}
    assert (
        after["1.2.3.4"]["comment"] == "new" and after["1.2.3.4"]["id"] == before["1.2.3.4"]["id"]
    )
    assert len(after) == 3
    found = result(api.get(items, params={"search": "1.2.3.4"}))
    assert [i["ip"] for i in found] == ["1.2.3.4", "1.2.3.45"]  # prefix match
    doomed = {"items": [{"id": after["1.2.3.45"]["id"]}, {"id": "f" * 32}]}
    wait_op(api, cf_emulator, write_items(api, cf_emulator, lst, "DELETE", doomed))
    assert cf_emulator.list_ips("cfban") == ["1.2.3.4", "9.9.9.9"]
    error(api.request("DELETE", items, json=[{"id": after["9.9.9.9"]["id"]}]), 400, 1004)
    wait_op(api, cf_emulator, write_items(api, cf_emulator, lst, "PUT", [{"ip": "8.8.8.0/24"}]))
    assert cf_emulator.list_ips("cfban") == ["8.8.8.0/24"]
    wait_op(api, cf_emulator, write_items(api, cf_emulator, lst, "PUT", []))
    assert cf_emulator.list_ips("cfban") == []


def test_item_cursor_pagination(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = cf_emulator.seed_list("cfban")
    addresses = [f"192.0.2.{n}" for n in range(12)] + ["10.0.0.0/8", "10.0.0.0/16", "2001:db8::1"]
    cf_emulator.seed_items("cfban", addresses)
    items = f"{lists_path(cf_emulator)}/{lst['id']}/items"
    seen: list[str] = []
    params: dict[str, str | int] = {"per_page": 5}
    pages = 0
    while True:
        body = api.get(items, params=params).json()
        seen += [i["ip"] for i in body["result"]]
        pages += 1
        after = body["result_info"]["cursors"].get("after")
        if not after:
            break
        params = {"per_page": 5, "cursor": after}
    assert pages == 3
    assert seen[:2] == ["10.0.0.0/8", "10.0.0.0/16"] and seen[-1] == "2001:db8::1"
    assert seen[2:14] == sorted(seen[2:14], key=ipaddress.ip_address) and len(seen) == 15
    before = body["result_info"]["cursors"]["before"]
    back = result(api.get(items, params={"per_page": 5, "cursor": before}))
    assert [i["ip"] for i in back] == seen[5:10]
    error(api.get(items, params={"per_page": 501}), 400, 1004)
    cf_emulator.options.cidr_singles = True
    assert cf_emulator.list_ips("cfban")[-1] == "2001:db8::1/128"


def test_bulk_operation_failures(api: httpx.Client, cf_emulator: Emulator) -> None:
    lst = make_list(api, cf_emulator)
    cf_emulator.options.fail_operations = 1
    op_id = write_items(api, cf_emulator, lst, "POST", [{"ip": "192.0.2.1"}])
    wait_op(api, cf_emulator, op_id)
    op = result(api.get(f"{lists_path(cf_emulator)}/bulk_operations/{op_id}"))
    assert op["status"] == "failed" and op["error"]
    cf_emulator.seed_items(
        "cfban", (str(ipaddress.IPv4Address(167772160 + n)) for n in range(10_000))
    )
    op_id = write_items(api, cf_emulator, lst, "POST", [{"ip": "192.0.2.1"}])
    assert wait_op(api, cf_emulator, op_id)[-1] == "failed"
    op = result(api.get(f"{lists_path(cf_emulator)}/bulk_operations/{op_id}"))
    assert op["error"] == "This list is at the maximum number of items"
    assert len(cf_emulator.list_items("cfban")) == 10_000


# -- Rulesets ------------------------------------------------------------------------------------


def entrypoint(emu: Emulator) -> str:
    return f"/zones/{emu.zone_id}{ENTRY}"


CFBAN_RULE = {
    "action": "block",
    "expression": "(ip.src in $cfban)",
    "description": "cfban: banned clients",
    "enabled": True,
    "ref": "cfban_block",
}


def test_entrypoint_lifecycle(api: httpx.Client, cf_emulator: Emulator) -> None:
    err = error(api.get(entrypoint(cf_emulator)), 404, 10003)
    assert "http_request_firewall_custom" in err["message"]
    err = error(api.put(entrypoint(cf_emulator), json={"rules": [CFBAN_RULE]}), 400, 20021)
    assert err["source"]["pointer"] == "/rules/0/expression"  # the list does not exist yet
    make_list(api, cf_emulator)
    rs = result(api.put(entrypoint(cf_emulator), json={"rules": [CFBAN_RULE]}))
    assert rs["version"] == "1" and rs["phase"] == "http_request_firewall_custom"
    assert rs["rules"][0]["ref"] == "cfban_block" and len(rs["rules"][0]["id"]) == 32
    assert result(api.get(entrypoint(cf_emulator)))["id"] == rs["id"]
    listed = result(api.get(f"/zones/{cf_emulator.zone_id}/rulesets"))
    assert listed[0]["id"] == rs["id"] and "rules" not in listed[0]
    lst = result(api.get(lists_path(cf_emulator)))[0]
    assert lst["num_referencing_filters"] == 1
    error(api.delete(f"{lists_path(cf_emulator)}/{lst['id']}"), 400, 10025)
    again = result(api.put(entrypoint(cf_emulator), json={"rules": []}))  # replaces all
    assert again["version"] == "2" and again["rules"] == []
    assert result(api.delete(f"{lists_path(cf_emulator)}/{lst['id']}")) == {"id": lst["id"]}


def test_rule_add_patch_delete(api: httpx.Client, cf_emulator: Emulator) -> None:
    make_list(api, cf_emulator)
    theirs = cf_emulator.seed_custom_rule('(http.host eq "x.example")', description="theirs")
    rs = result(api.get(entrypoint(cf_emulator)))
    base = f"/zones/{cf_emulator.zone_id}/rulesets/{rs['id']}/rules"
    added = result(api.post(base, json=CFBAN_RULE))
    assert int(added["version"]) == int(rs["version"]) + 1
    assert [r["id"] for r in added["rules"]][0] == theirs["id"]  # appended at the end
    mine = added["rules"][-1]
    patched = result(
        api.patch(
            f"{base}/{mine['id']}",
            json={"action": "managed_challenge", "expression": "(ip.src in $cfban)"},
        )
    )
    rule = patched["rules"][-1]
    assert rule["id"] == mine["id"] and rule["action"] == "managed_challenge"
    assert rule["description"] == "" and rule["version"] == "2"  # whole definition replaced
    assert rule["ref"] == "cfban_block"
    moved = result(api.patch(f"{base}/{mine['id']}", json={"position": {"index": 1}}))
    assert (
        moved["rules"][0]["id"] == mine["id"] and moved["rules"][0]["action"] == "managed_challenge"
    )
    top = result(api.post(base, json={**CFBAN_RULE, "ref": "x", "position": {"before": ""}}))
    assert top["rules"][0]["ref"] == "x"
    gone = result(api.delete(f"{base}/{mine['id']}"))
    assert mine["id"] not in [r["id"] for r in gone["rules"]]
    assert int(gone["version"]) == int(top["version"]) + 1
    assert [r["id"] for r in cf_emulator.custom_rules()][-1] == theirs["id"]
    error(api.delete(f"{base}/{mine['id']}"), 404, 10003)
    error(api.post(base, json={**CFBAN_RULE, "expression": "x" * 4097}), 400, 20021)
    error(api.post(base, json={**CFBAN_RULE, "action": "log"}), 400, 20021)


def test_custom_rule_plan_limit(api: httpx.Client, cf_emulator: Emulator) -> None:
    for n in range(5):
        cf_emulator.seed_custom_rule(f"(ip.src eq 192.0.2.{n})")
    rs = result(api.get(entrypoint(cf_emulator)))
    base = f"/zones/{cf_emulator.zone_id}/rulesets/{rs['id']}/rules"
    err = error(
        api.post(base, json={"action": "block", "expression": "(ip.src eq 1.1.1.1)"}), 400, 20021
    )
    assert "5" in err["message"]
    assert len(cf_emulator.custom_rules()) == 5


# -- Rate limiting -------------------------------------------------------------------------------


def test_rate_limit_blocks_then_recovers() -> None:
    emu = Emulator(clock=FakeClock(), rate_limit=5)
    assert Emulator().ratelimiter.limit == 1200 and Emulator().ratelimiter.window == 300
    with emu.client() as api:
        remaining = [api.get("/user/tokens/verify").headers["Ratelimit"] for _ in range(5)]
        assert remaining[0].startswith('"default";r=4;') and remaining[-1].startswith(
            '"default";r=0;'
        )
        resp = api.get("/user/tokens/verify")
        err = error(resp, 429, 971)
        assert err["message"] == "Please wait and consider throttling your request speed"
        assert resp.headers["Retry-After"] == "300"
        emu.advance(100)
        assert api.get("/user/tokens/verify").headers["Retry-After"] == "200"  # still blocked
        emu.advance(200)
        result(api.get("/user/tokens/verify"))
        other = emu.add_token()
    with emu.client(token=other.value) as api2:  # per token
        result(api2.get("/user/tokens/verify"))


# -- Faults, log -------------------------------------------------------------------------------


def test_fault_sequence_edge_faults_do_not_apply(api: httpx.Client, cf_emulator: Emulator) -> None:
    cf_emulator.faults.sequence(
        [Fault.server_error(502, html=True), Fault.server_error(500), None, Fault.dropped()],
        method="POST",
        path=ZONE_RULES,
    )
    html = add_rule(api, cf_emulator, "192.0.2.1")
    assert html.status_code == 502 and html.text.startswith("<!DOCTYPE html>")
    error(add_rule(api, cf_emulator, "192.0.2.1"), 500, 10013)
    assert cf_emulator.access_rules() == []
    result(add_rule(api, cf_emulator, "192.0.2.1"))
    with pytest.raises(httpx.RemoteProtocolError):
        add_rule(api, cf_emulator, "192.0.2.2")
    result(api.get(zone_rules(cf_emulator)))  # GET does not match the rule
    result(add_rule(api, cf_emulator, "192.0.2.2"))  # sequence used up
    assert len(cf_emulator.access_rules()) == 2
    assert [e.status for e in cf_emulator.log.select("POST", ZONE_RULES)] == [
        502,
        500,
        200,
        None,
        200,
    ]
    assert cf_emulator.count("POST", ZONE_RULES) == 5
    assert cf_emulator.count("GET", "/zones/**") == 1
    assert cf_emulator.log.entries[3].fault == "drop" and not cf_emulator.log.entries[3].applied


def test_html_and_json_429_faults(api: httpx.Client, cf_emulator: Emulator) -> None:
    cf_emulator.faults.sequence(
        [
            Fault.rate_limited(retry_after=7),
            Fault.rate_limited(retry_after=None),
            Fault.rate_limited(retry_after=3, html=False),
        ]
    )
    first = api.get("/user/tokens/verify")
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert "html" in first.headers["Content-Type"]
    second = api.get("/user/tokens/verify")
    assert second.status_code == 429 and "Retry-After" not in second.headers
    third = api.get("/user/tokens/verify")
    assert error(third, 429, 971) and third.headers["Retry-After"] == "3"


def test_applied_then_dropped_and_timeouts(api: httpx.Client, cf_emulator: Emulator) -> None:
    cf_emulator.faults.always(Fault.applied_then_dropped(), method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        add_rule(api, cf_emulator, "192.0.2.1")
    assert len(cf_emulator.access_rules()) == 1  # the write landed
    error(add_rule(api, cf_emulator, "192.0.2.1"), 400, 10009)  # a retry sees the duplicate
    cf_emulator.faults.always(Fault.timeout(), method="POST")
    with pytest.raises(httpx.ReadTimeout):
        add_rule(api, cf_emulator, "192.0.2.2")
    assert len(cf_emulator.access_rules()) == 1
    cf_emulator.faults.always(Fault.slow(0.5), method="POST")
    with cf_emulator.client(timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
        add_rule(impatient, cf_emulator, "192.0.2.3")
    assert len(cf_emulator.access_rules()) == 2  # applied, answer too late


def test_slow_answer_in_time(cf_emulator: Emulator) -> None:
    cf_emulator.faults.always(Fault.slow(0.05))
    with cf_emulator.client(timeout=5.0) as api:
        start = time.monotonic()
        result(api.get("/user/tokens/verify"))
    assert time.monotonic() - start >= 0.05


def test_random_faults_are_reproducible() -> None:
    def statuses(seed: int) -> list[int | None]:
        emu = Emulator(clock=FakeClock(), seed=seed)
        emu.faults.randomly(0.5, [Fault.server_error(503), Fault.dropped()])
        with emu.client() as api:
            for _ in range(30):
                try:
                    api.get("/user/tokens/verify")
                except httpx.RemoteProtocolError:
                    pass
        return [e.status for e in emu.log.entries]

    first = statuses(7)
    assert first == statuses(7)
    assert {200, 503, None} <= set(first)
    emu = Emulator(clock=FakeClock())
    emu.faults.randomly(1.0, [Fault.server_error(503)], times=2)
    with emu.client() as api:
        codes = [api.get("/user/tokens/verify").status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]


def test_pytest_httpx_callback(httpx_mock: HTTPXMock, cf_emulator: Emulator) -> None:
    httpx_mock.add_callback(cf_emulator.handler, is_reusable=True)
    headers = {"Authorization": f"Bearer {cf_emulator.token}"}
    with httpx.Client(base_url=BASE_URL, headers=headers) as api:
        result(add_rule(api, cf_emulator, "192.0.2.8"))
        assert len(result(api.get(zone_rules(cf_emulator)))) == 1


# -- Real HTTP server ------------------------------------------------------------------------


def test_server_over_http(cf_server: ServedEmulator) -> None:
    emu = cf_server.emulator
    assert cf_server.base_url.startswith("http://127.0.0.1:")
    assert cf_server.base_url.endswith("/client/v4")
    assert cf_server.env()["CFBAN_API_URL"] == cf_server.base_url
    headers = {"Authorization": f"Bearer {cf_server.token}"}
    with httpx.Client(base_url=cf_server.base_url, headers=headers, timeout=5.0) as api:
        assert result(api.get("/user/tokens/verify"))["status"] == "active"
        result(add_rule(api, emu, "192.0.2.1"))
        error(api.get("/zones/x"), 400, 7003)
        emu.faults.sequence([Fault.dropped(), Fault.applied_then_dropped()], method="POST")
        with pytest.raises(httpx.RemoteProtocolError):
            add_rule(api, emu, "192.0.2.2")
        with pytest.raises(httpx.RemoteProtocolError):
            add_rule(api, emu, "192.0.2.3")
        assert sorted(r["configuration"]["value"] for r in emu.access_rules()) == [
            "192.0.2.1",
            "192.0.2.3",
        ]
        emu.faults.always(Fault.server_error(503, html=True))
        assert api.get("/user/tokens/verify").status_code == 503
        result(api.get("/user/tokens/verify"))
    with httpx.Client(base_url=cf_server.base_url, headers=headers, timeout=0.3) as api:
        emu.faults.always(Fault.timeout(2.0))
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            api.get("/user/tokens/verify")
        assert time.monotonic() - start < 1.5


def test_standalone_entry_point(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cfemu",
            "--port",
            "0",
            "--token",
            "tok-1",
            "--summary",
            str(summary),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("CFEMU_URL=http://127.0.0.1:")
        base_url = line.split("=", 1)[1]
        with httpx.Client(base_url=base_url, timeout=5.0) as api:
            headers = {"Authorization": "Bearer tok-1"}
            assert result(api.get("/user/tokens/verify", headers=headers))["status"] == "active"
            assert len(result(api.get("/ips"))["ipv4_cidrs"]) == 15
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0
    data = json.loads(summary.read_text())
    assert data["requests"] == 2 and data["statuses"] == {"200": 2}
    assert json.loads(out) == data


def test_server_concurrent_writes(cf_server: ServedEmulator) -> None:
    emu = cf_server.emulator
    headers = {"Authorization": f"Bearer {cf_server.token}"}
    failures: list[int] = []

    def worker(base: int) -> None:
        with httpx.Client(base_url=cf_server.base_url, headers=headers, timeout=10) as api:
            for n in range(20):
                resp = add_rule(api, emu, f"198.18.{base}.{n}")
                if resp.status_code != 200:
                    failures.append(resp.status_code)

    threads = [threading.Thread(target=worker, args=(b,)) for b in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert failures == []
    rules = emu.access_rules()
    assert len(rules) == 120 and len({r["id"] for r in rules}) == 120
    assert emu.count("POST", ZONE_RULES) == 120
    with httpx.Client(base_url=cf_server.base_url, headers=headers) as api:
        api.get(zone_rules(emu), params={"notes": "x", "page": 2})
    assert emu.log.entries[-1].query == "notes=x&page=2"


def test_put_keeps_named_rules_and_create_ruleset(api: httpx.Client, cf_emulator: Emulator) -> None:
    theirs = cf_emulator.seed_custom_rule('(http.host eq "x.example")', description="theirs")
    make_list(api, cf_emulator)
    current = result(api.get(entrypoint(cf_emulator)))
    body = {"rules": [*current["rules"], CFBAN_RULE]}
    replaced = result(api.put(entrypoint(cf_emulator), json=body))
    assert replaced["rules"][0]["id"] == theirs["id"] and replaced["rules"][0]["version"] == "2"
    assert replaced["rules"][1]["ref"] == "cfban_block"
    other = cf_emulator.add_zone(name="other.example")
    create = {
        "name": "default",
        "kind": "zone",
        "phase": "http_request_firewall_custom",
        "rules": [CFBAN_RULE],
    }
    made = result(api.post(f"/zones/{other.id}/rulesets", json=create))
    assert made["version"] == "1" and made["rules"][0]["expression"] == "(ip.src in $cfban)"
    error(api.post(f"/zones/{other.id}/rulesets", json=create), 400, 20021)
    assert len(result(api.get(lists_path(cf_emulator)))) == 1
    assert result(api.get(lists_path(cf_emulator)))[0]["num_referencing_filters"] == 2


def test_account_ruleset_permissions(cf_emulator: Emulator) -> None:
    entry = f"/accounts/{cf_emulator.account_id}{ENTRY}"
    body = {"rules": [{"action": "block", "expression": "(ip.src eq 192.0.2.1)"}]}
    zone_only = cf_emulator.add_token(permissions=[ZONE_WAF_EDIT])
    with cf_emulator.client(token=zone_only.value) as api:
        error(api.put(entry, json=body), 403, 10000)
    rulesets = cf_emulator.add_token(permissions=[ACCOUNT_RULESETS_EDIT])
    with cf_emulator.client(token=rulesets.value) as api:
        assert result(api.put(entry, json=body))["kind"] == "root"
        assert len(result(api.get(entry))["rules"]) == 1


def test_async_client_in_process(cf_emulator: Emulator) -> None:
    async def run() -> Any:
        headers = {"Authorization": f"Bearer {cf_emulator.token}"}
        transport = cf_emulator.transport()
        async with httpx.AsyncClient(base_url=BASE_URL, transport=transport, headers=headers) as c:
            await c.post(
                zone_rules(cf_emulator),
                json={"mode": "block", "configuration": {"target": "ip", "value": "192.0.2.77"}},
            )
            return result(await c.get(zone_rules(cf_emulator)))

    found = asyncio.run(run())
    assert [r["configuration"]["value"] for r in found] == ["192.0.2.77"]


def test_snapshot_and_summary(api: httpx.Client, cf_emulator: Emulator) -> None:
    cf_emulator.seed_access_rule("203.0.113.0/24", notes="someone else")
    cf_emulator.seed_list("theirs", description="not cfban")
    cf_emulator.seed_items("theirs", ["192.0.2.1", ("2001:db8::/48", "manual")])
    cf_emulator.seed_custom_rule("(ip.src in $theirs)", ref="their_rule")
    before = cf_emulator.snapshot()
    assert before["lists"]["theirs"]["items"][1] | {
        "id": "",
        "created_on": "",
        "modified_on": "",
    } == {"id": "", "ip": "2001:db8::/48", "comment": "manual", "created_on": "", "modified_on": ""}
    assert before["access_rules"][0]["configuration"]["target"] == "ip_range"
    cf_emulator.faults.randomly(1.0, [Fault.server_error(503), Fault.dropped(), Fault.timeout()])
    for method in ("POST", "PUT", "DELETE"):
        try:
            api.request(method, f"{lists_path(cf_emulator)}/{before['lists']['theirs']['id']}")
        except (httpx.RemoteProtocolError, httpx.ReadTimeout):
            pass
    assert cf_emulator.snapshot() == before  # edge faults never touch state
    assert cf_emulator.summary() == {
        "access_rules": 1,
        "lists": {"theirs": 2},
        "custom_rules": 1,
        "operations": 0,
    }
    cf_emulator.faults.clear()
    assert result(api.get(lists_path(cf_emulator)))[0]["num_referencing_filters"] == 1
