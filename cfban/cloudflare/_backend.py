"""The one interface every Cloudflare backend offers, and the dry-run backend.

The outbox (``cfban.delivery``) drives a :class:`Backend` and knows nothing of Cloudflare's
API: it adds :class:`BanEntry` values, removes targets, and lists what cfban owns remotely.

Rules every backend keeps:

* ``add`` is idempotent. An entry cfban already has for a target is kept and its expiry is
  raised to the later of both (never lowered); its jails are merged. The result maps each
  banned target to its ``ref`` (rule id or list item id). A target missing from the result
  was *not* banned and retrying will not help (the address is covered by an entry cfban did
  not make, or the backend cannot express it); the reason is logged as a warning. Failures
  that may pass (network, rate limit, Cloudflare errors) raise a
  :class:`~cfban.errors.CloudflareError` instead.
* ``remove`` deletes only entries carrying cfban's marker; one that is already gone counts as
  removed. With ``not_after`` an entry whose remote expiry is later is kept: another host
  still holds the ban. ``not_after=None`` removes regardless (manual unban).
* Nothing without cfban's marker is ever changed or deleted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cfban.cloudflare._marker import Marker, format_marker


@dataclass(frozen=True)
class BanEntry:
    """One ban to push: a normalised address or network, its expiry and the jails behind it."""

    target: str
    expires_at: float | None
    jails: tuple[str, ...]
    #: ``block``, ``managed_challenge``...; None: the backend's configured mode.
    action: str | None = None


@dataclass(frozen=True)
class RemoteEntry:
    """One cfban-owned entry found at Cloudflare; ``scope`` is the zone or account id."""

    target: str
    ref: str
    expires_at: float | None
    jails: tuple[str, ...]
    scope: str
    action: str = "block"


@runtime_checkable
class Backend(Protocol):
    """What the outbox calls; see the module docstring for the rules."""

    name: str

    def add(self, entries: Sequence[BanEntry]) -> dict[str, str]: ...

    def remove(
        self, targets: Sequence[tuple[str, str | None]], *, not_after: float | None
    ) -> list[str]: ...

    def list_owned(self) -> list[RemoteEntry]: ...

    def setup(self) -> list[str]: ...

    def check(self) -> list[tuple[str, bool, str]]: ...


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def to_network(value: str) -> Network:
    """``value`` (address, CIDR, address with ``/32`` or ``/128``) as a network.

    Raises:
        ValueError: not an address or network.
    """
    return ipaddress.ip_network(value.strip(), strict=False)


def canonical(value: str) -> str:
    """The one spelling cfban uses: a bare address for a single host, else the CIDR."""
    net = to_network(value)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def merge_entries(entries: Sequence[BanEntry], default_action: str = "block") -> dict[str, Marker]:
    """Entries by canonical target; the same target twice merges into one marker (an entry
    without an action does ``default_action``).

    Raises:
        ValueError: a target is not an address or network.
    """
    merged: dict[str, Marker] = {}
    for entry in entries:
        key = canonical(entry.target)
        marker = Marker.of(entry.expires_at, entry.jails, entry.action or default_action)
        if key in merged:
            marker = merged[key].merged(marker)
        merged[key] = marker
    return merged


class DryRunBackend:
    """Makes no Cloudflare call: describes each call it would make to ``writer``.

    It remembers what it was told within its lifetime so ``list_owned`` is consistent, and
    keeps every line in :attr:`calls`.
    """

    def __init__(self, kind: str, writer: Callable[[str], None] | None = None) -> None:
        self.name = f"dry-run ({kind})"
        self.kind = kind
        self._writer = writer
        self.calls: list[str] = []
        self._entries: dict[str, BanEntry] = {}

    def close(self) -> None:
        """Nothing to close."""

    def _say(self, line: str) -> None:
        self.calls.append(line)
        if self._writer is not None:
            self._writer(line)

    def add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        refs: dict[str, str] = {}
        for entry in entries:
            marker = Marker.of(entry.expires_at, entry.jails, entry.action or "block")
            self._say(f"dry run: would ban {entry.target} ({format_marker(marker)})")
            self._entries[entry.target] = entry
            refs[entry.target] = f"dry-run:{entry.target}"
        return refs

    def remove(
        self, targets: Sequence[tuple[str, str | None]], *, not_after: float | None
    ) -> list[str]:
        removed = []
        for target, _ref in targets:
            self._say(f"dry run: would unban {target}")
            self._entries.pop(target, None)
            removed.append(target)
        return removed

    def list_owned(self) -> list[RemoteEntry]:
        return [
            RemoteEntry(
                e.target,
                f"dry-run:{e.target}",
                e.expires_at,
                e.jails,
                "dry-run",
                e.action or "block",
            )  # fmt: skip
            for e in self._entries.values()
        ]

    def setup(self) -> list[str]:
        if self.kind == "list":
            line = "dry run: would create the IP list and its WAF custom rule if missing"
        else:
            line = "dry run: the access-rules backend needs nothing set up in advance"
        self._say(line)
        return [line]

    def check(self) -> list[tuple[str, bool, str]]:
        return [
            (
                "token",
                False,
                "no API token configured: cfban runs as a dry run and sends nothing to "
                "Cloudflare (set CLOUDFLARE_API_TOKEN or [cloudflare] api_token_file)",
            )
        ]
