"""``cfban ban``, ``unban``, ``list``, ``sync``, ``deliver``, ``setup`` and ``check``.

Thin: :class:`cfban.bans.BanService` does the work; each command builds it, calls one method
and prints the result. The library (and httpx with it) is imported inside the commands, so
``cfban ban`` starts quickly. With no API token everything is a dry run, said once on stderr.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfban.cli._context import app_context

if TYPE_CHECKING:
    from cfban.bans import BanService
    from cfban.delivery import DeliveryReport

_Background = Annotated[
    bool,
    typer.Option(
        "--background",
        help="Commit and return at once; a background cfban delivers (fail2ban's hook).",
    ),
]

DELIVERER_LOG = "deliverer.log"
DRY_RUN_NOTICE = "dry run: no API token configured; Cloudflare calls are printed, not made"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "permanent"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _err(line: str) -> None:
    typer.echo(line, err=True)


def _service(ctx: typer.Context, *, quick: bool = False) -> BanService:
    """The library object; ``quick`` (ban, unban) bounds each request by the delivery
    deadline too, so one hanging request cannot hold fail2ban up for long. The validated
    rules are cached for the hook's fast path (:mod:`cfban.intake.snapshot`)."""
    from cfban.bans import BanService

    context = app_context(ctx)
    settings = context.settings
    context.save_rules()
    warning = settings.token_file_warning()
    if warning is not None:
        _err(f"cfban: warning: {warning}")
    deadline = settings.cloudflare.deliver_deadline
    return BanService(
        settings,
        writer=_err,
        on_dry_run=lambda: _err(DRY_RUN_NOTICE),
        request_timeout=max(1.0, deadline) if quick else None,
    )


def _bantime(value: str | None) -> int | None:
    if value is None:
        return None
    from cfban.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--bantime") from None


def _background(ctx: typer.Context, command: str, ip: str, jail: str | None,
                bantime: int | None) -> None:  # fmt: skip
    """Commit and hand over to a background deliverer, as the hook's fast path does."""
    import sys

    from cfban.intake.hook import commit_and_hand_over

    context = app_context(ctx)
    rules = context.settings.rules()
    context.save_rules()
    commit_and_hand_over(command, ip, jail, bantime, rules, context.config_path,
                         sys.stdout, sys.stderr)  # fmt: skip


def _delivery_problem(report: DeliveryReport | None) -> str | None:
    if report is None:
        return None
    if report.locked:
        return "another cfban process is delivering; it will send this too"
    if report.errors:
        return report.errors[-1]
    if report.deadline_reached:
        return "the delivery deadline passed"
    return None


_BAN_HELP = """Ban an address at Cloudflare.

The ban is checked against the never-ban rules (Cloudflare's ranges, ignoreip, private and
reserved addresses: refused with exit 1), committed to the local state, then sent within
[cloudflare] deliver_deadline seconds. Once it is durably queued the command succeeds; what
Cloudflare has not confirmed yet goes out with the next cfban run. An IPv6 address is banned
as its /64 ([cloudflare] ipv6_prefix). --bantime takes seconds or 10m/1h/1d; -1 is permanent.

\b
Examples:
  cfban ban 198.51.100.23 --jail nginx-probes --bantime 1h
  cfban ban 2001:db8:5::17            # bans 2001:db8:5::/64
"""


def ban(
    ctx: typer.Context,
    ip: Annotated[str, typer.Argument(help="The client address to ban.")],
    jail: Annotated[str | None, typer.Option("--jail", "-j", help="Who bans it.")] = None,
    bantime: Annotated[
        str | None,
        typer.Option("--bantime", "-t", help="Seconds or 10m/1h/1d; -1 = permanent."),
    ] = None,
    background: _Background = False,
) -> None:
    seconds = _bantime(bantime)
    if background:
        _background(ctx, "ban", ip, jail, seconds)
        return
    from cfban.intake.commit import describe_expiry

    with _service(ctx, quick=True) as service:
        result = service.ban(ip, jail=jail, bantime=seconds)
        subject = result.address
        if result.target != result.address:
            subject += f" as {result.target}"
        head = f"banned {subject} (jail {result.jail}, {describe_expiry(result.expires_at)})"
        if service.settings.dry_run and result.delivered:
            typer.echo(f"{head}: recorded (dry run, nothing sent to Cloudflare)")
        elif result.delivered:
            done = "delivered to Cloudflare" if result.queued else "already at Cloudflare"
            typer.echo(f"{head}: {done}")
        else:
            problem = _delivery_problem(result.report) or "not confirmed yet"
            typer.echo(f"{head}: queued ({problem}); it goes out with the next cfban run")


_UNBAN_HELP = """Lift a ban.

With --jail only that jail lets go: the entry at Cloudflare is removed when no other jail
holds it, and kept when another host holds it for longer. Without --jail every jail lets go
and the entry is removed at Cloudflare even if another host holds it. IP may also be a
target as `cfban list` shows it (2001:db8:5::/64).

\b
Examples:
  cfban unban 198.51.100.23
  cfban unban 198.51.100.23 --jail nginx-probes
"""


def unban(
    ctx: typer.Context,
    ip: Annotated[str, typer.Argument(help="The address (or target) to unban.")],
    jail: Annotated[str | None, typer.Option("--jail", "-j", help="Only this jail.")] = None,
    background: _Background = False,
) -> None:
    if background:
        _background(ctx, "unban", ip, jail, None)
        return
    with _service(ctx, quick=True) as service:
        result = service.unban(ip, jail=jail)
        jails = f" (jails {', '.join(result.jails)})" if result.jails else ""
        if not result.queued:
            if jail is not None and not result.jails:
                typer.echo(f"{result.target} is not banned by jail {jail}")
            elif result.jails and jail is not None:
                typer.echo(f"unbanned {result.target}{jails}: still held by another jail")
            else:
                typer.echo(f"unbanned {result.target}{jails}: it was never sent to Cloudflare")
        elif result.kept:
            typer.echo(
                f"unbanned {result.target}{jails}: the entry stays at Cloudflare, "
                "another host holds it for longer"
            )
        elif result.removed:
            typer.echo(f"unbanned {result.target}{jails}: done at Cloudflare")
        else:
            problem = _delivery_problem(result.report) or "not confirmed yet"
            typer.echo(
                f"unbanned {result.target}{jails}: removal queued ({problem}); "
                "it goes out with the next cfban run"
            )


