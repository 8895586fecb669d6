"""cfban's Cloudflare client: the HTTP layer, the host-wide request budget and the backends.

The rest of cfban uses only the names below: :func:`make_backend` builds the configured
:class:`Backend` (``access-rules``, ``list``, or a dry run without a token), which takes
:class:`BanEntry` values and reports :class:`RemoteEntry` values it owns.
"""

from __future__ import annotations

from cfban.cloudflare._access_rules import AccessRulesBackend
from cfban.cloudflare._allow import AllowRules
from cfban.cloudflare._answers import RetryLaterError
from cfban.cloudflare._backend import Backend, BanEntry, DryRunBackend, RemoteEntry
from cfban.cloudflare._factory import make_allow_rules, make_backend
from cfban.cloudflare._figures import cloudflare_checks, cloudflare_lines, cloudflare_status
from cfban.cloudflare._http import CloudflareHttp, Envelope, NotFoundError
from cfban.cloudflare._limiter import HostRateLimiter
from cfban.cloudflare._listops import ListFullError
from cfban.cloudflare._lists import ListBackend
from cfban.cloudflare._marker import Marker, format_marker, parse_marker
from cfban.cloudflare._problems import KINDS, PERSISTENT, Problem, classify
from cfban.cloudflare._stall import StallRecord, clear_problem, read_problem, record_problem
from cfban.cloudflare._stats import request_counts

__all__ = [
    "KINDS",
    "PERSISTENT",
    "AccessRulesBackend",
    "AllowRules",
    "Backend",
    "BanEntry",
    "CloudflareHttp",
    "DryRunBackend",
    "Envelope",
    "HostRateLimiter",
    "ListBackend",
    "ListFullError",
    "Marker",
    "NotFoundError",
    "Problem",
    "RemoteEntry",
    "RetryLaterError",
    "StallRecord",
    "classify",
    "cloudflare_checks",
    "cloudflare_lines",
    "cloudflare_status",
    "clear_problem",
    "format_marker",
    "make_allow_rules",
    "make_backend",
    "parse_marker",
    "read_problem",
    "record_problem",
    "request_counts",
]
