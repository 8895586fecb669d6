"""``cfban check``'s look at the logs: is nginx's real-IP setup right?

Reads the last lines of each configured log and counts two symptoms:

* the logged client is a Cloudflare edge — nginx's realip module is not set up (or its list
  of Cloudflare ranges is stale), so every ban would hit Cloudflare itself;
* a ``CF-Connecting-IP`` header arrived from a peer that is not Cloudflare (cfban's log
  format logs the peer) — the origin is reachable directly, and anyone can forge the header.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cfban.realip._netset import NetworkSet, parse_address

TAIL_BYTES = 256 * 1024
_FIRST = re.compile(r"^\s*(\S+)")
_PEER = re.compile(r' peer=(\S+) cf="([^"]*)"')


@dataclass
class LogFindings:
    """What the last lines of one log say about the real-IP setup."""

    path: str
    lines: int = 0
    edge_clients: int = 0
    direct_with_header: int = 0
    unreadable: str | None = None

    def problems(self) -> list[str]:
        """Sentences for the operator; empty when the log looks right."""
        found: list[str] = []
        if self.unreadable:
            found.append(f"cannot read it: {self.unreadable}")
        if self.edge_clients:
            found.append(
                f"{self.edge_clients} of the last {self.lines} lines name a Cloudflare edge as "
                "the client: nginx does not restore the real address (include the output of "
                "`cfban nginx-snippet` and reload nginx)"
            )
        if self.direct_with_header:
            found.append(
                f"{self.direct_with_header} of the last {self.lines} lines carry a "
                "CF-Connecting-IP header from a peer that is not Cloudflare: the origin is "
                "reachable directly and the header can be forged (lock the origin to "
                "Cloudflare's ranges; see `cfban nginx-snippet`)"
            )
        return found


def _tail(path: Path) -> list[str]:
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - TAIL_BYTES))
        data = handle.read()
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > TAIL_BYTES else lines


def inspect_log(path: Path, cloudflare: NetworkSet, trusted: NetworkSet) -> LogFindings:
    """Count the symptoms in the last lines (about 256 KiB) of ``path``."""
    findings = LogFindings(str(path))
    try:
        lines = _tail(path)
    except OSError as exc:
        findings.unreadable = exc.strerror or str(exc)
        return findings
    for line in lines:
        first = _FIRST.match(line)
        if first is None:
            continue
        findings.lines += 1
        client = parse_address(first.group(1))
        if client is not None and cloudflare.contains(client):
            findings.edge_clients += 1
        peer_field = _PEER.search(line)
        if peer_field is None:
            continue
        peer = parse_address(peer_field.group(1))
        header = peer_field.group(2).strip()
        if peer is not None and header not in ("", "-") and not trusted.contains(peer):
            findings.direct_with_header += 1
    return findings
