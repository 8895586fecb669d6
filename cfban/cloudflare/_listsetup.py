"""The list backend's account-level pieces: finding or creating the IP list, making sure each
zone's custom rule uses it, and the checks ``cfban check`` runs for them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cfban.cloudflare._http import CloudflareHttp
from cfban.cloudflare._models import IpList, parse, parse_all
from cfban.cloudflare._rulesets import ListRule, ensure_rule, rule_status
from cfban.cloudflare._token import NO_SUCH_ID, probe_write, verify_token
from cfban.errors import AuthError, CloudflareError, ConfigError

log = logging.getLogger(__name__)

READ = "Account > Account Filter Lists > Read"
EDIT = "Account > Account Filter Lists > Edit"


def find_list(http: CloudflareHttp, account: str, name: str) -> IpList | None:
    """The account's list called ``name`` (one request), or None.

    Raises:
        ConfigError: a list of that name exists but is not an IP list.
        CloudflareError: the request failed.
    """
    envelope = http.request("GET", f"/accounts/{account}/rules/lists", permission=READ)
    for found in parse_all(IpList, envelope.result, "the account's lists"):
        if found.name == name:
            if found.kind != "ip":
                raise ConfigError(
                    f"the account already has a list {found.name!r} of kind {found.kind}",
                    hint="set [cloudflare] list_name to another name",
                )
            return found
    return None


def create_list(http: CloudflareHttp, account: str, name: str) -> IpList:
    """Create the list (or find it, when another host created it at the same moment).

    Raises:
        CloudflareError: the list can be neither created nor found.
    """
    try:
        envelope = http.request(
            "POST",
            f"/accounts/{account}/rules/lists",
            permission=EDIT,
            json_body={
                "name": name,
                "kind": "ip",
                "description": "Clients banned by cfban; managed by cfban",
            },
            idempotent=False,
        )
    except CloudflareError:
        found = find_list(http, account, name)
        if found is None:
            raise
        return found
    return parse(IpList, envelope.result, "the new list")


def ensure_zone_rule(http: CloudflareHttp, zone: str, rule: ListRule, *, strict: bool) -> str:
    """Make sure ``zone`` has cfban's rule; say what was done. Without ``strict``, a token
    that may not touch the zone's rules only costs a warning: the list can still be filled,
    and a rule someone made by hand may already use it.

    Raises:
        AuthError: with ``strict``, the token may not read or write the zone's rules.
    """
    try:
        return ensure_rule(http, zone, rule)
    except AuthError as exc:
        if strict:
            raise
        log.warning(
            "cannot check or create cfban's custom rule in zone %s (%s); the list is "
            "updated, but blocks only where a custom rule uses it",
            zone,
            exc,
        )
        return f"zone {zone}: custom rule not checked ({exc})"


def list_checks(
    http: CloudflareHttp, account: str, rule: ListRule, zones: Sequence[str]
) -> list[tuple[str, bool, str]]:
    """Token, list access, the list itself and each zone's custom rule."""
    name = rule.list_name
    ok, detail = verify_token(http, account)
    checks: list[tuple[str, bool, str]] = [("token", ok, detail)]
    try:
        found = find_list(http, account, name)
    except CloudflareError as exc:
        checks.append(("ip list", False, str(exc)))
        return checks
    if found is None:
        checks.append(("ip list", False, f"list {name} missing (run: cfban setup)"))
    else:
        checks.append(("ip list", True, f"list {name}: {found.num_items} items"))
    path = f"/accounts/{account}/rules/lists/{NO_SUCH_ID}"
    ok, detail = probe_write(http, "PUT", path, {"description": "cfban"}, EDIT)
    checks.append(("permission to ban", ok, detail))
    if not zones:
        checks.append(("custom rule", False, "no zone configured: the list blocks nothing"))
    for zone in zones:
        ok, detail = rule_status(http, zone, rule)
        checks.append((f"custom rule {zone}", ok, detail))
    return checks
