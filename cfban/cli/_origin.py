"""``cfban origin lock | unlock | refresh | status``: the host firewall lock to Cloudflare.

Thin: :class:`cfban.origin.OriginLock` renders and applies; this module parses and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cfban.cli._context import app_context

if TYPE_CHECKING:
    from cfban.origin import OriginLock

_ORIGIN_HELP = """Lock the origin to Cloudflare: only Cloudflare may connect to the web ports.

A ban at Cloudflare only holds if nobody can reach nginx around Cloudflare. The lock lets
new TCP connections to [origin] ports (80 and 443 by default) in only from Cloudflare's
ranges (`cfban ips`) plus [origin] allow; loopback, established connections and every other
port (SSH included) are untouched.

[origin] firewall picks how: "nftables" (a table of cfban's own, `table inet cfban`),
"firewalld" (two ipsets and a policy), or "urltable" (a list, one CIDR a line, for a
pfSense/OPNsense URL-table alias on an upstream firewall).

\b
Examples:
  cfban ips --refresh && cfban origin lock --dry-run
  cfban origin lock
  cfban origin status
  cfban origin unlock
"""

_LOCK_HELP = """Apply the lock (the same result however often it runs).

It refuses, saying why, when the Cloudflare ranges are empty, partial (no IPv4 or no IPv6)
or older than [origin] max_range_age (30 days by default): run `cfban ips --refresh` first.
nftables changes are one transaction (`nft -f`) on cfban's own table; nothing else of the
ruleset is touched. --dry-run prints what would be applied and changes nothing.

\b
Examples:
  cfban origin lock --dry-run > lock.nft && nft -c -f lock.nft
  cfban origin lock
  cfban origin lock --fetch                              # at boot: fresh ranges first
  cfban origin lock --firewall firewalld                 # writes /etc/firewalld/..., reloads
  cfban origin lock --firewall urltable --output /srv/www/cloudflare.txt
"""

_UNLOCK_HELP = """Remove the lock (cfban's nftables table, firewalld files or list), nothing else.

\b
Example:
  cfban origin unlock
"""

_REFRESH_HELP = """Bring the applied lock up to date with the ranges in use.

nftables: both sets are replaced in one transaction; established connections stay up.
`cfban ips --refresh` does this by itself when a lock is applied.

\b
Examples:
  cfban origin refresh
  cfban ips --refresh          # fetch Cloudflare's ranges, then refresh the lock
"""

_STATUS_HELP = """Say whether the origin accepts direct connections on the web ports.

Exits 1 when a port listens outside loopback with no lock in front of it, or when the lock
is out of date. `cfban check` includes the same line.

\b
Example:
  cfban origin status
"""

FirewallOption = Annotated[
    Literal["nftables", "firewalld", "urltable"] | None,
    typer.Option(
        "--firewall",
        help="nftables, firewalld or urltable. Default: [origin] firewall (nftables).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="firewalld: the configuration directory (default /etc/firewalld); urltable: the "
        "list file (default <state_dir>/origin-allowlist.txt); with --dry-run: where to write "
        "what would be applied (firewalld: a directory). Default: [origin] output.",
        show_default=False,
    ),
]

origin_app = typer.Typer(
    help=_ORIGIN_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _origin(
    ctx: typer.Context,
    firewall: Literal["nftables", "firewalld", "urltable"] | None,
    output: Path | None,
) -> OriginLock:
    from cfban.origin import OriginLock

    return OriginLock(app_context(ctx).settings, firewall=firewall, output=output)


def _fetch(origin: OriginLock) -> None:
    from cfban.errors import CfbanError
    from cfban.realip import refresh_ranges

    try:
        refresh_ranges(origin.settings)
    except CfbanError as exc:
        typer.echo(f"cfban: warning: {exc}; going on with the stored ranges", err=True)


def _dry_run(origin: OriginLock, output: Path | None) -> None:
    """Print what would be applied, or write it to ``output`` (firewalld: a directory)."""
    if output is None:
        typer.echo(origin.render(), nl=False)
        return
    from cfban.origin import _firewalld, _urltable

    if origin.firewall == "firewalld":
        files = _firewalld.render_files(origin.allowlist(), origin.ports)
        written = _firewalld.write_files(output, files)
    else:
        _urltable.write_file(output, origin.render())
        written = [output]
    typer.echo(f"wrote {', '.join(str(p) for p in written)} (nothing applied)")


def _echo(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


@origin_app.command("lock", help=_LOCK_HELP)
def lock(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be applied; change nothing.")
    ] = False,
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch",
            help="Fetch and store Cloudflare's current ranges first (as `cfban ips --refresh`); "
            "if that fails, go on with the stored ones (the age limit still applies).",
        ),
    ] = False,
    firewall: FirewallOption = None,
    output: OutputOption = None,
) -> None:
    origin = _origin(ctx, firewall, None if dry_run else output)
    if origin.firewall == "nftables" and output is not None and not dry_run:
        raise typer.BadParameter(
            "nftables has no output file; use --output with --dry-run, firewalld or urltable",
            param_hint="--output",
        )
    if fetch:
        _fetch(origin)
    if dry_run:
        _dry_run(origin, output)
    else:
        _echo(origin.lock())


@origin_app.command("unlock", help=_UNLOCK_HELP)
def unlock(
    ctx: typer.Context, firewall: FirewallOption = None, output: OutputOption = None
) -> None:
    _echo(_origin(ctx, firewall, output).unlock())


@origin_app.command("refresh", help=_REFRESH_HELP)
def refresh(
    ctx: typer.Context, firewall: FirewallOption = None, output: OutputOption = None
) -> None:
    _echo(_origin(ctx, firewall, output).refresh())


@origin_app.command("status", help=_STATUS_HELP)
def status(ctx: typer.Context) -> None:
    from cfban.cli._common import print_checks
    from cfban.origin import origin_checks

    print_checks(origin_checks(app_context(ctx).settings, always=True))


def register(app: typer.Typer) -> None:
    """Add ``origin`` and its commands to ``app``."""
    app.add_typer(origin_app, name="origin")
