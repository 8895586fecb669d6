"""What the commands share: time and error lines, delivery outcomes, check lines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from cfban.cli._context import app_context

if TYPE_CHECKING:
    from cfban.bans import BanService
    from cfban.checks import Check
    from cfban.delivery import DeliveryReport

DELIVERER_LOG = "deliverer.log"
DRY_RUN_NOTICE = "dry run: no API token configured; Cloudflare calls are printed, not made"


def when(epoch: float | None) -> str:
    if epoch is None:
        return "permanent"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def err(line: str) -> None:
    typer.echo(line, err=True)


def delivery_problem(report: DeliveryReport | None) -> str | None:
    if report is None:
        return None
    if report.locked:
        return "another cfban process is delivering; it will send this too"
    if report.errors:
        return report.errors[-1]
    if report.deadline_reached:
        return "the delivery deadline passed"
    return None


def finish_delivery(report: DeliveryReport) -> None:
    if report.locked:
        typer.echo(f"another cfban process is delivering; {report.queue_depth} queued")
        return
    typer.echo(
        f"added {len(report.added)}, removed {len(report.removed)}, kept {len(report.kept)} "
        f"(held by another host), refused {len(report.refused)}; {report.queue_depth} queued"
    )
    if report.queue_depth:
        from cfban.errors import CfbanError

        reason = delivery_problem(report) or "not due yet"
        raise CfbanError(f"{report.queue_depth} operations still queued: {reason}")


def service_for(ctx: typer.Context, *, quick: bool = False) -> BanService:
    """The library object; ``quick`` (ban, unban) bounds each request by the delivery
    deadline too, so one hanging request cannot hold fail2ban up for long. The validated
    rules are cached for the hook's fast path (:mod:`cfban.intake.snapshot`)."""
    from cfban.bans import BanService

    context = app_context(ctx)
    settings = context.settings
    context.save_rules()
    warning = settings.token_file_warning()
    if warning is not None:
        err(f"cfban: warning: {warning}")
    deadline = settings.cloudflare.deliver_deadline
    return BanService(
        settings,
        writer=err,
        on_dry_run=lambda: err(DRY_RUN_NOTICE),
        request_timeout=max(1.0, deadline) if quick else None,
    )


def print_checks(results: Sequence[Check]) -> None:
    """One line per check (ok or FAIL); exit 1 when any failed."""
    failed = 0
    for item in results:
        typer.echo(f"{'ok  ' if item.ok else 'FAIL'}  {item.name}: {item.detail}")
        failed += not item.ok
    if failed:
        raise typer.Exit(1)
