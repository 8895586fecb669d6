"""Following log files: complete lines only, exactly once, across rotation and restarts.

A :class:`Follower` reads one path. Its :class:`Cursor` (inode, offset of the next unread
byte, hash of the first line) is what the daemon stores with the effects of the lines it read,
so a restart resumes exactly where processing stopped. Rotation is recognised the way
fail2ban does it — a new inode at the path, a file shorter than the cursor, or a different
first line — and handled without losing lines:

* rename + create, delete + recreate: the old file is read to its end before the new file is
  read from its start. It then stays open for :data:`RETIRE_GRACE` seconds and whatever is
  still appended to it is read too: a writer keeps writing to the old file until it reopens
  its log (nginx on ``USR1``, after logrotate created the new file). Lines from the old file
  carry the new file's cursor; they are lost only if the process dies in that window before
  they were processed.
* copytruncate: the file shrinks under the cursor (or its first line changes); reading
  restarts at 0. The check comes *before* reading, so a truncated file that grew again past
  the old offset is never read from the middle. Lines written between logrotate's copy and
  its truncate are lost — inherent to copytruncate.

A partial last line (no newline yet) waits for its newline. :class:`Watcher` wakes the reader
on inotify events (watchdog) and falls back to polling.
"""

from __future__ import annotations

import glob
import hashlib
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Bytes hashed from the start of a file to recognise it (fail2ban hashes the first line).
HEAD_BYTES = 256
#: A longer line is cut here; the rest is skipped up to its newline.
MAX_LINE = 64 * 1024
#: Seconds a replaced file stays open to catch lines its writer appends before reopening.
RETIRE_GRACE = 5.0
_CHUNK = 1 << 16


def expand_logpaths(patterns: Iterable[str]) -> list[Path]:
    """The files ``logpath`` patterns name now: globs expanded, plain paths as given."""
    found: set[Path] = set()
    for pattern in patterns:
        names = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
        found.update(Path(name) for name in names)
    return sorted(found)


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


class _Reader:
    """Complete lines of one open file (one inode), from an offset on."""

    def __init__(self, fd: int, inode: int, offset: int) -> None:
        self.fd = fd
        self.inode = inode
        self.offset = offset
        self.head = _head_hash(fd)
        self.pending = b""
        self.skipping = False
        self.truncated_lines = 0
        self.retired_at = 0.0

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.inode, self.offset, self.head)

    def restart(self) -> None:
        """Read again from the start (the file was truncated)."""
        self.offset, self.pending, self.skipping = 0, b"", False
        self.head = _head_hash(self.fd)

    def drain(self, limit: int, cursor: Cursor | None = None) -> list[Line]:
        """Up to ``limit`` complete lines; each with ``cursor`` if given, else its own."""
        lines: list[Line] = []
        if b"\n" in self.pending:  # complete lines an earlier limit left unreturned
            lines.extend(self._split(b"", limit, cursor))
        position = self.offset + len(self.pending)
        while len(lines) < limit:
            chunk = os.pread(self.fd, _CHUNK, position)
            if not chunk:
                break
            position += len(chunk)
            lines.extend(self._split(chunk, limit - len(lines), cursor))
            if len(lines) >= limit:
                break
        return lines

    def _split(self, chunk: bytes, limit: int, fixed: Cursor | None) -> Iterable[Line]:
        data = self.pending + chunk
        start = 0
        out: list[Line] = []
        while len(out) < limit:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            raw = data[start:newline]
            start = newline + 1
            self.offset += len(raw) + 1
            if not self.head:
                self.head = _head_hash(self.fd)
            if self.skipping:
                self.skipping = False
                continue
            out.append(Line(raw.rstrip(b"\r"), fixed or self.cursor))
        rest = data[start:]
        if len(rest) > MAX_LINE and not self.skipping:
            out.append(Line(rest[:MAX_LINE], fixed or self.cursor))
            self.truncated_lines += 1
            self.skipping = True
        if self.skipping and len(rest) > MAX_LINE:
            self.offset += len(rest)
            rest = b""
        self.pending = rest
        return out


class Follower:
    """Reads complete lines of one path, following rotation."""

    def __init__(self, path: Path, cursor: Cursor | None = None, *, from_start: bool = False):
        self.path = path
        self._reader: _Reader | None = None
        self._retired: list[_Reader] = []
        self.rotations = 0
        self._truncated_before = 0
        self._open(cursor, from_start=from_start)

    @property
    def cursor(self) -> Cursor | None:
        """The cursor after the last complete line returned (``None`` before the file exists)."""
        return None if self._reader is None else self._reader.cursor

    @property
    def truncated_lines(self) -> int:
        """How many over-long lines were cut."""
        readers = [*self._retired, *([self._reader] if self._reader else [])]
        return self._truncated_before + sum(r.truncated_lines for r in readers)

    def close(self) -> None:
        if self._reader is not None:
            self._close(self._reader)
            self._reader = None
        for reader in self._retired:
            self._close(reader)
        self._retired.clear()

    def _close(self, reader: _Reader) -> None:
        self._truncated_before += reader.truncated_lines
        os.close(reader.fd)

    def _open(self, cursor: Cursor | None, *, from_start: bool) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # not there (yet): a later poll opens it
        st = os.fstat(fd)
        reader = _Reader(fd, st.st_ino, 0)
        if cursor is not None:
            same = cursor.inode == st.st_ino and cursor.head == reader.head
            reader.offset = cursor.offset if same and cursor.offset <= st.st_size else 0
        else:
            reader.offset = 0 if from_start else st.st_size
        self._reader = reader

    def read(self, limit: int = 10_000) -> list[Line]:
        """Return up to ``limit`` new complete lines (handling rotation on the way)."""
        lines = self._read_retired(limit)
        if self._reader is None:
            self._open(None, from_start=True)  # appeared after start: read it all
            if self._reader is None:
                return lines
        rotated = self._rotated(self._reader)
        if rotated == "replaced":
            # Read what the old file still holds, then switch to the new file from its start.
            lines += self._reader.drain(limit - len(lines))
            if len(lines) >= limit:
                return lines
            self._reader.retired_at = time.monotonic()
            self._retired.append(self._reader)
            self._reader = None
            self.rotations += 1
            self._open(None, from_start=True)
            if self._reader is None:
                return lines
        lines += self._reader.drain(limit - len(lines))
        return lines

    def _read_retired(self, limit: int) -> list[Line]:
        """Lines appended to replaced files since the switch; files past their grace closed."""
        lines: list[Line] = []
        now = time.monotonic()
        for reader in list(self._retired):
            if len(lines) < limit:
                cursor = self._reader.cursor if self._reader is not None else None
                lines += reader.drain(limit - len(lines), cursor)
            if now - reader.retired_at >= RETIRE_GRACE and len(lines) < limit:
                self._retired.remove(reader)
                self._close(reader)
        return lines

    def _rotated(self, reader: _Reader) -> str | None:
        """``"replaced"`` (a new file at the path), ``"truncated"`` (copytruncate) or None."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # deleted, not recreated yet: keep reading the old file
        if st.st_ino != reader.inode:
            return "replaced"
        mine = os.fstat(reader.fd)
        shrunk = mine.st_size < reader.offset + len(reader.pending)
        if not reader.head:
            reader.head = _head_hash(reader.fd)
        elif reader.offset > 0 and _head_hash(reader.fd) != reader.head:
            shrunk = True  # rewritten in place since our last look
        if shrunk:  # copytruncate
            reader.restart()
            self.rotations += 1
            return "truncated"
        return None


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
