"""``cfban fail2ban-install``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_HELP = """Install cfban's filters, fail2ban action and example jails into fail2ban.

Writes filter.d/cfban-*.conf (cfban's filters; fail2ban's own stay untouched),
action.d/cfban.conf and action.d/cfban.py (the actions), and jail.d/cfban-nginx.conf
(example jails, all disabled). Enable a jail in jail.local, then reload fail2ban:

\b
  cfban fail2ban-install
  printf '[cfban-nginx-probes]\\nenabled = true\\n' >> /etc/fail2ban/jail.local
  fail2ban-client reload

Files that exist with other content are kept unless --force is given.
"""


def register(app: typer.Typer) -> None:
    """Add ``fail2ban-install``."""
    app.command("fail2ban-install", help=_HELP)(fail2ban_install)


def fail2ban_install(
    prefix: Annotated[
        Path, typer.Option("--prefix", help="fail2ban's configuration directory.")
    ] = Path("/etc/fail2ban"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite changed files.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be written, write nothing.")
    ] = False,
) -> None:
    from cfban.fail2ban_install import install

    report = install(prefix, force=force, dry_run=dry_run)
    verb = "would write" if dry_run else "wrote"
    for path in report.written:
        typer.echo(f"{verb} {path}")
    for path in report.unchanged:
        typer.echo(f"up to date {path}")
    for path in report.kept:
        typer.echo(f"kept {path} (it differs; --force overwrites it)", err=True)
    if not dry_run and report.written:
        typer.echo("now enable jails in jail.local and run: fail2ban-client reload")
