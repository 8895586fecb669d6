"""Lock the origin to Cloudflare: a host firewall allowlist from Cloudflare's ranges.

A ban at Cloudflare only holds if nobody can go around Cloudflare. The lock lets new TCP
connections to the web ports (``[origin] ports``, 80 and 443 by default) in only from
Cloudflare's ranges (:mod:`cfban.realip`) and ``[origin] allow``; everything else on the host
is left as it was.

===============  ======================================================================
``_allowlist``   :func:`build_allowlist`: ranges + extras, collapsed; the safety gate
``_nft``         nftables: ``table inet cfban`` rendered, applied, refreshed, read back
``_firewalld``   firewalld: two ipsets and a policy, as configuration files
``_urltable``    a plain list (one CIDR a line) for an upstream pfSense/OPNsense alias
``_lock``        :class:`OriginLock`: the lock of a configuration, applied or removed
``_check``       :func:`origin_checks`: is the origin still reachable directly?
===============  ======================================================================
"""

from __future__ import annotations

from cfban.origin._allowlist import AllowList, build_allowlist, ranges_age
from cfban.origin._check import origin_checks, public_listeners
from cfban.origin._lock import Firewall, OriginLock, refresh_if_locked

__all__ = [
    "AllowList",
    "Firewall",
    "OriginLock",
    "build_allowlist",
    "origin_checks",
    "public_listeners",
    "ranges_age",
    "refresh_if_locked",
]
