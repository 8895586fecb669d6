"""Following log files: complete lines only, exactly once, across rotation and restarts.

A :class:`Follower` reads one path. Its :class:`Cursor` (inode, offset of the next unread
byte, hash of the first line) is what the daemon stores with the effects of the lines it read,
so a restart resumes exactly where processing stopped. Rotation is recognised the way
fail2ban does it — a new inode at the path, a file shorter than the cursor, or a different
first line — and handled without losing lines:

* rename + create, delete + recreate: the old file stays open and is read to its end before
  the new file is read from its start;
* copytruncate: the file shrinks under the cursor; reading restarts at 0.

A partial last line (no newline yet) waits for its newline. :class:`Watcher` wakes the reader
on inotify events (watchdog) and falls back to polling.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Bytes hashed from the start of a file to recognise it (fail2ban hashes the first line).
HEAD_BYTES = 256
#: A longer line is cut here; the rest is skipped up to its newline.
MAX_LINE = 64 * 1024
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Cursor:
    """Where reading of one file stands."""

    inode: int
    offset: int
    head: str


def _head_hash(handle: int) -> str:
    """Hash of the first line (at most :data:`HEAD_BYTES`); ``""`` while it is incomplete."""
    data = os.pread(handle, HEAD_BYTES, 0)
    newline = data.find(b"\n")
    if newline >= 0:
        data = data[: newline + 1]
    elif len(data) < HEAD_BYTES:
        return ""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Line:
    """One complete line read from a file, and the cursor just after it."""

    data: bytes
    cursor: Cursor


class Follower:
    """Reads complete lines of one path, following rotation."""

    def __init__(self, path: Path, cursor: Cursor | None = None, *, from_start: bool = False):
        self.path = path
        self._fd: int | None = None
        self._inode = -1
        self._offset = 0
        self._head = ""
        self._pending = b""
        self._skipping = False
        self.rotations = 0
        self.truncated_lines = 0
        self._open(cursor, from_start=from_start)

    @property
    def cursor(self) -> Cursor | None:
        """The cursor after the last complete line returned (``None`` before the file exists)."""
        if self._fd is None:
            return None
        return Cursor(self._inode, self._offset, self._head)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self, cursor: Cursor | None, *, from_start: bool) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # not there (yet): a later poll opens it
        st = os.fstat(fd)
        self._fd, self._inode, self._pending, self._skipping = fd, st.st_ino, b"", False
        self._head = _head_hash(fd)
        if cursor is not None:
            same = cursor.inode == st.st_ino and cursor.head == self._head
            self._offset = cursor.offset if same and cursor.offset <= st.st_size else 0
        else:
            self._offset = 0 if from_start else st.st_size

    def read(self, limit: int = 10_000) -> list[Line]:
        """Return up to ``limit`` new complete lines (handling rotation on the way)."""
        if self._fd is None:
            self._open(None, from_start=True)  # appeared after start: read it all
            if self._fd is None:
                return []
        lines = self._drain(limit)
        if len(lines) >= limit:
            return lines
        rotated = self._rotated()
        if rotated == "truncated":
            lines += self._drain(limit - len(lines))
        elif rotated == "replaced":
            # Read what the old file still holds, then switch to the new file from its start.
            lines += self._drain(limit - len(lines))
            if len(lines) >= limit:
                return lines
            self.close()
            self.rotations += 1
            self._open(None, from_start=True)
            if self._fd is not None:
                lines += self._drain(limit - len(lines))
        return lines

    def _rotated(self) -> str | None:
        """``"replaced"`` (a new file at the path), ``"truncated"`` (copytruncate) or None."""
        assert self._fd is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # deleted, not recreated yet: keep reading the old file
        if st.st_ino != self._inode:
            return "replaced"
        mine = os.fstat(self._fd)
        shrunk = mine.st_size < self._offset + len(self._pending)
        if not self._head:
            self._head = _head_hash(self._fd)
        elif self._offset > 0 and _head_hash(self._fd) != self._head:
            shrunk = True  # rewritten in place since our last look
        if shrunk:  # copytruncate
            self._offset, self._pending, self._skipping = 0, b"", False
            self.rotations += 1
            self._head = _head_hash(self._fd)
            return "truncated"
        return None

    def _drain(self, limit: int) -> list[Line]:
        assert self._fd is not None
        lines: list[Line] = []
        position = self._offset + len(self._pending)
        while len(lines) < limit:
            chunk = os.pread(self._fd, _CHUNK, position)
            if not chunk:
                break
            position += len(chunk)
            lines.extend(self._split(chunk, limit - len(lines)))
            if len(lines) >= limit:
                break
        return lines

    def _split(self, chunk: bytes, limit: int) -> Iterable[Line]:
        data = self._pending + chunk
        start = 0
        out: list[Line] = []
        while len(out) < limit:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            raw = data[start:newline]
            start = newline + 1
            self._offset += len(raw) + 1
            if not self._head and self._fd is not None:
                self._head = _head_hash(self._fd)
            if self._skipping:
                self._skipping = False
                continue
            out.append(Line(raw.rstrip(b"\r"), Cursor(self._inode, self._offset, self._head)))
        rest = data[start:]
        if len(rest) > MAX_LINE and not self._skipping:
            out.append(Line(rest[:MAX_LINE], Cursor(self._inode, self._offset, self._head)))
            self.truncated_lines += 1
            self._skipping = True
        if self._skipping and len(rest) > MAX_LINE:
            self._offset += len(rest)
            rest = b""
        self._pending = rest
        return out


class Watcher:
    """Wakes a reader when something changes in the watched directories.

    Uses watchdog (inotify on Linux); :meth:`wait` also returns after ``poll`` seconds, so a
    filesystem without events (NFS, some overlay setups) is still followed.
    """

    def __init__(self, directories: Iterable[Path]) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        self._event = threading.Event()
        wake = self._event

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        self._observer = Observer()
        for directory in sorted(set(directories)):
            if directory.is_dir():
                self._observer.schedule(_Handler(), str(directory), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def wait(self, poll: float) -> None:
        """Block until a change is seen or ``poll`` seconds passed."""
        self._event.wait(poll)
        self._event.clear()

    def wake(self) -> None:
        """Wake the waiter now (used to stop or reload)."""
        self._event.set()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
