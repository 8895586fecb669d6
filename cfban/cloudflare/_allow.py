"""The shared allowlist at Cloudflare: IP Access Rules in mode ``whitelist`` with cfban's
allow marker.

Why access rules: they exist on every plan (a custom list would take the Free plan's only
list), at account level they apply to every zone of the account, and an allow rule makes
Cloudflare skip blocks, challenges and custom rules for the address, so even a ban that
some host adds before it has read the allowlist has no effect. With ``[cloudflare]
account_id`` set the entries are account rules (every host sharing the account, whatever its
zone, honours them); otherwise rules of ``zone_id``.

An entry's ``notes`` start with ``cfban v1 allow exp=<epoch|never>`` (the time in words in
parentheses after it, then the operator's note). Rules without that marker are never changed
or deleted; an IP Access Rule takes one address, an IPv4 /16 or /24, or an IPv6 /32, /48 or
/64, so only those can be allowed. Allowing a target that has a cfban ban rule at the same
level replaces that rule (Cloudflare keeps one rule per address and level).
"""

from __future__ import annotations

import logging
import re
import time

from cfban.allowlist import AllowEntry
from cfban.cloudflare._access_rules import DUPLICATE_CODE, rule_configuration
from cfban.cloudflare._backend import canonical
from cfban.cloudflare._http import CloudflareHttp, NotFoundError
from cfban.cloudflare._marker import parse_marker
from cfban.cloudflare._models import AccessRule, parse, parse_all
from cfban.errors import CloudflareError, ConfigError, RefusedError

log = logging.getLogger(__name__)

ALLOW_PREFIX = "cfban v1 allow"
_ALLOW = re.compile(
    r"^cfban v1 allow exp=(?P<exp>never|\d{1,12})(?: \([^)]*\))?(?: (?P<note>.*))?$"
)
_PER_PAGE = 1000
_NOTE_MAX = 300


def format_allow(expires_at: float | None, note: str) -> str:
    """The notes of an allow rule."""
    if expires_at is None:
        head = f"{ALLOW_PREFIX} exp=never (until disallowed)"
    else:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires_at)))
        head = f"{ALLOW_PREFIX} exp={int(expires_at)} (until {when})"
    clean = " ".join(note.split())[:_NOTE_MAX]
    return f"{head} {clean}" if clean else head


def parse_allow(notes: str | None) -> tuple[float | None, str] | None:
    """The expiry and note of an allow rule's notes; None when they are not cfban's."""
    match = _ALLOW.match(notes or "")
    if match is None:
        return None
    exp = match.group("exp")
    return (None if exp == "never" else float(exp)), (match.group("note") or "")


