"""Seeding and inspection helpers of :class:`~tests.cfemu.Emulator` (a mixin).

Seeding writes state directly — no request, no log entry, no rate-limit cost, no bulk
operation — to stand for things "created by someone else". Inspection returns JSON-shaped
copies, safe to keep and compare.
"""

from __future__ import annotations

import copy
import ipaddress
import threading
from collections.abc import Iterable
from typing import Any, Literal

from ._addr import access_rule_value, item_display, list_item_network
from ._router import Options
from ._routes_lists import referencing_rules
from ._state import (
    ALL_PERMISSIONS,
    AccessRule,
    Account,
    IpList,
    ListItem,
    Plan,
    Rule,
    State,
    Token,
    Zone,
)


class SeedMixin:
    """State set-up and inspection; the emulator supplies the attributes declared here."""

    state: State
    options: Options
    account_id: str
    zone_id: str
    _lock: threading.RLock

    def _stamp(self) -> str:
        raise NotImplementedError

    def add_account(self, account_id: str | None = None, name: str = "Example account") -> Account:
        with self._lock:
            account = Account(account_id or self.state.ids.new(), name)
            self.state.accounts[account.id] = account
            return account

    def add_zone(
        self,
        zone_id: str | None = None,
        name: str = "example.com",
        *,
        account_id: str | None = None,
        plan: Plan = "free",
    ) -> Zone:
        """A zone in ``account_id`` (default: the main account) on ``plan``."""
        with self._lock:
            zone = Zone(zone_id or self.state.ids.new(), name, account_id or self.account_id, plan)
            self.state.zones[zone.id] = zone
            return zone

    def add_token(
        self,
        value: str | None = None,
        *,
        permissions: Iterable[str] = ALL_PERMISSIONS,
        owner: Literal["user", "account"] = "user",
        status: Literal["active", "disabled", "expired"] = "active",
        zones: Iterable[str] | None = None,
        accounts: Iterable[str] | None = None,
    ) -> Token:
        """A token; ``permissions`` are names from ``tests.cfemu`` (``ZONE_WAF_EDIT`` …).
        An account-owned token is limited to the main account unless ``accounts`` says else."""
        with self._lock:
            token_id = self.state.ids.new()
            if owner == "account" and accounts is None:
                accounts = [self.account_id]
            token = Token(
                value=value or f"tok_{token_id}",
                id=token_id,
                permissions=frozenset(permissions),
                owner=owner,
                status=status,
                zones=frozenset(zones) if zones is not None else None,
                accounts=frozenset(accounts) if accounts is not None else None,
            )
            self.state.tokens[token.value] = token
            return token

    def seed_access_rule(
        self,
        value: str,
        *,
        target: str | None = None,
        mode: str = "block",
        notes: str = "",
        scope: Literal["zone", "account"] = "zone",
        scope_id: str | None = None,
    ) -> dict[str, Any]:
        """An access rule; ``target`` is guessed from ``value`` when left out."""
        with self._lock:
            target = target or _guess_target(value)
            sid = scope_id or (self.zone_id if scope == "zone" else self.account_id)
            stored = access_rule_value(target, value, enterprise=True)
            stamp = self._stamp()
            rule = AccessRule(
                self.state.ids.new(), mode, target, stored, notes, stamp, stamp, scope, sid
            )
            self.state.access_rules[rule.id] = rule
            return self.state.rule_json(rule)

    def seed_list(
        self, name: str, *, kind: str = "ip", description: str = "", account_id: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            stamp = self._stamp()
            account = account_id or self.account_id
            lst = IpList(self.state.ids.new(), name, kind, description, account, stamp, stamp)
            self.state.lists[lst.id] = lst
            return lst.to_json(0)

    def seed_items(
        self, list_name: str, items: Iterable[str | tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Items added at once (no bulk operation): ``"ip"`` or ``("ip", "comment")``."""
        with self._lock:
            lst = self._list_named(list_name)
            stamp = self._stamp()
            for entry in items:
                ip, comment = (entry, "") if isinstance(entry, str) else entry
                net = list_item_network(ip, 0, legacy_v6=False)
                old = lst.items.get(net)
                item_id = old.id if old else self.state.ids.new()
                lst.items[net] = ListItem(item_id, net, comment, stamp, stamp)
            lst.modified_on = stamp  # someone else wrote: the list changed
            return self._items_json(lst)

    def seed_custom_rule(
        self,
        expression: str,
        *,
        action: str = "block",
        description: str = "",
        ref: str | None = None,
        enabled: bool = True,
        zone_id: str | None = None,
    ) -> dict[str, Any]:
        """A rule appended to the zone's custom entry point (created when missing)."""
        with self._lock:
            zid = zone_id or self.zone_id
            stamp = self._stamp()
            rs = self.state.entrypoint("zone", zid) or self.state.add_entrypoint("zone", zid, stamp)
            rule_id = self.state.ids.new()
            rule = Rule(
                rule_id, "1", action, expression, description, enabled, ref or rule_id, stamp
            )
            rs.rules.append(rule)
            rs.version += 1
            rs.last_updated = stamp
            return rule.to_json()

    # -- inspection ---------------------------------------------------------------------------

    def access_rules(self, scope_id: str | None = None) -> list[dict[str, Any]]:
        """Every access rule (or those of one zone/account id), as the API shows them."""
        with self._lock:
            return [
                self.state.rule_json(r)
                for r in self.state.access_rules.values()
                if scope_id is None or r.scope_id == scope_id
            ]

    def lists(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                x.to_json(referencing_rules(self.state, x.account_id, x.name))
                for x in self.state.lists.values()
            ]

    def list_items(self, list_name: str) -> list[dict[str, Any]]:
        """The items of a list (by name), sorted as the API sorts them."""
        with self._lock:
            return self._items_json(self._list_named(list_name))

    def list_ips(self, list_name: str) -> list[str]:
        return [item["ip"] for item in self.list_items(list_name)]

    def custom_rules(self, zone_id: str | None = None) -> list[dict[str, Any]]:
        """The rules of the zone's custom entry point ([] when it does not exist)."""
        with self._lock:
            rs = self.state.entrypoint("zone", zone_id or self.zone_id)
            return [r.to_json() for r in rs.rules] if rs else []

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of everything stored, for before/after comparisons."""
        with self._lock:
            rulesets = {rs.id: rs.to_json() for rs in self.state.rulesets.values()}
            return copy.deepcopy(
                {
                    "access_rules": self.access_rules(),
                    "lists": {
                        x.name: {**x.to_json(0), "items": self._items_json(x)}
                        for x in self.state.lists.values()
                    },
                    "rulesets": rulesets,
                    "operations": [op.to_json() for op in self.state.operations.values()],
                }
            )

    def summary(self) -> dict[str, Any]:
        """Counts of what is stored (the standalone server prints this on SIGTERM)."""
        with self._lock:
            return {
                "access_rules": len(self.state.access_rules),
                "lists": {x.name: len(x.items) for x in self.state.lists.values()},
                "custom_rules": sum(len(rs.rules) for rs in self.state.rulesets.values()),
                "operations": len(self.state.operations),
            }

    # -- helpers ------------------------------------------------------------------------------

    def _list_named(self, name: str) -> IpList:
        for lst in self.state.lists.values():
            if lst.name == name or lst.id == name:
                return lst
        raise KeyError(f"no list named {name!r}")

    def _items_json(self, lst: IpList) -> list[dict[str, Any]]:
        items = lst.sorted_items()
        style = self.options.cidr_singles
        return [i.to_json(item_display(i.network, cidr_singles=style)) for i in items]


def _guess_target(value: str) -> str:
    if "/" in value:
        return "ip_range"
    try:
        return "ip" if ipaddress.ip_address(value).version == 4 else "ip6"
    except ValueError:
        return "asn" if value.upper().startswith("AS") else "country"
