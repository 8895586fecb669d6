"""Rulesets: the ``http_request_firewall_custom`` entry point and its rules (cloudflare-api.md §4).

Zone routes need Zone WAF Read/Edit; account routes Account WAF or Account Rulesets. Rule
writes return the whole ruleset and bump its ``version``; PATCH replaces the whole rule
definition (only ``position`` = a reorder). Expressions: 1–4,096 characters, and every ``$name``
must be an existing list of the account (``$cf.…`` managed lists are accepted). Validation codes
are UNVERIFIED; 20021 is used, with ``source.pointer`` as the schema describes.
"""

from __future__ import annotations

from typing import Any, Literal

from ._envelope import ApiError, Reply, ok
from ._router import Ctx, Router
from ._routes_lists import LIST_REF
from ._state import (
    ACCOUNT_RULESETS_EDIT,
    ACCOUNT_RULESETS_READ,
    ACCOUNT_WAF_EDIT,
    ACCOUNT_WAF_READ,
    CUSTOM_PHASE,
    CUSTOM_RULES,
    ZONE_WAF_EDIT,
    ZONE_WAF_READ,
    Rule,
    Ruleset,
)

ACTIONS = ("block", "challenge", "js_challenge", "managed_challenge", "skip", "log", "execute")
RULE_FIELDS = (
    "action",
    "expression",
    "description",
    "enabled",
    "ref",
    "logging",
    "action_parameters",
)
_ENTRY = "/rulesets/phases/" + CUSTOM_PHASE + "/entrypoint"


def register(router: Router) -> None:
    for base, read, edit in (
        ("/zones/{zone_id}", (ZONE_WAF_READ,), (ZONE_WAF_EDIT,)),
        (
            "/accounts/{account_id}",
            (ACCOUNT_WAF_READ, ACCOUNT_RULESETS_READ),
            (ACCOUNT_WAF_EDIT, ACCOUNT_RULESETS_EDIT),
        ),
    ):
        router.add("GET", base + _ENTRY, *read)(get_entrypoint)
        router.add("PUT", base + _ENTRY, *edit)(put_entrypoint)
        router.add("GET", base + "/rulesets", *read)(list_rulesets)
        router.add("POST", base + "/rulesets", *edit)(create_ruleset)
        router.add("GET", base + "/rulesets/{ruleset_id}", *read)(get_ruleset)
        router.add("POST", base + "/rulesets/{ruleset_id}/rules", *edit)(add_rule)
        router.add("PATCH", base + "/rulesets/{ruleset_id}/rules/{rule_id}", *edit)(patch_rule)
        router.add("DELETE", base + "/rulesets/{ruleset_id}/rules/{rule_id}", *edit)(delete_rule)


def rule_error(message: str, pointer: str) -> ApiError:
    return ApiError(400, 20021, message, source={"pointer": pointer})


def _entry_missing() -> ApiError:
    return ApiError(404, 10003, f"could not find entrypoint ruleset in the {CUSTOM_PHASE} phase")


def _ruleset(ctx: Ctx) -> Ruleset:
    scope_type, scope_id = ctx.scope
    rs = ctx.state.rulesets.get(ctx.params["ruleset_id"])
    if rs is None or rs.scope_type != scope_type or rs.scope_id != scope_id:
        raise ApiError(404, 10003, "could not find ruleset")  # code UNVERIFIED
    return rs


def _new_ruleset(ctx: Ctx, name: str, description: str) -> Ruleset:
    scope_type, scope_id = ctx.scope
    kind: Literal["zone", "account"] = "zone" if scope_type == "zone" else "account"
    rs = ctx.state.add_entrypoint(kind, scope_id, ctx.stamp, name)
    rs.description = description
    return rs


def build_rule(
    ctx: Ctx, body: Any, pointer: str, *, keep: Rule | None = None, version: int = 1
) -> Rule:
    """A rule from a request body, validated. ``keep`` is the rule a PATCH replaces: its id
    stays, and its ``ref`` when none is given (whether PATCH keeps ``ref`` is UNVERIFIED)."""
    if not isinstance(body, dict):
        raise rule_error("a rule must be a JSON object", pointer)
    action, expression = body.get("action"), body.get("expression")
    if action not in ACTIONS:
        raise rule_error(f"'{action}' is not a valid value for action", pointer + "/action")
    if action == "log" and ctx.state.account_plan(ctx.account_id) != "enterprise":
        raise rule_error("the log action requires an Enterprise plan", pointer + "/action")
    if not isinstance(expression, str) or not 1 <= len(expression) <= 4096:
        raise rule_error(
            "expression must be between 1 and 4096 characters", pointer + "/expression"
        )
    account = ctx.account_id
    names = {x.name for x in ctx.state.lists.values() if x.account_id == account}
    for name in LIST_REF.findall(expression):
        if name.startswith("cf."):
            continue
        if name not in names:
            raise rule_error(
                f"filter parsing error: could not find list '{name}'", pointer + "/expression"
            )
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise rule_error("enabled must be a boolean", pointer + "/enabled")
    rule_id = keep.id if keep else ctx.state.ids.new()
    ref = body.get("ref") or (keep.ref if keep else rule_id)
    return Rule(
        id=rule_id,
        version=str(version),
        action=action,
        expression=expression,
        description=str(body.get("description", "")),
        enabled=enabled,
        ref=str(ref),
        last_updated=ctx.stamp,
        logging=body.get("logging"),
        action_parameters=body.get("action_parameters"),
    )


