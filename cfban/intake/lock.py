"""The one file-lock class of cfban: a non-blocking ``flock`` on a file in the state dir.

Two locks use it, for two different spans of time:

* the **delivery lock** ``STATE_DIR/deliver.lock``, held for one delivery round, so that
  only one process sends to Cloudflare at a time (the outbox's draining);
* the **deliverer lock** ``STATE_DIR/spool/.deliverer.lock``, held for the whole life of a
  background ``cfban deliver --linger``, so that one deliverer runs per state directory and a
  hook can tell whether it must start one.

Standard library only (the hook's fast path imports it). fail2ban's Python action
(``jails/action.d/cfban.py``) probes the deliverer lock with its own few lines, since it
cannot import cfban.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Protocol

SPOOL_DIR = "spool"
DELIVERER_LOCK = ".deliverer.lock"
DELIVERY_LOCK = "deliver.lock"
POLL = 0.05


class _Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class FileLock:
    """A non-blocking exclusive ``flock`` on ``path`` (closing the file drops it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, clock: _Clock | None = None, wait: float = 0.0) -> bool:
        """Take the lock, polling for up to ``wait`` seconds on ``clock`` while another
        process holds it; False when it is still held then."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        give_up = clock.monotonic() + wait if clock is not None else None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if clock is None or give_up is None or clock.monotonic() >= give_up:
                    os.close(fd)
                    return False
                clock.sleep(POLL)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock now (a probe: takes and lets go)."""
        if not self.acquire():
            return True
        self.release()
        return False

    def __enter__(self) -> FileLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def deliverer_lock(state_dir: Path) -> FileLock:
    """The lock a background deliverer holds while it runs (creates ``spool/``)."""
    directory = state_dir / SPOOL_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return FileLock(directory / DELIVERER_LOCK)


def delivery_lock(state_dir: Path) -> FileLock:
    """The lock one delivery round holds."""
    return FileLock(state_dir / DELIVERY_LOCK)
