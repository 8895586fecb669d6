"""``cfban watch`` (the daemon), ``cfban status`` and ``cfban health``."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

import typer

from cfban.cli._context import app_context

_WATCH_HELP = """Tail the jails' logs, ban at Cloudflare, and lift bans when they expire.

Runs every enabled [jails.NAME] of the configuration: follows its logpath files (globs
too, across rotation), matches lines with its filter, resolves the real client address,
counts failures (maxretry within findtime) and bans for bantime. Bans are committed to the
state database before anything is sent; a separate thread delivers them to Cloudflare, so a
slow Cloudflare never stalls log reading. On a first start it reads from the end of existing
logs (--from-start reads them whole); on a restart it resumes exactly where it stopped.

SIGTERM or Ctrl-C stops it without unbanning; SIGHUP reloads the jails, ignoreip and
[realip] settings (a change to [cloudflare] or state_dir needs a restart).
Without an API token it is a dry run: the Cloudflare calls are logged, not made.

Example: cfban --config examples/cfban.toml watch --from-start --exit-idle 2
"""


def register(app: typer.Typer) -> None:
    """Add ``watch``, ``status`` and ``health``."""
    app.command("watch", help=_WATCH_HELP)(watch)
    app.command("status")(status)
    app.command("health")(health)


def watch(
    ctx: typer.Context,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Read existing logs from their beginning.")
    ] = False,
    exit_idle: Annotated[
        float | None,
        typer.Option(
            "--exit-idle",
            metavar="SECONDS",
            help="Exit once no line came for this long and nothing is queued (demos, tests).",
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics", metavar="HOST:PORT", help="Serve Prometheus metrics on /metrics."
        ),
    ] = None,
    log_format: Annotated[
        Literal["text", "json"] | None,
        typer.Option("--log-format", help="Log lines as text or JSON (default: log_format)."),
    ] = None,
    poll: Annotated[
        float, typer.Option("--poll", help="Seconds between checks when no event arrives.")
    ] = 1.0,
) -> None:
    import logging

    from cfban.bans import BanService
    from cfban.cli._logging import configure
    from cfban.config import Settings, load_settings
    from cfban.watch import Daemon, WatchOptions

    context = app_context(ctx)
    settings = context.settings
    configure(log_format or settings.log_format)
    log = logging.getLogger("cfban.watch")
    if settings.dry_run:
        log.warning("dry run: no API token configured; Cloudflare calls are logged, not made")

    def service(current: Settings) -> BanService:
        return BanService(current, writer=lambda line: log.info("%s", line))

    options = WatchOptions(
        from_start=from_start,
        exit_idle=exit_idle,
        poll=poll,
        metrics_address=metrics,
        reload=lambda: load_settings(context.config_path),
    )
    daemon = Daemon(settings, options, service_factory=service)
    daemon.install_signal_handlers()
    log.info("watching %d jail(s); state in %s", len(daemon.jails), settings.resolved_state_dir)
    daemon.run()


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status object.")] = False,
) -> None:
    """Show what the running daemon reports: jails, counters, queue depth.

    Reads the status file `cfban watch` keeps in the state directory (every 5 s).
    """
    from cfban.errors import CfbanError
    from cfban.watch import read_status
    from cfban.watch._status import judge

    settings = app_context(ctx).settings
    data = read_status(settings.resolved_state_dir)
    if data is None:
        raise CfbanError(
            f"no status in {settings.resolved_state_dir}",
            hint="is `cfban watch` running with this configuration and state_dir?",
        )
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    verdict = judge(data, time.time())
    metrics = data.get("metrics", {})
    queue = metrics.get("queue", {})
    typer.echo(f"daemon: pid {data.get('pid')}, {'healthy' if verdict.ok else verdict.reason}")
    typer.echo(f"mode: {'dry run' if data.get('dry_run') else 'live'}; config {data.get('config')}")
    typer.echo(
        f"lines read: {metrics.get('lines', 0)}, bad: {metrics.get('bad_lines', 0)}; "
        f"queue: {queue.get('add', 0)} to add, {queue.get('remove', 0)} to remove"
    )
    for name, jail in sorted(data.get("jails", {}).items()):
        typer.echo(
            f"jail {name}: failures {metrics.get('failures', {}).get(name, 0)}, "
            f"bans {metrics.get('bans', {}).get(name, 0)}, tracking {jail.get('tracked', 0)}; "
            f"files: {', '.join(jail.get('files', [])) or '(none yet)'}"
        )
    refused = metrics.get("refused", {})
    if refused:
        typer.echo("refused: " + ", ".join(f"{k} {v}" for k, v in sorted(refused.items())))
    if data.get("last_error"):
        typer.echo(f"last error: {data['last_error']}")
    from cfban.cloudflare import cloudflare_lines  # problem, list fill, budget

    for line in cloudflare_lines(data.get("cloudflare")):
        typer.echo(line)


def health(ctx: typer.Context) -> None:
    """Exit 0 when the daemon is alive and its queue is not stuck, 1 otherwise.

    Meant for container HEALTHCHECKs and monitoring: it reads the status file that
    `cfban watch` refreshes every 5 s in the state directory.
    """
    from cfban.watch import read_status
    from cfban.watch._status import judge

    settings = app_context(ctx).settings
    verdict = judge(read_status(settings.resolved_state_dir), time.time())
    typer.echo(verdict.reason, err=not verdict.ok)
    raise typer.Exit(0 if verdict.ok else 1)