def _check_count(ctx: Ctx, new_total: int) -> None:
    """Custom rules per zone are capped by plan, counting the whole phase (§4); here the
    entry point holds the whole phase."""
    zone_scope = ctx.scope[0] == "zone"
    plan = ctx.zone.plan if zone_scope else ctx.state.account_plan(ctx.account_id)
    limit = CUSTOM_RULES[plan]
    if new_total > limit:
        raise rule_error(f"exceeded maximum number of rules in the phase: {limit}", "/rules")


def _bump(ctx: Ctx, rs: Ruleset) -> Reply:
    rs.version += 1
    rs.last_updated = ctx.stamp
    return ok(rs.to_json())


def get_entrypoint(ctx: Ctx) -> Reply:
    rs = ctx.state.entrypoint(*ctx.scope)
    if rs is None:
        raise _entry_missing()
    return ok(rs.to_json())


def put_entrypoint(ctx: Ctx) -> Reply:
    """Replace every rule of the phase, creating the entry point when absent."""
    body = ctx.json_object()
    rules_in = body.get("rules", [])
    if not isinstance(rules_in, list):
        raise rule_error("rules must be an array", "/rules")
    existing = ctx.state.entrypoint(*ctx.scope)
    # A rule sent with the id of a rule already there updates it in place (keeps its id);
    # anything else is new. UNVERIFIED in detail, plausible from the ruleset model.
    current = {r.id: r for r in existing.rules} if existing else {}
    rules = []
    for n, raw in enumerate(rules_in):
        old = current.get(raw.get("id", "")) if isinstance(raw, dict) else None
        version = int(old.version) + 1 if old else 1
        rules.append(build_rule(ctx, raw, f"/rules/{n}", keep=old, version=version))
    if existing is None:
        name = str(body.get("name", "default"))
        existing = _new_ruleset(ctx, name, str(body.get("description", "")))
    _check_count(ctx, len(rules))
    if "description" in body:
        existing.description = str(body["description"])
    existing.rules = rules
    return _bump(ctx, existing)


def list_rulesets(ctx: Ctx) -> Reply:
    scope_type, scope_id = ctx.scope
    found = [
        rs.to_json(with_rules=False)
        for rs in ctx.state.rulesets.values()
        if rs.scope_type == scope_type and rs.scope_id == scope_id
    ]
    return ok(found)


def create_ruleset(ctx: Ctx) -> Reply:
    body = ctx.json_object()
    for key in ("name", "kind", "phase", "rules"):
        if key not in body:
            raise rule_error(f"{key} is required", f"/{key}")
    if body["phase"] != CUSTOM_PHASE or body["kind"] not in ("zone", "root"):
        raise rule_error("only the http_request_firewall_custom entry point is emulated", "/phase")
    if ctx.state.entrypoint(*ctx.scope) is not None:
        raise rule_error("an entry point ruleset already exists for this phase", "/kind")
    rules_in = body["rules"]
    if not isinstance(rules_in, list):
        raise rule_error("rules must be an array", "/rules")
    rules = [build_rule(ctx, r, f"/rules/{n}") for n, r in enumerate(rules_in)]
    _check_count(ctx, len(rules))
    rs = _new_ruleset(ctx, str(body["name"]), str(body.get("description", "")))
    rs.rules = rules
    return _bump(ctx, rs)


def get_ruleset(ctx: Ctx) -> Reply:
    return ok(_ruleset(ctx).to_json())


def _position(ctx: Ctx, rs: Ruleset, body: dict[str, Any], skip: str | None) -> int:
    """Where to insert (index into ``rs.rules`` without the rule being moved)."""
    rules = [r for r in rs.rules if r.id != skip]
    position = body.get("position")
    if position is None:
        return len(rules)
    if not isinstance(position, dict) or len(position) != 1:
        raise rule_error("position must have exactly one of before, after, index", "/position")
    ((key, value),) = position.items()
    if key == "index":
        if not isinstance(value, int) or value < 1:
            raise rule_error("position index starts at 1", "/position/index")
        return min(value - 1, len(rules))
    if key not in ("before", "after") or not isinstance(value, str):
        raise rule_error("position must have exactly one of before, after, index", "/position")
    if value == "":
        return 0 if key == "before" else len(rules)
    for n, rule in enumerate(rules):
        if rule.id == value:
            return n if key == "before" else n + 1
    raise rule_error(f"could not find rule {value}", f"/position/{key}")


def add_rule(ctx: Ctx) -> Reply:
    rs = _ruleset(ctx)
    body = ctx.json_object()
    rule = build_rule(ctx, body, "")
    _check_count(ctx, len(rs.rules) + 1)
    rs.rules.insert(_position(ctx, rs, body, None), rule)
    return _bump(ctx, rs)


def _find(rs: Ruleset, rule_id: str) -> Rule:
    for rule in rs.rules:
        if rule.id == rule_id:
            return rule
    raise ApiError(404, 10003, f"could not find rule {rule_id}")  # code UNVERIFIED


def patch_rule(ctx: Ctx) -> Reply:
    rs = _ruleset(ctx)
    old = _find(rs, ctx.params["rule_id"])
    body = ctx.json_object()
    if set(body) & set(RULE_FIELDS):
        new = build_rule(ctx, body, "", keep=old, version=int(old.version) + 1)
    else:
        new = old  # position only: a reorder, the rule is unchanged
    at = _position(ctx, rs, body, old.id) if "position" in body else rs.rules.index(old)
    rs.rules = [r for r in rs.rules if r.id != old.id]
    rs.rules.insert(at, new)
    return _bump(ctx, rs)


def delete_rule(ctx: Ctx) -> Reply:
    rs = _ruleset(ctx)
    old = _find(rs, ctx.params["rule_id"])
    rs.rules = [r for r in rs.rules if r.id != old.id]
    return _bump(ctx, rs)
