"""IP Access Rules at zone and account level (cloudflare-api.md §2).

Zone routes need Firewall Services Read/Edit; account routes Account Firewall Access Rules
Read/Edit. A zone listing also shows the account's rules when
``options.zone_lists_account_rules`` is on; the zone endpoint cannot change those (404).
"""

from __future__ import annotations

from typing import Any

from ._addr import access_rule_error, access_rule_value, canonical_value
from ._envelope import ApiError, Reply, ok
from ._router import Ctx, Router, page_info
from ._state import (
    ACCESS_RULES_PER_ACCOUNT,
    ACCOUNT_ACCESS_RULES_EDIT,
    ACCOUNT_ACCESS_RULES_READ,
    ZONE_FIREWALL_EDIT,
    ZONE_FIREWALL_READ,
    AccessRule,
)

MODES = ("block", "challenge", "whitelist", "js_challenge", "managed_challenge")
ORDERS = ("configuration.target", "configuration.value", "mode")
_ZONE = "/zones/{zone_id}/firewall/access_rules/rules"
_ACCOUNT = "/accounts/{account_id}/firewall/access_rules/rules"


def register(router: Router) -> None:
    for base, read, edit in (
        (_ZONE, ZONE_FIREWALL_READ, ZONE_FIREWALL_EDIT),
        (_ACCOUNT, ACCOUNT_ACCESS_RULES_READ, ACCOUNT_ACCESS_RULES_EDIT),
    ):
        router.add("GET", base, read)(list_rules)
        router.add("POST", base, edit)(create_rule)
        router.add("GET", base + "/{rule_id}", read)(get_rule)
        router.add("PATCH", base + "/{rule_id}", edit)(update_rule)
        router.add("DELETE", base + "/{rule_id}", edit)(delete_rule)


def not_found() -> ApiError:
    # Message observed; code 10001 reported but UNVERIFIED (§2). 404 is the plausible status.
    return ApiError(404, 10001, "firewallaccessrules.api.not_found")


def _visible(ctx: Ctx) -> list[AccessRule]:
    scope_type, scope_id = ctx.scope
    rules = ctx.state.access_rules.values()
    own = [r for r in rules if r.scope_type == scope_type and r.scope_id == scope_id]
    if scope_type == "zone" and ctx.options.zone_lists_account_rules:
        account = ctx.zone.account_id
        own += [r for r in rules if r.scope_type == "account" and r.scope_id == account]
    return own


def _own(ctx: Ctx) -> AccessRule:
    """The rule named in the path, if this scope owns it (inherited rules are not editable)."""
    scope_type, scope_id = ctx.scope
    rule = ctx.state.access_rules.get(ctx.params["rule_id"])
    if rule is None or rule.scope_type != scope_type or rule.scope_id != scope_id:
        raise not_found()
    return rule


def _filters(ctx: Ctx) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name in ("mode", "configuration.target", "configuration.value", "notes")
        if (value := ctx.q(name)) is not None
    ]


def _keep(rule: AccessRule, name: str, value: str) -> bool:
    if name == "mode":
        return rule.mode == value
    if name == "configuration.target":
        # The spec enum lacks ip6, fail2ban sends it anyway; honouring it is UNVERIFIED.
        return rule.target == value
    if name == "configuration.value":
        return rule.value == value  # already canonical (see list_rules)
    return value.lower() in rule.notes.lower()  # notes: case-insensitive substring


def list_rules(ctx: Ctx) -> Reply:
    page, per_page = ctx.page_params(20, 1000)
    match = ctx.q("match") or "all"
    if match not in ("all", "any"):
        raise access_rule_error(f"invalid match received: {match}")
    filters = [
        (n, canonical_value(v) if n == "configuration.value" else v) for n, v in _filters(ctx)
    ]
    rules = _visible(ctx)
    if filters:
        test = all if match == "all" else any
        rules = [r for r in rules if test(_keep(r, n, v) for n, v in filters)]
    order = ctx.q("order")
    if order is not None:
        if order not in ORDERS:
            raise access_rule_error(f"invalid order received: {order}")
        field = order.rsplit(".", 1)[-1]
        rules.sort(key=lambda r: getattr(r, field), reverse=ctx.q("direction") == "desc")
    chunk = rules[(page - 1) * per_page : page * per_page]
    result = [ctx.state.rule_json(r) for r in chunk]
    return ok(result, result_info=page_info(page, per_page, len(rules)))


