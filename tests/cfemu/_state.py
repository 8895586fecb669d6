"""The emulator's data: tokens, accounts, zones, access rules, lists, bulk operations, rulesets.

Plain dataclasses with ``to_json()`` giving the API's object shapes (cloudflare-api.md §2–§4),
plus permission names and plan limits.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ._addr import IPNetwork, sort_key

# Permission names, one per dashboard permission (§7). Edit implies Read.
ZONE_READ = "zone.zone.read"
ZONE_FIREWALL_READ = "zone.firewall_services.read"
ZONE_FIREWALL_EDIT = "zone.firewall_services.edit"
ZONE_WAF_READ = "zone.waf.read"
ZONE_WAF_EDIT = "zone.waf.edit"
ACCOUNT_SETTINGS_READ = "account.settings.read"
ACCOUNT_ACCESS_RULES_READ = "account.firewall_access_rules.read"
ACCOUNT_ACCESS_RULES_EDIT = "account.firewall_access_rules.edit"
ACCOUNT_LISTS_READ = "account.filter_lists.read"
ACCOUNT_LISTS_EDIT = "account.filter_lists.edit"
ACCOUNT_WAF_READ = "account.waf.read"
ACCOUNT_WAF_EDIT = "account.waf.edit"
ACCOUNT_RULESETS_READ = "account.rulesets.read"
ACCOUNT_RULESETS_EDIT = "account.rulesets.edit"
ALL_PERMISSIONS = frozenset(
    {
        ZONE_READ,
        ZONE_FIREWALL_READ,
        ZONE_FIREWALL_EDIT,
        ZONE_WAF_READ,
        ZONE_WAF_EDIT,
        ACCOUNT_SETTINGS_READ,
        ACCOUNT_ACCESS_RULES_READ,
        ACCOUNT_ACCESS_RULES_EDIT,
        ACCOUNT_LISTS_READ,
        ACCOUNT_LISTS_EDIT,
        ACCOUNT_WAF_READ,
        ACCOUNT_WAF_EDIT,
        ACCOUNT_RULESETS_READ,
        ACCOUNT_RULESETS_EDIT,
    }
)

Plan = Literal["free", "pro", "business", "enterprise"]
PLAN_RANK: dict[str, int] = {"free": 0, "pro": 1, "business": 2, "enterprise": 3}
PLAN_NAMES = {
    "free": "Free Website",
    "pro": "Pro Website",
    "business": "Business Website",
    "enterprise": "Enterprise Website",
}
LIST_COUNT = {"free": 1, "pro": 10, "business": 10, "enterprise": 1000}  # §3 Limits
LIST_ITEMS = {"free": 10_000, "pro": 10_000, "business": 10_000, "enterprise": 500_000}
CUSTOM_RULES = {"free": 5, "pro": 20, "business": 100, "enterprise": 1000}  # §4 Limits
ACCESS_RULES_PER_ACCOUNT = 50_000  # §2 Limits
CUSTOM_PHASE = "http_request_firewall_custom"
_HEX32 = re.compile(r"[0-9a-f]{32}")


def is_id(value: str) -> bool:
    return _HEX32.fullmatch(value) is not None


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Ids:
    """32-hex ids from a seeded RNG, so a run is reproducible."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def new(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"


@dataclass
class Token:
    """An API token. ``zones`` / ``accounts`` limit its resources (None = all).
    ``owner`` is ``user`` or ``account``: ``/user/tokens/verify`` rejects account tokens."""

    value: str
    id: str
    permissions: frozenset[str] = ALL_PERMISSIONS
    owner: Literal["user", "account"] = "user"
    status: Literal["active", "disabled", "expired"] = "active"
    zones: frozenset[str] | None = None
    accounts: frozenset[str] | None = None

    def allows(self, permission: str) -> bool:
        return (
            permission in self.permissions
            or permission.replace(".read", ".edit") in self.permissions
        )

    def covers_zone(self, zone: Zone) -> bool:
        if self.zones is not None:
            return zone.id in self.zones
        return self.accounts is None or zone.account_id in self.accounts

    def covers_account(self, account_id: str) -> bool:
        return self.accounts is None or account_id in self.accounts


@dataclass
class Account:
    id: str
    name: str


@dataclass
class Zone:
    id: str
    name: str
    account_id: str
    plan: Plan = "free"


@dataclass
class AccessRule:
    id: str
    mode: str
    target: str
    value: str
    notes: str
    created_on: str
    modified_on: str
    scope_type: Literal["zone", "account"]
    scope_id: str

    def to_json(self, scope_name: str) -> dict[str, Any]:
        # Account rules show scope type "organization" (S-GO enum); "zone" for zone rules
        # is UNVERIFIED (§2).
        scope_type = "organization" if self.scope_type == "account" else "zone"
        return {
            "id": self.id,
            "paused": False,
            "mode": self.mode,
            "allowed_modes": [
                "whitelist",
                "block",
                "challenge",
                "js_challenge",
                "managed_challenge",
            ],
            "configuration": {"target": self.target, "value": self.value},
            "notes": self.notes,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "scope": {"id": self.scope_id, "name": scope_name, "type": scope_type},
        }


