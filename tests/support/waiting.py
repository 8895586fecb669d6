"""Waiting for a condition in tests, always bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], timeout: float = 15.0, poll: float = 0.05) -> None:
    """Return once ``check()`` is true; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(poll)
    if not check():
        raise AssertionError(f"condition not reached within {timeout:g} s")