def create_rule(ctx: Ctx) -> Reply:
    body = ctx.json_object()
    mode = body.get("mode")
    config = body.get("configuration")
    notes = body.get("notes", "")
    if mode not in MODES:
        raise access_rule_error(f"invalid mode received: {mode or ''}")
    if not isinstance(config, dict):
        raise access_rule_error("unsupported target received: ")
    if not isinstance(notes, str):
        raise access_rule_error("notes must be a string")
    target = str(config.get("target", ""))
    account = ctx.account_id
    enterprise = ctx.state.account_plan(account) == "enterprise"
    value = access_rule_value(target, config.get("value"), enterprise=enterprise)
    scope_type, scope_id = ctx.scope
    key = (scope_type, scope_id, target, value)
    for rule in ctx.state.access_rules.values():
        if (rule.scope_type, rule.scope_id, rule.target, rule.value) == key:
            # Status 400 is the likely value but UNVERIFIED (§2).
            raise ApiError(400, 10009, "firewallaccessrules.api.duplicate_of_existing")
    in_account = sum(1 for r in ctx.state.access_rules.values() if _account_of(ctx, r) == account)
    if in_account >= ACCESS_RULES_PER_ACCOUNT:
        raise ApiError(400, 10012, "firewallaccessrules.api.quota_exceeded")  # UNVERIFIED
    rule = AccessRule(
        id=ctx.state.ids.new(),
        mode=mode,
        target=target,
        value=value,
        notes=notes,
        created_on=ctx.stamp,
        modified_on=ctx.stamp,
        scope_type="zone" if scope_type == "zone" else "account",
        scope_id=scope_id,
    )
    ctx.state.access_rules[rule.id] = rule
    return ok(ctx.state.rule_json(rule))


def _account_of(ctx: Ctx, rule: AccessRule) -> str:
    if rule.scope_type == "account":
        return rule.scope_id
    return ctx.state.zones[rule.scope_id].account_id


def get_rule(ctx: Ctx) -> Reply:
    rule = _own(ctx)
    return ok(ctx.state.rule_json(rule))


def update_rule(ctx: Ctx) -> Reply:
    rule = _own(ctx)
    body: dict[str, Any] = ctx.json_object()
    unknown = set(body) - {"mode", "notes", "configuration"}
    if unknown:
        raise access_rule_error(f"unsupported field received: {', '.join(sorted(unknown))}")
    if ctx.options.patch_requires_configuration and not {"mode", "configuration"} <= set(body):
        # The published schema requires both on an update (cloudflare-api.md, Update).
        raise access_rule_error("mode and configuration are required")
    if "configuration" in body and body["configuration"] != {
        "target": rule.target,
        "value": rule.value,
    }:
        raise access_rule_error("configuration cannot be changed")
    if "mode" in body:
        if body["mode"] not in MODES:
            raise access_rule_error(f"invalid mode received: {body['mode']}")
        rule.mode = body["mode"]
    if "notes" in body:
        if not isinstance(body["notes"], str):
            raise access_rule_error("notes must be a string")
        rule.notes = body["notes"]
    rule.modified_on = ctx.stamp
    return ok(ctx.state.rule_json(rule))


def delete_rule(ctx: Ctx) -> Reply:
    """With no body or ``{"cascade": ...}``; cascading to other zones is not modelled."""
    rule = _own(ctx)
    body = ctx.json()
    if body is not None:
        cascade = body.get("cascade", "none") if isinstance(body, dict) else None
        if cascade not in ("none", "basic", "aggressive"):
            raise access_rule_error(f"invalid cascade received: {cascade}")
    del ctx.state.access_rules[rule.id]
    return ok({"id": rule.id})
