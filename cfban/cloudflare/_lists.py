"""The ``list`` backend: one account IP list, made to block by one WAF custom rule per zone.

A write costs the same whatever the list holds. Adds and removes go in bulk (everything
passed to one call in one request, up to :data:`MAX_ITEMS_PER_REQUEST`), through
:class:`~cfban.cloudflare._listops.OperationRunner` (one pending operation per host, polled
once at its expected completion). What the list holds is read from a local mirror
(:mod:`cfban.cloudflare._mirror`), trusted only while ``GET .../rules/lists`` shows nobody
else changed the list; otherwise the few targets at stake are searched (search is a prefix
match: results are matched exactly), or the list is read once, whichever costs fewer
requests. Nothing is read back after a write: item ids are learnt when deleting.

Item comments carry cfban's marker and expiry. POST replaces the comment of an item that is
already there, so cfban only ever raises an expiry and merges jails. Items without the marker
are never changed or deleted. When the account's lists are full, ``on_full`` decides (see
:mod:`cfban.cloudflare._listfull`). The list and its rules are created when missing, on first
``add`` and by ``setup``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cfban import notify
from cfban.clock import Clock
from cfban.cloudflare._backend import (
    Backend,
    BanEntry,
    RemoteEntry,
    canonical,
    merge_entries,
    to_network,
)
from cfban.cloudflare._http import CloudflareHttp, NotFoundError
from cfban.cloudflare._listfull import DOCUMENTED_QUOTA, FullPolicy, OnFull
from cfban.cloudflare._listops import LOCK_FILE, OperationFailedError, OperationRunner
from cfban.cloudflare._listsetup import (
    EDIT,
    READ,
    create_list,
    ensure_zone_rule,
    find_list,
    list_checks,
)
from cfban.cloudflare._marker import Marker, format_marker, parse_marker
from cfban.cloudflare._mirror import MIRROR_FILE, ListMirror, MirrorItem
from cfban.cloudflare._models import IpList, ListItem, parse
from cfban.cloudflare._rulesets import ListRule
from cfban.errors import ConfigError

log = logging.getLogger(__name__)

# No documented cap per request; a whole non-Enterprise quota (10,000 items) is a body of
# about 1 MB, and one request instead of ten keeps a flood within a handful of requests.
MAX_ITEMS_PER_REQUEST = 10_000
ITEMS_PER_PAGE = 500  # the documented maximum
#: Seconds a ``GET .../rules/lists`` answer stays good enough to tell the mirror is exact.
_CHECK_REUSE = 1.0
#: The custom rule of each zone is checked again after this many seconds.
_RULE_RECHECK = 3600.0
_NAME = re.compile(r"^[a-z0-9_]{1,50}$")
#: Seconds without a write before the daemon spends a paged read on learning item ids.
SETTLE_QUIET = 10.0
FILL_ALERT = 0.9
FILL_CLEAR = 0.85


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
        state_dir: Path | None = None,
        on_full: OnFull = "evict",
        writes_budget: Any = None,
        spill: Backend | None = None,
        mirror_file: str = MIRROR_FILE,
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
        self.mirror = ListMirror(state_dir / mirror_file if state_dir is not None else None)
        self._ops = OperationRunner(
            http,
            account=account_id,
            mirror=self.mirror,
            clock=clock,
            lock_path=state_dir / LOCK_FILE if state_dir is not None else None,
            poll_timeout=poll_timeout,
            read_permission=READ,
            edit_permission=EDIT,
            writes_budget=writes_budget,
        )
        self.full = FullPolicy(on_full, self.mirror, spill)
        self._list: IpList | None = None
        self._checked_at: float | None = None
        self._exact = False
        self._refreshed_for: IpList | None = None
        self._state_dir = state_dir
        self._started = False
        self._known_list_id: str | None = None
        self._replaced = False

    def __repr__(self) -> str:
        return f"ListBackend({self._rule.list_name!r}, account {self._account})"

    def close(self) -> None:
        """Close the HTTP connections and the mirror."""
        self._http.close()
        self.mirror.close()
        if self.full.spill is not None:
            closer = getattr(self.full.spill, "close", None)
            if callable(closer):
                closer()

    @property
    def list_name(self) -> str:
        return self._rule.list_name

    def pace(self) -> float:
        """Seconds to wait before the next write, so bans arriving close together share one
        write (and one poll) instead of costing a round each."""
        return self._ops.pace()

    def fill(self) -> tuple[int, int | None]:
        """Items in the list as last seen, and its capacity once known (None before)."""
        count = self.mirror.get("num_items")
        capacity = self.mirror.get("capacity")
        return (int(count) if count else self.mirror.count(), int(capacity) if capacity else None)

    # -- the list and its rules ----------------------------------------------------------

    def _ensure(
        self, *, create: bool, strict: bool = False, rules: bool | None = None
    ) -> tuple[IpList | None, list[str]]:
        """The list (created when missing with ``create``), checked against the mirror.

        Every call asks Cloudflare for the list once (unless it just did): its
        ``modified_on`` and ``num_items`` tell whether the mirror is still exact.
        """
        lines: list[str] = []
        now = self._clock.monotonic()
        if self._checked_at is None or now - self._checked_at > _CHECK_REUSE:
            found = find_list(self._http, self._account, self.list_name)
            if found is None and create:
                found = create_list(self._http, self._account, self.list_name)
                lines.append(f"created IP list {self.list_name} ({found.id})")
            elif found is not None:
                lines.append(f"IP list {self.list_name} exists ({found.num_items} items)")
            if found is None:
                self._list = None
                self._checked_at = None
                return None, lines
            first = self._list is None
            previous = self.mirror.get("list_id") or self._known_list_id
            if previous is not None and previous != found.id:
                # The list was deleted and is another one now: what it held is gone.
                log.warning("IP list %s was deleted and made again", self.list_name)
                self._replaced = True
            self._known_list_id = found.id
            self._list = found
            self._checked_at = self._clock.monotonic()
            self.mirror.bind(found.id)
            self._exact = self.mirror.exact(found.modified_on, found.num_items)
            if not self._exact and found.num_items == 0:
                self.mirror.put([], replace_all=True)
                self.mirror.trust(found.modified_on, 0)
                self._exact = True
            elif not self._exact and first:
                self._refresh(found)  # start-up: one read makes every later write cheap
        if self._list is not None and (create if rules is None else rules):
            for zone in self._zones:
                checked = self.mirror.get(f"rule:{zone}")
                if strict or checked is None or self._clock.now() - float(checked) > _RULE_RECHECK:
                    line = ensure_zone_rule(self._http, zone, self._rule, strict=strict)
                    lines.append(line)
                    if "not checked" not in line:
                        self.mirror.set(**{f"rule:{zone}": str(self._clock.now())})
        return self._list, lines

    def _items_path(self, ip_list: IpList) -> str:
        return f"/accounts/{self._account}/rules/lists/{ip_list.id}/items"

    # -- reading items -------------------------------------------------------------------

    def _items(self, ip_list: IpList, search: str | None = None) -> Iterable[ListItem]:
        params: dict[str, str | int] = {"search": search} if search else {}
        for item in self._http.iter_cursor(
            self._items_path(ip_list), params=params, per_page=ITEMS_PER_PAGE, permission=READ
        ):
            yield parse(ListItem, item, "a list item")

    def _refresh(self, ip_list: IpList) -> None:
        """Read the whole list into the mirror (one request per 500 items)."""
        rows = [row for item in self._items(ip_list) if (row := _row(item)) is not None]
        self.mirror.put(rows, replace_all=True)
        self.mirror.trust(ip_list.modified_on, ip_list.num_items)
        self._exact = True

    def _lookup(self, ip_list: IpList, keys: set[str], *, ids: bool) -> dict[str, MirrorItem]:
        """What the list holds for ``keys`` (canonical targets); with ``ids``, item ids
        included. Reads Cloudflare only for what the mirror cannot tell."""
        if not keys:
            return {}
        known = self.mirror.items(keys)
        if self._exact:
            unsure = {k for k in keys if ids and k in known and known[k].id is None}
        else:
            unsure = set(keys)
        if unsure:
            pages = math.ceil(max(ip_list.num_items, 1) / ITEMS_PER_PAGE)
            if len(unsure) <= pages:
                for key in unsure:
                    self._search(ip_list, key)
            else:
                self._refresh(ip_list)
            known = self.mirror.items(keys)
        return known

    def _search(self, ip_list: IpList, key: str) -> None:
        found = None
        for item in self._items(ip_list, str(to_network(key).network_address)):
            row = _row(item)
            if row is not None and row.ip == key:
                found = row
        if found is None:
            self.mirror.drop([key])
        else:
            self.mirror.put([found])

    def settle(self, *, done: bool = False) -> dict[str, str]:
        """Work for idle moments; return the item ids learnt, by target.

        At start-up (the first idle moment of a process), read the list into the mirror if
        the mirror is not exact, and check each zone's rule, so the first ban costs no more
        than any other. Then, once no write happened for :data:`SETTLE_QUIET` seconds (or at
        once when the caller is ``done``), learn the ids of the items cfban added, if one
        paged read costs at most half a request per id learnt (a flood's worth). Ids are
        otherwise learnt when deleting; learning them while idle spares that read later and
        lets the local state name each item. A trickle of bans into a big list never
        triggers it (the read would cost more than the ids are worth).
        """
        if not self._started:
            self._started = True  # once per process, whatever comes of it
            self._ensure(create=False, rules=True)
        unknown = self.mirror.unknown_ids()
        if not unknown or self._list is None:
            return {}
        last = self.mirror.get("last_write_at")
        if not done and last is not None and self._clock.now() - float(last) < SETTLE_QUIET:
            return {}
        count = self.mirror.get("num_items")
        pages = math.ceil(max(int(count) if count else self.mirror.count(), 1) / ITEMS_PER_PAGE)
        if pages * 2 > unknown:
            return {}
        rows = [row for item in self._items(self._list) if (row := _row(item)) is not None]
        self.mirror.put(rows)
        return {row.ip: row.id for row in rows if row.owned and row.id is not None}

    # -- writing items -------------------------------------------------------------------

    def _write(
        self,
        ip_list: IpList,
        method: str,
        body: Any,
        delta: int,
        undo: Sequence[MirrorItem | str],
    ) -> None:
        """One write that changes the item count by ``delta``; the mirror holds its rows
        already. ``undo`` restores the mirror if Cloudflare applies nothing of it (rows to
        put back, addresses to drop)."""
        count = ip_list.num_items + delta
        try:
            self._ops.write(
                method, self._items_path(ip_list), body, expect=count if self._exact else None
            )
        except OperationFailedError:
            self.mirror.put([u for u in undo if isinstance(u, MirrorItem)])
            self.mirror.drop([u for u in undo if isinstance(u, str)])
            raise
        except BaseException:
            # Maybe applied, maybe not: distrust the mirror until the list is read again.
            self._exact = False
            raise
        finally:
            self._checked_at = None  # the next call asks Cloudflare again
        self._list = ip_list.model_copy(update={"num_items": count})
        self._watch_fill(count)

    def _watch_fill(self, count: int) -> None:
        """Tell the ``[notify]`` webhook once when the list passes 90 % of its capacity, and
        once when it is back below 85 %."""
        if self._state_dir is None:
            return
        capacity = self.full.capacity() or DOCUMENTED_QUOTA
        fill = count / capacity
        details = {"list": self.list_name, "items": count, "capacity": capacity, "fill": fill}
        if fill >= FILL_ALERT:
            notify.start(self._state_dir, "list_fill", self._clock.now(), details)
        elif fill < FILL_CLEAR:
            notify.end(self._state_dir, "list_fill", self._clock.now(), details)

    def _post(self, ip_list: IpList, rows: list[MirrorItem], known: set[str]) -> None:
        """POST ``rows`` (new comments), then record them in the mirror."""
        for chunk in _chunks(rows, MAX_ITEMS_PER_REQUEST):
            before = self.mirror.items(r.ip for r in chunk)
            undo = [before.get(r.ip, r.ip) for r in chunk]
            self.mirror.put(chunk)
            body = [{"ip": r.ip, "comment": r.comment} for r in chunk]
            self._write(self._list or ip_list, "POST", body, _new(chunk, known), undo)

    def _delete(self, ip_list: IpList, doomed: list[MirrorItem]) -> None:
        for chunk in _chunks(doomed, MAX_ITEMS_PER_REQUEST):
            self.mirror.drop(r.ip for r in chunk)
            body = {"items": [{"id": r.id} for r in chunk]}
            self._write(self._list or ip_list, "DELETE", body, -len(chunk), chunk)

    # -- the Backend interface -----------------------------------------------------------

    def add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        """Put every entry into the list in bulk; see :class:`~cfban.cloudflare.Backend`.

        The result maps a target to its item id when cfban knows it, else to ``""`` (the
        id is learnt when the item is removed).
        """
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

    def take_list_replaced(self) -> bool:
        """True once after the list was found deleted and made again: every ban it held
        must be sent again."""
        replaced, self._replaced = self._replaced, False
        return replaced

    def _forget(self) -> None:
        self._known_list_id = self.mirror.get("list_id") or self._known_list_id
        self._list = None
        self._checked_at = None
        self.mirror.forget()

    def _add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        merged = merge_entries(entries, self._rule.action)
        if not merged:
            return {}
        ip_list, _ = self._ensure(create=True)
        assert ip_list is not None  # created when missing
        refs_by_key = self.full.respill(merged)  # already access rules: kept there
        merged = {k: m for k, m in merged.items() if k not in refs_by_key}
        current = self._lookup(ip_list, set(merged), ids=False)
        rows: list[MirrorItem] = []
        for key, marker in merged.items():
            item = current.get(key)
            wanted: Marker = marker
            if item is not None:
                theirs = parse_marker(item.comment) if item.owned else None
                if theirs is None:
                    log.warning(
                        "%s is already in list %s as an item cfban did not make; leaving it",
                        key,
                        self.list_name,
                    )
                    continue
                if theirs.covers(marker):
                    refs_by_key[key] = item.id or ""
                    continue
                wanted = theirs.merged(marker)
            rows.append(_owned(key, None if item is None else item.id, wanted))
        if rows:
            written = self.full.admit(self, ip_list, rows, set(current))
            for row in written:
                refs_by_key[row.ip] = row.id or ""
            self.full.check_room(rows, written)
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
        keys = {canonical(t) for t, _ in targets}
        spilled = self.full.spilled_of(keys)
        current = self._lookup(ip_list, keys - set(spilled), ids=True)
        removed: list[str] = []
        doomed: dict[str, MirrorItem] = {}
        for target, _ref in targets:
            key = canonical(target)
            if key in spilled:
                continue
            item = current.get(key)
            marker = None if item is None or not item.owned else parse_marker(item.comment)
            if item is None or marker is None or item.id is None:
                removed.append(target)  # nothing of cfban's is there
                continue
            if not_after is not None and (
                marker.expires_at is None or marker.expires_at > not_after
            ):
                log.info("keeping %s: it is held until %s", target, marker.expires_at or "ever")
                continue
            doomed[key] = item
            removed.append(target)
        self._delete(ip_list, list(doomed.values()))
        if doomed:
            self.full.made_room()
        if spilled:
            removed.extend(self.full.remove_spilled(targets, spilled, not_after))
        return removed

    def list_owned(self) -> list[RemoteEntry]:
        """Every item of the list whose comment carries cfban's marker (and every entry
        spilled over to access rules). Reads the whole list, which refreshes the mirror."""
        ip_list, _ = self._ensure(create=False)
        owned: list[RemoteEntry] = []
        if ip_list is not None:
            if not self._exact or self._checked_at is None or self._refreshed_for != ip_list:
                self._refresh(ip_list)
            self._refreshed_for = ip_list
            for row in self.mirror.owned():
                marker = parse_marker(row.comment)
                if marker is not None and row.id is not None:
                    owned.append(  # the list's custom rule decides what its items do
                        RemoteEntry(
                            row.ip,
                            row.id,
                            marker.expires_at,
                            marker.jails,
                            self._account,
                            self._rule.action,
                        )  # fmt: skip
                    )
        owned.extend(self.full.list_spilled())
        return owned

    def setup(self) -> list[str]:
        """Create the list and each zone's rule when missing; say what was done."""
        self._list = None
        self._checked_at = None
        _, lines = self._ensure(create=True, strict=True)
        if not self._zones:
            lines.append(
                "no zone configured: set [cloudflare] zone_id (or zone_ids) so a custom rule "
                "makes the list block"
            )
        return lines

    def check(self) -> list[tuple[str, bool, str]]:
        """Token, list access, the list itself and each zone's custom rule."""
        return list_checks(self._http, self._account, self._rule, self._zones)


def _row(item: ListItem) -> MirrorItem | None:
    """A list item as the mirror keeps it; None when its address cannot be read."""
    try:
        ip = canonical(item.ip or "")
    except ValueError:
        return None
    marker = parse_marker(item.comment)
    expiry = marker.expires_at if marker is not None else None
    return MirrorItem(ip, item.id, item.comment, marker is not None, expiry)


def _owned(key: str, item_id: str | None, marker: Marker) -> MirrorItem:
    return MirrorItem(key, item_id, format_marker(marker), True, marker.expires_at)


def _new(rows: Sequence[MirrorItem], known: set[str]) -> int:
    return sum(1 for r in rows if r.ip not in known)
