"""A local mirror of the account IP list, so a write costs the same whatever the list holds.

The list backend needs two things from the list before it writes: the current comment of
each target (an item another host made must be merged, never shortened) and, to delete, the
item ids. Reading the list back costs one request per 500 items; the mirror keeps what the
last read and cfban's own writes say, in ``STATE_DIR/list-mirror.sqlite`` (shared by every
cfban process on the host), and the backend trusts it only while the list is unchanged by
anyone else:

* after a full read, the mirror records the list's ``modified_on`` and ``num_items``;
* after one of cfban's own operations completes, it records the operation's ``completed``
  time and the item count the write leaves;
* the backend compares both with what ``GET .../rules/lists`` says (one request): equal
  means nobody else wrote since, so the mirror is exact; different means another host (or a
  person) changed the list, and the backend looks the targets up again (a search per target,
  or one paged read when that is cheaper).

Item ids are unknown for items cfban added itself (a bulk write answers with an operation id
only); they are learnt when needed, when removing. Rows for items cfban did not make are kept
too (``owned = 0``), so cfban never overwrites them. The file also remembers the pending
operation (so a process resumes a poll another one left), the list's capacity once
Cloudflare refused a write as full, and when the rule of each zone was last checked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cfban.errors import StateError

MIRROR_FILE = "list-mirror.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS items (
    ip TEXT PRIMARY KEY,
    id TEXT,
    comment TEXT,
    owned INTEGER NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS items_expiry ON items (owned, expires_at);
CREATE TABLE IF NOT EXISTS spilled (ip TEXT PRIMARY KEY, ref TEXT NOT NULL, expires_at REAL);
"""


@dataclass(frozen=True)
class MirrorItem:
    """What the mirror knows of one list item; ``id`` is None until learnt."""

    ip: str
    id: str | None
    comment: str | None
    owned: bool
    expires_at: float | None


class ListMirror:
    """The mirror file of one list (see the module docstring); ``path=None`` keeps it in
    memory (tests, and processes without a state directory)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path) if path is not None else ":memory:", timeout=30, isolation_level=None
            )
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(
                f"cannot use the list mirror {path}: {exc}",
                hint="check that state_dir exists and cfban may write to it",
            ) from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"the list mirror {self.path} failed: {exc}") from None

    # -- meta ---------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0]) if row[0] is not None else None

    def set(self, **values: str | None) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def bind(self, list_id: str) -> None:
        """Start over when the list is another one (deleted and made again)."""
        if self.get("list_id") == list_id:
            return
        with self._write() as db:
            db.execute("DELETE FROM items")
            db.execute("DELETE FROM meta")  # a rule checked for the old list names it no more
            db.execute("INSERT INTO meta (key, value) VALUES ('list_id', ?)", (list_id,))

    def forget(self) -> None:
        """The list is gone: nothing the mirror says can be trusted."""
        with self._write() as db:
            db.execute("DELETE FROM items")
            db.execute("DELETE FROM meta")

    def exact(self, modified_on: str | None, num_items: int) -> bool:
        """Whether the list as Cloudflare describes it is the one the mirror holds."""
        if modified_on is None or self.get("num_items") != str(num_items):
            return False
        if self.get("pending_operation"):
            return False  # an operation is under way: its outcome is not known yet
        return modified_on in (self.get("modified_on"), self.get("completed"))

    def trust(self, modified_on: str | None, num_items: int) -> None:
        """The mirror now matches the list Cloudflare described."""
        self.set(modified_on=modified_on, num_items=str(num_items), completed=None)

    def wrote(self, completed: str | None, num_items: int | None) -> None:
        """One of cfban's operations completed; ``num_items`` None when the result is not
        known exactly (the mirror was not exact before the write)."""
        self.set(completed=completed, num_items=None if num_items is None else str(num_items))

    # -- items --------------------------------------------------------------------------------

    def items(self, ips: Iterable[str]) -> dict[str, MirrorItem]:
        found: dict[str, MirrorItem] = {}
        keys = list(ips)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                f"SELECT ip, id, comment, owned, expires_at FROM items WHERE ip IN ({marks})",
                chunk,
            ):
                found[row[0]] = MirrorItem(row[0], row[1], row[2], bool(row[3]), row[4])
        return found

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def unknown_ids(self) -> int:
        """How many of cfban's items have no id known yet."""
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM items WHERE owned = 1 AND id IS NULL"
            ).fetchone()[0]
        )

    def owned_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM items WHERE owned = 1").fetchone()[0])

    def owned(self) -> list[MirrorItem]:
        rows = self._db.execute(
            "SELECT ip, id, comment, owned, expires_at FROM items WHERE owned = 1 ORDER BY ip"
        )
        return [MirrorItem(r[0], r[1], r[2], True, r[4]) for r in rows]

    def soonest_expiring(self, count: int, keep: Collection[str]) -> list[MirrorItem]:
        """cfban's items that end first (permanent ones last), none of ``keep``."""
        rows = self._db.execute(
            "SELECT ip, id, comment, owned, expires_at FROM items WHERE owned = 1 "
            "ORDER BY expires_at IS NULL, expires_at, ip"
        )
        chosen: list[MirrorItem] = []
        for row in rows:
            if len(chosen) >= count:
                break
            if row[0] not in keep:
                chosen.append(MirrorItem(row[0], row[1], row[2], True, row[4]))
        return chosen

    def put(self, items: Iterable[MirrorItem], *, replace_all: bool = False) -> None:
        with self._write() as db:
            if replace_all:
                db.execute("DELETE FROM items")
            db.executemany(
                "INSERT INTO items (ip, id, comment, owned, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (ip) DO UPDATE SET id = COALESCE(excluded.id, items.id), "
                "comment = excluded.comment, owned = excluded.owned, "
                "expires_at = excluded.expires_at",
                [(i.ip, i.id, i.comment, int(i.owned), i.expires_at) for i in items],
            )

    def drop(self, ips: Iterable[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM items WHERE ip = ?", [(ip,) for ip in ips])

    # -- bans spilled over to access rules ----------------------------------------------------

    def spilled(self, ips: Iterable[str]) -> dict[str, str]:
        keys = list(ips)
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                f"SELECT ip, ref FROM spilled WHERE ip IN ({marks})", chunk
            ):
                found[row[0]] = row[1]
        return found

    def put_spilled(self, rows: Iterable[tuple[str, str, float | None]]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO spilled (ip, ref, expires_at) VALUES (?, ?, ?)", list(rows)
            )

    def drop_spilled(self, ips: Iterable[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM spilled WHERE ip = ?", [(ip,) for ip in ips])
