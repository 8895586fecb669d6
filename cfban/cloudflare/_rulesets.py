"""The WAF custom rule that makes the list backend's IP list block (``ip.src in $list``).

One rule per configured zone, in the zone's ``http_request_firewall_custom`` entry point.
cfban adds its rule through the single-rule endpoint (appended after the rules already
there) and never replaces the whole entry point, so rules others made keep their content and
their order. When the zone has no entry point yet, cfban creates it holding just its rule.
cfban's rule is recognised by its ``ref`` (``cfban_<list name>``) or by a description that
starts with ``cfban v1 rule`` and an expression naming the list.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from cfban.cloudflare._http import CloudflareHttp, NotFoundError
from cfban.cloudflare._marker import RULE_PREFIX
from cfban.cloudflare._models import Ruleset, RulesetRule, parse
from cfban.errors import CloudflareError

log = logging.getLogger(__name__)

PHASE = "http_request_firewall_custom"
READ = "Zone > Zone WAF > Read"
EDIT = "Zone > Zone WAF > Edit"


@dataclass(frozen=True)
class ListRule:
    """cfban's custom rule for one list."""

    list_name: str
    action: str

    @property
    def ref(self) -> str:
        return f"cfban_{self.list_name}"

    @property
    def expression(self) -> str:
        return f"(ip.src in ${self.list_name})"

    def body(self, *, enabled: bool = True) -> dict[str, object]:
        return {
            "action": self.action,
            "expression": self.expression,
            "description": f"{RULE_PREFIX}: clients banned by cfban (list {self.list_name})",
            "enabled": enabled,
            "ref": self.ref,
        }

    def names_list(self, expression: str) -> bool:
        """Whether ``expression`` names this list (``$cfban`` is not ``$cfban_block``)."""
        return re.search(rf"\${re.escape(self.list_name)}(?![A-Za-z0-9_])", expression) is not None

    def find(self, ruleset: Ruleset) -> RulesetRule | None:
        """cfban's rule in ``ruleset``, if it is there."""
        for rule in ruleset.rules:
            if rule.ref == self.ref:
                return rule
            described = (rule.description or "").startswith(RULE_PREFIX)
            if described and self.names_list(rule.expression):
                return rule
        return None


def get_entrypoint(http: CloudflareHttp, zone_id: str) -> Ruleset | None:
    """The zone's custom-rules entry point, or ``None`` when it does not exist yet."""
    try:
        envelope = http.request(
            "GET", f"/zones/{zone_id}/rulesets/phases/{PHASE}/entrypoint", permission=READ
        )
    except NotFoundError as exc:
        if exc.code not in (None, 10003):
            raise
        return None
    return parse(Ruleset, envelope.result, "the custom-rules entry point")


def ensure_rule(http: CloudflareHttp, zone_id: str, rule: ListRule) -> str:
    """Make sure the zone has ``rule``; return a line saying what was done.

    Raises:
        CloudflareError: the entry point or the rule cannot be read or written.
    """
    ruleset = get_entrypoint(http, zone_id)
    if ruleset is None:
        body = {"name": "default", "kind": "zone", "phase": PHASE, "rules": [rule.body()]}
        try:
            http.request(
                "POST",
                f"/zones/{zone_id}/rulesets",
                json_body=body,
                permission=EDIT,
                idempotent=False,
            )
        except CloudflareError:
            ruleset = get_entrypoint(http, zone_id)  # created meanwhile by someone else?
            if ruleset is None:
                raise
        else:
            return f"zone {zone_id}: created the custom rules entry point with cfban's rule"
    existing = rule.find(ruleset)
    if existing is None:
        http.request(
            "POST",
            f"/zones/{zone_id}/rulesets/{ruleset.id}/rules",
            json_body=rule.body(),
            permission=EDIT,
            idempotent=False,
        )
        return f"zone {zone_id}: added cfban's custom rule ({rule.expression} -> {rule.action})"
    if existing.action != rule.action or existing.expression != rule.expression:
        # PATCH replaces the whole rule: send every field; keep a rule someone disabled so.
        http.request(
            "PATCH",
            f"/zones/{zone_id}/rulesets/{ruleset.id}/rules/{existing.id}",
            json_body=rule.body(enabled=existing.enabled),
            permission=EDIT,
        )
        return f"zone {zone_id}: updated cfban's custom rule to {rule.action}"
    return f"zone {zone_id}: cfban's custom rule is in place"


def rule_status(http: CloudflareHttp, zone_id: str, rule: ListRule) -> tuple[bool, str]:
    """Whether the zone has ``rule``, enabled, and a line saying so."""
    try:
        ruleset = get_entrypoint(http, zone_id)
    except CloudflareError as exc:
        return False, str(exc)
    found = None if ruleset is None else rule.find(ruleset)
    if found is None:
        return False, f"zone {zone_id}: cfban's custom rule is missing (run: cfban setup)"
    if not found.enabled:
        return False, f"zone {zone_id}: cfban's custom rule is disabled; bans have no effect"
    return True, f"zone {zone_id}: custom rule present ({found.action})"
