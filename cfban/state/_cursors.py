"""Tailer cursors, stored together with the bans decided from the lines before them.

:func:`commit_batch` writes a batch of holds and the cursors just past the lines that decided
them in one transaction: after a crash the daemon resumes exactly after the last committed
line, so no line is counted twice and no decided ban is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cfban.state import _bans
from cfban.state._db import Database
from cfban.tailer import Cursor


@dataclass(frozen=True)
class Hold:
    """One ban decision to commit: ``jail`` holds ``target`` (decided for ``address``)."""

    address: str
    target: str
    jail: str
    expires_at: float | None


def load_cursors(db: Database) -> dict[str, Cursor]:
    """Every stored cursor, by path.

    Raises:
        StateError: the database failed.
    """
    rows = db.read("SELECT path, inode, offset, head_hash FROM cursors")
    return {
        row["path"]: Cursor(int(row["inode"] or 0), int(row["offset"]), row["head_hash"] or "")
        for row in rows
    }


def commit_batch(
    db: Database, now: float, holds: Sequence[Hold], cursors: Mapping[str, Cursor]
) -> list[str]:
    """Commit ``holds`` and ``cursors`` atomically; return the targets whose add was queued.

    Raises:
        StateError: the database failed (nothing of the batch is committed).
    """
    queued: list[str] = []
    with db.write() as conn:
        for hold in holds:
            if _bans.hold(
                conn,
                address=hold.address,
                target=hold.target,
                jail=hold.jail,
                expires_at=hold.expires_at,
                now=now,
            ):
                queued.append(hold.target)
        conn.executemany(
            "INSERT INTO cursors (path, inode, offset, head_hash, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, "
            "offset = excluded.offset, head_hash = excluded.head_hash, "
            "updated_at = excluded.updated_at",
            [(p, c.inode, c.offset, c.head, now) for p, c in cursors.items()],
        )
    return queued
