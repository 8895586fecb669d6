"""A jail: counts failures per address and decides bans. Pure logic, no I/O, clock injected.

Counting follows fail2ban (see ``docs/counting.md``): each address keeps a *decaying* retry
counter rather than a strict sliding window. When a failure arrives more than ``findtime``
after the first one counted, the counter is rescaled as a rate over one ``findtime``
(``retry = round(retry / (t - first) * findtime)``) and the window start moves to
``t - findtime``; a ban is decided when ``retry >= maxretry``. An address silent for a whole
``findtime`` is forgotten (:meth:`Jail.purge`, run periodically), so its count starts again.

Where cfban differs: fail2ban's outcome at the window edge depends on when its cleanup thread
last ran; cfban purges on a fixed schedule *and* on every failure of the address concerned,
so an address whose last failure is older than ``findtime`` always starts from one. The ban
starts at the time of the last failure (as fail2ban's ban end = last failure + bantime).

Repeat offenders: with ``bantime_factor > 1`` the n-th ban of an address lasts
``bantime * factor ** (n - 1)``, capped at ``bantime_maxtime``
(:func:`cfban.rules.grown`, the formula every way in uses); ``previous_bans`` says how
many bans the address had (the daemon reads them from the state's ban history, so growth
survives restarts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cfban.rules import grown, grows

#: A log time further than this from "now" is replaced by now while tailing live (fail2ban's rule).
LIVE_SKEW = 60.0


@dataclass(frozen=True)
class BanDecision:
    """A ban the jail decided."""

    address: str
    jail: str
    time: float
    bantime: int
    failures: int
    #: The ban's number among the address's bans in this jail when the bantime grows with
    #: it (``bantime_factor`` above 1); 1 otherwise (the history is not looked up).
    ban_count: int

    @property
    def expires_at(self) -> float | None:
        """When the ban ends; ``None`` for a permanent ban (``bantime = -1``)."""
        return None if self.bantime < 0 else self.time + self.bantime


class _Record:
    __slots__ = ("first", "last", "retry", "failures")

    def __init__(self, when: float) -> None:
        self.first = when
        self.last = when
        self.retry = 1
        self.failures = 1


class Jail:
    """Failure counting and ban decisions for one jail."""

    def __init__(
        self,
        name: str,
        *,
        maxretry: int,
        findtime: int,
        bantime: int,
        now: Callable[[], float],
        bantime_factor: float = 1.0,
        bantime_maxtime: int | None = None,
        previous_bans: Callable[[str], int] | None = None,
    ) -> None:
        if maxretry < 1:
            raise ValueError("maxretry must be at least 1")
        self.name = name
        self.maxretry = maxretry
        self.findtime = max(1, findtime)
        self.bantime = bantime
        self.bantime_factor = bantime_factor
        self.bantime_maxtime = bantime_maxtime
        self._now = now
        self._previous_bans = previous_bans or (lambda _address: 0)
        self._records: dict[str, _Record] = {}
        self._banned_until: dict[str, float] = {}

    def __len__(self) -> int:
        """How many addresses currently have failures counted."""
        return len(self._records)

    def failure_time(self, when: float | None, *, live: bool) -> float:
        """The time a failure counts at: the log's time, or now when tailing live and the
        log's time is missing or more than :data:`LIVE_SKEW` seconds away from now."""
        now = self._now()
        if when is None or (live and abs(when - now) > LIVE_SKEW):
            return now
        return min(when, now)

    def add_failure(self, address: str, when: float) -> BanDecision | None:
        """Count one failure of ``address`` at ``when``; return a ban when it is decided."""
        until = self._banned_until.get(address)
        if until is not None:
            if until < 0 or when < until:
                return None  # already banned: fail2ban only extends silently
            del self._banned_until[address]
        record = self._records.get(address)
        if record is not None and record.last <= when - self.findtime:
            record = None  # silent for a whole findtime: forgotten
        if record is None:
            record = self._records[address] = _Record(when)
        else:
            if when > record.last:
                if record.first < when - self.findtime:
                    record.retry = round(record.retry / (when - record.first) * self.findtime)
                    record.first = when - self.findtime
                record.last = when
            record.retry += 1
            record.failures += 1
        if record.retry < self.maxretry:
            return None
        del self._records[address]
        return self._decide(address, record)

    def _decide(self, address: str, record: _Record) -> BanDecision:
        growing = grows(self.bantime, self.bantime_factor)
        count = self._previous_bans(address) + 1 if growing else 1  # a look-up in the state
        bantime = grown(self.bantime, self.bantime_factor, self.bantime_maxtime, count)
        decision = BanDecision(
            address=address,
            jail=self.name,
            time=record.last,
            bantime=bantime,
            failures=record.failures,
            ban_count=count,
        )
        expires = decision.expires_at
        self._banned_until[address] = -1.0 if expires is None else expires
        return decision

    def release(self, address: str) -> None:
        """Forget that ``address`` is banned (after an unban), so it counts afresh."""
        self._banned_until.pop(address, None)

    def purge(self) -> int:
        """Forget addresses silent for a whole findtime and bans that ended; return how many."""
        now = self._now()
        horizon = now - self.findtime
        stale = [a for a, r in self._records.items() if r.last <= horizon]
        for address in stale:
            del self._records[address]
        ended = [a for a, u in self._banned_until.items() if 0 <= u <= now]
        for address in ended:
            del self._banned_until[address]
        return len(stale)
