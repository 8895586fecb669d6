"""Holders and bans: who wants a target banned until when, and what Cloudflare has.

A *holder* is one jail on this host holding a target (one row per target and jail, with its
own ``banned_at`` and ``expires_at``; ``NULL`` is permanent). The same target held by two
jails is still one entry at Cloudflare: its expiry is the longest of the holders', its jails
their union, and it is removed only when the last holder lets go.

A *ban* row is that entry as cfban knows it: ``pending`` (an add is queued), ``delivered``
(Cloudflare confirmed it, with ``ref`` and the expiry and jails it confirmed), ``removing``
(a remove is queued) or ``rejected`` (the backend cannot ban it; retrying will not help).
Every function here runs inside the caller's write transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cfban.rules import stricter
from cfban.state import _history, _outbox


@dataclass(frozen=True)
class Desired:
    """What the holders of a target ask Cloudflare for."""

    expires_at: float | None
    jails: tuple[str, ...]
    action: str = "block"


def later(a: float | None, b: float | None) -> float | None:
    """The later of two expiries; ``None`` (permanent) is later than any time."""
    if a is None or b is None:
        return None
    return max(a, b)


def desired(conn: sqlite3.Connection, target: str) -> Desired | None:
    """The entry the holders of ``target`` want, or None when nobody holds it."""
    rows = conn.execute(
        "SELECT jail, expires_at, action FROM holders WHERE target = ? ORDER BY jail", (target,)
    ).fetchall()
    if not rows:
        return None
    expiry: float | None = rows[0]["expires_at"]
    action: str = rows[0]["action"]
    for row in rows[1:]:
        expiry = later(expiry, row["expires_at"])
        action = stricter(action, row["action"])
    return Desired(expiry, tuple(row["jail"] for row in rows), action)


def _covered(ban: sqlite3.Row, want: Desired) -> bool:
    """True when the delivered entry already says all ``want`` would add."""
    if ban["state"] != "delivered":
        return False
    pushed = None if ban["pushed_permanent"] else ban["pushed_expires"]
    if later(pushed, want.expires_at) != pushed:
        return False
    action = ban["pushed_action"] or "block"
    if stricter(action, want.action) != action:
        return False  # an entry only gets stricter while it stands
    return set(want.jails) <= set(filter(None, ban["pushed_jails"].split(",")))


def ban_row(conn: sqlite3.Connection, target: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM bans WHERE target = ?", (target,)
    ).fetchone()
    return row


def hold(
    conn: sqlite3.Connection,
    *,
    address: str,
    target: str,
    jail: str,
    expires_at: float | None,
    now: float,
    action: str = "block",
) -> bool:
    """Record that ``jail`` holds ``target`` until ``expires_at`` with ``action`` (never
    shortening an existing hold, nor making it milder); queue an add unless Cloudflare already
    has all of it. Return whether an add was queued. A hold that is new, or renews one that
    had ended, is a ban *started*: it goes into the ban history."""
    old = conn.execute(
        "SELECT expires_at, action FROM holders WHERE target = ? AND jail = ?", (target, jail)
    ).fetchone()
    running = old is not None and (old["expires_at"] is None or old["expires_at"] > now)
    if running:
        expires_at = later(old["expires_at"], expires_at)
        action = stricter(old["action"], action)
    else:
        _history.record_ban(
            conn, target=target, address=address, jail=jail, banned_at=now, expires_at=expires_at
        )
    conn.execute(
        "INSERT INTO holders (target, jail, address, banned_at, expires_at, action) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (target, jail) DO UPDATE SET "
        "address = excluded.address, banned_at = excluded.banned_at, "
        "expires_at = excluded.expires_at, action = excluded.action",
        (target, jail, address, now, expires_at, action),
    )
    want = desired(conn, target)
    assert want is not None
    ban = ban_row(conn, target)
    if ban is None:
        conn.execute(
            "INSERT INTO bans (target, state, updated_at) VALUES (?, 'pending', ?)", (target, now)
        )
    else:
        op = _outbox.pending(conn, target)
        if _covered(ban, want) and op is None:
            return False
        conn.execute(
            "UPDATE bans SET state = 'pending', note = NULL, updated_at = ? WHERE target = ?",
            (now, target),
        )
    _outbox.queue_add(conn, target, now)
    return True


def _queue_release(
    conn: sqlite3.Connection, target: str, not_after: float | None, force: bool, now: float
) -> bool:
    """Nobody holds ``target`` any more: queue its remove. False when nothing was sent yet
    and the add was simply cancelled."""
    ban = ban_row(conn, target)
    ever = ban is not None and (ban["delivered_at"] is not None or ban["ref"] is not None)
    if ban is not None and ban["state"] == "delivered" and not force:
        pushed = None if ban["pushed_permanent"] else ban["pushed_expires"]
        not_after = later(not_after, pushed)
    if not_after is None:
        force = True
    queued = _outbox.queue_remove(
        conn, target, now, not_after=not_after, force=force, ever_delivered=ever
    )
    if not queued:
        conn.execute("DELETE FROM bans WHERE target = ?", (target,))
        return False
    if ban is None:
        conn.execute(
            "INSERT INTO bans (target, state, updated_at) VALUES (?, 'removing', ?)",
            (target, now),
        )
    else:
        conn.execute(
            "UPDATE bans SET state = 'removing', updated_at = ? WHERE target = ?", (now, target)
        )
    return True


def release(
    conn: sqlite3.Connection, target: str, jail: str | None, now: float
) -> tuple[list[str], bool]:
    """Let ``jail`` (every jail when None) stop holding ``target``.

    Without a jail the removal is forced (a manual unban removes the entry even when another
    host holds it, and even when this host has no record of it). With a jail, the remove
    keeps an entry another host holds for longer. Return the jails released and whether a
    remove was queued.
    """
    if jail is None:
        rows = conn.execute("SELECT jail FROM holders WHERE target = ?", (target,)).fetchall()
    else:
        rows = conn.execute(
            "SELECT jail FROM holders WHERE target = ? AND jail = ?", (target, jail)
        ).fetchall()
    jails = [row["jail"] for row in rows]
    released = conn.execute(
        "SELECT expires_at FROM holders WHERE target = ? AND (? IS NULL OR jail = ?)",
        (target, jail, jail),
    ).fetchall()
    not_after: float | None = 0.0
    for row in released:
        not_after = later(not_after, row["expires_at"])
    conn.execute(
        "DELETE FROM holders WHERE target = ? AND (? IS NULL OR jail = ?)", (target, jail, jail)
    )
    if desired(conn, target) is not None:
        return jails, False
    if jail is None:
        return jails, _queue_release(conn, target, None, True, now)
    if not jails:
        return jails, False
    return jails, _queue_release(conn, target, not_after, False, now)


def release_remote(
    conn: sqlite3.Connection, target: str, not_after: float | None, now: float
) -> bool:
    """Queue a remove of an entry nobody here holds (found remotely by ``sync``)."""
    return _queue_release(conn, target, not_after, not_after is None, now)


def expire(conn: sqlite3.Connection, now: float) -> list[str]:
    """Release every hold that has ended by ``now``; return the targets whose remove was
    queued (a restart after a long downtime removes everything overdue at once)."""
    rows = conn.execute(
        "SELECT target, MAX(expires_at) AS last FROM holders "
        "WHERE expires_at IS NOT NULL AND expires_at <= ? GROUP BY target ORDER BY target",
        (now,),
    ).fetchall()
    queued: list[str] = []
    for row in rows:
        target = row["target"]
        conn.execute(
            "DELETE FROM holders WHERE target = ? AND expires_at IS NOT NULL AND expires_at <= ?",
            (target, now),
        )
        if desired(conn, target) is None and _queue_release(conn, target, row["last"], False, now):
            queued.append(target)
    return queued
