"""Token verification, zones, accounts and ``GET /ips`` (cloudflare-api.md §1, §6)."""

from __future__ import annotations

import hashlib
from typing import Any

from ._envelope import ApiError, Reply, ok
from ._router import Ctx, Router, page_info
from ._state import PLAN_NAMES, ZONE_READ, Token, Zone

# Verbatim from cloudflare-api.md §6, in the order served.
IPV4_CIDRS = (
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
)
IPV6_CIDRS = (
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
)
INVALID_TOKEN = (401, 1000, "Invalid API Token")


def register(router: Router) -> None:
    router.add("GET", "/ips", public=True)(ips)
    router.add("GET", "/user/tokens/verify")(verify_user_token)
    router.add("GET", "/accounts/{account_id}/tokens/verify")(verify_account_token)
    router.add("GET", "/zones")(list_zones)
    router.add("GET", "/zones/{zone_id}")(get_zone)
    router.add("GET", "/accounts")(list_accounts)
    router.add("GET", "/accounts/{account_id}")(get_account)


def ips(ctx: Ctx) -> Reply:
    digest = hashlib.md5("\n".join(IPV4_CIDRS + IPV6_CIDRS).encode()).hexdigest()
    result: dict[str, Any] = {
        "etag": digest,
        "ipv4_cidrs": list(IPV4_CIDRS),
        "ipv6_cidrs": list(IPV6_CIDRS),
    }
    return ok(result)


def _verified(token: Token) -> Reply:
    result = {"id": token.id, "status": token.status}
    message = {"code": 10000, "message": "This API Token is valid and active", "type": None}
    return ok(result, messages=[message] if token.status == "active" else [])


def verify_user_token(ctx: Ctx) -> Reply:
    """User tokens only: an account-owned token gets 1000 "Invalid API Token" (§1 gotcha)."""
    assert ctx.token is not None
    if ctx.token.owner != "user":
        raise ApiError(*INVALID_TOKEN)
    return _verified(ctx.token)


def verify_account_token(ctx: Ctx) -> Reply:
    """Account tokens of this account only; a user token here is rejected like an unknown one
    (UNVERIFIED: the doc only describes the opposite direction)."""
    assert ctx.token is not None
    account = ctx.params["account_id"]
    if ctx.token.owner != "account" or not ctx.token.covers_account(account):
        raise ApiError(*INVALID_TOKEN)
    return _verified(ctx.token)


def zone_json(ctx: Ctx, zone: Zone) -> dict[str, Any]:
    account = ctx.state.accounts[zone.account_id]
    return {
        "id": zone.id,
        "name": zone.name,
        "status": "active",
        "paused": False,
        "type": "full",
        "account": {"id": account.id, "name": account.name},
        "plan": {"id": zone.plan, "name": PLAN_NAMES[zone.plan], "legacy_id": zone.plan},
    }


def list_zones(ctx: Ctx) -> Reply:
    """Zones the token can see (Zone Read or any zone permission), filtered by ``name``."""
    assert ctx.token is not None
    token = ctx.token
    visible = [
        z
        for z in ctx.state.zones.values()
        if token.covers_zone(z)
        and (token.allows(ZONE_READ) or any(p.startswith("zone.") for p in token.permissions))
    ]
    name = ctx.q("name")
    if name is not None:
        visible = [z for z in visible if z.name == name.lower()]
    page, per_page = ctx.page_params(20, 50)
    chunk = visible[(page - 1) * per_page : page * per_page]
    return ok(
        [zone_json(ctx, z) for z in chunk], result_info=page_info(page, per_page, len(visible))
    )


def get_zone(ctx: Ctx) -> Reply:
    return ok(zone_json(ctx, ctx.zone))


def list_accounts(ctx: Ctx) -> Reply:
    assert ctx.token is not None
    token = ctx.token
    seen = [a for a in ctx.state.accounts.values() if token.covers_account(a.id)]
    result = [{"id": a.id, "name": a.name, "type": "standard"} for a in seen]
    return ok(result, result_info=page_info(1, max(1, len(result)), len(result)))


def get_account(ctx: Ctx) -> Reply:
    account = ctx.state.accounts[ctx.params["account_id"]]
    return ok({"id": account.id, "name": account.name, "type": "standard"})


__all__ = ["IPV4_CIDRS", "IPV6_CIDRS", "register"]
