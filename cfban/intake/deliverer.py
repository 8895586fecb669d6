"""The background deliverer a hook wakes: ``cfban deliver --linger SECONDS``.

It takes the deliverer lock (one deliverer per state directory), then, until the queue has
been quiet for ``linger`` seconds: commits spool requests (from fail2ban's Python action)
through the one commit path, and delivers the outbox in batches. Before exiting it lets the
lock go and looks once more, so a request committed by a hook that saw the lock taken is
never stranded. Every delivery round is recorded in the state (see :mod:`cfban.bans`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cfban.errors import RefusedError
from cfban.intake.commit import refused_message
from cfban.intake.lock import deliverer_lock
from cfban.intake.spool import done, is_request, read_entries, spool_dir
from cfban.state import Hold

if TYPE_CHECKING:
    from cfban.clock import Clock
    from cfban.intake.commit import Intake
    from cfban.state import StateStore

log = logging.getLogger(__name__)

POLL = 0.05


class DeliveryRound(Protocol):
    """What one delivery round reports (a :class:`cfban.delivery.DeliveryReport`)."""

    @property
    def added(self) -> Sequence[str]: ...

    @property
    def removed(self) -> Sequence[str]: ...

    @property
    def errors(self) -> Sequence[str]: ...


class DeliveringService(Protocol):
    """What the deliverer needs (a :class:`cfban.bans.BanService`)."""

    clock: Clock

    @property
    def state_dir(self) -> Path: ...

    @property
    def store(self) -> StateStore: ...

    @property
    def intake(self) -> Intake: ...

    def deliver(self, *, deadline: float | None) -> DeliveryRound: ...


@dataclass
class LingerReport:
    """What a deliverer run did."""

    ingested: int = 0
    refused: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    another_running: bool = False


def ingest_spool(service: DeliveringService, report: LingerReport) -> int:
    """Commit the spool's requests to the state through the one commit path; return how many
    were taken. Consecutive bans are committed in one transaction.

    Raises:
        StateError: the state database failed (the requests stay in the spool).
    """
    entries = list(read_entries(spool_dir(service.state_dir)))
    if not entries:
        return 0
    intake = service.intake
    now = service.clock.now()
    holds: list[Hold] = []
    for entry in entries:
        try:
            if entry.op == "ban":
                if entry.expires_at is not None and entry.expires_at <= now:
                    continue  # ended before it was taken
                start = entry.time or now
                bantime = -1.0 if entry.expires_at is None else entry.expires_at - start
                holds.append(intake.plan(entry.ip, entry.jail, bantime, start=start)[0])
            else:
                intake.commit(holds)
                holds = []
                intake.unban(entry.ip, entry.jail)
        except RefusedError as exc:
            report.refused.append(entry.ip)
            log.warning("%s", refused_message(entry.jail, entry.ip, exc))
    intake.commit(holds)
    done(entries)
    report.ingested += len(entries)
    return len(entries)


def _pending(service: DeliveringService) -> bool:
    directory = spool_dir(service.state_dir)
    try:
        spooled = any(is_request(name) for name in os.listdir(directory))
    except FileNotFoundError:
        spooled = False
    return spooled or service.store.due_count() > 0


def linger(service: DeliveringService, seconds: float) -> LingerReport:
    """Ingest and deliver until nothing happened for ``seconds``; see the module docstring.

    Raises:
        StateError: the state database failed.
    """
    report = LingerReport()
    lock = deliverer_lock(service.state_dir)
    if not lock.acquire():
        report.another_running = True
        return report
    clock = service.clock
    quiet_since = clock.monotonic()
    try:
        while True:
            busy = ingest_spool(service, report) > 0
            if busy or service.store.due_count() > 0:
                delivery = service.deliver(deadline=10.0)
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
