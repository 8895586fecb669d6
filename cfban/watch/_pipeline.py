"""Log lines through jails: filter, real-IP resolution, guards, counting. No I/O.

:meth:`Pipeline.process_lines` takes a batch of one file's lines and all the jails on that
file: one pass finds every jail's failures (``_scan``), then each failure is resolved to its
client (remembered per address and groups, shared by the jails), checked by the jail's guard
(its answer remembered per client) and counted. :meth:`Pipeline.process` is the same for one
line and one jail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cfban.errors import CfbanError, GuardRefusal
from cfban.fail2ban import Failure
from cfban.jail import BanDecision
from cfban.realip import Resolution, Resolver
from cfban.watch._jails import JailRuntime
from cfban.watch._metrics import Metrics
from cfban.watch._scan import BatchScanner

log = logging.getLogger(__name__)

#: The most resolutions and guard answers kept (then forgotten at once).
CACHE_LIMIT = 65_536


def lines_before(lines: Sequence[bytes], at: int) -> int:
    """The index of the line that starts at offset ``at`` of ``lines`` joined by line ends."""
    offset = 0
    for index, raw in enumerate(lines):
        if offset >= at:
            return index
        offset += len(raw) + 1
    return len(lines)


@dataclass(frozen=True)
class Decided:
    """A ban decided by a jail from a line."""

    decision: BanDecision
    jail: str


class Pipeline:
    """Runs lines through jails and counts what happens."""

    def __init__(self, resolver: Resolver, metrics: Metrics) -> None:
        self.resolver = resolver
        self.metrics = metrics
        self._warned: set[str] = set()
        self.scanner = BatchScanner()
        self._resolved: dict[tuple[str | None, tuple[tuple[str, str], ...]], Resolution] = {}
        #: each guard's answer about each client: ``None`` (may be banned) or its refusal,
        #: by the guard's ``answers`` number (equal guards answer alike)
        self._verdicts: dict[tuple[int, str], GuardRefusal | None] = {}

    def process_lines(
        self, jails: Sequence[JailRuntime], lines: Sequence[bytes], *, live: bool, source: str
    ) -> list[Decided]:
        """The bans a batch of raw lines of one file (``source``) decides in ``jails``.

        A line that cannot be processed is counted in ``metrics.bad_lines``, logged and
        skipped; the other lines go on.
        """
        found = self.scanner.scan([jail.matcher for jail in jails], lines)
        for index, message in self.scanner.bad_lines:
            self._bad_line(source, index, message)
        decided: list[Decided] = []
        for at, position, failures in found:
            try:
                self._count(jails[position], failures, live, decided)
            except CfbanError as exc:
                self._bad_line(source, lines_before(lines, at), str(exc))
        return decided

    def _bad_line(self, source: str, index: int, message: str) -> None:
        self.metrics.bad_lines += 1
        log.warning("%s: a line could not be processed: %s", source, message)

    def process(self, jail: JailRuntime, raw: bytes, *, live: bool) -> list[Decided]:
        """The bans the raw log line ``raw`` decides in ``jail`` (usually none)."""
        found = jail.matcher.feed_raw(raw)
        if found is None:
            return []  # ruled out by the filter's prefilter: cannot be a failure
        decided: list[Decided] = []
        self._count(jail, found[1], live, decided)
        return decided

    def _count(
        self, jail: JailRuntime, found: Sequence[Failure], live: bool, decided: list[Decided]
    ) -> None:
        """Resolve, guard and count the failures ``jail`` found on one line; add the bans
        they decide to ``decided``.

        Offenders recur: each (address, groups) is resolved once, and each client asked
        about once per distinct guard - jails whose guards protect the same addresses share
        the answer (refusals are still counted every time, per jail). The answers are fixed
        for the life of the resolver and of each guard (a reload makes new ones: a new
        pipeline, new jails), so the caches only need a bound.
        """
        resolved, verdicts = self._resolved, self._verdicts
        if len(resolved) > CACHE_LIMIT:
            resolved.clear()
        if len(verdicts) > CACHE_LIMIT:
            verdicts.clear()
        guard, counter, name = jail.guard, jail.counter, jail.name
        for failure in found:
            # the groups in their order: the same mapping gives the same resolution
            key = (failure.host, tuple(failure.groups.items()))
            resolution = resolved.get(key)
            if resolution is None:
                resolution = resolved[key] = self.resolver.resolve(failure.host, failure.groups)
            client = resolution.client
            if resolution.warning or resolution.direct_origin_access or client is None:
                self._note(resolution)
                if client is None:
                    continue
            asked = (guard.answers, client)  # jails with equal guards ask once
            if asked in verdicts:
                verdict = verdicts[asked]
            else:
                verdict = verdicts[asked] = guard.refusal(client)
            if verdict is not None:
                self._refused(jail, client, verdict)
                continue
            self.metrics.failures[name] += 1
            when = counter.failure_time(failure.time, live=live)
            decision = counter.add_failure(client, when)
            if decision is not None:
                decided.append(Decided(decision, name))

    def _note(self, resolution: Resolution) -> None:
        """Count a direct access to the origin, and warn (once) about what is off."""
        if resolution.direct_origin_access:
            self.metrics.direct_origin += 1
        if resolution.warning:
            self._warn_once(resolution.warning, key=resolution.warning_key)

    def _refused(self, jail: JailRuntime, client: str, refusal: GuardRefusal) -> None:
        """Count a ban ``jail``'s guard refuses (as ``BanGuard.check`` counts it), and warn
        once per jail and client. The refusal is not raised: a raised exception's traceback
        would keep the batch's frame, and so the whole batch, alive until the cyclic
        garbage collector found it."""
        jail.guard.stats.record(refusal.reason)
        self.metrics.refused[refusal.reason] += 1
        self._warn_once(f"jail {jail.name}: {refusal}", key=f"{jail.name}:{client}")

    def _warn_once(self, message: str, *, key: str | None = None) -> None:
        key = key or message
        if key in self._warned:
            return
        if len(self._warned) > 10_000:
            self._warned.clear()
        self._warned.add(key)
        log.warning("%s", message)
