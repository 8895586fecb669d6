"""The delivery problem record: why bans are waiting, since when, and when to try again.

``STATE_DIR/delivery-problem.json`` is written by whichever process delivers (the delivery
lock makes that one at a time) and read by every other: the daemon's status and metrics,
``cfban check``, and delivery itself, which does not call Cloudflare before ``retry_at``
while a problem persists. That gate is what keeps a revoked token, a deleted list or a full
list from burning the request budget: retries slow to a few per minute, whatever number of
new bans arrives meanwhile.

Retry spacing while the same problem repeats (``failures`` in a row):

* a persistent problem (:data:`~cfban.cloudflare._problems.PERSISTENT`): 10, 20, 40, then
  every 60 s, so a fix shows within a minute;
* any other problem, from its third failure in a row on: at least 15 s (the per-operation
  backoff of ``cfban.delivery`` usually asks for more);
* a ``Retry-After`` from Cloudflare or from cfban's own budget always wins when longer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cfban.cloudflare._problems import PERSISTENT, Problem

PROBLEM_FILE = "delivery-problem.json"
_PERSISTENT_STEPS = (10.0, 20.0, 40.0, 60.0)
_REPEATED_MIN = 15.0
_REPEATED_FROM = 3


@dataclass(frozen=True)
class StallRecord:
    """The current delivery problem (see the module docstring)."""

    kind: str
    message: str
    fix: str
    since: float
    last_at: float
    retry_at: float
    failures: int

    @property
    def persistent(self) -> bool:
        return self.kind in PERSISTENT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_problem(state_dir: Path) -> StallRecord | None:
    """The recorded problem, or None when delivery is not failing (or nothing can be read)."""
    try:
        data = json.loads((state_dir / PROBLEM_FILE).read_text(encoding="utf-8"))
        return StallRecord(
            kind=str(data["kind"]),
            message=str(data["message"]),
            fix=str(data["fix"]),
            since=float(data["since"]),
            last_at=float(data["last_at"]),
            retry_at=float(data["retry_at"]),
            failures=int(data["failures"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def retry_gap(kind: str, failures: int) -> float:
    """Seconds before the next call to Cloudflare after ``failures`` in a row of ``kind``."""
    if kind in PERSISTENT:
        return _PERSISTENT_STEPS[min(failures, len(_PERSISTENT_STEPS)) - 1]
    return _REPEATED_MIN if failures >= _REPEATED_FROM else 0.0


def record_problem(
    state_dir: Path, problem: Problem, now: float, retry_after: float | None = None
) -> tuple[StallRecord, bool]:
    """Record one more failure; return the record and whether the problem is new (no
    problem before, or another kind)."""
    before = read_problem(state_dir)
    same = before is not None and before.kind == problem.kind
    failures = before.failures + 1 if same and before is not None else 1
    gap = max(retry_gap(problem.kind, failures), retry_after or 0.0)
    record = StallRecord(
        kind=problem.kind,
        message=problem.message,
        fix=problem.fix,
        since=before.since if same and before is not None else now,
        last_at=now,
        retry_at=now + gap,
        failures=failures,
    )
    _write(state_dir, record)
    return record, not same


def clear_problem(state_dir: Path) -> StallRecord | None:
    """Delivery works again: drop the record; return what it said (None if there was none)."""
    before = read_problem(state_dir)
    if before is not None:
        try:
            (state_dir / PROBLEM_FILE).unlink()
        except FileNotFoundError:
            pass
    return before


def _write(state_dir: Path, record: StallRecord) -> None:
    path = state_dir / PROBLEM_FILE
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record.as_dict(), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # the record informs; failing to write it must not stop delivery
