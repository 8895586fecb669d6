"""The sources allowed to reach the origin's web ports, and the gate they must pass first.

An :class:`AllowList` is Cloudflare's ranges plus ``[origin] allow``, collapsed per family
(overlaps merged, sorted), so every renderer gets the same deterministic list and nftables'
interval sets never see two overlapping elements. :func:`build_allowlist` refuses, with the
reason and the fix, a set that would lock the wrong people out or let everybody in:

- *empty or partial*: no IPv4 or no IPv6 Cloudflare range (a half-answer would cut off every
  visitor of the missing family);
- *stale*: ranges older than ``[origin] max_range_age`` (or of unknown age) -- Cloudflare adds
  ranges, and an edge missing from the list means dropped visitors;
- *too broad*: any range wider than a /8 (IPv4) or /16 (IPv6), which would make the lock a
  formality.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cfban.errors import FirewallError
from cfban.realip import CloudflareRanges
from cfban.realip._ranges import BUNDLED_DATE

__all__ = ["AllowList", "build_allowlist", "ranges_age"]

_WIDEST = {4: 8, 6: 16}
_REFRESH = "run `cfban ips --refresh` to fetch Cloudflare's current ranges"

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllowList:
    """The collapsed CIDRs per family, and where Cloudflare's part came from."""

    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    source: str
    extra: tuple[str, ...] = ()

    @property
    def cidrs(self) -> tuple[str, ...]:
        """IPv4 first, then IPv6."""
        return self.ipv4 + self.ipv6


def ranges_age(ranges: CloudflareRanges, now: float) -> float | None:
    """Seconds since ``ranges`` were published or fetched; None when nobody knows."""
    if ranges.fetched_at is not None:
        return max(0.0, now - ranges.fetched_at)
    if ranges.source.startswith("bundled"):
        published = datetime.strptime(BUNDLED_DATE, "%Y-%m-%d").replace(tzinfo=UTC)
        return max(0.0, now - published.timestamp())
    return None


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.0f} days" if days >= 2 else f"{seconds / 3600:.0f} hours"


def _parse(values: Iterable[str], what: str) -> list[Net]:
    nets: list[Net] = []
    for value in values:
        try:
            net = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise FirewallError(
                f"{value!r} in {what} is not an IP address or CIDR network"
            ) from None
        if net.prefixlen < _WIDEST[net.version]:
            raise FirewallError(
                f"{value.strip()} in {what} is wider than a /{_WIDEST[net.version]}: "
                "a lock that lets that much in locks nothing",
                hint="list narrower networks",
            )
        nets.append(net)
    return nets


def _collapse(nets: Sequence[Net], version: int) -> tuple[str, ...]:
    if version == 4:
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        return tuple(str(n) for n in ipaddress.collapse_addresses(v4))
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return tuple(str(n) for n in ipaddress.collapse_addresses(v6))


def build_allowlist(
    ranges: CloudflareRanges, extra: Sequence[str], *, now: float, max_age: int
) -> AllowList:
    """Cloudflare's ranges plus ``extra``, after the gate (see the module docstring).

    ``max_age`` is in seconds; a negative value turns the age check off.

    Raises:
        FirewallError: the ranges are empty, partial, stale or too broad; the message says
            which and how to fix it.
    """
    cloudflare = _parse([*ranges.ipv4, *ranges.ipv6], f"the Cloudflare ranges ({ranges.source})")
    for version in (4, 6):
        if not any(n.version == version for n in cloudflare):
            raise FirewallError(
                f"the Cloudflare ranges ({ranges.source}) have no IPv{version} range; "
                f"refusing to lock the origin with a partial set (every IPv{version} visitor "
                "would be cut off)",
                hint=_REFRESH,
            )
    if max_age >= 0:
        age = ranges_age(ranges, now)
        if age is None:
            raise FirewallError(
                f"the Cloudflare ranges ({ranges.source}) carry no fetch time, so their age "
                "is unknown; refusing to lock the origin with ranges that may be stale",
                hint=_REFRESH,
            )
        if age > max_age:
            raise FirewallError(
                f"the Cloudflare ranges ({ranges.source}) are {_days(age)} old, older than "
                f"[origin] max_range_age ({_days(max_age)}); refusing to lock the origin with "
                "stale ranges (a missing Cloudflare edge means dropped visitors)",
                hint=f"{_REFRESH}, or raise [origin] max_range_age",
            )
    extras = _parse(extra, "[origin] allow")
    nets = [*cloudflare, *extras]
    return AllowList(
        ipv4=_collapse(nets, 4),
        ipv6=_collapse(nets, 6),
        source=ranges.source,
        extra=tuple(str(n) for n in extras),
    )
