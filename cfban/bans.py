"""The ban operations the CLI (and fail2ban's hook) call: ban, unban, list, sync, deliver.

:class:`BanService` ties the configuration, the state store and the Cloudflare backend
together; each public method is one operation and returns a plain result for the caller to
show. A ban is guarded (never-ban rules), committed to the state with its outbox operation,
and only then sent, within ``[cloudflare] deliver_deadline`` seconds: whatever is not
confirmed by then stays queued for the next run, so the caller can report success as soon as
the ban is durably queued.

The backend (and with it httpx) is imported and built only when an operation talks to
Cloudflare, which keeps ``cfban ban`` quick to start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfban.clock import Clock, SystemClock
from cfban.config import Settings
from cfban.durations import DEFAULT_BANTIME
from cfban.state import BanView, StateStore, later
from cfban.targets import BanTarget, ban_target, unban_target

if TYPE_CHECKING:
    import httpx

    from cfban.cloudflare import Backend, RemoteEntry
    from cfban.delivery import DeadlineClock, DeliveryReport

__all__ = ["BanResult", "BanService", "SyncReport", "UnbanResult", "unban_target"]

MANUAL_JAIL = "manual"

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


@dataclass(frozen=True)
class UnbanResult:
    """A committed unban and how far its delivery got."""

    target: str
    jails: tuple[str, ...]
    queued: bool
    removed: bool
    kept: bool
    report: DeliveryReport | None


@dataclass
class SyncReport:
    """What ``sync`` found and did (or, with ``dry_run``, would do)."""

    dry_run: bool
    expired: list[str] = field(default_factory=list)
    repushed: list[str] = field(default_factory=list)
    remove_remote: list[str] = field(default_factory=list)
    held_elsewhere: list[str] = field(default_factory=list)
    in_sync: int = 0
    delivery: DeliveryReport | None = None


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
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._transport = transport
        self._writer = writer
        self._on_dry_run = on_dry_run
        self._request_timeout = request_timeout
        self._store: StateStore | None = None
        self._backend: Backend | None = None
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
    def backend(self) -> Backend:
        """The configured backend, built on first use (a dry run without a token).

        Raises:
            ConfigError: a setting the backend needs is missing.
        """
        if self._backend is None:
            from cfban.cloudflare import make_backend
            from cfban.delivery import DeadlineClock

            settings = self.settings
            if self._request_timeout is not None:
                timeout = min(settings.cloudflare.timeout, self._request_timeout)
                cloudflare = settings.cloudflare.model_copy(update={"timeout": timeout})
                settings = settings.model_copy(update={"cloudflare": cloudflare})
            self._deadline_clock = DeadlineClock(self.clock)
            self._backend = make_backend(
                settings,
                clock=self._deadline_clock,
                state_dir=settings.resolved_state_dir,
                transport=self._transport,
                writer=self._writer,
            )
            if settings.dry_run and self._on_dry_run is not None:
                self._on_dry_run()
        return self._backend

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        close = getattr(self._backend, "close", None)
        if callable(close):
            close()
        self._backend = None

    def __enter__(self) -> BanService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations --------------------------------------------------------------------------

    def check_ban(self, address: str, jail: str | None) -> BanTarget:
        """The target ``address`` would be banned as, after the never-ban guards.

        Raises:
            RefusedError: not an address, or an address cfban must never ban.
        """
        from cfban.realip import BanGuard

        target = ban_target(address, self.settings.cloudflare.ipv6_prefix)
        BanGuard.from_settings(self.settings, jail).check(target.address)
        return target

    def bantime(self, jail: str | None, bantime: int | None) -> int:
        """The bantime to use: the given one, else the jail's, else the default."""
        if bantime is not None:
            return bantime
        configured = self.settings.jails.get(jail) if jail else None
        return configured.bantime if configured is not None else DEFAULT_BANTIME

    def ban(
        self,
        address: str,
        *,
        jail: str | None = None,
        bantime: int | None = None,
        deliver: bool = True,
    ) -> BanResult:
        """Guard, commit, then try to deliver within the configured deadline.

        ``bantime`` is in seconds, negative for a permanent ban; None takes the jail's.

        Raises:
            RefusedError: the address must not be banned (or is not an address).
            StateError: the ban could not be committed.
        """
        target = self.check_ban(address, jail)
        if deliver:
            _ = self.backend  # a backend that cannot be built fails before the commit
        seconds = self.bantime(jail, bantime)
        expires = None if seconds < 0 else self.clock.now() + seconds
        name = jail or MANUAL_JAIL
        queued = self.store.hold(
            address=target.address, target=target.target, jail=name, expires_at=expires
        )
        report = None
        if deliver:
            report = self.deliver(
                deadline=self.settings.cloudflare.deliver_deadline, first=[target.target]
            )
        delivered = self._state_of(target.target) == "delivered"
        return BanResult(target.address, target.target, name, expires, queued, delivered, report)

    def unban(self, address: str, *, jail: str | None = None, deliver: bool = True) -> UnbanResult:
        """Release ``jail``'s hold (every hold, forcing removal, without a jail).

        Raises:
            RefusedError: ``address`` is not an address or target.
            StateError: the unban could not be committed.
        """
        target = unban_target(address, self.settings.cloudflare.ipv6_prefix)
        jails, queued = self.store.release(target, jail)
        report = None
        if deliver and queued:
            report = self.deliver(deadline=self.settings.cloudflare.deliver_deadline)
        kept = report is not None and target in report.kept
        removed = queued and not kept and self._state_of(target) is None
        return UnbanResult(target, tuple(jails), queued, removed, kept, report)

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
        """Drain the outbox now (see :func:`cfban.delivery.deliver`).

        Raises:
            StateError: the state database failed.
            ConfigError: the backend is misconfigured.
        """
        from cfban.delivery import DEFAULT_BATCH, deliver

        backend = self.backend
        assert self._deadline_clock is not None
        return deliver(
            self.store,
            backend,
            clock=self._deadline_clock,
            state_dir=self.settings.resolved_state_dir,
            deadline=deadline,
            batch_size=batch_size or DEFAULT_BATCH,
            first=first,
            wait=wait,
            progress=progress,
        )

    def sync(
        self, *, dry_run: bool = False, prune: bool = False, deadline: float | None = None
    ) -> SyncReport:
        """Reconcile the state with Cloudflare: expire ended holds, push what is missing or
        shorter there, remove cfban entries whose expiry has passed; never touch entries
        cfban did not make. Entries this host does not hold are kept (another host may hold
        them) unless ``prune``: then they go too (one host, or a lost state).

        Raises:
            CloudflareError: the remote entries could not be listed.
            StateError: the state database failed.
        """
        store, now = self.store, self.clock.now()
        report = SyncReport(dry_run=dry_run)
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
        refs: dict[str, str] = {}
        for entry in self.backend.list_owned():
            seen = entry.target in remote
            remote[entry.target] = (
                later(remote[entry.target], entry.expires_at) if seen else entry.expires_at
            )
            refs[entry.target] = entry.ref
        for target, want in held.items():
            if target not in remote or later(remote[target], want.expires_at) != remote[target]:
                report.repushed.append(target)
            else:
                report.in_sync += 1
        for target, expiry in sorted(remote.items()):
            if target in held:
                continue
            if expiry is not None and expiry <= now:
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
        report.delivery = self.deliver(deadline=deadline, wait=True)
        return report

    def setup(self) -> list[str]:
        """Create what the backend needs at Cloudflare; return what was done.

        Raises:
            CloudflareError, ConfigError.
        """
        return self.backend.setup()

    def check(self) -> list[tuple[str, bool, str]]:
        """Checks of the configuration, the state and the backend: (name, ok, detail)."""
        from cfban.errors import CfbanError

        settings = self.settings
        checks = [("configuration", True, f"read from {settings.source}")]
        warning = settings.token_file_warning()
        if warning is not None:
            checks.append(("token file", False, warning))
        try:
            depth = self.store.depth()
        except CfbanError as exc:
            checks.append(("state", False, str(exc)))
        else:
            checks.append(
                (
                    "state",
                    True,
                    f"{self.store.path} ({depth['add']} adds, {depth['remove']} removes queued)",
                )
            )
        checks.extend(self._log_checks())
        try:
            checks.extend(self.backend.check())
        except CfbanError as exc:
            checks.append(("cloudflare", False, str(exc)))
        from cfban.cloudflare import cloudflare_checks, cloudflare_status  # problem, fill, budget

        checks.extend(cloudflare_checks(cloudflare_status(settings, settings.resolved_state_dir)))
        return checks

    def _log_checks(self) -> list[tuple[str, bool, str]]:
        """nginx real-IP sanity, from the last lines of every configured log."""
        from cfban.realip import NetworkSet, load_ranges
        from cfban.realip._logcheck import inspect_log
        from cfban.tailer import expand_logpaths

        settings = self.settings
        ranges = load_ranges(settings)
        trusted = NetworkSet([*ranges.networks.networks, *settings.realip.trusted_proxies])
        patterns = [p for jail in settings.jails.values() if jail.enabled for p in jail.logpath]
        checks: list[tuple[str, bool, str]] = []
        for path in expand_logpaths(patterns):
            findings = inspect_log(path, ranges.networks, trusted)
            problems = findings.problems()
            detail = "; ".join(problems) or f"last {findings.lines} lines name real clients"
            checks.append((f"log {path}", not problems, detail))
        return checks

    def _state_of(self, target: str) -> str | None:
        return self.store.state_of(target)
