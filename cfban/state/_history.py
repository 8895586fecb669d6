"""Ban history and the delivery record.

* **History**: one row per ban *started* (a new hold, or a hold renewed after it had ended);
  extending a running ban adds none. Growth (``bantime_factor``) and the recidive rule count
  these rows, so they survive restarts.
* **Delivery record**: one row saying how the last delivery rounds went, whoever ran them
  (the daemon's delivery thread, a background deliverer, a CLI command): when a round last
  ran and last succeeded, and since when rounds fail, with the last error, its kind (the
  exception's class name) and a fix when one is known.

Every function taking a connection runs inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class PastBan:
    """One ban that started on this host."""

    jail: str
    banned_at: float
    expires_at: float | None


@dataclass(frozen=True)
class DeliveryRecord:
    """How delivery to Cloudflare went lately (all ``None`` before the first round)."""

    last_attempt: float | None = None
    last_success: float | None = None
    failing_since: float | None = None
    last_error: str | None = None
    kind: str | None = None
    fix: str | None = None
    updated_by: str | None = None

    @property
    def failing(self) -> bool:
        """Whether the last round failed."""
        return self.failing_since is not None


def record_ban(
    conn: sqlite3.Connection,
    *,
    target: str,
    address: str,
    jail: str,
    banned_at: float,
    expires_at: float | None,
) -> None:
    conn.execute(
        "INSERT INTO ban_history (target, address, jail, banned_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (target, address, jail, banned_at, expires_at),
    )


def past_bans(conn: sqlite3.Connection, target: str) -> list[PastBan]:
    """Every recorded ban of ``target``, oldest first."""
    rows = conn.execute(
        "SELECT jail, banned_at, expires_at FROM ban_history WHERE target = ? ORDER BY banned_at",
        (target,),
    ).fetchall()
    return [PastBan(r["jail"], float(r["banned_at"]), r["expires_at"]) for r in rows]


def record_round(
    conn: sqlite3.Connection,
    *,
    now: float,
    error: str | None,
    kind: str | None,
    fix: str | None,
    by: str,
) -> None:
    """Record one delivery round: a success clears the failure, a failure keeps the first
    time it began."""
    old = read_record(conn)
    values: tuple[float | str | None, ...]
    if error is None:
        values = (now, now, None, old.last_error, old.kind, old.fix, by)
    else:
        since = old.failing_since if old.failing_since is not None else now
        values = (now, old.last_success, since, error, kind, fix, by)
    conn.execute(
        "INSERT INTO delivery_status (id, last_attempt, last_success, failing_since, "
        "last_error, kind, fix, updated_by) VALUES (1, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET last_attempt = excluded.last_attempt, "
        "last_success = excluded.last_success, failing_since = excluded.failing_since, "
        "last_error = excluded.last_error, kind = excluded.kind, fix = excluded.fix, "
        "updated_by = excluded.updated_by",
        values,
    )


def read_record(conn: sqlite3.Connection) -> DeliveryRecord:
    row = conn.execute("SELECT * FROM delivery_status WHERE id = 1").fetchone()
    if row is None:
        return DeliveryRecord()
    return DeliveryRecord(
        last_attempt=row["last_attempt"],
        last_success=row["last_success"],
        failing_since=row["failing_since"],
        last_error=row["last_error"],
        kind=row["kind"],
        fix=row["fix"],
        updated_by=row["updated_by"],
    )
