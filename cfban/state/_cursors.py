"""Tailer cursors, stored together with the bans decided from the lines before them.

:func:`commit_batch` writes a batch of holds and the cursors just past the lines that decided
them in one transaction: after a crash the daemon resumes exactly after the last committed
line, so no line is counted twice and no decided ban is lost. A cursor is stored as what the
tailer gives (inode, offset, hash of the head); the state does not know the tailer itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cfban.state import _bans

#: A cursor as stored: (inode, offset, hash of the head).
StoredCursor = tuple[int, int, str]


@dataclass(frozen=True)
class Hold:
    """One ban to commit: ``jail`` holds ``target`` (decided for ``address``)."""

    address: str
    target: str
    jail: str
    expires_at: float | None
    action: str = "block"


def load_cursors(conn: sqlite3.Connection) -> dict[str, StoredCursor]:
    """Every stored cursor, by path."""
    rows = conn.execute("SELECT path, inode, offset, head_hash FROM cursors").fetchall()
    return {
        row["path"]: (int(row["inode"] or 0), int(row["offset"]), row["head_hash"] or "")
        for row in rows
    }


def commit_batch(
    conn: sqlite3.Connection,
    now: float,
    holds: Sequence[Hold],
    cursors: Mapping[str, StoredCursor],
) -> list[str]:
    """Commit ``holds`` and ``cursors`` in the caller's transaction; return the targets whose
    add was queued."""
    queued: list[str] = []
    for hold in holds:
        if _bans.hold(
            conn,
            address=hold.address,
            target=hold.target,
            jail=hold.jail,
            expires_at=hold.expires_at,
            now=now,
            action=hold.action,
        ):
            queued.append(hold.target)
    conn.executemany(
        "INSERT INTO cursors (path, inode, offset, head_hash, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, "
        "offset = excluded.offset, head_hash = excluded.head_hash, "
        "updated_at = excluded.updated_at",
        [(path, *cursor, now) for path, cursor in cursors.items()],
    )
    return queued