@dataclass
class ListItem:
    id: str
    network: IPNetwork
    comment: str
    created_on: str
    modified_on: str

    def to_json(self, display: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.id,
            "ip": display,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        }
        if self.comment:
            item["comment"] = self.comment
        return item


@dataclass
class IpList:
    id: str
    name: str
    kind: str
    description: str
    account_id: str
    created_on: str
    modified_on: str
    items: dict[IPNetwork, ListItem] = field(default_factory=dict)

    def sorted_items(self) -> list[ListItem]:
        """Ascending by address, then by mask (§3); IPv4 before IPv6."""
        return sorted(self.items.values(), key=lambda i: sort_key(i.network))

    def to_json(self, referencing: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "num_items": len(self.items),
            "num_referencing_filters": referencing,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        }


@dataclass
class BulkOperation:
    """A pending list write. ``items`` is the list's content once it completes."""

    id: str
    account_id: str
    list_id: str
    items: dict[IPNetwork, ListItem]
    created_at: float
    polls: int = 0
    status: Literal["pending", "running", "completed", "failed"] = "pending"
    completed: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.completed:
            out["completed"] = self.completed
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Rule:
    id: str
    version: str
    action: str
    expression: str
    description: str
    enabled: bool
    ref: str
    last_updated: str
    logging: dict[str, Any] | None = None
    action_parameters: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "action": self.action,
            "expression": self.expression,
            "description": self.description,
            "last_updated": self.last_updated,
            "ref": self.ref,
            "enabled": self.enabled,
        }
        if self.action_parameters is not None:
            out["action_parameters"] = self.action_parameters
        if self.logging is not None:
            out["logging"] = self.logging
        return out


@dataclass
class Ruleset:
    id: str
    name: str
    description: str
    kind: str
    phase: str
    version: int
    last_updated: str
    scope_type: Literal["zone", "account"]
    scope_id: str
    rules: list[Rule] = field(default_factory=list)

    def to_json(self, *, with_rules: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "version": str(self.version),
            "last_updated": self.last_updated,
            "phase": self.phase,
        }
        if with_rules:
            out["rules"] = [r.to_json() for r in self.rules]
        return out


@dataclass
class State:
    """Everything the emulator stores. Mutated only under the emulator's lock."""

    ids: Ids
    tokens: dict[str, Token] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    zones: dict[str, Zone] = field(default_factory=dict)
    access_rules: dict[str, AccessRule] = field(default_factory=dict)
    lists: dict[str, IpList] = field(default_factory=dict)
    operations: dict[str, BulkOperation] = field(default_factory=dict)
    rulesets: dict[str, Ruleset] = field(default_factory=dict)

    def scope_name(self, rule: AccessRule) -> str:
        """The zone or account name shown in a rule's ``scope``."""
        if rule.scope_type == "zone":
            return self.zones[rule.scope_id].name
        return self.accounts[rule.scope_id].name

    def rule_json(self, rule: AccessRule) -> dict[str, Any]:
        return rule.to_json(self.scope_name(rule))

    def add_entrypoint(
        self,
        scope_type: Literal["zone", "account"],
        scope_id: str,
        stamp: str,
        name: str = "default",
    ) -> Ruleset:
        """An empty custom-phase entry point (version 0: its first write makes it "1")."""
        kind = "zone" if scope_type == "zone" else "root"
        rs = Ruleset(self.ids.new(), name, "", kind, CUSTOM_PHASE, 0, stamp, scope_type, scope_id)
        self.rulesets[rs.id] = rs
        return rs

    def account_plan(self, account_id: str) -> str:
        """The highest plan among the account's zones: list quotas follow it (§3)."""
        plans = [z.plan for z in self.zones.values() if z.account_id == account_id]
        return max(plans, key=lambda p: PLAN_RANK[p], default="free")

    def pending_operation(self, account_id: str) -> BulkOperation | None:
        for op in self.operations.values():
            if op.account_id == account_id and op.status in ("pending", "running"):
                return op
        return None

    def entrypoint(self, scope_type: str, scope_id: str) -> Ruleset | None:
        for rs in self.rulesets.values():
            if (
                rs.scope_type == scope_type
                and rs.scope_id == scope_id
                and rs.phase == CUSTOM_PHASE
                and rs.kind in ("zone", "root")
            ):
                return rs
        return None

    def rulesets_of_account(self, account_id: str) -> list[Ruleset]:
        zones = {z.id for z in self.zones.values() if z.account_id == account_id}
        return [
            rs
            for rs in self.rulesets.values()
            if (rs.scope_type == "account" and rs.scope_id == account_id)
            or (rs.scope_type == "zone" and rs.scope_id in zones)
        ]