_LIST_HELP = """List bans: the local state, or with --remote what Cloudflare holds.

The local list shows each target with its jails, its expiry and whether Cloudflare confirmed
it (delivered) or it is still queued (pending, removing). --remote lists the entries cfban
made at Cloudflare (any host's), never anyone else's.

\b
Examples:
  cfban list
  cfban list --json | jq -r '.bans[] | select(.state != "delivered") | .target'
  cfban list --remote
"""


def _view_json(view: Any) -> dict[str, Any]:
    return {
        "target": view.target,
        "addresses": list(view.addresses),
        "jails": list(view.jails),
        "banned_at": view.banned_at,
        "expires_at": view.expires_at,
        "state": view.state,
        "ref": view.ref,
        "attempts": view.attempts,
        "last_error": view.last_error,
    }


def list_bans(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    remote: Annotated[bool, typer.Option("--remote", help="Ask Cloudflare instead.")] = False,
) -> None:
    with _service(ctx) as service:
        if remote:
            entries = service.list_remote()
            if as_json:
                items = [
                    {"target": e.target, "ref": e.ref, "expires_at": e.expires_at,
                     "jails": list(e.jails), "scope": e.scope}
                    for e in entries
                ]  # fmt: skip
                typer.echo(json.dumps({"remote": items}))
                return
            for e in entries:
                jails = ",".join(e.jails) or "-"
                typer.echo(f"{e.target:<30} {jails:<24} {_when(e.expires_at):<24} {e.scope}")
            typer.echo(f"{len(entries)} cfban entries at Cloudflare")
            return
        views = service.list_bans()
        depth = service.queue_depth()
        if as_json:
            typer.echo(json.dumps({"bans": [_view_json(v) for v in views], "queued": depth}))
            return
        for v in views:
            jails = ",".join(v.jails) or "-"
            state = v.state if not v.last_error else f"{v.state} (retrying: {v.last_error})"
            expires = _when(v.expires_at) if v.jails else "-"
            typer.echo(f"{v.target:<30} {jails:<24} {expires:<24} {state}")
        typer.echo(f"{len(views)} bans; {depth['add']} adds and {depth['remove']} removes queued")


_SYNC_HELP = """Reconcile the local state with Cloudflare.

Expires ended bans, pushes again what Cloudflare is missing (or holds for less long), and
removes cfban's entries whose expiry has passed. Entries cfban did not make are never
touched. Entries this host does not hold are kept, as another host may hold them; --prune
removes them too (one host only, or after the state was lost). --dry-run only reports.

\b
Examples:
  cfban sync --dry-run
  cfban sync
  cfban sync --prune --dry-run
"""


def sync(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, change nothing.")] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also remove cfban entries this host does not hold.")
    ] = False,
) -> None:
    with _service(ctx) as service:
        report = service.sync(dry_run=dry_run, prune=prune)
        would = "would " if dry_run else ""
        elsewhere = (
            (f"{would}remove at Cloudflare (not held here)", report.held_elsewhere)
            if prune
            else ("kept (held by another host)", report.held_elsewhere)
        )
        lines = [
            (f"{would}expire here", report.expired),
            (f"{would}push again", report.repushed),
            (f"{would}remove at Cloudflare (expired)", report.remove_remote),
            elsewhere,
        ]
        for label, targets in lines:
            typer.echo(
                f"{label}: {len(targets)}" + (f" ({', '.join(targets[:20])})" * bool(targets))
            )
        typer.echo(f"in sync: {report.in_sync}")
        if report.delivery is not None:
            _finish_delivery(report.delivery)


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


def _finish_delivery(report: DeliveryReport) -> None:
    if report.locked:
        typer.echo(f"another cfban process is delivering; {report.queue_depth} queued")
        return
    typer.echo(
        f"added {len(report.added)}, removed {len(report.removed)}, kept {len(report.kept)} "
        f"(held by another host), refused {len(report.refused)}; {report.queue_depth} queued"
    )
    if report.queue_depth:
        from cfban.errors import CfbanError

        reason = _delivery_problem(report) or "not due yet"
        raise CfbanError(f"{report.queue_depth} operations still queued: {reason}")


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
    with _service(ctx) as service:
        depth = service.queue_depth()
        _err(f"{depth['add']} adds and {depth['remove']} removes queued")
        report = service.deliver(deadline=deadline, wait=True, batch_size=batch_size, progress=_err)
        _finish_delivery(report)


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
    with _service(ctx) as service:
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
    with _service(ctx) as service:
        results = service.check()
    failed = 0
    for item in results:
        typer.echo(f"{'ok  ' if item.ok else 'FAIL'}  {item.name}: {item.detail}")
        failed += not item.ok
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("ban", help=_BAN_HELP)(ban)
    app.command("unban", help=_UNBAN_HELP)(unban)
    app.command("list", help=_LIST_HELP)(list_bans)
    app.command("sync", help=_SYNC_HELP)(sync)
    app.command("deliver", help=_DELIVER_HELP)(deliver)
    app.command("setup", help=_SETUP_HELP)(setup)
    app.command("check", help=_CHECK_HELP)(check)
