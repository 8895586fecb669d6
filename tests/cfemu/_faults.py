"""Fault injection: what goes wrong, for which requests, and when.

A :class:`Fault` is one failure. A :class:`FaultPlan` holds rules; each rule targets requests by
method and path pattern (see ``_log``) and supplies faults either as an exact sequence (one entry
per matching request, ``None`` meaning "answer normally") or at random with a probability from a
seeded RNG. The first rule that yields a fault wins.

Edge faults (``error_json``, ``error_html``, ``rate_limit_json``, ``rate_limit_html``, ``drop``,
``timeout``) answer before the API logic runs, so they never change state. ``slow`` answers
normally after a delay. ``applied_then_dropped`` runs the API logic (the write lands) and then
closes the connection without answering — real life does this, and a client must cope with it.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._log import path_matches

FaultKind = Literal[
    "error_json",
    "error_html",
    "rate_limit_json",
    "rate_limit_html",
    "slow",
    "drop",
    "timeout",
    "applied_then_dropped",
]
EDGE_KINDS = frozenset(
    {"error_json", "error_html", "rate_limit_json", "rate_limit_html", "drop", "timeout"}
)


@dataclass(frozen=True)
class Fault:
    """One injected failure. Build it with the class methods."""

    kind: FaultKind
    status: int = 500
    retry_after: int | None = None
    delay: float = 0.0

    @classmethod
    def server_error(cls, status: int = 500, *, html: bool = False) -> Fault:
        """A 5xx answer: the JSON failure envelope, or an edge HTML page with ``html=True``."""
        return cls("error_html" if html else "error_json", status=status)

    @classmethod
    def rate_limited(cls, *, retry_after: int | None = 60, html: bool = True) -> Fault:
        """A 429 that is not caused by the counted budget: an HTML page (the edge) or the JSON
        971 body; ``retry_after=None`` leaves the ``Retry-After`` header out."""
        kind: FaultKind = "rate_limit_html" if html else "rate_limit_json"
        return cls(kind, status=429, retry_after=retry_after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally, after ``seconds`` of real time."""
        return cls("slow", delay=seconds)

    @classmethod
    def dropped(cls) -> Fault:
        """Close the connection without answering; nothing is applied."""
        return cls("drop")

    @classmethod
    def timeout(cls, seconds: float = 5.0) -> Fault:
        """Never answer: the server holds the connection ``seconds`` then closes it
        (in-process: ``httpx.ReadTimeout`` at once); nothing is applied."""
        return cls("timeout", delay=seconds)

    @classmethod
    def applied_then_dropped(cls) -> Fault:
        """Apply the request, then close the connection without answering."""
        return cls("applied_then_dropped")


@dataclass
class _Rule:
    method: str | None
    path: str | None
    sequence: deque[Fault | None] | None = None
    probability: float = 0.0
    choices: tuple[Fault, ...] = ()
    remaining: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path_matches(self.path, path)
        )


class FaultPlan:
    """The faults to inject; empty by default. Thread-safe; RNG seeded for reproducibility."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[_Rule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def seed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    def sequence(
        self,
        faults: Iterable[Fault | None],
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next matching requests get these faults in order (``None`` = answer normally);
        the rule is used up after the last entry."""
        seq: deque[Fault | None] = deque(faults)
        with self._lock:
            self._rules.append(_Rule(_upper(method), path, sequence=seq))

    def randomly(
        self,
        probability: float,
        faults: Sequence[Fault],
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
    ) -> None:
        """Each matching request gets one of ``faults`` (uniformly) with ``probability``;
        at most ``times`` faults from this rule when given."""
        if not faults or not 0.0 <= probability <= 1.0:
            raise ValueError("randomly() needs 0 <= probability <= 1 and at least one fault")
        rule = _Rule(_upper(method), path, probability=probability, choices=tuple(faults))
        rule.remaining = times
        with self._lock:
            self._rules.append(rule)

    def always(
        self, fault: Fault, *, method: str | None = None, path: str | None = None, times: int = 1
    ) -> None:
        """The next ``times`` matching requests get ``fault``."""
        self.randomly(1.0, [fault], method=method, path=path, times=times)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pick(self, method: str, path: str) -> Fault | None:
        """The fault for this request, consuming it from its rule."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.sequence is not None:
                    if not rule.sequence:
                        continue
                    return rule.sequence.popleft()
                if rule.remaining == 0:
                    continue
                if self._rng.random() < rule.probability:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return self._rng.choice(rule.choices)
            return None


def _upper(method: str | None) -> str | None:
    return method.upper() if method else None
