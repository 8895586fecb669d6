"""List writes: one asynchronous bulk operation at a time for the whole host, polled sparingly.

Cloudflare allows one pending bulk operation per account and refuses (429) a write sent while
one runs. Every cfban process on the host writes through :class:`OperationRunner`, which holds
an exclusive ``flock`` on ``STATE_DIR/list-operation.lock`` from the write until the operation
is done, so two processes never collide. An operation whose wait was cut short (a delivery
deadline) is remembered in the mirror; whoever writes next sees it through first.

Polling: an operation is polled once at its expected completion time (learnt from the
operations before it), then with a growing pause. A strict server that finishes in half a
second costs one poll per write.

Pacing: while writes follow each other closely (a burst), the pause the next one should
wait for (:meth:`OperationRunner.pace`) doubles from :data:`MIN_GAP` up to :data:`MAX_GAP`
seconds, so a burst of any length costs a few writes; once the flow stops, it drops back.
Whoever completes an operation (the writer, or a process resuming it) records its
completion and the item count it leaves in the mirror, which keeps the mirror exact.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from cfban.clock import Clock
from cfban.cloudflare._http import CloudflareHttp
from cfban.cloudflare._mirror import ListMirror
from cfban.cloudflare._models import BulkOperation, parse
from cfban.errors import CloudflareError, StateError, TransportError

log = logging.getLogger(__name__)

LOCK_FILE = "list-operation.lock"
FULL_TEXT = "maximum number of items"
_FIRST_POLL = 0.5  # before any operation was timed
_AFTER = (0.5, 1.0, 2.0, 4.0, 8.0)
MIN_GAP = 1.0
MAX_GAP = 5.0


class OperationFailedError(CloudflareError):
    """A bulk operation ended ``failed``: Cloudflare applied nothing of it."""


class ListFullError(OperationFailedError):
    """Cloudflare refused a write because the account's lists hold their maximum."""


class OperationRunner:
    """Sends list writes and waits for them; see the module docstring."""

    def __init__(
        self,
        http: CloudflareHttp,
        *,
        account: str,
        mirror: ListMirror,
        clock: Clock,
        lock_path: Path | None,
        poll_timeout: float,
        read_permission: str,
        edit_permission: str,
        writes_budget: Any = None,
    ) -> None:
        self._http = http
        self._account = account
        self._mirror = mirror
        self._clock = clock
        self._lock_path = lock_path
        self._poll_timeout = poll_timeout
        self._read = read_permission
        self._edit = edit_permission
        self._writes_budget = writes_budget
        self._expected = _FIRST_POLL

    def pace(self) -> float:
        """Seconds the next write should wait (see the module docstring)."""
        last = self._mirror.get("last_write_at")
        if last is None:
            return 0.0
        gap = float(self._mirror.get("write_gap") or MIN_GAP)
        return max(0.0, min(gap, float(last) + gap - self._clock.now()))

    def write(self, method: str, path: str, body: Any, *, expect: int | None) -> str | None:
        """Send one write and wait for its operation; return its ``completed`` time.

        ``expect`` is the item count the write leaves when the mirror was exact before it
        (None otherwise); it is recorded with the completion.

        Raises:
            ListFullError: the operation failed because the lists are full.
            CloudflareError: the write or the operation failed, or did not finish in time.
        """
        fd = self._lock()
        try:
            pending = self._mirror.get("pending_operation")
            if pending:
                # An earlier wait was cut short (a deadline, a crash): see it through first.
                self._wait(pending, self._clock.monotonic())
            if self._writes_budget is not None:
                self._writes_budget.acquire()
            try:
                envelope = self._http.request(method, path, json_body=body, permission=self._edit)
            except BaseException:
                self._mirror.wrote(None, None)  # it may have been applied: the mirror is unsure
                raise
            sent = self._clock.monotonic()
            result = envelope.result if isinstance(envelope.result, dict) else {}
            operation = result.get("operation_id")
            if not isinstance(operation, str) or not operation:
                raise TransportError(f"Cloudflare answered {method} {path} without an operation id")
            self._started(operation, expect)
            return self._wait(operation, sent)
        finally:
            self._unlock(fd)

    def _started(self, operation: str, expect: int | None) -> None:
        now = self._clock.now()
        last = self._mirror.get("last_write_at")
        gap = float(self._mirror.get("write_gap") or MIN_GAP)
        busy = last is not None and now - float(last) < gap + 1.5
        self._mirror.set(
            pending_operation=operation,
            pending_count=None if expect is None else str(expect),
            last_write_at=str(now),
            write_gap=str(min(MAX_GAP, gap * 2) if busy else MIN_GAP),
        )

    def _lock(self) -> int | None:
        if self._lock_path is None:
            return None
        try:
            fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise StateError(
                f"cannot lock {self._lock_path}: {exc.strerror}",
                hint="check that state_dir exists and cfban may write to it",
            ) from None
        return fd

    @staticmethod
    def _unlock(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # closing drops the flock

    def _wait(self, operation: str, sent: float) -> str | None:
        path = f"/accounts/{self._account}/rules/lists/bulk_operations/{operation}"
        delays = (self._expected, *_AFTER)
        attempt = 0
        while True:
            delay = delays[min(attempt, len(delays) - 1)]
            if attempt == 0:
                delay = max(0.0, sent + delay - self._clock.monotonic())
            elif self._clock.monotonic() - sent + delay > self._poll_timeout:
                raise CloudflareError(
                    f"list operation {operation} still not done after {self._poll_timeout:g} s",
                    hint="Cloudflare is slow to apply list changes; cfban will retry later",
                )
            self._clock.sleep(delay)
            attempt += 1
            envelope = self._http.request("GET", path, permission=self._read)
            status = parse(BulkOperation, envelope.result, "a list operation")
            if status.status not in ("completed", "failed"):
                continue
            expect = self._mirror.get("pending_count")
            self._mirror.set(pending_operation=None, pending_count=None)
            if status.status == "completed":
                self._mirror.wrote(status.completed, int(expect) if expect else None)
            took = self._clock.monotonic() - sent
            # Next time, look when this one would have been done (within sane bounds).
            self._expected = min(5.0, max(0.2, took if attempt == 1 else took * 0.9))
            if status.status == "completed":
                return status.completed
            error = status.error or "operation failed"
            if FULL_TEXT in error.lower():
                raise ListFullError(
                    f"the account's IP lists are full: {error}",
                    hint="see [cloudflare] on_full; remove stale entries with cfban sync",
                )
            raise OperationFailedError(
                f"Cloudflare could not change the list: {error}",
                hint="cfban will retry; check the list in the dashboard if it persists",
            )
