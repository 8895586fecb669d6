"""The ban operations of the full command and the daemon: ban, unban, list, sync, deliver.

:class:`BanService` ties the configuration, the state store and the Cloudflare backend
together; each public method is one operation and returns a plain result for the caller to
show. A ban is committed through the one commit path (:class:`cfban.intake.commit.Intake`:
guards, target, bantime, holders, outbox) and only then sent, within
``[cloudflare] deliver_deadline`` seconds: whatever is not confirmed by then stays queued for
the next run, so the caller can report success as soon as the ban is durably queued. Every
delivery round is recorded in the state (:meth:`StateStore.record_delivery`), so a failing
delivery shows in ``cfban status``, ``cfban health`` and the hook's warning.

The backend (and with it httpx) is imported and built only when an operation talks to
Cloudflare, which keeps ``cfban ban`` quick to start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cfban.clock import Clock, SystemClock
from cfban.config import Settings
from cfban.errors import CfbanError, StateError
from cfban.intake.commit import Intake
from cfban.rules import Rules
from cfban.state import BanView, StateStore
from cfban.targets import unban_target

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import httpx

    from cfban.allowlist import AllowEntry
    from cfban.checks import Check
    from cfban.cloudflare import AllowRules, Backend, RemoteEntry
    from cfban.delivery import DeadlineClock, DeliveryReport
    from cfban.syncing import SyncReport

__all__ = ["BanResult", "BanService", "UnbanResult", "unban_target"]

# The list backend writes a whole batch in one bulk operation whose cost does not depend on
# its size, so a round takes everything queued, up to what one request may carry
# (cfban.cloudflare's MAX_ITEMS_PER_REQUEST).
LIST_BATCH = 10_000

Writer = Callable[[str], None]


@dataclass(frozen=True)
class BanResult:
    """A committed ban and how far its delivery got."""

    address: str
    target: str
    jail: str
    expires_at: float | None
    queued: bool
    delivered: bool
    report: DeliveryReport | None
    action: str = "block"


@dataclass(frozen=True)
class UnbanResult:
    """A committed unban and how far its delivery got."""

    target: str
    jails: tuple[str, ...]
    queued: bool
    removed: bool
    kept: bool
    report: DeliveryReport | None
    allowed: AllowEntry | None = None


class BanService:
    """The ban operations over one state store and one (lazily built) backend."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
        writer: Writer | None = None,
        on_dry_run: Callable[[], None] | None = None,
        request_timeout: float | None = None,
        recorder: str = "cfban",
    ) -> None:
        self.settings = settings
        self._recorder = recorder
        self.clock = clock or SystemClock()
        self._transport = transport
        self._writer = writer
        self._on_dry_run = on_dry_run
        self._request_timeout = request_timeout
        self._store: StateStore | None = None
        self._intake: Intake | None = None
        self._rules: Rules | None = None
        self._backend: Backend | None = None
        self._allow_rules: AllowRules | None = None
        self._deadline_clock: DeadlineClock | None = None

    @property
    def store(self) -> StateStore:
        """The state store, opened on first use.

        Raises:
            StateError: it cannot be opened.
        """
        if self._store is None:
            self._store = StateStore.open(self.settings.resolved_state_dir, self.clock)
        return self._store

    @property
    def state_dir(self) -> Path:
        """Where the state lives."""
        return self.settings.resolved_state_dir

    @property
    def rules(self) -> Rules:
        """The ban rules of the configuration.

        Raises:
            ConfigError: the token file cannot be read.
        """
        if self._rules is None:
            self._rules = self.settings.rules()
        return self._rules

    @property
    def intake(self) -> Intake:
        """The one commit path, over this service's store."""
        if self._intake is None:
            self._intake = Intake(self.rules, self.store)
        return self._intake

    @property
    def deadline_clock(self) -> DeadlineClock:
        """The clock the backend waits on, which a delivery round bounds by its deadline."""
        if self._deadline_clock is None:
            from cfban.delivery import DeadlineClock

            self._deadline_clock = DeadlineClock(self.clock)
        return self._deadline_clock

    @property
    def batch_size(self) -> int | None:
        """Operations per backend call: larger for the list backend (one bulk request each)."""
        return LIST_BATCH if self.settings.cloudflare.backend == "list" else None

    @property
    def backend(self) -> Backend:
        """The configured backend, built on first use (a dry run without a token).

        Raises:
            ConfigError: a setting the backend needs is missing.
        """
        if self._backend is None:
            from cfban.cloudflare import make_backend

            settings = self.settings
            if self._request_timeout is not None:
                timeout = min(settings.cloudflare.timeout, self._request_timeout)
                cloudflare = settings.cloudflare.model_copy(update={"timeout": timeout})
                settings = settings.model_copy(update={"cloudflare": cloudflare})
            self._backend = make_backend(
                settings,
                clock=self.deadline_clock,
                state_dir=settings.resolved_state_dir,
                transport=self._transport,
                writer=self._writer,
            )
            if settings.dry_run and self._on_dry_run is not None:
                self._on_dry_run()
        return self._backend

    @property
    def allow_rules(self) -> AllowRules | None:
        """The shared allowlist at Cloudflare, built on first use (None: a dry run).

        Raises:
            ConfigError: no account or zone is configured.
        """
        if self._allow_rules is None and not self.settings.dry_run:
            from cfban.cloudflare import make_allow_rules

            self._allow_rules = make_allow_rules(
                self.settings,
                clock=self.deadline_clock,
                state_dir=self.state_dir,
                transport=self._transport,
            )
        return self._allow_rules

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        for part in (self._backend, self._allow_rules):
            close = getattr(part, "close", None)
            if callable(close):
                close()
        self._backend = None
        self._allow_rules = None

    def refresh_allowlist(self, *, force: bool = False) -> None:
        """Read the shared allowlist again when the local copy is stale (see
        :func:`cfban.allowance.refresh`); a failure is logged and the old copy kept."""
        from cfban import allowance

        try:
            allowance.refresh(self, force=force)
        except CfbanError as exc:
            if isinstance(exc, StateError):
                raise
            log.warning("could not read the shared allowlist, using the last copy: %s", exc)

    def __enter__(self) -> BanService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations --------------------------------------------------------------------------

    def ban(
        self,
        address: str,
        *,
        jail: str | None = None,
        bantime: int | None = None,
        deliver: bool = True,
        network: bool = False,
    ) -> BanResult:
        """Commit through the one commit path, then try to deliver within the deadline.

        ``bantime`` is in seconds, negative for a permanent ban; None takes the jail's (grown
        for a repeat offender).

        Raises:
            RefusedError: the address must not be banned (or is not an address).
            StateError: the ban could not be committed.
        """
        if deliver:
            _ = self.backend  # a backend that cannot be built fails before the commit
            self.refresh_allowlist()
        hold, _seconds = self.intake.plan(address, jail, bantime, network=network)
        queued = bool(self.intake.commit([hold]))
        report = None
        if deliver:
            report = self.deliver(
                deadline=self.settings.cloudflare.deliver_deadline, first=[hold.target]
            )
        delivered = self.store.state_of(hold.target) == "delivered"
        return BanResult(
            hold.address,
            hold.target,
            hold.jail,
            hold.expires_at,
            queued,
            delivered,
            report,
            hold.action,
        )

    def unban(self, address: str, *, jail: str | None = None, deliver: bool = True) -> UnbanResult:
        """Release ``jail``'s hold (every hold, forcing removal, without a jail).

        Raises:
            RefusedError: ``address`` is not an address or target.
            StateError: the unban could not be committed.
        """
        released = self.intake.unban(address, jail)
        target, jails, queued = released.target, released.jails, released.queued
        report = None
        if deliver and queued:
            report = self.deliver(deadline=self.settings.cloudflare.deliver_deadline)
        kept = report is not None and target in report.kept
        removed = queued and not kept and self.store.state_of(target) is None
        allowed = None
        if jail is None and deliver:
            from cfban.allowance import after_manual_unban

            allowed = after_manual_unban(self, target)
        return UnbanResult(target, tuple(jails), queued, removed, kept, report, allowed)

    def list_bans(self) -> list[BanView]:
        """Every target in the local state."""
        return self.store.bans()

    def queue_depth(self) -> dict[str, int]:
        return self.store.depth()

    def list_remote(self) -> list[RemoteEntry]:
        """Every cfban-owned entry the backend finds at Cloudflare.

        Raises:
            CloudflareError: Cloudflare could not be asked.
        """
        return self.backend.list_owned()

    def deliver(
        self,
        *,
        deadline: float | None,
        first: Sequence[str] = (),
        wait: bool = False,
        batch_size: int | None = None,
        progress: Writer | None = None,
    ) -> DeliveryReport:
        """Drain the outbox now (see :func:`cfban.delivery.deliver`) and record how it went
        in the state's delivery record.

        Raises:
            StateError: the state database failed.
            ConfigError: the backend is misconfigured.
        """
        from cfban.delivery import DEFAULT_BATCH, deliver

        try:
            report = deliver(
                self.store,
                self.backend,
                clock=self.deadline_clock,
                state_dir=self.settings.resolved_state_dir,
                deadline=deadline,
                batch_size=batch_size or self.batch_size or DEFAULT_BATCH,
                first=first,
                wait=wait,
                progress=progress,
            )
        except CfbanError as exc:
            if not isinstance(exc, StateError):
                self._record(exc)
            raise
        if not report.locked:
            failure = report.stopped or report.failure
            if failure is not None or report.added or report.removed or report.refused:
                self._record(failure)
            elif self.store.delivery_record().failing and self.store.oldest_queued_at() is None:
                self._record(None)  # everything that had failed has gone out meanwhile
        return report

    def _record(self, failure: BaseException | None) -> None:
        if failure is None:
            self.store.record_delivery(error=None, kind=None, fix=None, by=self._recorder)
            return
        from cfban.cloudflare import classify

        problem = classify(failure)
        self.store.record_delivery(
            error=problem.message, kind=problem.kind, fix=problem.fix, by=self._recorder
        )

    def sync(
        self, *, dry_run: bool = False, prune: bool = False, deadline: float | None = None
    ) -> SyncReport:
        """Reconcile the state with Cloudflare (see :func:`cfban.syncing.sync`).

        Raises:
            CloudflareError: the remote entries could not be listed.
            StateError: the state database failed.
        """
        from cfban.syncing import sync

        return sync(self, dry_run=dry_run, prune=prune, deadline=deadline)

    def setup(self) -> list[str]:
        """Create what the backend needs at Cloudflare; return what was done.

        Raises:
            CloudflareError, ConfigError.
        """
        return self.backend.setup()

    def check(self) -> list[Check]:
        """Checks of the configuration, the state, the logs and the backend."""
        from cfban.checks import Check, run_checks

        checks = run_checks(self.settings, lambda: self.store, lambda: self.backend)
        try:
            rules = self.allow_rules
        except CfbanError as exc:
            return [*checks, Check("shared allowlist", False, str(exc))]
        if rules is not None:
            checks.append(Check(*rules.check()))
        return checks
