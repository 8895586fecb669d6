"""Log lines through jails: filter, real-IP resolution, guards, counting. No I/O.

:meth:`Pipeline.process_lines` takes a batch of one file's lines and all the jails on that
file: one pass finds every jail's failures (``_scan``), then each failure is resolved to its
client once per line (jails that match the same line share it), checked by the jail's guard
and counted. :meth:`Pipeline.process` is the same for one line and one jail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cfban.errors import CfbanError, RefusedError
from cfban.fail2ban import Failure
from cfban.jail import BanDecision
from cfban.realip import BanGuard, Resolution, Resolver
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
        self._allowed: set[tuple[BanGuard, str]] = set()

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
        # Offenders recur: resolve each (address, groups) once and let each client through each
        # jail's guard once (refusals are checked and counted every time, as before). The
        # answers are fixed for the life of the resolver and of each guard (a reload makes new
        # ones: a new pipeline, new jails), so the caches only need a bound.
        resolved, allowed = self._resolved, self._allowed
        if len(resolved) > CACHE_LIMIT:
            resolved.clear()
        if len(allowed) > CACHE_LIMIT:
            allowed.clear()
        for item in found:
            jail = jails[item.jail]
            try:
                for failure in item.failures:
                    key = (failure.host, tuple(sorted(failure.groups.items())))
                    resolution = resolved.get(key)
                    if resolution is None:
                        resolution = resolved[key] = self.resolver.resolve(
                            failure.host, failure.groups
                        )
                    decided.extend(
                        self._count(jail, failure, resolution, live=live, allowed=allowed)
                    )
            except CfbanError as exc:
                self._bad_line(source, lines_before(lines, item.at), str(exc))
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
        for failure in found[1]:
            resolution = self.resolver.resolve(failure.host, failure.groups)
            decided.extend(self._count(jail, failure, resolution, live=live))
        return decided

    def _count(
        self,
        jail: JailRuntime,
        failure: Failure,
        resolution: Resolution,
        *,
        live: bool,
        allowed: set[tuple[BanGuard, str]] | None = None,
    ) -> list[Decided]:
        """Count one resolved failure in ``jail``: the ban it decides, if any.

        ``allowed``: (guard, client) pairs the guard already let through.
        """
        if resolution.direct_origin_access:
            self.metrics.direct_origin += 1
        if resolution.warning:
            self._warn_once(resolution.warning, key=resolution.warning_key)
        client = resolution.client
        if client is None:
            return []
        known = (jail.guard, client)
        if allowed is None or known not in allowed:
            try:
                jail.guard.check(client)
            except RefusedError as exc:
                reason = getattr(exc, "reason", "refused")
                self.metrics.refused[str(reason)] += 1
                self._warn_once(f"jail {jail.name}: {exc}", key=f"{jail.name}:{client}")
                return []
            if allowed is not None:
                allowed.add(known)
        self.metrics.failures[jail.name] += 1
        when = jail.counter.failure_time(failure.time, live=live)
        decision = jail.counter.add_failure(client, when)
        return [Decided(decision, jail.name)] if decision is not None else []

    def _warn_once(self, message: str, *, key: str | None = None) -> None:
        key = key or message
        if key in self._warned:
            return
        if len(self._warned) > 10_000:
            self._warned.clear()
        self._warned.add(key)
        log.warning("%s", message)