class AllowRules:
    """cfban's allow rules at account level (``account_id``) or zone level."""

    def __init__(self, http: CloudflareHttp, *, zone_id: str | None, account_id: str | None):
        if account_id:
            self.scope, self.level = account_id, "account"
            self._base = f"/accounts/{account_id}/firewall/access_rules/rules"
            self._read = "Account > Account Firewall Access Rules > Read"
            self._edit = "Account > Account Firewall Access Rules > Edit"
        elif zone_id:
            self.scope, self.level = zone_id, "zone"
            self._base = f"/zones/{zone_id}/firewall/access_rules/rules"
            self._read = "Zone > Firewall Services > Read"
            self._edit = "Zone > Firewall Services > Edit"
        else:
            raise ConfigError(
                "the shared allowlist needs an account or a zone",
                hint="set [cloudflare] account_id (or zone_id)",
            )
        self._http = http

    def close(self) -> None:
        self._http.close()

    def _rules(self, params: dict[str, str | int]) -> list[AccessRule]:
        items = self._http.iter_pages(
            self._base, params=params, per_page=_PER_PAGE, permission=self._read
        )
        rules = parse_all(AccessRule, list(items), "access rules")
        return [r for r in rules if r.belongs_to(self.scope)]

    def entries(self) -> list[AllowEntry]:
        """Every allow rule cfban made here (expired ones too)."""
        found: list[AllowEntry] = []
        for rule in self._rules({"mode": "whitelist", "notes": ALLOW_PREFIX}):
            parsed = parse_allow(rule.notes)
            if parsed is None:
                continue
            try:
                target = canonical(rule.configuration.value)
            except ValueError:
                continue
            found.append(AllowEntry(target, parsed[0], parsed[1], rule.id, self.scope))
        return found

    def _find(self, configuration: tuple[str, str]) -> AccessRule | None:
        kind, value = configuration
        for rule in self._rules({"configuration.value": value}):
            if rule.configuration.target == kind and canonical(rule.configuration.value) == (
                canonical(value)
            ):
                return rule
        return None

    def allow(self, target: str, expires_at: float | None, note: str) -> AllowEntry:
        """Put ``target`` on the allowlist until ``expires_at`` (replacing cfban's earlier
        entry or ban rule for it at this level).

        Raises:
            RefusedError: an IP Access Rule cannot express ``target``, or a rule cfban did
                not make already covers it.
            CloudflareError: Cloudflare refused or could not be reached.
        """
        key = canonical(target)
        configuration = rule_configuration(key)
        if configuration is None:
            raise RefusedError(
                f"cannot allow {key}: an IP Access Rule takes one address, an IPv4 /16 or /24, "
                "or an IPv6 /32, /48 or /64",
                hint="allow it as addresses or ranges of those sizes",
            )
        notes = format_allow(expires_at, note)
        body = {
            "mode": "whitelist",
            "configuration": {"target": configuration[0], "value": configuration[1]},
            "notes": notes,
        }
        try:
            envelope = self._http.request(
                "POST", self._base, json_body=body, permission=self._edit, idempotent=False
            )
            rule = parse(AccessRule, envelope.result, "a new access rule")
            return AllowEntry(key, expires_at, note, rule.id, self.scope)
        except CloudflareError as exc:
            if exc.code != DUPLICATE_CODE and "duplicate_of_existing" not in exc.message:
                raise
        existing = self._find(configuration)
        if existing is None:
            raise CloudflareError(
                f"Cloudflare reports an access rule for {key} exists, but cfban cannot find it",
                hint="it may be inherited from the account; check the dashboard",
            )
        if parse_allow(existing.notes) is not None:
            self._http.request(
                "PATCH",
                f"{self._base}/{existing.id}",
                json_body={"mode": "whitelist", "configuration": body["configuration"],
                           "notes": notes},
                permission=self._edit,
            )  # fmt: skip
            return AllowEntry(key, expires_at, note, existing.id, self.scope)
        if parse_marker(existing.notes) is None:
            raise RefusedError(
                f"cannot allow {key}: an access rule cfban did not make (mode "
                f"{existing.mode}) already covers it at {self.level} level",
                hint="change or delete that rule in the dashboard",
            )
        self._delete(existing.id)  # cfban's own ban of it: the allow takes its place
        return self.allow(target, expires_at, note)

    def disallow(self, target: str) -> bool:
        """Take cfban's entry for ``target`` off the allowlist; False when there was none."""
        configuration = rule_configuration(canonical(target))
        if configuration is None:
            return False
        existing = self._find(configuration)
        if existing is None or parse_allow(existing.notes) is None:
            return False
        self._delete(existing.id)
        return True

    def prune(self, entries: list[AllowEntry], now: float) -> list[AllowEntry]:
        """Delete entries past their expiry; return those that remain."""
        kept: list[AllowEntry] = []
        for entry in entries:
            if entry.live(now):
                kept.append(entry)
                continue
            try:
                self._delete(entry.ref)
            except CloudflareError as exc:
                log.info("could not delete the lapsed allow rule for %s: %s", entry.target, exc)
        return kept

    def _delete(self, rule_id: str) -> None:
        try:
            self._http.request("DELETE", f"{self._base}/{rule_id}", permission=self._edit)
        except NotFoundError:
            log.debug("access rule %s was already gone", rule_id)

    def check(self) -> tuple[str, bool, str]:
        """Whether the allowlist can be read."""
        try:
            count = len(self.entries())
        except CloudflareError as exc:
            return ("shared allowlist", False, str(exc))
        return (
            "shared allowlist",
            True,
            f"{self.level} {self.scope}: {count} allow rule(s) of cfban readable",
        )
