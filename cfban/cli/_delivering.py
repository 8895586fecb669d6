"""``cfban deliver`` (also as the background deliverer), ``setup`` and ``check``."""

from __future__ import annotations

from typing import Annotated

import typer

from cfban.cli._common import DELIVERER_LOG, err, finish_delivery, print_checks, service_for
from cfban.cli._context import app_context

_DELIVER_HELP = """Send every queued operation to Cloudflare now.

Expired bans become removals; failed operations are retried with backoff until the queue is
empty or --deadline passes. Only one cfban delivers at a time: if another one is at it, this
one leaves the queue to it. Exits 1 when operations are still queued at the end.

\b
Examples:
  cfban deliver
  cfban deliver --deadline 30
  cfban deliver --linger 30     # what fail2ban's action starts in the background
"""


def deliver(
    ctx: typer.Context,
    deadline: Annotated[
        float, typer.Option("--deadline", min=0, help="Give up after this many seconds.")
    ] = 300.0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Operations per backend call.")
    ] = 100,
    linger: Annotated[
        float | None,
        typer.Option(
            "--linger",
            min=0,
            help="Run as the background deliverer: also take bans spooled by fail2ban's "
            "action, until nothing happened for this many seconds.",
        ),
    ] = None,
) -> None:
    if linger is not None:
        _linger(ctx, linger)
        return
    with service_for(ctx) as service:
        service.refresh_allowlist()  # when stale: what it covers is not sent
        depth = service.queue_depth()
        err(f"{depth['add']} adds and {depth['remove']} removes queued")
        report = service.deliver(deadline=deadline, wait=True, batch_size=batch_size, progress=err)
        finish_delivery(report)


def _linger(ctx: typer.Context, seconds: float) -> None:
    """Run as the background deliverer, logging to ``STATE_DIR/deliverer.log``."""
    from cfban.bans import BanService
    from cfban.cli._logging import configure
    from cfban.intake.deliverer import linger

    context = app_context(ctx)
    settings = context.settings
    context.save_rules()
    configure(settings.log_format, log_file=settings.resolved_state_dir / DELIVERER_LOG)
    with BanService(settings, recorder="deliverer") as service:
        service.refresh_allowlist()  # when stale: what it covers is not sent
        ran = linger(service, seconds)
    if ran.another_running:
        typer.echo("another cfban deliverer is running")
        return
    typer.echo(
        f"took {ran.ingested} spooled requests, refused {len(ran.refused)}; "
        f"added {ran.added}, removed {ran.removed}"
    )


_SETUP_HELP = """Create what the configured backend needs at Cloudflare, and say what was done.

The list backend creates its IP list and the WAF custom rule that blocks it (idempotently);
the access-rules backend needs nothing in advance.

\b
Example:
  cfban setup
"""


def setup(ctx: typer.Context) -> None:
    with service_for(ctx) as service:
        for line in service.setup():
            typer.echo(line)


_CHECK_HELP = """Check the configuration, the state, the logs, the token and its permissions.

For each configured log it reads the last lines and fails when their clients are Cloudflare
edges (nginx's real-IP setup is missing) or when CF-Connecting-IP arrives from peers that
are not Cloudflare (the origin is reachable directly). Then it verifies the token, the zone
or account, the permissions, and the list and its rule.

Prints one line per check (ok or FAIL); exits 1 if any check fails.

\b
Example:
  cfban check
"""


def check(ctx: typer.Context) -> None:
    with service_for(ctx) as service:
        results = service.check()
    print_checks(results)


def register(app: typer.Typer) -> None:
    """Add ``deliver``, ``setup`` and ``check``."""
    app.command("deliver", help=_DELIVER_HELP)(deliver)
    app.command("setup", help=_SETUP_HELP)(setup)
    app.command("check", help=_CHECK_HELP)(check)
