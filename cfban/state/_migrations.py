"""Schema migrations: small named functions, applied in order, each recorded once.

A new schema change is a new function appended to :data:`MIGRATIONS`; existing ones are never
edited, because databases in the field already ran them. Each runs in its own
``BEGIN IMMEDIATE`` transaction together with the row that records it, so two processes
opening a fresh database at once cannot both apply it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from cfban.clock import Clock
from cfban.state._db import Database

Migration = Callable[[sqlite3.Connection], None]


def m001_bans_holders_outbox(conn: sqlite3.Connection) -> None:
    """Holders (who wants a target banned, until when), bans (the entry at Cloudflare as
    cfban knows it) and the outbox of operations not yet confirmed by Cloudflare."""
    conn.execute(
        """CREATE TABLE holders (
            target     TEXT NOT NULL,
            jail       TEXT NOT NULL,
            address    TEXT NOT NULL,
            banned_at  REAL NOT NULL,
            expires_at REAL,                 -- NULL: permanent
            PRIMARY KEY (target, jail)
        )"""
    )
    conn.execute("CREATE INDEX holders_expiry ON holders (expires_at)")
    conn.execute(
        """CREATE TABLE bans (
            target           TEXT PRIMARY KEY,
            state            TEXT NOT NULL
                             CHECK (state IN ('pending', 'delivered', 'removing', 'rejected')),
            ref              TEXT,           -- rule id / list item id at Cloudflare
            backend          TEXT,           -- backend that confirmed the last delivery
            pushed_expires   REAL,           -- expiry Cloudflare confirmed
            pushed_permanent INTEGER NOT NULL DEFAULT 0,
            pushed_jails     TEXT NOT NULL DEFAULT '',
            delivered_at     REAL,
            updated_at       REAL NOT NULL,
            note             TEXT
        )"""
    )
    conn.execute(
        """CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            target          TEXT NOT NULL UNIQUE,
            op              TEXT NOT NULL CHECK (op IN ('add', 'remove')),
            not_after       REAL,            -- remove: keep an entry held later than this
            force           INTEGER NOT NULL DEFAULT 0,
            created_at      REAL NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error      TEXT
        )"""
    )
    conn.execute("CREATE INDEX outbox_due ON outbox (op, next_attempt_at)")


def m002_cursors(conn: sqlite3.Connection) -> None:
    """Where the log tailer stopped reading, per file."""
    conn.execute(
        """CREATE TABLE cursors (
            path       TEXT PRIMARY KEY,
            inode      INTEGER,
            offset     INTEGER NOT NULL DEFAULT 0,
            head_hash  TEXT,
            updated_at REAL NOT NULL
        )"""
    )


def m003_history_delivery_status(conn: sqlite3.Connection) -> None:
    """Every ban ever started, per target (ban growth and recidive read it), and the record
    of the last delivery rounds (``cfban status``, ``cfban health`` and the hook read it)."""
    conn.execute(
        """CREATE TABLE ban_history (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            target     TEXT NOT NULL,
            address    TEXT NOT NULL,
            jail       TEXT NOT NULL,
            banned_at  REAL NOT NULL,
            expires_at REAL                  -- NULL: permanent
        )"""
    )
    conn.execute("CREATE INDEX ban_history_target ON ban_history (target, banned_at)")
    conn.execute(
        """CREATE TABLE delivery_status (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            last_attempt  REAL,
            last_success  REAL,
            failing_since REAL,              -- NULL: the last round had no failure
            last_error    TEXT,
            kind          TEXT,              -- the error's class name, e.g. AuthError
            fix           TEXT,              -- what to do about it, when known
            updated_by    TEXT
        )"""
    )


def m004_ban_actions(conn: sqlite3.Connection) -> None:
    """What each hold asks Cloudflare to do (``block``, ``managed_challenge``...), and the
    action Cloudflare confirmed for each entry. Holds made before it were blocks."""
    conn.execute("ALTER TABLE holders ADD COLUMN action TEXT NOT NULL DEFAULT 'block'")
    conn.execute("ALTER TABLE bans ADD COLUMN pushed_action TEXT")


MIGRATIONS: tuple[Migration, ...] = (
    m001_bans_holders_outbox,
    m002_cursors,
    m003_history_delivery_status,
    m004_ban_actions,
)


def applied(db: Database) -> list[str]:
    """Names of the migrations this database has run, in order."""
    return [row["name"] for row in db.read("SELECT name FROM migrations ORDER BY id")]


def migrate(
    db: Database, clock: Clock, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now.

    Raises:
        StateError: SQLite failed.
    """
    with db.write() as conn:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS migrations (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                applied_at REAL NOT NULL
            )"""
        )
    done = set(applied(db))
    ran: list[str] = []
    for migration in migrations:
        name = migration.__name__
        if name in done:
            continue
        with db.write() as conn:
            if conn.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                continue  # another process applied it meanwhile
            migration(conn)
            conn.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, clock.now())
            )
        ran.append(name)
    return ran
