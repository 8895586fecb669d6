"""What ``cfban status`` shows and what ``cfban health`` judges.

Two sources, read without a running daemon:

* the **state database**: the delivery record every delivery round updates (whoever ran
  it: the daemon's delivery thread, a background deliverer, a CLI command) and the outbox,
  whose oldest operation says how long a ban has waited for Cloudflare;
* the **status file** ``STATE_DIR/status.json``, which the daemon (when one runs) rewrites
  atomically every few seconds: its jails, counters and whether its loop still turns.

Health fails when a queued operation has waited longer than ``[cloudflare] max_queue_age``,
when a daemon that reported before has gone stale or stopped, and when nothing has ever run.

Health also fails at once when delivery waits on a problem that waiting will not fix (a
revoked token, a lost permission, a full list under ``on_full = "hold"``, a deleted list:
see :mod:`cfban.cloudflare`); ``cfban status`` shows it with its fix, beside the budget and
the list fill (the Cloudflare figures, also read from the state dir).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cfban.cloudflare import PERSISTENT
from cfban.intake.alarm import age, delivery_warning
from cfban.state import DeliveryRecord

STATUS_FILE = "status.json"
#: The daemon writes the file at least this often.
STATUS_INTERVAL = 5.0
STALE_AFTER = 30.0


class StateStoreLike(Protocol):
    """The reads of :class:`cfban.state.StateStore` the status needs."""

    def delivery_record(self) -> DeliveryRecord: ...

    def depth(self) -> dict[str, int]: ...

    def oldest_queued_at(self) -> float | None: ...


def write_status(state_dir: Path, data: dict[str, Any]) -> None:
    """Replace the status file atomically."""
    path = state_dir / STATUS_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last status the daemon wrote, or ``None`` when there is none (or it is unreadable)."""
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class DaemonStatus:
    """What the daemon's status file says."""

    pid: int | None
    updated_at: float
    stopped: bool
    dry_run: bool
    config: str | None
    jails: dict[str, Any]
    metrics: dict[str, Any]
    last_error: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaemonStatus:
        updated = data.get("updated_at")
        jails, metrics = data.get("jails"), data.get("metrics")
        return cls(
            pid=data.get("pid") if isinstance(data.get("pid"), int) else None,
            updated_at=float(updated) if isinstance(updated, int | float) else 0.0,
            stopped=bool(data.get("stopped")),
            dry_run=bool(data.get("dry_run")),
            config=str(data["config"]) if data.get("config") is not None else None,
            jails=jails if isinstance(jails, dict) else {},
            metrics=metrics if isinstance(metrics, dict) else {},
            last_error=str(data["last_error"]) if data.get("last_error") else None,
        )


@dataclass(frozen=True)
class Status:
    """Everything ``cfban status`` shows, read at ``now``."""

    now: float
    daemon: DaemonStatus | None
    delivery: DeliveryRecord = field(default_factory=DeliveryRecord)
    queued: dict[str, int] = field(default_factory=dict)
    oldest_queued_at: float | None = None
    #: budget, pause, list fill and the current problem (:func:`cfban.cloudflare.cloudflare_status`)
    cloudflare: dict[str, Any] = field(default_factory=dict)

    @property
    def oldest_age(self) -> float | None:
        """Seconds the oldest queued operation has waited (None: nothing queued)."""
        return None if self.oldest_queued_at is None else self.now - self.oldest_queued_at

    @property
    def warning(self) -> str | None:
        """The delivery warning, when delivery is failing."""
        return delivery_warning(self.delivery, self.oldest_queued_at, self.now)


@dataclass(frozen=True)
class Health:
    """The verdict of ``cfban health``."""

    ok: bool
    reason: str


def judge(status: Status, max_queue_age: float) -> Health:
    """Whether bans reach Cloudflare in time, and the daemon (if one reported) is alive."""
    daemon = status.daemon
    waited = status.oldest_age
    problem = _persistent_problem(status)
    if problem is not None:
        return Health(False, f"delivery waits: {problem}")
    if waited is not None and waited > max_queue_age:
        error = status.delivery.last_error if status.delivery.failing else None
        error = error or (daemon.last_error if daemon is not None else None)
        return Health(
            False,
            f"a ban has waited {age(waited)} for Cloudflare (more than max_queue_age "
            f"{age(max_queue_age)}; last error: {error or 'none'})",
        )
    if daemon is not None:
        if daemon.stopped:
            return Health(False, "the daemon stopped")
        stale = status.now - daemon.updated_at
        if stale > STALE_AFTER:
            return Health(False, f"the daemon has not reported for {stale:.0f} s")
    elif status.delivery.last_attempt is None:
        return Health(
            False,
            "no status file and no delivery yet: is `cfban watch` (or the fail2ban action) "
            "running with this state dir?",
        )
    return Health(True, "ok")


def _persistent_problem(status: Status) -> str | None:
    """The problem delivery waits on that waiting will not fix, as one line (None: none)."""
    problem = status.cloudflare.get("problem")
    if isinstance(problem, dict) and problem.get("kind") in PERSISTENT:
        return f"{problem.get('kind')}: {problem.get('message')} (fix: {problem.get('fix')})"
    record = status.delivery
    if record.failing and record.kind in PERSISTENT:
        return f"{record.kind}: {record.last_error} (fix: {record.fix})"
    return None


def gather(
    state_dir: Path, store: StateStoreLike, now: float, cloudflare: dict[str, Any] | None = None
) -> Status:
    """The status at ``now``, from the state database and the daemon's file (if any);
    ``cloudflare`` is the Cloudflare figures read beside them."""
    raw = read_status(state_dir)
    return Status(
        now=now,
        daemon=DaemonStatus.from_json(raw) if raw is not None else None,
        delivery=store.delivery_record(),
        queued=store.depth(),
        oldest_queued_at=store.oldest_queued_at(),
        cloudflare=cloudflare or {},
    )
