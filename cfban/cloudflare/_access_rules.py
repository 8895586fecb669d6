"""The ``access-rules`` backend: one IP Access Rule per banned address or network.

Works on every plan, at zone level (``zone_id`` set) or account level (``account_id``).
Single addresses become ``ip`` / ``ip6`` rules; networks become ``ip_range`` rules, which
Cloudflare accepts only for IPv4 /16 and /24 and IPv6 /32, /48 and /64 (an IPv6 client banned
as its /64, the default, fits). Other prefixes cannot be expressed and are skipped with a
warning; the ``list`` backend takes any prefix.

Each rule's ``mode`` is the ban's action (``block``, ``managed_challenge``...: the marker's
``act``). Each rule's ``notes`` carry cfban's marker (see :mod:`cfban.cloudflare._marker`); the
rule id is the ``ref``, so a manual unban is one DELETE. Cloudflare refuses a second rule for
the same address (error 10009): cfban then looks the rule up, matching target and value exactly, and
raises its expiry when it is cfban's. Rules without the marker are never changed or deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from cfban.cloudflare._backend import BanEntry, RemoteEntry, canonical, merge_entries, to_network
from cfban.cloudflare._http import CloudflareHttp, NotFoundError
from cfban.cloudflare._marker import PREFIX, Marker, format_marker, parse_marker
from cfban.cloudflare._models import AccessRule, parse, parse_all
from cfban.cloudflare._token import NO_SUCH_ID, probe_write, verify_token
from cfban.errors import CloudflareError, ConfigError

log = logging.getLogger(__name__)

DUPLICATE_CODE = 10009
_PER_PAGE = 1000
_PREFETCH_FROM = 5
_RULE_ID = re.compile(r"^[0-9a-f]{32}$")
_V4_RANGES = frozenset({16, 24})
_V6_RANGES = frozenset({32, 48, 64})


def rule_configuration(target: str) -> tuple[str, str] | None:
    """The ``(configuration.target, configuration.value)`` for ``target``, if expressible."""
    net = to_network(target)
    if net.prefixlen == net.max_prefixlen:
        return ("ip" if net.version == 4 else "ip6", str(net.network_address))
    allowed = _V4_RANGES if net.version == 4 else _V6_RANGES
    if net.prefixlen in allowed:
        return ("ip_range", str(net))
    return None


def _same(rule: AccessRule, configuration: tuple[str, str]) -> bool:
    target, value = configuration
    if rule.configuration.target != target:
        return False
    try:
        return to_network(rule.configuration.value) == to_network(value)
    except ValueError:
        return False


class AccessRulesBackend:
    """IP Access Rules at zone or account level; see the module docstring."""

    name = "access-rules"

    def __init__(
        self,
        http: CloudflareHttp,
        *,
        zone_id: str | None,
        account_id: str | None,
        mode: str,
    ) -> None:
        if zone_id:
            self.scope, self.level = zone_id, "zone"
            self._base = f"/zones/{zone_id}/firewall/access_rules/rules"
            self._read = "Zone > Firewall Services > Read"
            self._edit = "Zone > Firewall Services > Edit"
        elif account_id:
            self.scope, self.level = account_id, "account"
            self._base = f"/accounts/{account_id}/firewall/access_rules/rules"
            self._read = "Account > Account Firewall Access Rules > Read"
            self._edit = "Account > Account Firewall Access Rules > Edit"
        else:
            raise ConfigError(
                "the access-rules backend needs a zone or an account",
                hint="set [cloudflare] zone_id (or account_id for account-wide rules)",
            )
        self._http = http
        self._account_id = account_id
        self.mode = mode

    def __repr__(self) -> str:
        return f"AccessRulesBackend({self.level} {self.scope})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    # -- add -----------------------------------------------------------------------------

    def add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        """Create (or extend) one rule per target; see :class:`~cfban.cloudflare.Backend`."""
        originals: dict[str, list[str]] = {}
        for entry in entries:
            originals.setdefault(canonical(entry.target), []).append(entry.target)
        merged = merge_entries(entries, self.mode)
        # A replay (fail2ban restart, sync) re-adds many bans cfban already has: one listing
        # of cfban's rules then saves a failed POST and a lookup per ban.
        known = self._owned_rules() if len(merged) >= _PREFETCH_FROM else {}
        refs: dict[str, str] = {}
        for key, marker in merged.items():
            configuration = rule_configuration(key)
            if configuration is None:
                log.warning(
                    "cannot ban %s with an IP Access Rule: Cloudflare takes only IPv4 /16, /24 "
                    "and IPv6 /32, /48, /64 ranges (use the list backend or another "
                    "ipv6_prefix)",
                    key,
                )
                continue
            existing = known.get(key)
            if existing is not None and _same(existing, configuration):
                ref = self._extend(key, existing, marker)
            else:
                ref = self._add_one(key, configuration, marker)
            if ref is not None:
                for original in originals[key]:
                    refs[original] = ref
        return refs

    def _add_one(self, key: str, configuration: tuple[str, str], marker: Marker) -> str | None:
        body = {
            "mode": marker.action,
            "configuration": {"target": configuration[0], "value": configuration[1]},
            "notes": format_marker(marker),
        }
        try:
            envelope = self._http.request("POST", self._base, json_body=body, permission=self._edit)
        except CloudflareError as exc:
            if exc.code != DUPLICATE_CODE and "duplicate_of_existing" not in exc.message:
                raise
        else:
            return parse(AccessRule, envelope.result, "a new access rule").id
        existing = self._find(configuration)
        if existing is None:
            raise CloudflareError(
                f"Cloudflare reports an access rule for {key} already exists, but it is not "
                f"among the {self.level}'s rules",
                hint="it may be an inherited account or user rule; cfban will try again later",
            )
        return self._extend(key, existing, marker)

    def _extend(self, key: str, existing: AccessRule, marker: Marker) -> str | None:
        """Raise the expiry of cfban's rule ``existing``; leave anyone else's alone."""
        current = parse_marker(existing.notes)
        if current is None:
            log.warning(
                "%s is already covered by access rule %s (mode %s) that cfban did not make; "
                "leaving it alone",
                key,
                existing.id,
                existing.mode,
            )
            return None
        wanted = current.merged(marker)
        if not current.covers(marker) or existing.mode != wanted.action:
            self._http.request(
                "PATCH",
                f"{self._base}/{existing.id}",
                # Cloudflare's schema requires mode and configuration on every update; the
                # configuration must be the rule's own, unchanged.
                json_body={
                    "mode": wanted.action,
                    "configuration": {
                        "target": existing.configuration.target,
                        "value": existing.configuration.value,
                    },
                    "notes": format_marker(wanted),
                },
                permission=self._edit,
            )
        return existing.id

    def _owned_rules(self) -> dict[str, AccessRule]:
        """cfban's rules in this zone/account, by canonical target."""
        owned: dict[str, AccessRule] = {}
        items = self._http.iter_pages(
            self._base, params={"notes": PREFIX}, per_page=_PER_PAGE, permission=self._read
        )
        for rule in parse_all(AccessRule, list(items), "access rules"):
            if parse_marker(rule.notes) is None or not rule.belongs_to(self.scope):
                continue
            try:
                owned[canonical(rule.configuration.value)] = rule
            except ValueError:
                continue
        return owned

    def _find(
        self, configuration: tuple[str, str], *, owned_only: bool = False
    ) -> AccessRule | None:
        """The rule for exactly this target and value.

        Asks with Cloudflare's filters first, then (filters on IPv6 values are not documented)
        pages through every rule, or only those with cfban's notes when ``owned_only``.
        """
        target, value = configuration
        fallback: dict[str, str | int] = {"notes": PREFIX} if owned_only else {}
        queries: list[dict[str, str | int]] = [{"configuration.value": value}, fallback]
        if target != "ip6":
            queries[0]["configuration.target"] = target
        for query in queries:
            for item in self._http.iter_pages(
                self._base, params=query, per_page=_PER_PAGE, permission=self._read
            ):
                rule = parse(AccessRule, item, "an access rule")
                if rule.belongs_to(self.scope) and _same(rule, configuration):
                    return rule
        return None

    # -- remove --------------------------------------------------------------------------

    def remove(
        self, targets: Sequence[tuple[str, str | None]], *, not_after: float | None
    ) -> list[str]:
        """Delete cfban's rules for ``targets``; see :class:`~cfban.cloudflare.Backend`."""
        pairs = [(t, ref if ref and _RULE_ID.match(ref) else None) for t, ref in targets]
        lookups = sum(1 for _, ref in pairs if ref is None or not_after is not None)
        # Many lookups (expiry-driven removal needs each rule's expiry): one listing instead.
        known = self._owned_rules() if lookups >= _PREFETCH_FROM else None
        removed: list[str] = []
        for target, ref in pairs:
            if self._remove_one(target, ref, not_after, known):
                removed.append(target)
        return removed

    def _remove_one(
        self,
        target: str,
        ref: str | None,
        not_after: float | None,
        known: dict[str, AccessRule] | None,
    ) -> bool:
        if ref and not_after is None:
            self._delete(ref)  # our own rule id: a manual unban is one DELETE
            return True
        configuration = rule_configuration(canonical(target))
        if configuration is None:
            return True  # cfban never made a rule for it
        if known is not None:
            rule = known.get(canonical(target))
            rule = rule if rule is not None and _same(rule, configuration) else None
        else:
            rule = self._find(configuration, owned_only=True)
        if rule is None:
            return True
        marker = parse_marker(rule.notes)
        if marker is None:
            log.info("access rule %s for %s is not cfban's; leaving it alone", rule.id, target)
            return True
        if not_after is not None and (marker.expires_at is None or marker.expires_at > not_after):
            log.info("keeping %s: its rule is held until %s", target, marker.expires_at or "ever")
            return False
        self._delete(rule.id)
        return True

    def _delete(self, rule_id: str) -> None:
        try:
            self._http.request("DELETE", f"{self._base}/{rule_id}", permission=self._edit)
        except NotFoundError:
            log.debug("access rule %s was already gone", rule_id)

    # -- listing, setup, check -----------------------------------------------------------

    def list_owned(self) -> list[RemoteEntry]:
        """Every rule in this zone/account whose notes carry cfban's marker."""
        found: list[RemoteEntry] = []
        for target, rule in self._owned_rules().items():
            marker = parse_marker(rule.notes)
            assert marker is not None  # _owned_rules keeps marked rules only
            found.append(
                RemoteEntry(
                    target, rule.id, marker.expires_at, marker.jails, self.scope, marker.action
                )
            )
        return found

    def setup(self) -> list[str]:
        """Nothing to create in advance: rules are made per ban."""
        return [f"access-rules backend ({self.level} {self.scope}): nothing to set up"]

    def check(self) -> list[tuple[str, bool, str]]:
        """Token, reachability and read permission; write permission shows on first ban."""
        ok, detail = verify_token(self._http, self._account_id)
        checks = [("token", ok, detail)]
        try:
            envelope = self._http.request(
                "GET", self._base, params={"per_page": 5}, permission=self._read
            )
        except CloudflareError as exc:
            checks.append((f"{self.level} access rules", False, str(exc)))
            return checks
        count = envelope.result_info.get("total_count")
        detail = f"{self.level} {self.scope} reachable, rules readable"
        checks.append(
            (
                f"{self.level} access rules",
                True,
                detail + (f" ({count} rules)" if isinstance(count, int) else ""),
            )
        )
        path = f"{self._base}/{NO_SUCH_ID}"
        body = {
            "mode": self.mode,
            "configuration": {"target": "ip", "value": "192.0.2.1"},
            "notes": PREFIX,
        }
        ok, detail = probe_write(self._http, "PATCH", path, body, self._edit)
        checks.append(("permission to ban", ok, detail))
        return checks
