"""The lock a background deliverer holds: ``STATE_DIR/spool/.deliverer.lock``.

Standard library only (the hook's fast path imports it). fail2ban's Python action
(``jails/action.d/cfban.py``) probes the same file with its own few lines, since it cannot
import cfban.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

SPOOL_DIR = "spool"
LOCK_NAME = ".deliverer.lock"


class DelivererLock:
    """A non-blocking ``flock`` on the deliverer's lock file in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        directory = state_dir / SPOOL_DIR
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
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
