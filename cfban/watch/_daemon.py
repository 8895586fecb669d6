"""The daemon: wiring only.

Main thread: follow the jails' log files, run each complete line through the pipeline, and
commit the bans it decides through the one commit path (:class:`cfban.intake.commit.Intake`:
bantime grown from the ban history, the recidive rule), together with the file cursors (one
transaction per batch), then call the delivery thread (``_deliverer``), which drains the
outbox into Cloudflare concurrently. SIGTERM/SIGINT stop cleanly *without* unbanning (bans
stay at Cloudflare until they expire); SIGHUP reloads the configuration.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from cfban.bans import BanService
from cfban.clock import Clock, SystemClock
from cfban.cloudflare import cloudflare_status
from cfban.config import Settings
from cfban.errors import CfbanError
from cfban.intake.commit import Intake
from cfban.jail import BanDecision
from cfban.realip import GuardStats, Resolver, load_ranges
from cfban.state import Hold, StoredCursor
from cfban.tailer import Cursor, Follower, Watcher, expand_logpaths
from cfban.targets import ban_target
from cfban.watch._deliverer import Deliverer
from cfban.watch._jails import JailRuntime, build_jails
from cfban.watch._metrics import Metrics, serve_metrics
from cfban.watch._pipeline import Pipeline
from cfban.watch._status import STATUS_INTERVAL, write_status

log = logging.getLogger(__name__)

BATCH_LINES = 2_000
#: The cyclic garbage collector's young-generation threshold while the daemon runs (Python's
#: default is 700). A batch keeps a few objects per line alive at once (lines, cursors,
#: failures), so at 700 every batch set off several young collections that moved its objects
#: to the old generations, and full collections then walked the whole heap - every jail's
#: filter and counters, so the more jails, the dearer: 1.0 s of CPU over a 1,000,000-line log
#: with six jails, 0.5 s with one. Almost nothing the daemon makes is cyclic; at 50,000 the
#: collector runs a few times per million lines.
GC_THRESHOLD = 50_000
PURGE_INTERVAL = 10.0


@dataclass
class WatchOptions:
    """How ``cfban watch`` runs."""

    from_start: bool = False
    exit_idle: float | None = None
    poll: float = 1.0
    metrics_address: str | None = None
    reload: Callable[[], Settings] | None = None


@dataclass
class _File:
    follower: Follower
    jails: list[JailRuntime] = field(default_factory=list)
    caught_up: bool = False


class Daemon:
    """Runs the jails of ``settings`` until stopped."""

    def __init__(
        self,
        settings: Settings,
        options: WatchOptions | None = None,
        *,
        clock: Clock | None = None,
        service_factory: Callable[[Settings], BanService] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or WatchOptions()
        self.clock = clock or SystemClock()
        self.metrics = Metrics(now=self.clock.now)
        self.metrics.cloudflare = self._cloudflare_status  # budget, list fill, problem
        self._factory = service_factory or (
            lambda s: BanService(s, clock=self.clock, recorder="daemon")
        )
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._files: dict[Path, _File] = {}
        self._attached_once = False
        self.deliverer = Deliverer(
            self._factory, self.clock, self.metrics, poll=self.options.poll, released=self._released
        )
        self._setup(settings)

    # -- set-up -------------------------------------------------------------------------------

    def _setup(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = GuardStats()
        ranges = load_ranges(settings)
        self.pipeline = Pipeline(Resolver.from_settings(settings, ranges), self.metrics)
        self.ranges = ranges
        self.jails = build_jails(
            settings, now=self.clock.now, ranges=ranges, stats=self.stats, history=self._history
        )
        self._intake: Intake | None = None

    def _history(self, jail: str, address: str) -> int:
        """How many bans of ``address``'s target ``jail`` has started (the ban history)."""
        if self._intake is None:
            return 0
        target = ban_target(address, self.settings.cloudflare.ipv6_prefix).target
        return sum(1 for past in self._intake.earlier_bans(target, jail) if past.jail == jail)

    def _attach_files(self, cursors: dict[str, Cursor]) -> None:
        wanted: dict[Path, list[JailRuntime]] = {}
        expanded: dict[tuple[str, ...], list[Path]] = {}  # jails on one file name it alike
        for jail in self.jails:
            paths = expanded.get(jail.logpaths)
            if paths is None:
                paths = expanded[jail.logpaths] = expand_logpaths(jail.logpaths)
            for path in paths:
                wanted.setdefault(path, []).append(jail)
        for path, jails in wanted.items():
            entry = self._files.get(path)
            if entry is None:
                cursor = cursors.get(str(path))
                # A file that appears while running is new: read it whole.
                from_start = self.options.from_start or self._attached_once
                follower = Follower(path, cursor, from_start=from_start)
                entry = self._files[path] = _File(follower)
                log.info("following %s for %s", path, ", ".join(j.name for j in jails))
            entry.jails = jails
        for path in set(self._files) - set(wanted):
            self._files.pop(path).follower.close()
        self._attached_once = True

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop (bans stay at Cloudflare)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Ask the daemon to reload its configuration."""
        self._reload.set()

    def install_signal_handlers(self) -> None:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping (bans stay at Cloudflare until they expire)", signum)
            self.stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Follow, match, decide and deliver until stopped (or idle, with ``exit_idle``).

        Raises:
            StateError: the state database cannot be used.
        """
        service = self._factory(self.settings)
        server = None
        if self.options.metrics_address:
            server = serve_metrics(self.options.metrics_address, self.metrics.prometheus)
        watcher: Watcher | None = None
        self._intake = self._make_intake(service)
        thresholds = gc.get_threshold()
        gc.set_threshold(max(GC_THRESHOLD, thresholds[0]), *thresholds[1:])
        try:
            service.refresh_allowlist()  # before the first line is read
            cursors = service.store.cursors()
            self._attach_files({path: Cursor(*stored) for path, stored in cursors.items()})
            watcher = Watcher({p.parent for j in self.jails for p in map(Path, j.logpaths)})
            self.deliverer.start(self.settings)
            self._loop(service, watcher)
        finally:
            self._stop.set()
            if watcher is not None:
                watcher.stop()
            self.deliverer.stop()
            self._write_status(service, stopped=True)
            if server is not None:
                server.shutdown()
                server.server_close()
            for entry in self._files.values():
                entry.follower.close()
            service.close()
            gc.set_threshold(*thresholds)

    def _make_intake(self, service: BanService) -> Intake:
        """The commit path for the daemon's decisions, with the guards' ranges and stats."""
        return Intake(service.rules, service.store, ranges=self.ranges, stats=self.stats)

    def _loop(self, service: BanService, watcher: Watcher) -> None:
        last_status = last_purge = last_line = self.clock.monotonic()
        while not self._stop.is_set():
            if self._reload.is_set():
                self._do_reload(service)
            read = self._read_all(service)
            now = self.clock.monotonic()
            if read:
                last_line = now
            if now - last_purge >= PURGE_INTERVAL:
                # Purging judges silence by the wall clock; while a backlog is read its
                # failures carry their (older) log times and would be forgotten mid-count.
                if all(entry.caught_up for entry in self._files.values()):
                    for jail in self.jails:
                        jail.counter.purge()
                last_purge = now
                warning = self.stats.edge_warning()
                if warning:
                    log.warning("%s", warning)
            if now - last_status >= STATUS_INTERVAL:
                self._write_status(service)
                last_status = now
            idle = self.options.exit_idle
            if idle is not None and now - last_line >= idle and self._queue_empty(service):
                log.info("no new lines for %.0f s and nothing queued: exiting", idle)
                return
            if not read:
                self.deliverer.call_held()  # the backlog may have ended on a full batch
                watcher.wait(self.options.poll)

    def _queue_empty(self, service: BanService) -> bool:
        depth = service.queue_depth()
        return depth.get("add", 0) + depth.get("remove", 0) == 0 or self.settings.dry_run

    def _do_reload(self, service: BanService) -> None:
        self._reload.clear()
        if self.options.reload is None:
            return
        try:
            self._setup(self.options.reload())
        except CfbanError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        self._intake = Intake(
            self.settings.rules(), service.store, ranges=self.ranges, stats=self.stats
        )
        self._attach_files({})
        log.info("configuration reloaded: %d jail(s)", len(self.jails))

    def _read_all(self, service: BanService) -> int:
        total = 0
        self._attach_files({})  # globs may name new files
        for path, entry in list(self._files.items()):
            follower = entry.follower
            rotations = follower.rotations
            lines = follower.read(BATCH_LINES)
            self.metrics.rotations += follower.rotations - rotations
            if not lines:
                entry.caught_up = True
                continue
            live = entry.caught_up
            if len(lines) < BATCH_LINES:
                entry.caught_up = True
            holds: list[Hold] = []
            self.metrics.lines += len(lines)
            batch = [line.data for line in lines]
            # one pass over the batch for all the jails on this file
            for decided in self.pipeline.process_lines(
                entry.jails, batch, live=live, source=str(path)
            ):
                hold = self._hold(decided.decision)
                if hold is not None:
                    holds.append(hold)
                    self.metrics.bans[decided.jail] += 1
            end = lines[-1].cursor
            queued = self._commit(holds, {str(path): (end.inode, end.offset, end.head)})
            for hold in holds:
                seen = "" if hold.target == hold.address else f" (seen as {hold.address})"
                log.info("ban %s%s by jail %s", hold.target, seen, hold.jail)
            self.deliverer.call(queued=bool(queued), urgent=entry.caught_up)
            total += len(lines)
        return total

    def _hold(self, decision: BanDecision) -> Hold | None:
        """The hold the one commit path plans for a jail's decision (None: none to commit)."""
        assert self._intake is not None
        try:
            hold, _seconds = self._intake.plan(
                decision.address, decision.jail, decision.bantime, start=decision.time
            )
        except CfbanError as exc:  # the pipeline's guard refused it already; be safe
            log.warning("jail %s: not banning %s: %s", decision.jail, decision.address, exc)
            return None
        if hold.expires_at is not None and hold.expires_at <= self.clock.now():
            return None  # a ban from an old log line that would already have ended
        return hold

    def _commit(self, holds: list[Hold], cursors: dict[str, StoredCursor]) -> list[str]:
        assert self._intake is not None
        return self._intake.commit(holds, cursors)

    def _released(self, target: str) -> None:
        """A removal was delivered: every jail counts ``target`` afresh."""
        for jail in self.jails:
            jail.counter.release(target)

    # -- status -------------------------------------------------------------------------------

    def _cloudflare_status(self) -> dict[str, Any]:
        return cloudflare_status(self.settings, self.settings.resolved_state_dir, self.clock)

    def _write_status(self, service: BanService, *, stopped: bool = False) -> None:
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "updated_at": self.clock.now(),
            "stopped": stopped,
            "dry_run": self.settings.dry_run,
            "config": self.settings.source,
            "jails": {
                j.name: {"tracked": len(j.counter), "files": sorted(map(str, j.paths()))}
                for j in self.jails
            },
            "metrics": self.metrics.as_dict(),
            "oldest_queued_at": self.deliverer.oldest_queued,
            "last_error": self.deliverer.last_error,
            "cloudflare": self._cloudflare_status(),
        }
        try:
            write_status(self.settings.resolved_state_dir, data)
        except OSError as exc:
            log.warning("cannot write the status file: %s", exc)
