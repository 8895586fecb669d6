"""``cfban sync``: reconcile the local state with what cfban holds at Cloudflare.

Expire ended holds, push what is missing or shorter there, remove cfban entries whose expiry
has passed, and never touch entries cfban did not make. Entries this host does not hold are
kept (another host may hold them) unless ``prune``. The shared allowlist is read first: what it
covers is let go here and removed there, never pushed again (:mod:`cfban.allowance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfban import allowance
from cfban.rules import stricter
from cfban.state import later

if TYPE_CHECKING:
    from cfban.bans import BanService
    from cfban.delivery import DeliveryReport


@dataclass
class SyncReport:
    """What ``sync`` found and did (or, with ``dry_run``, would do)."""

    dry_run: bool
    expired: list[str] = field(default_factory=list)
    repushed: list[str] = field(default_factory=list)
    remove_remote: list[str] = field(default_factory=list)
    held_elsewhere: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    in_sync: int = 0
    delivery: DeliveryReport | None = None


def sync(
    service: BanService,
    *,
    dry_run: bool = False,
    prune: bool = False,
    deadline: float | None = None,
) -> SyncReport:
    """Reconcile the state with Cloudflare: expire ended holds, push what is missing or
    shorter there, remove cfban entries whose expiry has passed; never touch entries
    cfban did not make. Entries this host does not hold are kept (another host may hold
    them) unless ``prune``: then they go too (one host, or a lost state).

    Raises:
        CloudflareError: the remote entries could not be listed.
        StateError: the state database failed.
    """
    store, now = service.store, service.clock.now()
    report = SyncReport(dry_run=dry_run)
    allowed = allowance.refresh(service, force=True) if not dry_run else None
    held = store.held_targets()
    if dry_run:
        report.expired = sorted(
            t for t, w in held.items() if w.expires_at is not None and w.expires_at <= now
        )
        held = {t: w for t, w in held.items() if t not in report.expired}
    else:
        report.expired = store.expire()
        held = store.held_targets()
    remote: dict[str, float | None] = {}
    actions: dict[str, str] = {}
    refs: dict[str, str] = {}
    for entry in service.backend.list_owned():
        seen = entry.target in remote
        remote[entry.target] = (
            later(remote[entry.target], entry.expires_at) if seen else entry.expires_at
        )
        actions[entry.target] = stricter(actions.get(entry.target, entry.action), entry.action)
        refs[entry.target] = entry.ref
    for target, want in held.items():
        if (
            target not in remote
            or later(remote[target], want.expires_at) != remote[target]
            or stricter(actions[target], want.action) != actions[target]
        ):
            report.repushed.append(target)
        else:
            report.in_sync += 1
    for target, expiry in sorted(remote.items()):
        if target in held:
            continue
        if allowed is not None and allowed.covering(target, now) is not None:
            report.allowed.append(target)
        elif expiry is not None and expiry <= now:
            report.remove_remote.append(target)
        else:
            report.held_elsewhere.append(target)
    if dry_run:
        return report
    store.set_refs({t: ref for t, ref in refs.items() if t in held})
    store.requeue(report.repushed)
    for target in report.remove_remote:
        store.forget_remote(target, not_after=now)
    for target in report.held_elsewhere if prune else ():
        store.forget_remote(target, not_after=None)
    for target in report.allowed:  # allowed since another host banned it
        store.forget_remote(target, not_after=None)
    report.delivery = service.deliver(deadline=deadline, wait=True)
    return report
