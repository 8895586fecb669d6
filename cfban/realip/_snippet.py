"""The nginx include printed by ``cfban nginx-snippet``.

It restores the real client address (``set_real_ip_from`` for every Cloudflare range in use
plus any ``--trusted-proxy``, ``real_ip_header CF-Connecting-IP``), defines the ``cfban``
access-log format that cfban's filters and resolver read (``docs/log-format.md``), and a
``geo`` variable, ``$cfban_via_cloudflare``, that is ``1`` when the TCP peer is Cloudflare or
a trusted proxy — the way to lock the origin to Cloudflare from inside nginx.

Everything in it is valid in nginx's ``http {}`` block.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from cfban import __version__
from cfban.realip._netset import parse_target
from cfban.realip._ranges import CloudflareRanges

__all__ = ["LOG_FORMAT", "LOG_FORMAT_NAME", "render_snippet"]

LOG_FORMAT_NAME = "cfban"
#: nginx's ``combined`` format plus the three fields the resolver needs (see the filters'
#: ``cfban-access-common.conf``): the TCP peer and the two forwarded headers, raw.
LOG_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" peer=$realip_remote_addr '
    'cf="$http_cf_connecting_ip" xff="$http_x_forwarded_for"'
)


def _when(ranges: CloudflareRanges) -> str:
    if ranges.fetched_at is None:
        return ""
    stamp = datetime.fromtimestamp(ranges.fetched_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f", fetched {stamp}"


def render_snippet(ranges: CloudflareRanges, trusted_proxies: Iterable[str] = ()) -> str:
    """The nginx include for ``ranges`` plus ``trusted_proxies`` (addresses or CIDRs).

    Raises:
        ValueError: a trusted proxy is not an address or CIDR.
    """
    proxies = list(dict.fromkeys(str(parse_target(p)) for p in trusted_proxies))
    peers = [*ranges.ipv4, *ranges.ipv6]
    lines = [
        f"# cfban {__version__}: nginx real-client setup for a site behind Cloudflare.",
        f"# Cloudflare ranges: {len(ranges.ipv4)} IPv4 + {len(ranges.ipv6)} IPv6, "
        f"{ranges.source}{_when(ranges)}.",
        "#",
        "# Put it in nginx's http {} block, e.g. save it as /etc/nginx/conf.d/cfban.conf",
        "# (conf.d/*.conf is included there on Debian), then: nginx -t && nginx -s reload",
        "# Cloudflare's ranges change now and then: run `cfban ips --refresh` and print",
        "# this again from time to time (a stale list means edge addresses in your logs).",
        "",
        "# 1. Believe CF-Connecting-IP only when the TCP peer is Cloudflare (or a proxy",
        "#    of yours below). $remote_addr becomes the client; $realip_remote_addr keeps",
        "#    the peer.",
    ]
    lines += [f"set_real_ip_from {cidr};" for cidr in peers]
    if proxies:
        lines.append("# trusted proxies of this host (--trusted-proxy)")
        lines += [f"set_real_ip_from {proxy};" for proxy in proxies]
    lines += [
        "real_ip_header CF-Connecting-IP;",
        "",
        "# 2. The access-log format cfban reads: 'combined' plus the TCP peer and the raw",
        "#    headers, so cfban can tell a forged header from a real one. Use it with",
        "#    e.g.  access_log /var/log/nginx/access.log cfban;",
        f"log_format {LOG_FORMAT_NAME} '{LOG_FORMAT}';",
        "",
        "# 3. Lock the origin to Cloudflare. Anyone who reaches nginx directly can send any",
        "#    CF-Connecting-IP; cfban ignores it, but the origin should not answer at all.",
        "#    Best: a firewall that accepts ports 80/443 only from these ranges (`cfban ips`",
        "#    lists them; ufw/nftables/security groups), or Cloudflare Tunnel / Authenticated",
        "#    Origin Pulls. In nginx, 'allow'/'deny' do not work for this: they see the",
        "#    restored client address. The variable below looks at the TCP peer instead;",
        "#    to use it, add to each server {} block:",
        "#        if ($cfban_via_cloudflare = 0) { return 444; }",
        "geo $realip_remote_addr $cfban_via_cloudflare {",
        "    default 0;",
    ]
    lines += [f"    {cidr} 1;" for cidr in [*peers, *proxies]]
    lines += ["}", ""]
    return "\n".join(lines)
