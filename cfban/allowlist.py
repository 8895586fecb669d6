"""The shared allowlist, as this host last read it: ``STATE_DIR/allowlist.json``.

The allowlist itself lives at Cloudflare (IP Access Rules in mode ``whitelist`` that carry
cfban's allow marker, see :mod:`cfban.cloudflare._allow`), so every host sharing the account
honours the same one. Each host keeps a copy here, read again on start-up of the daemon and
every ``[cloudflare] allowlist_refresh`` seconds while it runs, by ``cfban sync``, by
``cfban allow``/``disallow``/``allowed``, and by ``cfban ban`` when the copy is older than that.
The commit path (:class:`cfban.intake.commit.Intake`) refuses to ban any target that overlaps
a live entry of the copy, so the hook's fast path, which makes no Cloudflare call, applies it
too. An entry past its expiry no longer counts.

Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ALLOWLIST_FILE = "allowlist.json"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllowEntry:
    """One allowed address or network (``expires_at`` None: until disallowed)."""

    target: str
    expires_at: float | None
    note: str = ""
    ref: str = ""
    scope: str = ""

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    @property
    def network(self) -> Network:
        return ipaddress.ip_network(self.target, strict=False)


@dataclass(frozen=True)
class AllowList:
    """The copy: its entries and when they were read from Cloudflare (0: never)."""

    entries: tuple[AllowEntry, ...] = ()
    read_at: float = 0.0

    def covering(self, target: str, now: float) -> AllowEntry | None:
        """The live entry that overlaps ``target`` (an address or network), if any."""
        try:
            wanted = ipaddress.ip_network(target.strip(), strict=False)
        except ValueError:
            return None
        for entry in self.entries:
            if not entry.live(now):
                continue
            try:
                net = entry.network
            except ValueError:
                continue
            if net.version == wanted.version and net.overlaps(wanted):
                return entry
        return None

    def live(self, now: float) -> list[AllowEntry]:
        return [e for e in self.entries if e.live(now)]


def path_in(state_dir: Path) -> Path:
    return state_dir / ALLOWLIST_FILE


def load(state_dir: Path) -> AllowList:
    """The copy in ``state_dir`` (empty when there is none or it cannot be read)."""
    try:
        data = json.loads(path_in(state_dir).read_text(encoding="utf-8"))
        entries = tuple(AllowEntry(**item) for item in data["entries"])
        return AllowList(entries, float(data["read_at"]))
    except (OSError, ValueError, TypeError, KeyError):
        return AllowList()


def save(state_dir: Path, entries: Sequence[AllowEntry], read_at: float) -> AllowList:
    """Replace the copy atomically (readers never see half a file)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = path_in(state_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    body = {"read_at": read_at, "entries": [asdict(e) for e in entries]}
    tmp.write_text(json.dumps(body, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return AllowList(tuple(entries), read_at)


def describe(entry: AllowEntry) -> str:
    """``203.0.113.7 (until 2026-01-02 03:04:05 UTC)``."""
    if entry.expires_at is None:
        until = "until disallowed"
    else:
        until = time.strftime("until %Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.expires_at))
    return f"{entry.target} ({until})"


class AllowCache:
    """The copy for a long-lived reader: read again whenever the file changed."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._path = os.fspath(path_in(state_dir))  # asked about on every ban: made once
        self._stamp: tuple[int, int] | None = None
        self._list = AllowList()

    def current(self) -> AllowList:
        try:
            st = os.stat(self._path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._list = load(self._state_dir) if stamp is not None else AllowList()
        return self._list
