"""The outbox: operations committed locally and not yet confirmed by Cloudflare.

There is at most one operation per target: the latest intent. Queuing coalesces:

* add after add: one add (the entry is built from the holders when it is sent, so it carries
  the latest expiry and every jail);
* remove after add: the add is cancelled outright when it was never sent and the target was
  never delivered (nothing can be at Cloudflare); otherwise it becomes a remove;
* add after remove: the remove becomes an add (adds are idempotent and raise the expiry);
* remove after remove: one remove, forced if either was, keeping the later ``not_after``.

A replaced operation gets a new ``id``. A delivery that was in flight while its operation was
replaced finishes only the ``id`` it sent, so the newer intent is still sent afterwards.
``attempts`` counts sends *started*: it is raised before the request goes out, so an
operation interrupted by a crash is known to have possibly reached Cloudflare.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

OpKind = Literal["add", "remove"]


@dataclass(frozen=True)
class OutboxOp:
    """One queued operation."""

    id: int
    target: str
    op: OpKind
    not_after: float | None
    force: bool
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> OutboxOp:
        return cls(
            id=row["id"],
            target=row["target"],
            op=row["op"],
            not_after=row["not_after"],
            force=bool(row["force"]),
            created_at=row["created_at"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
        )


def pending(conn: sqlite3.Connection, target: str) -> OutboxOp | None:
    row = conn.execute("SELECT * FROM outbox WHERE target = ?", (target,)).fetchone()
    return None if row is None else OutboxOp.from_row(row)


def _insert(
    conn: sqlite3.Connection,
    target: str,
    op: OpKind,
    now: float,
    *,
    not_after: float | None = None,
    force: bool = False,
    attempts: int = 0,
) -> None:
    conn.execute("DELETE FROM outbox WHERE target = ?", (target,))
    conn.execute(
        "INSERT INTO outbox (target, op, not_after, force, created_at, attempts, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (target, op, not_after, int(force), now, attempts, now),
    )


def queue_add(conn: sqlite3.Connection, target: str, now: float) -> None:
    """Queue (or renew) an add of ``target``, due now."""
    old = pending(conn, target)
    _insert(conn, target, "add", now, attempts=old.attempts if old else 0)


def queue_remove(
    conn: sqlite3.Connection,
    target: str,
    now: float,
    *,
    not_after: float | None,
    force: bool,
    ever_delivered: bool,
) -> bool:
    """Queue a remove of ``target``; return False when it cancelled a never-sent add instead."""
    old = pending(conn, target)
    if old is not None and old.op == "add" and old.attempts == 0 and not ever_delivered:
        conn.execute("DELETE FROM outbox WHERE id = ?", (old.id,))
        return False
    attempts = old.attempts if old else 0
    if old is not None and old.op == "remove":
        force = force or old.force
        if not force and old.not_after is not None and not_after is not None:
            not_after = max(not_after, old.not_after)
    _insert(
        conn,
        target,
        "remove",
        now,
        not_after=None if force else not_after,
        force=force,
        attempts=attempts,
    )
    return True


def due(
    conn: sqlite3.Connection,
    op: OpKind,
    now: float,
    limit: int,
    first: Sequence[str] = (),
) -> list[OutboxOp]:
    """Up to ``limit`` operations of kind ``op`` due at ``now``, those for ``first`` first
    (a fresh ban is sent before an old backlog), oldest next."""
    ops: list[OutboxOp] = []
    for target in first:
        found = pending(conn, target)
        if found is not None and found.op == op and found.next_attempt_at <= now:
            ops.append(found)
    seen = {o.id for o in ops}
    rows = conn.execute(
        "SELECT * FROM outbox WHERE op = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        (op, now, limit + len(seen)),
    ).fetchall()
    ops.extend(o for o in map(OutboxOp.from_row, rows) if o.id not in seen)
    return ops[:limit]


def mark_sent(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])


def finish(conn: sqlite3.Connection, op_id: int) -> bool:
    """Drop a confirmed operation; False when it was replaced in the meantime."""
    return conn.execute("DELETE FROM outbox WHERE id = ?", (op_id,)).rowcount == 1


def postpone(conn: sqlite3.Connection, op_id: int, until: float, error: str) -> None:
    conn.execute(
        "UPDATE outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?",
        (until, error[:500], op_id),
    )
