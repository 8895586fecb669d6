"""``cfban ips`` and ``cfban nginx-snippet``: Cloudflare's ranges and the nginx include.

Thin: :mod:`cfban.realip` loads, refreshes and renders; this module parses options and prints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfban.cli._context import app_context

if TYPE_CHECKING:
    from cfban.realip import CloudflareRanges, RefreshResult

_IPS_HELP = """Show Cloudflare's IP ranges in use and where they come from.

cfban trusts CF-Connecting-IP only from these ranges and never bans an address inside them.
They come from the state directory when `cfban ips --refresh` stored a copy there, else from
the list bundled with cfban.

--refresh fetches the current list from Cloudflare (GET /ips on [cloudflare] api_url, no
token needed), checks it and stores it; a bad or partial answer keeps the ranges in use.
When an origin lock is applied (`cfban origin lock`), it is refreshed with the new ranges.

\b
Examples:
  cfban ips
  cfban ips --refresh
  cfban ips --json | jq -r '.ipv4_cidrs[]'
"""

_SNIPPET_HELP = """Print an nginx include that restores the real client address behind Cloudflare.

It trusts CF-Connecting-IP only from Cloudflare's ranges (and from the proxies given with
--trusted-proxy or in [realip] trusted_proxies), defines the 'cfban' access-log format cfban's
filters read, and a $cfban_via_cloudflare variable to lock the origin to Cloudflare.

\b
Examples:
  cfban nginx-snippet > /etc/nginx/conf.d/cfban.conf && nginx -t && nginx -s reload
  cfban nginx-snippet --trusted-proxy 127.0.0.1     # a local cloudflared tunnel
"""


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _as_json(ranges: CloudflareRanges, result: RefreshResult | None) -> dict[str, Any]:
    data: dict[str, Any] = {"source": ranges.source, **ranges.to_json()}
    if result is not None:
        data["added"] = list(result.added)
        data["removed"] = list(result.removed)
    return data


def _as_text(ranges: CloudflareRanges, result: RefreshResult | None) -> str:
    lines: list[str] = []
    if result is not None:
        if result.changed:
            lines.append(
                f"Refreshed from {ranges.url}: {len(result.added)} added, "
                f"{len(result.removed)} removed"
            )
            lines += [f"  + {cidr}" for cidr in result.added]
            lines += [f"  - {cidr}" for cidr in result.removed]
        else:
            lines.append(f"Refreshed from {ranges.url}: no change")
    lines.append(f"Cloudflare ranges in use: {len(ranges.ipv4)} IPv4 + {len(ranges.ipv6)} IPv6")
    lines.append(f"Source: {ranges.source}")
    if ranges.fetched_at is not None:
        lines.append(f"Fetched: {_when(ranges.fetched_at)} from {ranges.url}")
    lines.append("IPv4:")
    lines += [f"  {cidr}" for cidr in ranges.ipv4]
    lines.append("IPv6:")
    lines += [f"  {cidr}" for cidr in ranges.ipv6]
    return "\n".join(lines)


def run_ips(
    ctx: typer.Context,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Fetch the current ranges from Cloudflare first.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a list.")
    ] = False,
) -> None:
    from cfban.realip import load_ranges, refresh_ranges

    settings = app_context(ctx).settings
    result = refresh_ranges(settings) if refresh else None
    ranges = result.ranges if result is not None else load_ranges(settings)
    if as_json:
        typer.echo(json.dumps(_as_json(ranges, result), indent=2))
    else:
        typer.echo(_as_text(ranges, result))
    if result is not None:
        from cfban.origin import refresh_if_locked  # an applied origin lock follows the ranges

        for line in refresh_if_locked(settings):
            typer.echo(line, err=True)


def _check_proxies(values: list[str] | None) -> list[str]:
    from cfban.realip import parse_target

    for value in values or []:
        try:
            parse_target(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not an IP address or CIDR network") from None
    return values or []


def run_nginx_snippet(
    ctx: typer.Context,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="CIDR",
            help="Also trust this proxy (address or CIDR), e.g. a local cloudflared; "
            "repeatable. [realip] trusted_proxies are always included.",
            callback=_check_proxies,
        ),
    ] = None,
) -> None:
    from cfban.realip import load_ranges, render_snippet

    settings = app_context(ctx).settings
    proxies = list(dict.fromkeys([*settings.realip.trusted_proxies, *(trusted_proxy or [])]))
    typer.echo(render_snippet(load_ranges(settings), proxies), nl=False)


def register(app: typer.Typer) -> None:
    """Add ``ips`` and ``nginx-snippet`` to ``app``."""
    app.command("ips", help=_IPS_HELP)(run_ips)
    app.command("nginx-snippet", help=_SNIPPET_HELP)(run_nginx_snippet)
