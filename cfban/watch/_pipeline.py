"""One log line through a jail: filter, real-IP resolution, guards, counting. No I/O."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cfban.errors import RefusedError
from cfban.jail import BanDecision
from cfban.realip import Resolver
from cfban.watch._jails import JailRuntime
from cfban.watch._metrics import Metrics

log = logging.getLogger(__name__)


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

    def process(self, jail: JailRuntime, raw: bytes, *, live: bool) -> list[Decided]:
        """The bans the raw log line ``raw`` decides in ``jail`` (usually none)."""
        found = jail.matcher.feed_raw(raw)
        if found is None:
            return []  # ruled out by the filter's prefilter: cannot be a failure
        decided: list[Decided] = []
        for failure in found[1]:
            resolution = self.resolver.resolve(failure.host, failure.groups)
            if resolution.direct_origin_access:
                self.metrics.direct_origin += 1
            if resolution.warning:
                self._warn_once(resolution.warning, key=resolution.warning_key)
            client = resolution.client
            if client is None:
                continue
            try:
                jail.guard.check(client)
            except RefusedError as exc:
                reason = getattr(exc, "reason", "refused")
                self.metrics.refused[str(reason)] += 1
                self._warn_once(f"jail {jail.name}: {exc}", key=f"{jail.name}:{client}")
                continue
            self.metrics.failures[jail.name] += 1
            when = jail.counter.failure_time(failure.time, live=live)
            decision = jail.counter.add_failure(client, when)
            if decision is not None:
                decided.append(Decided(decision, jail.name))
        return decided

    def _warn_once(self, message: str, *, key: str | None = None) -> None:
        key = key or message
        if key in self._warned:
            return
        if len(self._warned) > 10_000:
            self._warned.clear()
        self._warned.add(key)
        log.warning("%s", message)
