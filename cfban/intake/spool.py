"""The spool: a directory of ban and unban requests, for writers that cannot reach the state.

fail2ban's Python action (``jails/action.d/cfban.py``) runs inside fail2ban-server, whose
Python may not have cfban installed. It appends its requests to a journal file in
``STATE_DIR/spool/`` and wakes a cfban process, which moves the requests into the state (the
outbox) and delivers them. A request is deleted only after it is committed.

Two file kinds, both read in name order:

* a **journal** ``<nanoseconds>-<pid>-<seq>.jsonl``: one request per line, appended by one
  writer, each line flushed to disk (``fdatasync``) before the writer reports success — one
  disk flush per request, where a file per request costs two (the file and its directory).
  A journal appears (by rename from a dot-name) with its first line already flushed; a line
  without its final newline is not complete and is not read. The reader *claims* a journal
  by renaming it to ``….jsonl.taken`` and reads that; a writer that finds its journal
  renamed after an append cannot tell whether the line was read, so it writes that line
  again as the first line of a new journal (a request applied twice is harmless).
* a **single request** ``<nanoseconds>-<pid>-<seq>.json`` (written to a temporary name,
  flushed, renamed, directory flushed): one JSON object, the same fields.

Request format (version 1), one JSON object::

    {"v": 1, "op": "ban" | "unban", "ip": "203.0.113.7", "jail": "nginx-probes",
     "expires_at": 1795571848.5 | null, "time": 1795571248.5}

``expires_at`` is ``null`` for a permanent ban; unbans carry none. This module is standard
library only.
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

from cfban.intake.lock import SPOOL_DIR

log = logging.getLogger(__name__)

VERSION = 1
JOURNAL = ".jsonl"
TAKEN = ".jsonl.taken"
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


def is_request(name: str) -> bool:
    """Whether a file name in the spool holds requests (a journal or a single request)."""
    return name.endswith((".json", JOURNAL, TAKEN)) and not name.startswith(".")


def _parse(path: Path) -> SpoolEntry:
    return _entry(path, json.loads(path.read_text(encoding="utf-8")))


def _entry(path: Path, data: object) -> SpoolEntry:
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


def _quarantine(directory: Path, name: str, why: object) -> None:
    log.warning("spool file %s is malformed (%s); moved to %s/bad", directory / name, why,
                directory)  # fmt: skip
    (directory / "bad").mkdir(mode=0o700, exist_ok=True)
    try:
        os.replace(directory / name, directory / "bad" / name)
    except OSError:
        pass


def _claim(directory: Path, name: str) -> Path | None:
    """Rename a journal to its taken name (the writer then starts another); None if gone."""
    if name.endswith(TAKEN):
        return directory / name  # claimed by an earlier reader that stopped before done()
    taken = directory / (name[: -len(JOURNAL)] + TAKEN)
    try:
        os.rename(directory / name, taken)
    except FileNotFoundError:
        return None
    return taken


def _journal(directory: Path, name: str) -> Iterator[SpoolEntry]:
    path = _claim(directory, name)
    if path is None:
        return
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return
    lines = text.split(b"\n")[:-1]  # a last piece without its newline is written again
    if not lines:
        path.unlink(missing_ok=True)  # nothing complete in it: nothing to commit
        return
    entries: list[SpoolEntry] = []
    for number, line in enumerate(lines, 1):
        try:
            entries.append(_entry(path, json.loads(line)))
        except ValueError as exc:
            log.warning("spool journal %s line %d is malformed (%s); skipped", path, number, exc)
    if not entries:
        _quarantine(directory, path.name, "no valid line")
    yield from entries


def read_entries(directory: Path, limit: int = 10_000) -> Iterator[SpoolEntry]:
    """The requests waiting in ``directory``, oldest first (``limit`` files at most).

    A journal is claimed (renamed) as it is read; one with no complete line is deleted. A
    malformed single-request file is moved to ``bad/`` beside them, with a warning, and
    skipped; a malformed journal line is skipped with a warning.
    """
    try:
        names = sorted(n for n in os.listdir(directory) if is_request(n))
    except FileNotFoundError:
        return
    for name in names[:limit]:
        if not name.endswith(".json"):
            yield from _journal(directory, name)
            continue
        path = directory / name
        try:
            yield _parse(path)
        except FileNotFoundError:
            continue  # taken by another process
        except (OSError, ValueError) as exc:
            _quarantine(directory, name, exc)


def done(entries: list[SpoolEntry]) -> None:
    """Delete the files of requests that are committed to the state."""
    for path in dict.fromkeys(entry.path for entry in entries):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
