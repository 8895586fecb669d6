"""Delivery: drains the outbox into a Cloudflare backend, in batches, within a deadline.

One round of :func:`deliver`:

1. holds that have ended become removes (so a restart after a long downtime removes every
   overdue ban at once), and bans only a dry run ever "delivered" are queued again once a
   real backend is configured;
2. due adds go out in batches of ``batch_size`` (one ``Backend.add`` call per batch, the
   targets named in ``first`` in the first batch), then due removes (one ``Backend.remove``
   call per ``not_after``: forced removes together, expiry-driven ones together);
3. what the backend confirmed is recorded; a failed batch stays queued with its attempt
   counted, its error, and a next attempt after an exponential backoff (at least what the
   error's ``retry_after`` asks for). Nothing is ever dropped unconfirmed.

Operations are claimed (their attempt counted) before the request goes out and finished after
the answer, so a crash in between replays them: harmless, because ``add`` and ``remove`` are
idempotent. A remove whose ``not_after`` has passed is sent with ``not_after = now``: every
hold that ended by now may go, and an entry someone holds beyond now stays.

Only one process delivers at a time (the delivery lock of :mod:`cfban.intake.lock`); another
one waits for it briefly, then leaves its operations queued for the holder of the lock (which
keeps draining until nothing is due) and returns.

A failure is classified (:func:`cfban.cloudflare.classify`) and recorded in the delivery
problem record (:mod:`cfban.cloudflare._stall`); while that record says to wait, no round
calls Cloudflare, however many new bans arrive: a revoked token, a deleted list or a full
list costs a few requests a minute, not one per ban. The first failure of a persistent kind
and the first success after it each send one ``[notify]`` webhook POST. A backend may ask for
a pause between writes (``pace()``, the list backend) so bans arriving close together share
one write, and may learn entry ids while idle (``settle()``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cfban import notify
from cfban.clock import Clock
from cfban.cloudflare import (
    Backend,
    BanEntry,
    classify,
    clear_problem,
    read_problem,
    record_problem,
)
from cfban.errors import AuthError, CfbanError, CloudflareError, ConfigError
from cfban.intake.lock import delivery_lock
from cfban.state import DRY_RUN_PREFIX, AddJob, OutboxOp, StateStore

log = logging.getLogger(__name__)

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0
DEFAULT_BATCH = 100
LOCK_WAIT = 0.5

Progress = Callable[[str], None]


class DeadlineReached(Exception):
    """Raised inside a backend call when a wait would run past the delivery deadline."""


class DeadlineClock:
    """A clock whose ``sleep`` refuses to wait past a deadline (raising
    :class:`DeadlineReached`), so retries and rate-limit waits inside a backend call end when
    the delivery must end. Without a deadline it is the wrapped clock."""

    def __init__(self, clock: Clock) -> None:
        self.inner = clock
        self.deadline_at: float | None = None

    def now(self) -> float:
        return self.inner.now()

    def monotonic(self) -> float:
        return self.inner.monotonic()

    def sleep(self, seconds: float) -> None:
        if self.deadline_at is not None and self.monotonic() + seconds > self.deadline_at:
            raise DeadlineReached(f"a wait of {seconds:.1f} s would pass the deadline")
        self.inner.sleep(seconds)

    def remaining(self) -> float | None:
        if self.deadline_at is None:
            return None
        return self.deadline_at - self.monotonic()


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt of an operation that failed ``attempts`` times."""
    wait = min(BACKOFF_CAP, BACKOFF_BASE * float(2 ** min(30, max(0, attempts - 1))))
    if retry_after is not None:
        wait = max(wait, retry_after)
    return wait


