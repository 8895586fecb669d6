"""The background deliverer a hook wakes: ``cfban deliver --linger SECONDS``.

It takes ``spool/.deliverer.lock`` (one deliverer per state directory), then, until the queue
has been quiet for ``linger`` seconds: moves spool requests (from fail2ban's Python action)
into the state, and delivers the outbox in batches. Before exiting it lets the lock go and
looks once more, so a request committed by a hook that saw the lock taken is never stranded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfban.deliverlock import DelivererLock
from cfban.errors import RefusedError
from cfban.spool import done, is_request, read_entries, spool_dir

if TYPE_CHECKING:
    from cfban.bans import BanService

log = logging.getLogger(__name__)

POLL = 0.05
# The list backend writes a whole batch in one bulk operation that takes about a second to
# complete, whatever its size; batches of the default 100 made a burst of 1,000 bans wait
# for ten such rounds. Its request cap is 1,000 items.
LIST_BATCH = 1000


@dataclass
class LingerReport:
    """What a deliverer run did."""

    ingested: int = 0
    refused: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    another_running: bool = False


def ingest_spool(service: BanService, report: LingerReport) -> int:
    """Commit the spool's requests to the state; return how many were taken.

    One never-ban guard per jail serves the whole batch (building one costs milliseconds:
    it loads Cloudflare's ranges and indexes every protected network).

    Raises:
        StateError: the state database failed (the requests stay in the spool).
    """
    from cfban.realip import BanGuard
    from cfban.targets import ban_target, unban_target

    entries = list(read_entries(spool_dir(service.settings.resolved_state_dir)))
    if not entries:
        return 0
    settings = service.settings
    prefix = settings.cloudflare.ipv6_prefix
    now = service.clock.now()
    store = service.store
    guards: dict[str, BanGuard] = {}
    for entry in entries:
        try:
            if entry.op == "ban":
                if entry.expires_at is not None and entry.expires_at <= now:
                    continue  # ended before it was taken
                target = ban_target(entry.ip, prefix)
                guard = guards.get(entry.jail)
                if guard is None:
                    guard = guards[entry.jail] = BanGuard.from_settings(settings, entry.jail)
                guard.check(target.address)
                store.hold(
                    address=target.address,
                    target=target.target,
                    jail=entry.jail,
                    expires_at=entry.expires_at,
                )
            else:
                store.release(unban_target(entry.ip, prefix), entry.jail)
        except RefusedError as exc:
            report.refused.append(entry.ip)
            log.warning("jail %s: not banning %s: %s", entry.jail, entry.ip, exc)
    done(entries)
    report.ingested += len(entries)
    return len(entries)


def _pending(service: BanService) -> bool:
    directory = spool_dir(service.settings.resolved_state_dir)
    try:
        spooled = any(is_request(name) for name in os.listdir(directory))
    except FileNotFoundError:
        spooled = False
    return spooled or service.store.due_count() > 0


def _batch_size(service: BanService) -> int | None:
    """A larger batch for the list backend (one bulk request per batch); else the default."""
    return LIST_BATCH if service.settings.cloudflare.backend == "list" else None


def linger(service: BanService, seconds: float) -> LingerReport:
    """Ingest and deliver until nothing happened for ``seconds``; see the module docstring.

    Raises:
        StateError: the state database failed.
    """
    report = LingerReport()
    lock = DelivererLock(service.settings.resolved_state_dir)
    if not lock.acquire():
        report.another_running = True
        return report
    clock = service.clock
    quiet_since = clock.monotonic()
    try:
        while True:
            busy = ingest_spool(service, report) > 0
            if busy or service.store.due_count() > 0:
                delivery = service.deliver(deadline=10.0, batch_size=_batch_size(service))
                report.added += len(delivery.added)
                report.removed += len(delivery.removed)
                report.errors.extend(e for e in delivery.errors if e not in report.errors)
                busy = busy or bool(delivery.added or delivery.removed)
            if busy:
                quiet_since = clock.monotonic()
            next_due = service.store.next_due()
            soon = next_due is not None and next_due - clock.now() < seconds
            if clock.monotonic() - quiet_since >= seconds and not soon:
                lock.release()
                if not _pending(service) or not lock.acquire():
                    return report
                quiet_since = clock.monotonic()
            clock.sleep(POLL)
    finally:
        lock.release()
