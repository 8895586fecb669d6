"""The ``cfban`` command: a thin typer app.

Each command parses its arguments, calls one library function and turns a
:class:`~cfban.errors.CfbanError` into one line on stderr and its exit code
(0 ok, 1 error, 2 usage, 78 bad configuration). Commands live in one module per area;
heavy imports happen inside the commands so that ``cfban ban`` starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cfban import __version__
from cfban.cli import _allow, _bans, _fail2ban, _filter, _origin, _realip, _watch
from cfban.cli._context import AppContext, run_guarded

app = typer.Typer(
    name="cfban",
    help=(
        "Ban abusive clients at Cloudflare, on their real address.\n\n"
        "cfban reads nginx logs with fail2ban-format filters, resolves the real client "
        "address behind Cloudflare, and pushes bans into Cloudflare's firewall "
        "(IP Access Rules, or an IP List used by a WAF custom rule).\n\n"
        "With no API token configured everything runs as a dry run: the Cloudflare "
        "calls are printed, not made.\n\n"
        "Try: cfban test-filter nginx-probes access.log"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cfban {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Configuration file (TOML). Default: $CFBAN_CONFIG, else /etc/cfban/cfban.toml.",
            dir_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = AppContext(config_path=config)


for _module in (_filter, _bans, _allow, _realip, _watch, _fail2ban, _origin):
    _module.register(app)


def main() -> None:
    """Entry point of the ``cfban`` console script."""
    sys.exit(run_guarded(app))
