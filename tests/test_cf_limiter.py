"""The host-wide request budget: sliding window, waiting on the clock, shared by processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cfban.clock import FakeClock
from cfban.cloudflare import HostRateLimiter
from cfban.errors import RateLimitedError, StateError


def test_waits_once_the_budget_is_spent(tmp_path: Path) -> None:
    clock = FakeClock()
    waits: list[float] = []
    limiter = HostRateLimiter(
        tmp_path / "ratelimit", limit=3, window=10, clock=clock, on_wait=waits.append
    )
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.used() == 3
    assert limiter.acquire() == 10.0
    assert waits == [10.0]
    assert clock.monotonic() == 10.0
    assert limiter.used() == 1  # the first three left the window


def test_max_wait_turns_a_long_wait_into_an_error(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(tmp_path / "ratelimit", limit=1, window=300, clock=clock, max_wait=3)
    limiter.acquire()
    with pytest.raises(RateLimitedError, match="every cfban process on this host") as info:
        limiter.acquire()
    assert getattr(info.value, "retry_after", None) == 300.0
    assert clock.monotonic() == 0.0


def test_sliding_window_frees_slots_as_they_age(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(tmp_path / "ratelimit", limit=2, window=10, clock=clock)
    limiter.acquire()
    clock.advance(6)
    limiter.acquire()
    assert limiter.acquire() == 4.0  # the first request leaves the window at t=10
    assert limiter.acquire() == 6.0  # the second at t=16


def test_budget_is_shared_through_the_file(tmp_path: Path) -> None:
    clock = FakeClock()
    one = HostRateLimiter(tmp_path / "ratelimit", limit=2, window=60, clock=clock)
    two = HostRateLimiter(tmp_path / "ratelimit", limit=2, window=60, clock=clock)
    one.acquire()
    two.acquire()
    assert one.acquire() == 60.0


def test_corrupt_file_and_clock_set_back(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit"
    path.write_bytes(b"\x00garbage")
    clock = FakeClock(start=1_000_000.0)
    limiter = HostRateLimiter(path, limit=2, window=60, clock=clock)
    assert limiter.acquire() == 0.0
    later = HostRateLimiter(path, limit=2, window=60, clock=FakeClock(start=1_000_000.0 + 86400))
    later.acquire()
    earlier = FakeClock(start=1_000_000.0 - 86400)  # the wall clock jumped back a day
    back = HostRateLimiter(path, limit=2, window=60, clock=earlier)
    assert back.acquire() <= 60.0  # waits a window at most, not a day


def test_unusable_state_dir_is_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    limiter = HostRateLimiter(blocker / "ratelimit", limit=1, window=1, clock=FakeClock())
    with pytest.raises(StateError, match="state_dir"):
        limiter.acquire()


_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cfban.clock import SystemClock
    from cfban.cloudflare import HostRateLimiter

    clock = SystemClock()
    limiter = HostRateLimiter(Path(sys.argv[1]), limit=5, window=1.0, clock=clock)
    for _ in range(int(sys.argv[2])):
        limiter.acquire()
        print(repr(limiter.last_taken), flush=True)
    """
)


def test_two_processes_share_one_budget(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), "6"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=30)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers)
    times = sorted(float(line) for out in outputs for line in out.split())
    assert len(times) == 12
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0) <= 5
    assert times[-1] - times[0] >= 2.0  # 12 requests at 5 per second need two full windows
