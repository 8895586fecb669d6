"""Failure counting and ban decisions, against fail2ban's worked examples."""

from __future__ import annotations

import pytest

from cfban.clock import FakeClock
from cfban.jail import Jail


def _jail(clock: FakeClock, **kw: int | float) -> Jail:
    args: dict[str, int | float] = {"maxretry": 3, "findtime": 600, "bantime": 600}
    args.update(kw)
    return Jail("test", now=clock.now, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("times", "maxretry", "banned"),
    [
        ([0, 500, 1000], 3, False),  # retry 1, 2, 2: no ban
        ([0, 100, 200, 700], 4, True),  # decaying counter bans where a window would not
        ([0, 599], 2, True),
        ([0, 601], 2, False),  # silent for a whole findtime: forgotten
    ],
)
def test_fail2ban_worked_examples(times: list[int], maxretry: int, banned: bool) -> None:
    clock = FakeClock(start=0)
    jail = _jail(clock, maxretry=maxretry)
    decisions = []
    for t in times:
        clock.advance(t - clock.now())
        decisions.append(jail.add_failure("198.51.100.1", float(t)))
    assert (decisions[-1] is not None) is banned
    assert all(d is None for d in decisions[:-1])


def test_ban_starts_at_last_failure_and_blocks_recount() -> None:
    clock = FakeClock(start=1000)
    jail = _jail(clock, maxretry=2, bantime=60)
    assert jail.add_failure("a", 1000.0) is None
    decision = jail.add_failure("a", 1010.0)
    assert decision is not None
    assert decision.expires_at == 1070.0
    assert decision.failures == 2
    assert len(jail) == 0
    assert jail.add_failure("a", 1020.0) is None  # already banned
    assert jail.add_failure("a", 1021.0) is None
    clock.advance(100)
    jail.purge()
    assert jail.add_failure("a", 1100.0) is None  # counting again after the ban ended
    assert jail.add_failure("a", 1101.0) is not None


def test_permanent_ban() -> None:
    clock = FakeClock(start=0)
    jail = _jail(clock, maxretry=1, bantime=-1)
    decision = jail.add_failure("a", 0.0)
    assert decision is not None and decision.expires_at is None
    clock.advance(10**9)
    jail.purge()
    assert jail.add_failure("a", clock.now()) is None


def test_repeat_offenders_ban_longer_up_to_the_cap() -> None:
    clock = FakeClock(start=0)
    history = {"a": 0}
    jail = Jail(
        "t", maxretry=1, findtime=600, bantime=100, now=clock.now,
        bantime_factor=2.0, bantime_maxtime=350, previous_bans=lambda a: history[a],
    )  # fmt: skip
    times = []
    for _ in range(4):
        decision = jail.add_failure("a", clock.now())
        assert decision is not None
        times.append(decision.bantime)
        history["a"] += 1
        jail.release("a")
    assert times == [100, 200, 350, 350]


def test_live_time_skew_uses_now() -> None:
    clock = FakeClock(start=10_000)
    jail = _jail(clock)
    assert jail.failure_time(10_000 - 30, live=True) == 10_000 - 30
    assert jail.failure_time(10_000 - 3600, live=True) == 10_000
    assert jail.failure_time(10_000 - 3600, live=False) == 10_000 - 3600
    assert jail.failure_time(None, live=False) == 10_000
    assert jail.failure_time(10_000 + 5, live=False) == 10_000


def test_purge_forgets_silent_addresses() -> None:
    clock = FakeClock(start=0)
    jail = _jail(clock)
    jail.add_failure("a", 0.0)
    jail.add_failure("b", 500.0)
    clock.advance(700)
    assert jail.purge() == 1
    assert len(jail) == 1
