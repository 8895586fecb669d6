"""A request budget shared by every cfban process on the host.

Cloudflare allows 1,200 API requests per 5 minutes per user or token, and then blocks *every*
call for 5 minutes. The fail2ban hook, the daemon and people's commands may run at the same
time, so the budget lives in a small file (``state_dir/ratelimit``) rather than in a process:
a sliding log of the send times of the last requests, one 8-byte float each, read and
rewritten under an exclusive ``fcntl.flock``. A sliding log (unlike a token bucket) never lets
more than ``limit`` requests into any window of ``window`` seconds.

:meth:`HostRateLimiter.acquire` records one request, waiting on the injected clock until the
oldest logged request leaves the window when the budget is spent; ``on_wait`` hears about
each wait so callers can show progress.

When Cloudflare answers 429 (code 971) anyway, it blocks the whole account for a while: one
process calls :meth:`HostRateLimiter.pause` with the ``Retry-After`` it got, which writes the
end of the pause into ``<budget file>.pause``, and every process's next ``acquire`` waits for
it (or, with ``max_wait``, gives up at once) instead of spending requests on more 429s.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

from cfban.clock import Clock
from cfban.cloudflare._answers import RetryLaterError
from cfban.errors import StateError

log = logging.getLogger(__name__)

_ITEM = struct.Struct("<d")
_MAX_SINGLE_WAIT = 30.0


class HostRateLimiter:
    """At most ``limit`` requests per ``window`` seconds across all processes using ``path``."""

    def __init__(
        self,
        path: Path,
        *,
        limit: int,
        window: float,
        clock: Clock,
        on_wait: Callable[[float], None] | None = None,
        max_wait: float | None = None,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.path = path
        self.limit = limit
        self.window = window
        self._clock = clock
        self.on_wait = on_wait
        self.max_wait = max_wait
        self.waited = 0.0
        self.last_taken: float | None = None

    def __repr__(self) -> str:
        return f"HostRateLimiter({str(self.path)!r}, {self.limit}/{self.window:g}s)"

    def acquire(self) -> float:
        """Take one request slot, waiting until one is free; return the seconds waited.

        Raises:
            StateError: the budget file cannot be created or written.
            RetryLaterError: the wait would exceed ``max_wait``; callers that must return
                fast (the fail2ban hook) leave the work for later.
        """
        waited = 0.0
        while True:
            wait = self.paused_for() or self._try_take()
            if wait <= 0:
                self.waited += waited
                return waited
            if self.max_wait is not None and waited + wait > self.max_wait:
                raise RetryLaterError(
                    f"cfban's request budget ({self.limit} per {self.window:g} s, shared by "
                    f"every cfban process on this host) is spent for {wait:.0f} more s",
                    retry_after=wait,
                    hint="the work stays queued and is sent when the budget allows",
                )
            wait = min(wait, _MAX_SINGLE_WAIT)
            if self.on_wait is not None:
                self.on_wait(wait)
            log.info(
                "request budget spent (%d per %g s); waiting %.1f s", self.limit, self.window, wait
            )
            self._clock.sleep(wait)
            waited += wait

    @property
    def pause_path(self) -> Path:
        return self.path.with_name(self.path.name + ".pause")

    def pause(self, seconds: float) -> None:
        """Hold every process's requests for ``seconds`` (Cloudflare said so: a 429).

        Raises:
            StateError: the pause file cannot be written.
        """
        until = self._clock.now() + max(0.0, seconds)
        try:
            current = float(self.pause_path.read_text(encoding="ascii") or 0)
        except (OSError, ValueError):
            current = 0.0
        if until <= current:
            return
        tmp = self.pause_path.with_name(f"{self.pause_path.name}.{os.getpid()}")
        try:
            tmp.write_text(repr(until), encoding="ascii")
            os.replace(tmp, self.pause_path)
        except OSError as exc:
            raise StateError(f"cannot write {self.pause_path}: {exc.strerror}") from None
        log.warning("Cloudflare asked for a pause: no request from this host for %.0f s", seconds)

    def paused_for(self) -> float:
        """Seconds left of a pause Cloudflare asked for (0 when none)."""
        try:
            until = float(self.pause_path.read_text(encoding="ascii") or 0)
        except (OSError, ValueError):
            return 0.0
        return max(0.0, until - self._clock.now())

    def left(self) -> int:
        """Requests still allowed within the current window."""
        return max(0, self.limit - self.used())

    def used(self) -> int:
        """How many requests the log holds within the current window."""
        now = self._clock.now()
        with self._locked() as fd:
            return len(self._live(self._read(fd), now))

    def _try_take(self) -> float:
        """Record a request and return 0, or return how long until a slot frees up."""
        now = self._clock.now()
        with self._locked() as fd:
            times = self._live(self._read(fd), now)
            if len(times) < self.limit:
                times.append(now)
                self._write(fd, times)
                self.last_taken = now
                return 0.0
            # The oldest entries must leave the window before one more request fits.
            return times[len(times) - self.limit] + self.window - now

    def _live(self, times: list[float], now: float) -> list[float]:
        # A clock set back must not block for the size of the jump: clamp future entries.
        return sorted(min(t, now) for t in times if t > now - self.window)

    def _locked(self) -> _LockedFile:
        return _LockedFile(self.path)

    @staticmethod
    def _read(fd: int) -> list[float]:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        data = b"".join(chunks)
        usable = len(data) - len(data) % _ITEM.size
        return [value for (value,) in _ITEM.iter_unpack(data[:usable])]

    @staticmethod
    def _write(fd: int, times: list[float]) -> None:
        data = b"".join(_ITEM.pack(t) for t in times)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.ftruncate(fd, len(data))


class _LockedFile:
    """The budget file, opened and exclusively locked for the duration of a ``with``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> int:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            if self._fd >= 0:
                os.close(self._fd)
            raise StateError(
                f"cannot use the request budget file {self._path}: {exc.strerror}",
                hint="check that state_dir exists and cfban may write to it",
            ) from None
        return self._fd

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
