"""``cfban allow``, ``disallow`` and ``allowed``: the shared allowlist.

Thin: :mod:`cfban.allowance` does the work. The allowlist is kept at Cloudflare (IP Access
Rules in mode ``whitelist``), so every host sharing the account honours it.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cfban.cli._common import service_for

_ALLOW_HELP = """Put an address or network on the shared allowlist.

No host sharing the Cloudflare account bans it while it is there: each one refuses to ban
it, lets go of its own ban of it and never adds it again with `cfban sync`. A live ban of it
is lifted now. Kept at Cloudflare as an IP Access Rule in mode whitelist (account level when
[cloudflare] account_id is set, else the zone's), which also makes Cloudflare skip blocks and
challenges for it. An address, an IPv4 /16 or /24, or an IPv6 /32, /48 or /64 (an IPv6
address is allowed as its /64, as it would be banned).

\\b
Examples:
  cfban allow 198.51.100.23 --for 1d --note "office NAT"
  cfban allow 2001:db8:5::/48
"""


def allow(
    ctx: typer.Context,
    ip: Annotated[str, typer.Argument(help="The address or network to allow.")],
    duration: Annotated[
        str | None,
        typer.Option("--for", help="How long: seconds or 10m/1h/1d (default: until disallowed)."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Why (shown in the dashboard).")] = "",
) -> None:
    from cfban import allowance
    from cfban.allowlist import describe
    from cfban.durations import parse_duration

    seconds: float | None = None
    if duration is not None:
        try:
            seconds = float(parse_duration(duration))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--for") from None
        if seconds <= 0:
            raise typer.BadParameter("must be a positive duration", param_hint="--for")
    with service_for(ctx, quick=True) as service:
        done = allowance.allow(service, ip, seconds=seconds, note=note)
        where = "at Cloudflare" if done.shared else "on this host only (dry run)"
        lifted = "; its ban was lifted" if done.lifted else ""
        typer.echo(f"allowed {describe(done.entry)} {where}{lifted}")


def disallow(
    ctx: typer.Context,
    ip: Annotated[str, typer.Argument(help="The address or network to take off.")],
) -> None:
    """Take an address or network off the shared allowlist (it may be banned again)."""
    from cfban import allowance

    with service_for(ctx, quick=True) as service:
        if allowance.disallow(service, ip):
            typer.echo(f"{ip} is off the shared allowlist")
        else:
            typer.echo(f"{ip} was not on the shared allowlist")


def allowed(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """List the shared allowlist (read from Cloudflare now)."""
    from cfban import allowance
    from cfban.cli._common import when

    with service_for(ctx) as service:
        current = allowance.refresh(service, force=True)
        entries = current.live(service.clock.now())
        if as_json:
            items = [
                {"target": e.target, "expires_at": e.expires_at, "note": e.note, "ref": e.ref}
                for e in entries
            ]
            typer.echo(json.dumps({"allowed": items}))
            return
        for e in entries:
            until = when(e.expires_at) if e.expires_at is not None else "until disallowed"
            typer.echo(f"{e.target:<30} {until:<24} {e.note}")
        typer.echo(f"{len(entries)} allowed")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("allow", help=_ALLOW_HELP)(allow)
    app.command("disallow")(disallow)
    app.command("allowed")(allowed)
