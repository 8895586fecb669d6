"""``cfban ban``, ``unban``, ``list`` and ``sync`` (``deliver``, ``setup`` and ``check`` are in
:mod:`cfban.cli._delivering`, registered from here).

Thin: :class:`cfban.bans.BanService` does the work; each command builds it, calls one method
and prints the result. ``ban``/``unban --background`` commit exactly as the hook's fast path
does (:func:`cfban.intake.hook.commit_and_hand_over`), with the same output. The library (and
httpx with it) is imported inside the commands, so ``cfban ban`` starts quickly. With no API
token everything is a dry run, said once on stderr.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfban.cli import _delivering
from cfban.cli._common import delivery_problem, finish_delivery, service_for, when
from cfban.cli._context import app_context

if TYPE_CHECKING:
    pass

_Background = Annotated[
    bool,
    typer.Option(
        "--background",
        help="Commit and return at once; a background cfban delivers (fail2ban's hook).",
    ),
]


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


_BAN_HELP = """Ban an address at Cloudflare.

The ban is checked against the never-ban rules (Cloudflare's ranges, ignoreip, private and
reserved addresses: refused with exit 1), committed to the local state, then sent within
[cloudflare] deliver_deadline seconds. Once it is durably queued the command succeeds; what
Cloudflare has not confirmed yet goes out with the next cfban run. An IPv6 address is banned
as its /64 ([cloudflare] ipv6_prefix). --bantime takes seconds or 10m/1h/1d; -1 is permanent.
An address on the shared allowlist (`cfban allowed`) is refused too.

Without --jail, IP may be a network: the list backend takes IPv4 /8 to /32 and IPv6 /12 to
/128, IP Access Rules only IPv4 /16 and /24 and IPv6 /32, /48 and /64; other sizes, and
networks overlapping Cloudflare's ranges, ignoreip or the allowlist, are refused.
The ban does the jail's action (block, managed_challenge...), shown when it is not a block.

\b
Examples:
  cfban ban 198.51.100.23 --jail nginx-probes --bantime 1h
  cfban ban 2001:db8:5::17            # bans 2001:db8:5::/64
  cfban ban 203.0.113.0/24 --bantime 1d
"""


def ban(
    ctx: typer.Context,
    ip: Annotated[str, typer.Argument(help="The client address (or network) to ban.")],
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

    with service_for(ctx, quick=True) as service:
        result = service.ban(ip, jail=jail, bantime=seconds, network=jail is None)
        subject = result.address
        if result.target != result.address:
            subject += f" as {result.target}"
        action = "" if result.action == "block" else f", {result.action}"
        head = (
            f"banned {subject} (jail {result.jail}, {describe_expiry(result.expires_at)}{action})"
        )
        if service.settings.dry_run and result.delivered:
            typer.echo(f"{head}: recorded (dry run, nothing sent to Cloudflare)")
        elif result.delivered:
            done = "delivered to Cloudflare" if result.queued else "already at Cloudflare"
            typer.echo(f"{head}: {done}")
        else:
            problem = delivery_problem(result.report) or "not confirmed yet"
            typer.echo(f"{head}: queued ({problem}); it goes out with the next cfban run")


_UNBAN_HELP = """Lift a ban.

With --jail only that jail lets go: the entry at Cloudflare is removed when no other jail
holds it, and kept when another host holds it for longer. Without --jail every jail lets go
and the entry is removed at Cloudflare even if another host holds it, and the address goes
on the shared allowlist for [cloudflare] unban_allow (1h by default) so that no host sharing
the account bans it again meanwhile. IP may also be a target as `cfban list` shows it
(2001:db8:5::/64).

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
    with service_for(ctx, quick=True) as service:
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
            problem = delivery_problem(result.report) or "not confirmed yet"
            typer.echo(
                f"unbanned {result.target}{jails}: removal queued ({problem}); "
                "it goes out with the next cfban run"
            )
        if result.allowed is not None:
            from cfban.allowlist import describe

            typer.echo(
                f"allowed {describe(result.allowed)} on the shared allowlist: no host bans it "
                "meanwhile (cfban disallow to end it now)"
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
        "action": view.action,
    }


def list_bans(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    remote: Annotated[bool, typer.Option("--remote", help="Ask Cloudflare instead.")] = False,
) -> None:
    with service_for(ctx) as service:
        if remote:
            entries = service.list_remote()
            if as_json:
                items = [
                    {"target": e.target, "ref": e.ref, "expires_at": e.expires_at,
                     "jails": list(e.jails), "scope": e.scope, "action": e.action}
                    for e in entries
                ]  # fmt: skip
                typer.echo(json.dumps({"remote": items}))
                return
            for e in entries:
                jails = ",".join(e.jails) or "-"
                typer.echo(
                    f"{e.target:<30} {jails:<24} {when(e.expires_at):<24} {e.action:<18} {e.scope}"
                )
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
            expires = when(v.expires_at) if v.jails else "-"
            typer.echo(f"{v.target:<30} {jails:<24} {expires:<24} {v.action:<18} {state}")
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
    with service_for(ctx) as service:
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
        if report.allowed:
            lines.append((f"{would}remove at Cloudflare (on the allowlist)", report.allowed))
        for label, targets in lines:
            typer.echo(
                f"{label}: {len(targets)}" + (f" ({', '.join(targets[:20])})" * bool(targets))
            )
        typer.echo(f"in sync: {report.in_sync}")
        if report.delivery is not None:
            finish_delivery(report.delivery)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("ban", help=_BAN_HELP)(ban)
    app.command("unban", help=_UNBAN_HELP)(unban)
    app.command("list", help=_LIST_HELP)(list_bans)
    app.command("sync", help=_SYNC_HELP)(sync)
    _delivering.register(app)