@dataclass
class DeliveryReport:
    """What one round of delivery did."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    locked: bool = False
    deadline_reached: bool = False
    stopped: CfbanError | None = None
    #: The last error a backend call raised in this round (its class names the kind).
    failure: CfbanError | None = None
    queued: dict[str, int] = field(default_factory=dict)
    #: the kind of problem delivery waits out (see cfban.cloudflare._problems), if any
    waiting_for: str | None = None

    @property
    def queue_depth(self) -> int:
        return sum(self.queued.values())


def deliver(
    store: StateStore,
    backend: Backend,
    *,
    clock: Clock,
    state_dir: Path,
    deadline: float | None = None,
    batch_size: int = DEFAULT_BATCH,
    first: Sequence[str] = (),
    wait: bool = False,
    progress: Progress | None = None,
) -> DeliveryReport:
    """Drain the outbox into ``backend`` (see the module docstring).

    ``deadline`` bounds the round in seconds (None: no bound); ``wait`` makes it sleep until
    postponed operations are due again instead of returning. When ``clock`` is a
    :class:`DeadlineClock` shared with the backend, waits inside backend calls end at the
    deadline too. Backend failures are recorded on the operations and in the report, never
    raised; an invalid token or a configuration error stops the round (``report.stopped``).

    Raises:
        StateError: the state database failed.
    """
    report = DeliveryReport()
    lock = delivery_lock(state_dir)
    # a short wait closes the gap where the holder has just found nothing left to send
    if not lock.acquire(clock, min(LOCK_WAIT, deadline if deadline is not None else LOCK_WAIT)):
        report.locked = True
        report.queued = store.depth()
        return report
    limit = clock.monotonic() + deadline if deadline is not None else None
    if isinstance(clock, DeadlineClock):
        clock.deadline_at = limit
    try:
        with lock:
            _prepare(store, backend, report)
            _drain(
                store, backend, clock, state_dir, limit, batch_size, first, wait, progress, report
            )
    finally:
        if isinstance(clock, DeadlineClock):
            clock.deadline_at = None
    report.queued = store.depth()
    return report


def _prepare(store: StateStore, backend: Backend, report: DeliveryReport) -> None:
    report.expired = store.expire()
    if not backend.name.startswith(DRY_RUN_PREFIX):
        requeued = store.requeue_dry_run()
        if requeued:
            log.info("queued again %d bans a dry run had recorded as delivered", requeued)


def _drain(
    store: StateStore,
    backend: Backend,
    clock: Clock,
    state_dir: Path,
    limit: float | None,
    batch_size: int,
    first: Sequence[str],
    wait: bool,
    progress: Progress | None,
    report: DeliveryReport,
) -> None:
    while report.stopped is None:
        if limit is not None and clock.monotonic() >= limit:
            report.deadline_reached = store.due_count() > 0
            return
        if not _gate(store, clock, state_dir, limit, wait, report):
            return
        _pace(store, backend, clock, limit, batch_size)
        jobs = store.take_adds(batch_size, first)
        first = ()
        if jobs:
            _send_adds(store, backend, clock, state_dir, jobs, report)
        else:
            removes = store.take_removes(batch_size)
            if removes:
                _send_removes(store, backend, clock, state_dir, removes, report)
            elif not (wait and _sleep_until_due(store, clock, limit)):
                _settle(store, backend, report, done=wait)
                return
        _requeue_if_replaced(store, backend)
        if report.deadline_reached:
            return
        if progress is not None:
            depth = store.depth()
            progress(
                f"added {len(report.added)}, removed {len(report.removed)}, "
                f"{depth['add'] + depth['remove']} queued"
            )


def _gate(
    store: StateStore,
    clock: Clock,
    state_dir: Path,
    limit: float | None,
    wait: bool,
    report: DeliveryReport,
) -> bool:
    """False while the problem record says not to call Cloudflare yet (and ``wait`` does not
    ask to sleep it out within the deadline)."""
    problem = read_problem(state_dir)
    if problem is None:
        return True
    pause = problem.retry_at - clock.now()
    if pause <= 0 or store.due_count() == 0:
        return True
    report.waiting_for = problem.kind
    return wait and _sleep_within(clock, pause, limit)


def _pace(
    store: StateStore, backend: Backend, clock: Clock, limit: float | None, batch_size: int
) -> None:
    """Let a backend that writes in rounds (the list backend) gather what arrives in the next
    moment, unless a full batch is already due."""
    pace = getattr(backend, "pace", None)
    if not callable(pace):
        return
    due = store.due_count("add")
    if due == 0 or due >= batch_size:
        return
    pause = float(pace())
    if pause <= 0:
        return
    if limit is not None:
        pause = min(pause, max(0.0, limit - clock.monotonic() - 0.05))
    try:
        clock.sleep(pause)
    except DeadlineReached:
        pass


def _requeue_if_replaced(store: StateStore, backend: Backend) -> None:
    """The backend found what it writes to deleted and made it again (the list backend):
    every ban it held is gone at Cloudflare, so queue each held one again."""
    take = getattr(backend, "take_list_replaced", None)
    if callable(take) and take():
        count = store.requeue(list(store.held_targets()))
        log.warning("Cloudflare lost every ban with the deleted list: queued %d again", count)


def _settle(store: StateStore, backend: Backend, report: DeliveryReport, *, done: bool) -> None:
    """Nothing is due: let a backend do its idle work (the list backend reads the list at
    start-up and learns entry ids lazily) and record the ids it learnt. ``done``: the round
    drained everything and ends now (no later idle moment in this process)."""
    settle = getattr(backend, "settle", None)
    if not callable(settle):
        return
    try:
        refs = settle(done=done)
    except DeadlineReached:
        report.deadline_reached = True
        return
    except CfbanError as exc:
        log.info("could not learn the ids of new list items yet: %s", exc)
        return
    if refs:
        store.set_refs(refs)


def _sleep_until_due(store: StateStore, clock: Clock, limit: float | None) -> bool:
    """Sleep until the next queued operation is due; False when nothing is queued or the
    deadline comes first."""
    due_at = store.next_due()
    if due_at is None:
        return False
    return _sleep_within(clock, max(0.0, due_at - clock.now()), limit)


def _sleep_within(clock: Clock, pause: float, limit: float | None) -> bool:
    """Sleep ``pause`` seconds unless that passes ``limit``; whether it slept."""
    if limit is not None and clock.monotonic() + pause >= limit:
        return False
    try:
        clock.sleep(pause)
    except DeadlineReached:
        return False
    return True


def _send_adds(
    store: StateStore,
    backend: Backend,
    clock: Clock,
    state_dir: Path,
    jobs: list[AddJob],
    report: DeliveryReport,
) -> None:
    entries = [BanEntry(job.op.target, job.expires_at, job.jails, job.action) for job in jobs]
    try:
        refs = backend.add(entries)
    except DeadlineReached:
        report.deadline_reached = True
        store.postpone([job.op for job in jobs], clock.now(), "interrupted by the deadline")
        return
    except CfbanError as exc:
        _failed(store, clock, state_dir, [job.op for job in jobs], exc, report)
        return
    _recovered(state_dir, clock)
    refused = store.added(jobs, refs, backend.name)
    report.refused.extend(refused)
    report.added.extend(job.op.target for job in jobs if job.op.target in refs)


def _send_removes(
    store: StateStore,
    backend: Backend,
    clock: Clock,
    state_dir: Path,
    ops: list[OutboxOp],
    report: DeliveryReport,
) -> None:
    now = clock.now()
    groups: dict[float | None, list[OutboxOp]] = {}
    for op in ops:
        key = None if op.force or op.not_after is None else max(op.not_after, now)
        groups.setdefault(key, []).append(op)
    refs = store.refs([op.target for op in ops])
    for not_after, group in groups.items():
        if report.stopped is not None or report.deadline_reached:
            store.postpone(group, clock.now(), "not sent: delivery stopped")
            continue
        pairs = [(op.target, refs.get(op.target)) for op in group]
        try:
            removed = set(backend.remove(pairs, not_after=not_after))
        except DeadlineReached:
            report.deadline_reached = True
            store.postpone(group, clock.now(), "interrupted by the deadline")
            continue
        except CfbanError as exc:
            _failed(store, clock, state_dir, group, exc, report)
            continue
        _recovered(state_dir, clock)
        store.removed(group)
        for op in group:
            (report.removed if op.target in removed else report.kept).append(op.target)


def _recovered(state_dir: Path, clock: Clock) -> None:
    """A call went through: the problem, if one was recorded, is over."""
    before = clear_problem(state_dir)
    if before is not None:
        log.info("delivery works again (after %s since %.0f)", before.kind, before.since)
        notify.end(state_dir, "stalled", clock.now(), {"kind": before.kind})


def _failed(
    store: StateStore,
    clock: Clock,
    state_dir: Path,
    ops: Sequence[OutboxOp],
    exc: CfbanError,
    report: DeliveryReport,
) -> None:
    hint = getattr(exc, "retry_after", None)
    retry_after = float(hint) if isinstance(hint, int | float) else None
    attempts = max(op.attempts for op in ops) + 1  # the claim raised it in the database
    now = clock.now()
    problem = classify(exc)
    record, new = record_problem(state_dir, problem, now, retry_after)
    report.waiting_for = record.kind
    until = max(now + backoff(attempts, retry_after), record.retry_at)
    if new and record.persistent:
        details = {"kind": record.kind, "message": record.message, "fix": record.fix}
        condition = "list_fill" if record.kind == "list_full" else "stalled"
        notify.start(state_dir, condition, now, {**details, "queued": sum(store.depth().values())})
    store.postpone(ops, until, str(exc))
    report.failed += len(ops)
    report.failure = exc
    message = str(exc)
    if message not in report.errors:
        report.errors.append(message)
    log.warning(
        "%d Cloudflare operation(s) failed, next attempt in %.0f s: %s",
        len(ops),
        until - clock.now(),
        message,
    )
    if isinstance(exc, AuthError | ConfigError) or not isinstance(exc, CloudflareError):
        report.stopped = exc
