"""The daemon's delivery thread: when it is called, its rounds, and what they report.

The main thread commits bans to the outbox (durably) and calls the thread; the thread drains
the outbox into Cloudflare in rounds (``BanService.deliver``), so a slow or failing Cloudflare
never stalls log reading. Each round also turns ended bans into removals; the thread reads the
shared allowlist again when its copy may be stale, and wakes on its own every ``poll``
seconds when nobody calls.

While a backlog is read (full batches, one after another) the main thread's calls are
gathered: at most one every :data:`DELIVERY_GATHER` seconds, so that one round takes every ban
queued since the last, instead of one round - a claim, a confirmation and a record, each a
synced transaction - per batch of lines. A batch that reaches the end of its file calls at
once, so a live line's ban waits for no one.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from cfban.bans import BanService
from cfban.clock import Clock
from cfban.config import Settings
from cfban.delivery import DeliveryReport
from cfban.errors import CfbanError
from cfban.watch._metrics import Metrics

__all__ = ["DELIVERY_GATHER", "Deliverer"]

log = logging.getLogger(__name__)

#: Seconds a delivery round may take while running (it then reports and starts again).
ROUND_DEADLINE = 10.0
#: Seconds the last delivery round may take when stopping: whatever is left stays queued
#: (durably) for the next start, so a failing Cloudflare never holds up a stop for long.
STOP_DEADLINE = 5.0
#: Seconds between looks at the age of the shared allowlist copy (it is read again when
#: older than [cloudflare] allowlist_refresh).
ALLOWLIST_CHECK = 30.0
#: Seconds between calls on the delivery thread while a backlog is read.
DELIVERY_GATHER = 0.1
#: Seconds a stop waits for the last round.
JOIN_TIMEOUT = 30.0


class Deliverer:
    """The delivery thread of a daemon, and the calls on it.

    ``factory`` makes the thread's own ``BanService`` (its own database connection);
    ``released`` is told each target a round removed (the jails count it afresh).
    """

    def __init__(
        self,
        factory: Callable[[Settings], BanService],
        clock: Clock,
        metrics: Metrics,
        *,
        poll: float,
        released: Callable[[str], None],
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._metrics = metrics
        self._poll = poll
        self._released = released
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set to wake the thread for a round.
        self.called = threading.Event()
        self._last_call = -math.inf  # monotonic time of the last call
        #: Whether bans were queued since the last call.
        self.held = False
        #: The last error a round reported (or raised), for the status file.
        self.last_error: str | None = None
        #: When the oldest queued operation was queued, as of the last round.
        self.oldest_queued: float | None = None

    def start(self, settings: Settings) -> None:
        """Start the thread (with a service for ``settings``)."""
        self._thread = threading.Thread(
            target=self._run, args=(settings,), name="delivery", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Make a last round (bounded by :data:`STOP_DEADLINE`) and wait for the thread."""
        self._stopping.set()
        self.called.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=JOIN_TIMEOUT)

    def call(self, *, queued: bool, urgent: bool) -> None:
        """After a batch was committed: wake the thread for the bans queued since the last
        call (``queued``: this batch queued some) at once when the batch reached the end of
        its file (``urgent``), else at most every :data:`DELIVERY_GATHER` seconds."""
        self.held = self.held or queued
        if not self.held:
            return
        now = self._clock.monotonic()
        if urgent or now - self._last_call >= DELIVERY_GATHER:
            self._last_call = now
            self.held = False
            self.called.set()

    def call_held(self) -> None:
        """Nothing more to read for now: wake the thread for any bans still held back (a
        backlog that ended on a full batch)."""
        self.call(queued=False, urgent=True)

    def _run(self, settings: Settings) -> None:
        service = self._factory(settings)
        clock = self._clock
        next_allowlist = clock.monotonic() + ALLOWLIST_CHECK  # the daemon read it at start
        try:
            while True:
                stopping = self._stopping.is_set()
                if not stopping and clock.monotonic() >= next_allowlist:
                    # the shared allowlist: read at start-up, then whenever the copy is stale
                    try:
                        service.refresh_allowlist()
                    except CfbanError as exc:
                        log.error("could not use the shared allowlist: %s", exc)
                    next_allowlist = clock.monotonic() + ALLOWLIST_CHECK
                try:
                    report = service.deliver(deadline=STOP_DEADLINE if stopping else ROUND_DEADLINE)
                except CfbanError as exc:
                    self.last_error = str(exc)
                    log.error("delivery failed: %s", exc)
                    report = None
                if report is not None:
                    self._account(report)
                    self._refresh_queue(service)
                if stopping:
                    return
                self.called.wait(self._poll)
                self.called.clear()
        finally:
            service.close()

    def _account(self, report: DeliveryReport) -> None:
        metrics = self._metrics
        if report.added or report.removed:
            metrics.api_batches += 1
        metrics.delivered += len(report.added)
        metrics.unbans += len(report.removed)
        metrics.api_errors += report.failed
        if report.errors:
            self.last_error = report.errors[-1]
        for target in report.removed:
            self._released(target)

    def _refresh_queue(self, service: BanService) -> None:
        depth = service.queue_depth()
        self._metrics.queue_add = depth["add"]
        self._metrics.queue_remove = depth["remove"]
        self.oldest_queued = service.store.oldest_queued_at()
        self._metrics.oldest_queued_at = self.oldest_queued
