"""Real client addresses behind Cloudflare, and the addresses cfban must never ban.

==============  ==========================================================================
``_netset``     address parsing/normalising; :class:`NetworkSet` (bisect over intervals),
                :class:`FirstCover` (the first of several sets holding an address)
``_ranges``     Cloudflare's ranges: bundled, stored, :func:`load_ranges`
``_refresh``    :func:`refresh_ranges` from ``GET {api_url}/ips``, validated before storing
``_resolver``   :class:`Resolver`: which address a log line is about (design §4)
``_guards``     :class:`BanGuard`: refuses Cloudflare, allowlisted and special addresses
``_snippet``    :func:`render_snippet`: the nginx include of ``cfban nginx-snippet``
==============  ==========================================================================
"""

from __future__ import annotations

from cfban.realip._guards import SPECIAL_RANGES, BanGuard, GuardRefusal, GuardStats
from cfban.realip._netset import FirstCover, NetworkSet, parse_address, parse_target
from cfban.realip._ranges import (
    BUNDLED_IPV4,
    BUNDLED_IPV6,
    CloudflareRanges,
    load_ranges,
    load_ranges_at,
    ranges_path,
    store_ranges,
)
from cfban.realip._refresh import RefreshResult, fetch_ranges, refresh_ranges
from cfban.realip._resolver import Resolution, Resolver
from cfban.realip._snippet import LOG_FORMAT, LOG_FORMAT_NAME, render_snippet

__all__ = [
    "BUNDLED_IPV4",
    "BUNDLED_IPV6",
    "LOG_FORMAT",
    "LOG_FORMAT_NAME",
    "SPECIAL_RANGES",
    "BanGuard",
    "CloudflareRanges",
    "FirstCover",
    "GuardRefusal",
    "GuardStats",
    "NetworkSet",
    "RefreshResult",
    "Resolution",
    "Resolver",
    "fetch_ranges",
    "load_ranges",
    "load_ranges_at",
    "parse_address",
    "parse_target",
    "ranges_path",
    "refresh_ranges",
    "render_snippet",
    "store_ranges",
]
