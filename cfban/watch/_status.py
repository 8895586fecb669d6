"""The status file: what ``cfban status`` shows and what ``cfban health`` judges.

The daemon rewrites ``STATE_DIR/status.json`` (atomically) every few seconds. Health means:
the file is fresh (the daemon is alive and its loop turns), delivery is not held up by a
problem that waiting will not fix (a revoked token, a lost permission, a full list, a
deleted list: ``cloudflare.problem`` in the file), and the oldest queued operation is not
older than ``stuck_after`` (delivery is not stuck).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfban.cloudflare import PERSISTENT

STATUS_FILE = "status.json"
#: The daemon writes the file at least this often.
STATUS_INTERVAL = 5.0
STALE_AFTER = 30.0
STUCK_AFTER = 900.0


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
class Health:
    """The verdict of ``cfban health``."""

    ok: bool
    reason: str


def judge(status: dict[str, Any] | None, now: float, *, stuck_after: float = STUCK_AFTER) -> Health:
    """Whether the daemon that wrote ``status`` is healthy at ``now``."""
    if status is None:
        return Health(False, "no status file: is `cfban watch` running with this state dir?")
    age = now - float(status.get("updated_at", 0))
    if status.get("stopped"):
        return Health(False, "the daemon stopped")
    if age > STALE_AFTER:
        return Health(False, f"the daemon has not reported for {age:.0f} s")
    problem = (status.get("cloudflare") or {}).get("problem")
    if isinstance(problem, dict) and problem.get("kind") in PERSISTENT:
        # Waiting will not fix it: say so now rather than when the queue is old.
        return Health(
            False,
            f"delivery waits: {problem.get('kind')}: {problem.get('message')} "
            f"(fix: {problem.get('fix')})",
        )
    oldest = status.get("oldest_queued_at")
    if isinstance(oldest, int | float) and now - oldest > stuck_after:
        return Health(
            False,
            f"an operation has waited {now - oldest:.0f} s for Cloudflare "
            f"(last error: {status.get('last_error') or 'none'})",
        )
    return Health(True, "ok")
