"""cfban's durable state: bans, their holders, the outbox of Cloudflare operations, the ban
history, the delivery record and the daemon's cursors.

One SQLite database (WAL) in the state directory. A ban decision is committed here, together
with the operation that will carry it to Cloudflare, *before* any request is sent; the
operation is dropped only once Cloudflare confirmed it. A crash at any point loses nothing,
and the replay after it is harmless because every backend call is idempotent.
"""

from __future__ import annotations

from cfban.state._bans import Desired, later
from cfban.state._cursors import Hold, StoredCursor
from cfban.state._db import DB_FILENAME, Database
from cfban.state._history import DeliveryRecord, PastBan
from cfban.state._migrations import MIGRATIONS, applied, migrate
from cfban.state._outbox import OpKind, OutboxOp
from cfban.state._store import DRY_RUN_PREFIX, AddJob, BanView, StateStore

__all__ = [
    "DB_FILENAME",
    "DRY_RUN_PREFIX",
    "MIGRATIONS",
    "AddJob",
    "BanView",
    "Database",
    "DeliveryRecord",
    "Desired",
    "Hold",
    "OpKind",
    "OutboxOp",
    "PastBan",
    "StateStore",
    "StoredCursor",
    "applied",
    "later",
    "migrate",
]
