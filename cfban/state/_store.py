"""The state store: the one object the rest of cfban uses to read and change the state.

Each method is one transaction. See :mod:`cfban.state._bans` for holders and bans,
:mod:`cfban.state._outbox` for the queue of operations, :mod:`cfban.state._history` for
past bans and the delivery record, :mod:`cfban.state._cursors` for the daemon's cursors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cfban.clock import Clock
from cfban.rules import stricter
from cfban.state import _bans, _cursors, _history, _outbox
from cfban.state._cursors import Hold, StoredCursor
from cfban.state._db import Database
from cfban.state._migrations import migrate
from cfban.state._outbox import OpKind, OutboxOp

DRY_RUN_PREFIX = "dry-run"
_T = TypeVar("_T")


@dataclass(frozen=True)
class BanView:
    """One target as ``cfban list`` shows it."""

    target: str
    addresses: tuple[str, ...]
    jails: tuple[str, ...]
    banned_at: float | None
    expires_at: float | None
    state: str
    ref: str | None
    attempts: int
    last_error: str | None
    note: str | None
    action: str = "block"


@dataclass(frozen=True)
class AddJob:
    """An add about to be sent: the operation and the entry built from its holders."""

    op: OutboxOp
    expires_at: float | None
    jails: tuple[str, ...]
    action: str = "block"


class StateStore:
    """Bans, holders, the outbox and cursors in ``STATE_DIR/cfban.sqlite3``."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    @classmethod
    def open(cls, state_dir: Path, clock: Clock) -> StateStore:
        """Open the store, creating and migrating the database as needed.

        Raises:
            StateError: the database cannot be created, opened or migrated.
        """
        db = Database.open(state_dir)
        try:
            migrate(db, clock)
        except BaseException:
            db.close()
            raise
        return cls(db, clock)

    @property
    def path(self) -> Path:
        return self.db.path

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions ---------------------------------------------------------------------------

    def hold(
        self,
        *,
        address: str,
        target: str,
        jail: str,
        expires_at: float | None,
        action: str = "block",
    ) -> bool:
        """Commit that ``jail`` bans ``target``; return whether an add was queued."""
        with self.db.write() as conn:
            return _bans.hold(
                conn,
                address=address,
                target=target,
                jail=jail,
                expires_at=expires_at,
                now=self.clock.now(),
                action=action,
            )

    def commit_holds(
        self, holds: Sequence[Hold], cursors: Mapping[str, StoredCursor] | None = None
    ) -> list[str]:
        """Commit ``holds`` (and the daemon's ``cursors``) in one transaction; return the
        targets whose add was queued.

        Raises:
            StateError: the database failed (nothing is committed).
        """
        with self.db.write() as conn:
            return _cursors.commit_batch(conn, self.clock.now(), holds, cursors or {})

    def cursors(self) -> dict[str, StoredCursor]:
        """Every stored tailer cursor, by path."""
        return self._read(_cursors.load_cursors)

    def holding(self, target: str, jail: str, now: float) -> bool:
        """Whether ``jail`` holds ``target`` beyond ``now`` (its ban still runs)."""
        rows = self.db.read(
            "SELECT 1 FROM holders WHERE target = ? AND jail = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (target, jail, now),
        )
        return bool(rows)

    def past_bans(self, target: str) -> list[_history.PastBan]:
        """Every ban of ``target`` that started on this host, oldest first."""
        return self._read(lambda conn: _history.past_bans(conn, target))

    def record_delivery(
        self, *, error: str | None, kind: str | None, fix: str | None, by: str
    ) -> None:
        """Record how a delivery round went (``error`` None: it succeeded)."""
        with self.db.write() as conn:
            _history.record_round(
                conn, now=self.clock.now(), error=error, kind=kind, fix=fix, by=by
            )

    def delivery_record(self) -> _history.DeliveryRecord:
        """How the last delivery rounds went."""
        return self._read(_history.read_record)

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return query(self.db.connection)
        except sqlite3.Error as exc:
            raise self.db.error(exc) from None

    def release(self, target: str, jail: str | None) -> tuple[list[str], bool]:
        """Commit that ``jail`` (every jail: None, forced) lets go of ``target``."""
        with self.db.write() as conn:
            return _bans.release(conn, target, jail, self.clock.now())

    def expire(self) -> list[str]:
        """Release every hold that has ended; return the targets whose remove was queued."""
        with self.db.write() as conn:
            return _bans.expire(conn, self.clock.now())

    def requeue(self, targets: Sequence[str]) -> int:
        """Queue an add for each held target in ``targets`` (``sync`` re-pushing)."""
        count = 0
        now = self.clock.now()
        with self.db.write() as conn:
            for target in targets:
                if _bans.desired(conn, target) is None:
                    continue
                conn.execute(
                    "UPDATE bans SET state = 'pending', updated_at = ? WHERE target = ?",
                    (now, target),
                )
                _outbox.queue_add(conn, target, now)
                count += 1
        return count

    def requeue_dry_run(self) -> int:
        """Queue again every add only a dry run ever 'delivered' (a token was configured
        since); return how many."""
        rows = self.db.read(
            "SELECT target FROM bans WHERE state = 'delivered' AND backend LIKE ?",
            (DRY_RUN_PREFIX + "%",),
        )
        return self.requeue([row["target"] for row in rows])

    def forget_remote(self, target: str, *, not_after: float | None) -> bool:
        """Queue a remove of a remote entry this host does not hold (``sync``), keeping it
        if someone holds it past ``not_after``."""
        with self.db.write() as conn:
            if _bans.desired(conn, target) is not None:
                return False
            return _bans.release_remote(conn, target, not_after, self.clock.now())

    def state_of(self, target: str) -> str | None:
        """The state of ``target``'s ban row (``pending``, ``delivered``...), None if none."""
        rows = self.db.read("SELECT state FROM bans WHERE target = ?", (target,))
        return str(rows[0]["state"]) if rows else None

    # -- delivery ----------------------------------------------------------------------------

    def take_adds(self, limit: int, first: Sequence[str] = ()) -> list[AddJob]:
        """Claim up to ``limit`` due adds: count the attempt, build each entry."""
        jobs: list[AddJob] = []
        with self.db.write() as conn:
            ops = _outbox.due(conn, "add", self.clock.now(), limit, first)
            _outbox.mark_sent(conn, [op.id for op in ops])
            for op in ops:
                want = _bans.desired(conn, op.target)
                if want is None:  # cannot happen: a release replaces the add; be safe
                    _outbox.finish(conn, op.id)
                    continue
                jobs.append(AddJob(op, want.expires_at, want.jails, want.action))
        return jobs

    def take_removes(self, limit: int) -> list[OutboxOp]:
        """Claim up to ``limit`` due removes, counting the attempt."""
        with self.db.write() as conn:
            ops = _outbox.due(conn, "remove", self.clock.now(), limit)
            _outbox.mark_sent(conn, [op.id for op in ops])
        return ops

    def added(self, jobs: Sequence[AddJob], refs: dict[str, str], backend: str) -> list[str]:
        """Record what the backend confirmed; return the targets it refused for good."""
        now = self.clock.now()
        refused: list[str] = []
        with self.db.write() as conn:
            for job in jobs:
                target = job.op.target
                ref = refs.get(target)
                if ref is not None:
                    conn.execute("UPDATE bans SET ref = ? WHERE target = ?", (ref, target))
                if not _outbox.finish(conn, job.op.id):
                    continue  # replaced meanwhile: the newer intent still goes out
                if ref is None:
                    refused.append(target)
                    conn.execute(
                        "UPDATE bans SET state = 'rejected', updated_at = ?, note = ? "
                        "WHERE target = ?",
                        (now, f"{backend} cannot ban it (see the log)", target),
                    )
                    continue
                conn.execute(
                    "UPDATE bans SET state = 'delivered', backend = ?, pushed_expires = ?, "
                    "pushed_permanent = ?, pushed_jails = ?, pushed_action = ?, delivered_at = ?, "
                    "updated_at = ?, note = NULL WHERE target = ?",
                    (
                        backend,
                        job.expires_at,
                        int(job.expires_at is None),
                        ",".join(job.jails),
                        job.action,
                        now,
                        now,
                        target,
                    ),
                )
        return refused

    def removed(self, ops: Sequence[OutboxOp]) -> int:
        """Record removes the backend finished (removed, or kept for another host)."""
        count = 0
        with self.db.write() as conn:
            for op in ops:
                if _outbox.finish(conn, op.id):
                    conn.execute("DELETE FROM bans WHERE target = ?", (op.target,))
                    count += 1
        return count

    def set_refs(self, refs: dict[str, str]) -> None:
        """Remember the entry ids found at Cloudflare (``sync``), so a forced remove by id
        does not aim at an entry that was replaced."""
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE bans SET ref = ? WHERE target = ?", [(r, t) for t, r in refs.items()]
            )

    def postpone(self, ops: Sequence[OutboxOp], until: float, error: str) -> None:
        """A send failed: keep each operation, due again at ``until``."""
        with self.db.write() as conn:
            for op in ops:
                _outbox.postpone(conn, op.id, until, error)

    def refs(self, targets: Sequence[str]) -> dict[str, str | None]:
        """The stored ``ref`` of each target."""
        found: dict[str, str | None] = {t: None for t in targets}
        for start in range(0, len(targets), 500):
            chunk = list(targets[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self.db.read(
                f"SELECT target, ref FROM bans WHERE target IN ({marks})", tuple(chunk)
            ):
                found[row["target"]] = row["ref"]
        return found

    # -- reading -----------------------------------------------------------------------------

    def depth(self) -> dict[str, int]:
        """Queued operations by kind (``add``, ``remove``)."""
        counts = {"add": 0, "remove": 0}
        for row in self.db.read("SELECT op, COUNT(*) AS n FROM outbox GROUP BY op"):
            counts[row["op"]] = int(row["n"])
        return counts

    def oldest_queued_at(self) -> float | None:
        """When the oldest queued operation was queued; None when nothing is queued."""
        rows = self.db.read("SELECT MIN(created_at) AS oldest FROM outbox")
        oldest = rows[0]["oldest"] if rows else None
        return None if oldest is None else float(oldest)

    def due_count(self, op: OpKind | None = None) -> int:
        """Operations due now."""
        rows = self.db.read(
            "SELECT COUNT(*) AS n FROM outbox WHERE next_attempt_at <= ? AND (? IS NULL OR op = ?)",
            (self.clock.now(), op, op),
        )
        return int(rows[0]["n"])

    def next_due(self) -> float | None:
        """When the next queued operation is due (epoch seconds), None when none is queued."""
        value = self.db.read("SELECT MIN(next_attempt_at) AS t FROM outbox")[0]["t"]
        return None if value is None else float(value)

    def outbox(self) -> list[OutboxOp]:
        return [OutboxOp.from_row(r) for r in self.db.read("SELECT * FROM outbox ORDER BY id")]

    def held_targets(self) -> dict[str, _bans.Desired]:
        """Every held target and what its holders want."""
        grouped: dict[str, list[tuple[str, float | None, str]]] = {}
        for row in self.db.read(
            "SELECT target, jail, expires_at, action FROM holders ORDER BY jail"
        ):
            grouped.setdefault(row["target"], []).append(
                (row["jail"], row["expires_at"], row["action"])
            )
        result: dict[str, _bans.Desired] = {}
        for target, held in sorted(grouped.items()):
            expiry, action = held[0][1], held[0][2]
            for _jail, other, act in held[1:]:
                expiry = _bans.later(expiry, other)
                action = stricter(action, act)
            result[target] = _bans.Desired(expiry, tuple(j for j, _, _ in held), action)
        return result

    def bans(self) -> list[BanView]:
        """Every target with a holder or a pending operation, sorted by target."""
        holders: dict[str, list[tuple[str, str, float, float | None, str]]] = {}
        for row in self.db.read("SELECT * FROM holders ORDER BY target, jail"):
            holders.setdefault(row["target"], []).append(
                (row["jail"], row["address"], row["banned_at"], row["expires_at"], row["action"])
            )
        ops = {op.target: op for op in self.outbox()}
        views: list[BanView] = []
        for row in self.db.read("SELECT * FROM bans ORDER BY target"):
            target = row["target"]
            held = holders.get(target, [])
            expiry: float | None = held[0][3] if held else None
            action: str = held[0][4] if held else (row["pushed_action"] or "block")
            for item in held[1:]:
                expiry = _bans.later(expiry, item[3])
                action = stricter(action, item[4])
            op = ops.get(target)
            views.append(
                BanView(
                    target=target,
                    addresses=tuple(sorted({h[1] for h in held})),
                    jails=tuple(h[0] for h in held),
                    banned_at=max((h[2] for h in held), default=None),
                    expires_at=expiry,
                    state=row["state"],
                    ref=row["ref"],
                    attempts=op.attempts if op else 0,
                    last_error=op.last_error if op else None,
                    note=row["note"],
                    action=action,
                )
            )
        return views
