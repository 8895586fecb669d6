"""The spool: a directory of ban and unban requests, for writers that cannot reach the state.

fail2ban's Python action (``jails/action.d/cfban.py``) runs inside fail2ban-server, whose
Python may not have cfban installed. It writes each request as one small JSON file in
``STATE_DIR/spool/`` — written to a temporary name, flushed to disk, then renamed, so a
request is either whole or absent — and wakes a cfban process, which moves the requests into
the state (the outbox) and delivers them. A request is deleted only after it is committed.

File format (version 1), one JSON object per file named ``<nanoseconds>-<pid>-<seq>.json``::

    {"v": 1, "op": "ban" | "unban", "ip": "203.0.113.7", "jail": "nginx-probes",
     "expires_at": 1795571848.5 | null, "time": 1795571248.5}

``expires_at`` is ``null`` for a permanent ban; unbans carry none. Files sort in the order
they were written. This module is standard library only.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SPOOL_DIR = "spool"
VERSION = 1
_counter = itertools.count()


@dataclass(frozen=True)
class SpoolEntry:
    """One request read from the spool."""

    path: Path
    op: str
    ip: str
    jail: str
    expires_at: float | None
    time: float


def spool_dir(state_dir: Path) -> Path:
    """The spool directory inside ``state_dir``."""
    return state_dir / SPOOL_DIR


def write_entry(
    directory: Path,
    *,
    op: str,
    ip: str,
    jail: str,
    expires_at: float | None = None,
    now: float | None = None,
) -> Path:
    """Write one request durably; return its path.

    Raises:
        OSError: the spool cannot be written.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.time_ns()
    name = f"{stamp:020d}-{os.getpid()}-{next(_counter):06d}"
    data = {"v": VERSION, "op": op, "ip": ip, "jail": jail, "expires_at": expires_at,
            "time": time.time() if now is None else now}  # fmt: skip
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    final = directory / f"{name}.json"
    os.replace(tmp, final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def _parse(path: Path) -> SpoolEntry:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ValueError("not a version 1 spool entry")
    op, ip, jail = data.get("op"), data.get("ip"), data.get("jail")
    if op not in ("ban", "unban") or not isinstance(ip, str) or not isinstance(jail, str):
        raise ValueError("op, ip or jail missing or invalid")
    expires = data.get("expires_at")
    if expires is not None and not isinstance(expires, int | float):
        raise ValueError("expires_at is not a number")
    stamp = data.get("time")
    return SpoolEntry(
        path=path,
        op=op,
        ip=ip,
        jail=jail,
        expires_at=None if expires is None else float(expires),
        time=float(stamp) if isinstance(stamp, int | float) else 0.0,
    )


def read_entries(directory: Path, limit: int = 10_000) -> Iterator[SpoolEntry]:
    """The requests waiting in ``directory``, oldest first. A malformed file is moved to
    ``bad/`` beside them, with a warning, and skipped."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except FileNotFoundError:
        return
    for name in names[:limit]:
        path = directory / name
        try:
            yield _parse(path)
        except FileNotFoundError:
            continue  # taken by another process
        except (OSError, ValueError) as exc:
            log.warning("spool file %s is malformed (%s); moved to %s/bad", path, exc, directory)
            (directory / "bad").mkdir(mode=0o700, exist_ok=True)
            try:
                os.replace(path, directory / "bad" / name)
            except OSError:
                pass


def done(entries: list[SpoolEntry]) -> None:
    """Delete requests that are committed to the state."""
    for entry in entries:
        try:
            entry.path.unlink()
        except FileNotFoundError:
            pass
