"""What the list backend does when the account's lists are full: ``[cloudflare] on_full``.

Free, Pro and Business accounts share 10,000 list items across all their custom lists.
Cloudflare reports a write that would pass the quota *after* the fact, as a failed bulk
operation for the whole write. cfban learns the capacity from that failure (the documented
10,000, or the count it had reached) and from then on decides before writing, so a full list
costs one request per retry (``GET .../rules/lists``) instead of a failed write and its polls.

Policies, for the new items that do not fit:

``evict`` (the default)
    Delete cfban's own items that end soonest (never an item cfban did not make) to make
    room, then add the new ones: the newest offenders are the ones blocked. An evicted ban
    stays recorded locally until it expires; it is simply no longer enforced at Cloudflare.
``spill``
    Ban the overflow as IP Access Rules at account level (50,000 per account), at most
    :data:`SPILL_PER_ROUND` per round because each costs a request of its own; the rest waits.
``hold``
    Add what fits, keep the rest queued and report the list as full until room appears.

Why ``evict`` by default: a ban that ends in minutes protects less than one on a client
attacking now, eviction costs two bulk writes whatever the overflow, and the alternative
(``hold``) leaves the newest attackers unbanned while old bans run out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from cfban.cloudflare._backend import Backend, BanEntry, RemoteEntry, canonical
from cfban.cloudflare._listops import ListFullError
from cfban.cloudflare._marker import Marker, parse_marker
from cfban.cloudflare._mirror import ListMirror, MirrorItem
from cfban.cloudflare._models import IpList

if TYPE_CHECKING:
    from cfban.cloudflare._lists import ListBackend

log = logging.getLogger(__name__)

OnFull = Literal["evict", "spill", "hold"]
DOCUMENTED_QUOTA = 10_000
SPILL_PER_ROUND = 3


class FullPolicy:
    """Applies ``on_full`` for one list backend; see the module docstring."""

    def __init__(self, policy: OnFull, mirror: ListMirror, spill: Backend | None) -> None:
        self.policy = policy
        self._mirror = mirror
        self.spill = spill if policy == "spill" else None
        self.evicted = 0

    def capacity(self) -> int | None:
        value = self._mirror.get("capacity")
        return int(value) if value else None

    def admit(
        self, backend: ListBackend, ip_list: IpList, rows: list[MirrorItem], known: set[str]
    ) -> list[MirrorItem]:
        """Write ``rows`` as far as the policy lets them in; return those written."""
        capacity = self.capacity()
        if capacity is None or ip_list.num_items + _new(rows, known) <= capacity:
            try:
                backend._post(ip_list, rows, known)
                return rows
            except ListFullError:
                capacity = _learn(ip_list.num_items, _new(rows, known))
                self._mirror.set(capacity=str(capacity))
                log.warning("list %s is full at about %d items", backend.list_name, capacity)
                ip_list = backend._list or ip_list
        return self._overflow(backend, ip_list, rows, known, capacity)

    def _overflow(
        self,
        backend: ListBackend,
        ip_list: IpList,
        rows: list[MirrorItem],
        known: set[str],
        capacity: int,
    ) -> list[MirrorItem]:
        updates = [r for r in rows if r.ip in known]
        fresh = [r for r in rows if r.ip not in known]
        room = max(0, capacity - ip_list.num_items)
        if self.policy == "evict" and len(fresh) > room:
            room += self._evict(backend, ip_list, len(fresh) - room, {r.ip for r in rows})
        # The latest expiries are the newest offenders: they go in first.
        fresh.sort(key=lambda r: (r.expires_at is None, r.expires_at or 0.0), reverse=True)
        fitting, left = fresh[:room], fresh[room:]
        written = updates + fitting
        if written:
            backend._post(backend._list or ip_list, written, known)
        if self.spill is not None and left:
            written += self._spill(left[:SPILL_PER_ROUND])
        return written

    def _evict(self, backend: ListBackend, ip_list: IpList, need: int, keep: set[str]) -> int:
        victims = self._mirror.soonest_expiring(need, keep)
        if not victims:
            return 0
        found = backend._lookup(ip_list, {v.ip for v in victims}, ids=True)
        doomed = [found[v.ip] for v in victims if v.ip in found and found[v.ip].id is not None]
        backend._delete(ip_list, doomed)
        self.evicted += len(doomed)
        log.warning(
            "list %s is full: evicted %d of cfban's soonest-ending items for newer offenders",
            backend.list_name,
            len(doomed),
        )
        return len(doomed)

    def _spill(self, rows: Sequence[MirrorItem]) -> list[MirrorItem]:
        assert self.spill is not None
        entries = []
        for row in rows:
            marker = parse_marker(row.comment)
            jails = marker.jails if marker is not None else ()
            entries.append(BanEntry(row.ip, row.expires_at, jails))
        refs = self.spill.add(entries)
        done = [r for r in rows if r.ip in refs]
        self._mirror.put_spilled([(r.ip, refs[r.ip], r.expires_at) for r in done])
        return done

    def check_room(self, rows: Sequence[MirrorItem], written: Sequence[MirrorItem]) -> None:
        """Raise when some rows could not be written (the list is full).

        Raises:
            ListFullError: how many wait, and what to do about it.
        """
        left = len(rows) - len(written)
        if left <= 0:
            return
        raise ListFullError(
            f"the IP list is full ({self.capacity() or '?'} items): {left} ban(s) wait for room",
            hint=(
                "cfban retries a few times a minute; make room (shorter bantime, cfban sync) "
                'or choose [cloudflare] on_full = "evict" or "spill"'
            ),
        )

    def made_room(self) -> None:
        """Items were deleted: a held ban may fit now."""

    # -- spilled entries ----------------------------------------------------------------------

    def respill(self, merged: dict[str, Marker]) -> dict[str, str]:
        """Send the targets already spilled over to the access rules again (the backend
        raises their expiry if needed); return their refs."""
        if self.spill is None:
            return {}
        spilled = self._mirror.spilled(merged)
        if not spilled:
            return {}
        entries = [BanEntry(k, merged[k].expires_at, merged[k].jails) for k in spilled]
        return self.spill.add(entries)

    def spilled_of(self, keys: set[str]) -> dict[str, str]:
        return self._mirror.spilled(keys)

    def remove_spilled(
        self,
        targets: Sequence[tuple[str, str | None]],
        spilled: dict[str, str],
        not_after: float | None,
    ) -> list[str]:
        if self.spill is None:
            return []
        pairs = [(t, spilled[canonical(t)]) for t, _ in targets if canonical(t) in spilled]
        removed = self.spill.remove(pairs, not_after=not_after)
        self._mirror.drop_spilled(canonical(t) for t in removed)
        return removed

    def list_spilled(self) -> list[RemoteEntry]:
        if self.spill is None:
            return []
        return self.spill.list_owned()


def _new(rows: Sequence[MirrorItem], known: set[str]) -> int:
    return sum(1 for r in rows if r.ip not in known)


def _learn(count: int, adding: int) -> int:
    """The capacity a refused write suggests: the documented quota when the write would have
    crossed it, else the count reached (other lists of the account use the rest)."""
    if count <= DOCUMENTED_QUOTA < count + adding:
        return DOCUMENTED_QUOTA
    return count
