"""The SQLite file: where it lives, how it is opened, and transactions.

The database is ``STATE_DIR/cfban.sqlite3`` in WAL mode (readers never wait for the writer),
created with mode 0600 in a directory created with mode 0700. Every write runs in a
``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so two ``cfban ban``
processes started back to back queue behind each other for up to ``busy_timeout`` instead of
failing with "database is locked" halfway through.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cfban.errors import StateError

DB_FILENAME = "cfban.sqlite3"
BUSY_TIMEOUT_MS = 30_000


def _prepare_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"cannot create the state directory {state_dir}: {exc.strerror}",
            hint="set state_dir (or CFBAN_STATE_DIR) to a directory cfban may write",
        ) from None


def _create_private(path: Path) -> None:
    if path.exists():
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise StateError(
            f"cannot create the state database {path}: {exc.strerror}",
            hint="check that cfban may write its state_dir",
        ) from None
    os.close(fd)


class Database:
    """One connection to the state database; use :meth:`write` for every change."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.connection = connection

    @classmethod
    def open(cls, state_dir: Path) -> Database:
        """Open (creating if needed) the database in ``state_dir``.

        Raises:
            StateError: the directory or file cannot be created or opened.
        """
        _prepare_dir(state_dir)
        path = state_dir / DB_FILENAME
        _create_private(path)
        try:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed ban survives a power cut too, not only a crash of cfban.
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot open the state database {path}: {exc}",
                hint="check its permissions, or move a damaged file away to start afresh",
            ) from None
        return cls(path, connection)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, committed on success, rolled back on error.

        Raises:
            StateError: SQLite failed (locked for longer than the busy timeout, disk full...).
        """
        conn = self.connection
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self.error(exc) from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self.error(exc) from None

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Rows of one query outside any write transaction.

        Raises:
            StateError: SQLite failed.
        """
        try:
            return list(self.connection.execute(sql, params))
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def error(self, exc: sqlite3.Error) -> StateError:
        """The user-facing error for a failed SQLite call."""
        return StateError(
            f"the state database {self.path} failed: {exc}",
            hint="another cfban may hold it for long, or the disk is full or read-only",
        )
