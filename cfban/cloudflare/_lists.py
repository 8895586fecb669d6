"""The ``list`` backend: one account IP list, made to block by one WAF custom rule per zone.

Adds and removes go in bulk: everything passed to one call travels in as few requests as the
per-request item cap allows (:data:`MAX_ITEMS_PER_REQUEST`). Item writes are asynchronous
operations and Cloudflare allows one pending operation per account, so each write is polled
to completion (waiting on the injected clock) before the next one is sent.

Item comments carry cfban's marker and expiry. POST replaces the comment of an item that is
already there, so before writing, cfban reads the current items for the targets (one search
per target, or one pass over the whole list when that is cheaper) and only ever raises an
expiry. Search is a prefix match: results are matched exactly. Items without the marker are
never changed or deleted. The list and its rules are created when missing, on first ``add``
and by ``setup``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from cfban.clock import Clock
from cfban.cloudflare._backend import BanEntry, RemoteEntry, canonical, merge_entries, to_network
from cfban.cloudflare._http import CloudflareHttp, NotFoundError
from cfban.cloudflare._marker import Marker, format_marker, parse_marker
from cfban.cloudflare._models import BulkOperation, IpList, ListItem, parse, parse_all
from cfban.cloudflare._rulesets import ListRule, ensure_rule, rule_status
from cfban.cloudflare._token import NO_SUCH_ID, probe_write, verify_token
from cfban.errors import AuthError, CloudflareError, ConfigError, TransportError

log = logging.getLogger(__name__)

READ = "Account > Account Filter Lists > Read"
EDIT = "Account > Account Filter Lists > Edit"
MAX_ITEMS_PER_REQUEST = 1000  # no documented cap; this keeps a request body near 100 kB
ITEMS_PER_PAGE = 500  # the documented maximum
_NAME = re.compile(r"^[a-z0-9_]{1,50}$")
# Most bulk operations finish within a second: look early, then back off.
_POLL_DELAYS = (0.1, 0.2, 0.3, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 8.0)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ListBackend:
    """An account IP list plus a custom rule per zone; see the module docstring."""

    name = "list"

    def __init__(
        self,
        http: CloudflareHttp,
        *,
        account_id: str | None,
        zones: Sequence[str],
        list_name: str,
        mode: str,
        clock: Clock,
        poll_timeout: float = 120.0,
    ) -> None:
        if not account_id:
            raise ConfigError(
                "the list backend needs the account id that owns the list",
                hint="set [cloudflare] account_id (or CFBAN_ACCOUNT_ID)",
            )
        if not _NAME.match(list_name):
            raise ConfigError(
                f"list_name {list_name!r} is not a valid Cloudflare list name",
                hint="use 1-50 lowercase letters, digits and underscores",
            )
        self._http = http
        self._account = account_id
        self._zones = list(zones)
        self._rule = ListRule(list_name, mode)
        self._clock = clock
        self._poll_timeout = poll_timeout
        self._pending: str | None = None
        self._list: IpList | None = None
        self._num_items = 0
        self._zones_ready: set[str] = set()

    def __repr__(self) -> str:
        return f"ListBackend({self._rule.list_name!r}, account {self._account})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    @property
    def list_name(self) -> str:
        return self._rule.list_name

    # -- the list and its rules ----------------------------------------------------------

    def _find_list(self) -> IpList | None:
        envelope = self._http.request(
            "GET", f"/accounts/{self._account}/rules/lists", permission=READ
        )
        for found in parse_all(IpList, envelope.result, "the account's lists"):
            if found.name == self.list_name:
                if found.kind != "ip":
                    raise ConfigError(
                        f"the account already has a list {found.name!r} of kind {found.kind}",
                        hint="set [cloudflare] list_name to another name",
                    )
                return found
        return None

    def _ensure(self, *, create: bool, strict: bool = False) -> tuple[IpList | None, list[str]]:
        lines: list[str] = []
        if self._list is None:
            found = self._find_list()
            if found is None and create:
                found = self._create_list()
                lines.append(f"created IP list {self.list_name} ({found.id})")
            elif found is not None:
                lines.append(f"IP list {self.list_name} exists ({found.num_items} items)")
            self._list = found
            self._num_items = found.num_items if found else 0
        if self._list is not None and create:
            for zone in self._zones:
                if zone not in self._zones_ready:
                    lines.append(self._ensure_rule(zone, strict=strict))
                    self._zones_ready.add(zone)
        return self._list, lines

    def _create_list(self) -> IpList:
        try:
            envelope = self._http.request(
                "POST",
                f"/accounts/{self._account}/rules/lists",
                permission=EDIT,
                json_body={
                    "name": self.list_name,
                    "kind": "ip",
                    "description": "Clients banned by cfban; managed by cfban",
                },
                idempotent=False,
            )
        except CloudflareError:
            found = self._find_list()  # another host created it at the same moment?
            if found is None:
                raise
            return found
        return parse(IpList, envelope.result, "the new list")

    def _ensure_rule(self, zone: str, *, strict: bool) -> str:
        try:
            return ensure_rule(self._http, zone, self._rule)
        except AuthError as exc:
            if strict:
                raise
            # The list can still be filled; a rule someone made by hand may already use it.
            log.warning(
                "cannot check or create cfban's custom rule in zone %s (%s); the list is "
                "updated, but blocks only where a custom rule uses it",
                zone,
                exc,
            )
            return f"zone {zone}: custom rule not checked ({exc})"

    def _items_path(self, ip_list: IpList) -> str:
        return f"/accounts/{self._account}/rules/lists/{ip_list.id}/items"

    # -- reading items -------------------------------------------------------------------

    def _items(self, ip_list: IpList, search: str | None = None) -> Iterable[ListItem]:
        params: dict[str, str | int] = {"search": search} if search else {}
        for item in self._http.iter_cursor(
            self._items_path(ip_list), params=params, per_page=ITEMS_PER_PAGE, permission=READ
        ):
            yield parse(ListItem, item, "a list item")

    def _lookup(self, ip_list: IpList, keys: set[str]) -> dict[str, ListItem]:
        """The current items for ``keys`` (canonical targets), matched exactly."""
        if not keys:
            return {}
        # The count may be stale (other hosts write too): it only picks the cheaper way.
        pages = math.ceil(max(self._num_items, 1) / ITEMS_PER_PAGE)
        found: dict[str, ListItem] = {}
        if len(keys) <= pages:
            sources = [self._items(ip_list, str(to_network(k).network_address)) for k in keys]
        else:
            sources = [self._items(ip_list)]
        for source in sources:
            for item in source:
                try:
                    key = canonical(item.ip or "")
                except ValueError:
                    continue
                if key in keys:
                    found[key] = item
        return found

    # -- writing items -------------------------------------------------------------------

    def _write(self, method: str, path: str, body: Any) -> None:
        if self._pending is not None:
            # An earlier wait was cut short (a deadline): Cloudflare refuses a new operation
            # while that one is pending, so see it through first.
            self._wait(self._pending)
        envelope = self._http.request(method, path, json_body=body, permission=EDIT)
        result = envelope.result if isinstance(envelope.result, dict) else {}
        operation = result.get("operation_id")
        if not isinstance(operation, str) or not operation:
            raise TransportError(f"Cloudflare answered {method} {path} without an operation id")
        self._pending = operation
        self._wait(operation)

    def _wait(self, operation: str) -> None:
        """Poll a bulk operation until it completes.

        Raises:
            CloudflareError: the operation failed or did not finish within the poll timeout.
        """
        path = f"/accounts/{self._account}/rules/lists/bulk_operations/{operation}"
        started = self._clock.monotonic()
        attempt = 0
        while True:
            delay = _POLL_DELAYS[min(attempt, len(_POLL_DELAYS) - 1)]
            if attempt and self._clock.monotonic() - started + delay > self._poll_timeout:
                raise CloudflareError(
                    f"list operation {operation} still not done after {self._poll_timeout:g} s",
                    hint="Cloudflare is slow to apply list changes; cfban will retry later",
                )
            self._clock.sleep(delay)
            attempt += 1
            envelope = self._http.request("GET", path, permission=READ)
            status = parse(BulkOperation, envelope.result, "a list operation")
            if status.status in ("completed", "failed"):
                self._pending = None
            if status.status == "completed":
                return
            if status.status == "failed":
                raise CloudflareError(
                    f"Cloudflare could not change list {self.list_name}: "
                    f"{status.error or 'operation failed'}",
                    hint="custom lists hold at most 10,000 items in total except on "
                    "Enterprise; remove stale entries with cfban sync",
                )

    # -- the Backend interface -----------------------------------------------------------

    def add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        """Put every entry into the list in bulk; see :class:`~cfban.cloudflare.Backend`."""
        try:
            return self._add(entries)
        except NotFoundError:
            self._forget()  # the list (or a zone's rule) was deleted meanwhile: look again
            raise

    def remove(
        self, targets: Sequence[tuple[str, str | None]], *, not_after: float | None
    ) -> list[str]:
        """Delete cfban's items for ``targets`` in bulk; see :class:`~cfban.cloudflare.Backend`."""
        try:
            return self._remove(targets, not_after=not_after)
        except NotFoundError:
            self._forget()
            raise

    def _forget(self) -> None:
        self._list = None
        self._zones_ready.clear()

    def _add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        merged = merge_entries(entries, self._rule.action)
        if not merged:
            return {}
        ip_list, _ = self._ensure(create=True)
        assert ip_list is not None  # created when missing
        current = self._lookup(ip_list, set(merged))
        refs_by_key: dict[str, str] = {}
        payload: list[dict[str, str]] = []
        for key, marker in merged.items():
            item = current.get(key)
            wanted: Marker = marker
            if item is not None:
                theirs = parse_marker(item.comment)
                if theirs is None:
                    log.warning(
                        "%s is already in list %s as an item cfban did not make; leaving it",
                        key,
                        self.list_name,
                    )
                    continue
                if theirs.covers(marker):
                    refs_by_key[key] = item.id
                    continue
                wanted = theirs.merged(marker)
            payload.append({"ip": key, "comment": format_marker(wanted)})
        path = self._items_path(ip_list)
        for chunk in _chunks(payload, MAX_ITEMS_PER_REQUEST):
            self._write("POST", path, list(chunk))
        written = {p["ip"] for p in payload}
        self._num_items += len(written - set(current))
        if written:
            for key, item in self._lookup(ip_list, written).items():
                refs_by_key[key] = item.id
            missing = written - set(refs_by_key)
            if missing:
                raise CloudflareError(
                    f"{len(missing)} address(es) were sent to list {self.list_name} but are "
                    f"not in it, e.g. {sorted(missing)[0]}",
                    hint="cfban will try again; check the list in the dashboard if it persists",
                )
        return {
            e.target: refs_by_key[canonical(e.target)]
            for e in entries
            if canonical(e.target) in refs_by_key
        }

    def _remove(
        self, targets: Sequence[tuple[str, str | None]], *, not_after: float | None
    ) -> list[str]:
        if not targets:
            return []
        ip_list, _ = self._ensure(create=False)
        if ip_list is None:
            return [target for target, _ in targets]
        current = self._lookup(ip_list, {canonical(t) for t, _ in targets})
        removed: list[str] = []
        doomed: dict[str, str] = {}
        for target, _ref in targets:
            item = current.get(canonical(target))
            marker = None if item is None else parse_marker(item.comment)
            if item is None or marker is None:
                removed.append(target)  # nothing of cfban's is there
                continue
            if not_after is not None and (
                marker.expires_at is None or marker.expires_at > not_after
            ):
                log.info("keeping %s: it is held until %s", target, marker.expires_at or "ever")
                continue
            doomed[item.id] = target
            removed.append(target)
        ids = [{"id": item_id} for item_id in doomed]
        for chunk in _chunks(ids, MAX_ITEMS_PER_REQUEST):
            self._write("DELETE", self._items_path(ip_list), {"items": list(chunk)})
        self._num_items = max(0, self._num_items - len(ids))
        return removed

    def list_owned(self) -> list[RemoteEntry]:
        """Every item of the list whose comment carries cfban's marker."""
        ip_list, _ = self._ensure(create=False)
        if ip_list is None:
            return []
        owned = []
        for item in self._items(ip_list):
            marker = parse_marker(item.comment)
            if marker is None:
                continue
            try:
                target = canonical(item.ip or "")
            except ValueError:
                continue
            owned.append(  # the list's custom rule decides what its items do
                RemoteEntry(
                    target,
                    item.id,
                    marker.expires_at,
                    marker.jails,
                    self._account,
                    self._rule.action,
                )  # fmt: skip
            )
        return owned

    def setup(self) -> list[str]:
        """Create the list and each zone's rule when missing; say what was done."""
        self._forget()
        _, lines = self._ensure(create=True, strict=True)
        if not self._zones:
            lines.append(
                "no zone configured: set [cloudflare] zone_id (or zone_ids) so a custom rule "
                "makes the list block"
            )
        return lines

    def check(self) -> list[tuple[str, bool, str]]:
        """Token, list access, the list itself and each zone's custom rule."""
        ok, detail = verify_token(self._http, self._account)
        checks: list[tuple[str, bool, str]] = [("token", ok, detail)]
        try:
            found = self._find_list()
        except CloudflareError as exc:
            checks.append(("ip list", False, str(exc)))
            return checks
        if found is None:
            checks.append(("ip list", False, f"list {self.list_name} missing (run: cfban setup)"))
        else:
            checks.append(("ip list", True, f"list {self.list_name}: {found.num_items} items"))
        path = f"/accounts/{self._account}/rules/lists/{NO_SUCH_ID}"
        ok, detail = probe_write(self._http, "PUT", path, {"description": "cfban"}, EDIT)
        checks.append(("permission to ban", ok, detail))
        if not self._zones:
            checks.append(("custom rule", False, "no zone configured: the list blocks nothing"))
        for zone in self._zones:
            ok, detail = rule_status(self._http, zone, self._rule)
            checks.append((f"custom rule {zone}", ok, detail))
        return checks
