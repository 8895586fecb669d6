"""``cfban watch`` (the daemon), ``cfban status`` and ``cfban health``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cfban.cli._context import app_context

if TYPE_CHECKING:
    from cfban.watch import DaemonStatus, Status

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


def _status(ctx: typer.Context) -> tuple[Status, float]:
    """The status now and the configured ``max_queue_age``."""
    from cfban.clock import SystemClock
    from cfban.cloudflare import cloudflare_status
    from cfban.state import StateStore
    from cfban.watch import gather

    settings = app_context(ctx).settings
    clock = SystemClock()
    with StateStore.open(settings.resolved_state_dir, clock) as store:
        found = gather(
            settings.resolved_state_dir,
            store,
            clock.now(),
            cloudflare_status(settings, settings.resolved_state_dir, clock),
        )
    return found, float(settings.cloudflare.max_queue_age)


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status object.")] = False,
) -> None:
    """Show how delivery goes (the state database) and what the daemon reports, if one runs.

    Works without a daemon (fail2ban hook mode): the delivery record and the queue come
    from the state database; jails and counters from the file `cfban watch` keeps there.
    """
    from dataclasses import asdict

    from cfban.intake.alarm import age, stamp
    from cfban.watch import judge

    found, max_age = _status(ctx)
    if as_json:
        typer.echo(json.dumps(asdict(found), indent=2, sort_keys=True, default=str))
        return
    verdict = judge(found, max_age)
    delivery = found.delivery
    typer.echo(f"health: {'ok' if verdict.ok else verdict.reason}")
    if delivery.last_attempt is None:
        state = "no delivery round yet"
    elif delivery.failing:
        state = f"FAILING since {stamp(delivery.failing_since or 0)}"
    else:
        state = "ok"
    success = stamp(delivery.last_success) if delivery.last_success else "never"
    typer.echo(f"deliverer: {state}; last success {success}")
    if delivery.failing:
        typer.echo(f"last error: {delivery.kind}: {delivery.last_error}")
        if delivery.fix:
            typer.echo(f"fix: {delivery.fix}")
    from cfban.cloudflare import cloudflare_lines  # problem, list fill, budget

    for line in cloudflare_lines(found.cloudflare):
        typer.echo(line)
    oldest = found.oldest_age
    typer.echo(
        f"queue: {found.queued.get('add', 0)} to add, {found.queued.get('remove', 0)} to "
        f"remove; oldest queued {age(oldest) if oldest is not None else '-'}"
    )
    daemon = found.daemon
    if daemon is None:
        typer.echo("daemon: no status file (not running `cfban watch`)")
        return
    _daemon_lines(daemon)


def _daemon_lines(daemon: DaemonStatus) -> None:
    metrics = daemon.metrics
    typer.echo(f"daemon: pid {daemon.pid}{', stopped' if daemon.stopped else ''}")
    typer.echo(f"mode: {'dry run' if daemon.dry_run else 'live'}; config {daemon.config}")
    typer.echo(f"lines read: {metrics.get('lines', 0)}, bad: {metrics.get('bad_lines', 0)}")
    for name, jail in sorted(daemon.jails.items()):
        typer.echo(
            f"jail {name}: failures {metrics.get('failures', {}).get(name, 0)}, "
            f"bans {metrics.get('bans', {}).get(name, 0)}, tracking {jail.get('tracked', 0)}; "
            f"files: {', '.join(jail.get('files', [])) or '(none yet)'}"
        )
    refused = metrics.get("refused", {})
    if refused:
        typer.echo("refused: " + ", ".join(f"{k} {v}" for k, v in sorted(refused.items())))
    if daemon.last_error:
        typer.echo(f"daemon's last error: {daemon.last_error}")


def health(ctx: typer.Context) -> None:
    """Exit 0 when bans reach Cloudflare in time and the daemon (if any) is alive, else 1.

    Fails when a queued ban has waited longer than [cloudflare] max_queue_age (default
    15 min), when the daemon's status file is stale or says it stopped, or when nothing has
    run yet. Meant for container HEALTHCHECKs and monitoring; works in hook mode too.
    """
    from cfban.watch import judge

    found, max_age = _status(ctx)
    verdict = judge(found, max_age)
    typer.echo(verdict.reason, err=not verdict.ok)
    if found.warning is not None and not verdict.ok:
        typer.echo(found.warning, err=True)
    raise typer.Exit(0 if verdict.ok else 1)
