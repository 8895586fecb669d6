"""Where cfban stands with Cloudflare, read from the state directory by any process.

:func:`cloudflare_status` gathers, without a single API call: the request budget left (the
host-wide share of the account's 1,200 per 5 minutes, and of the Lists API's 30,000 list
writes per 12 hours), a pause Cloudflare asked for, the list's fill (items, capacity when
known) and the current delivery problem with its fix. The daemon puts it in its status file
(``cfban status``, ``cfban health``) and its metrics; ``cfban check`` prints it as checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfban.clock import Clock, SystemClock
from cfban.cloudflare._factory import list_writes_budget, request_budget
from cfban.cloudflare._listfull import DOCUMENTED_QUOTA
from cfban.cloudflare._mirror import MIRROR_FILE, ListMirror
from cfban.cloudflare._stall import read_problem
from cfban.config import Settings
from cfban.errors import CfbanError

FILL_WARN = 0.9


def cloudflare_status(
    settings: Settings, state_dir: Path, clock: Clock | None = None
) -> dict[str, Any]:
    """The figures described in the module docstring, as a JSON-ready dict."""
    clock = clock or SystemClock()
    out: dict[str, Any] = {}
    try:
        if settings.dry_run:
            raise CfbanError("a dry run spends no budget")
        budget = request_budget(settings, state_dir, clock=clock)
        out["budget"] = {
            "limit": budget.limit,
            "window": budget.window,
            "left": budget.left(),
            "paused_for": budget.paused_for(),
        }
        if settings.cloudflare.backend == "list":
            writes = list_writes_budget(settings, state_dir, clock=clock)
            out["list_writes"] = {
                "limit": writes.limit,
                "window": writes.window,
                "left": writes.left(),
            }
    except CfbanError:
        pass  # no usable state dir: nothing to report
    if settings.cloudflare.backend == "list" and (state_dir / MIRROR_FILE).exists():
        mirror = ListMirror(state_dir / MIRROR_FILE)
        try:
            count = mirror.get("num_items")
            capacity = mirror.get("capacity")
            items = int(count) if count else mirror.count()
            limit = int(capacity) if capacity else DOCUMENTED_QUOTA
            out["list"] = {
                "items": items,
                "capacity": limit,
                "capacity_known": capacity is not None,
                "fill": items / limit,
                "owned": mirror.owned_count(),
            }
        finally:
            mirror.close()
    problem = read_problem(state_dir)
    out["problem"] = problem.as_dict() if problem is not None else None
    return out


def cloudflare_lines(figures: dict[str, Any] | None) -> list[str]:
    """``figures`` for people: one line each for the problem, the list and the budget."""
    if not figures:
        return []
    lines: list[str] = []
    problem = figures.get("problem")
    if isinstance(problem, dict):
        lines.append(
            f"delivery waits: {problem.get('kind')} — {problem.get('message')}; "
            f"fix: {problem.get('fix')}"
        )
    listed = figures.get("list")
    if isinstance(listed, dict):
        lines.append(
            f"list: {listed.get('items')} of {listed.get('capacity')} items "
            f"({100 * float(listed.get('fill', 0)):.0f} %), {listed.get('owned')} cfban's"
        )
    budget = figures.get("budget")
    if isinstance(budget, dict):
        text = (
            f"request budget: {budget.get('left')} of {budget.get('limit')} left per "
            f"{float(budget.get('window', 0)):g} s"
        )
        if budget.get("paused_for"):
            text += f"; paused by Cloudflare for {float(budget['paused_for']):.0f} s more"
        writes = figures.get("list_writes")
        if isinstance(writes, dict):
            text += f"; list writes: {writes.get('left')} of {writes.get('limit')} left per 12 h"
        lines.append(text)
    return lines


def cloudflare_checks(figures: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """``figures`` as ``cfban check`` lines: (name, ok, detail)."""
    checks: list[tuple[str, bool, str]] = []
    problem = figures.get("problem")
    if isinstance(problem, dict):
        detail = f"{problem.get('kind')}: {problem.get('message')} (fix: {problem.get('fix')})"
        checks.append(("delivery", False, detail))
    else:
        checks.append(("delivery", True, "no delivery problem recorded"))
    listed = figures.get("list")
    if isinstance(listed, dict):
        fill = float(listed.get("fill", 0))
        checks.append(
            (
                "list fill",
                fill < FILL_WARN,
                f"{listed.get('items')} of {listed.get('capacity')} items "
                f"({100 * fill:.0f} %)"
                + ("" if fill < FILL_WARN else "; see [cloudflare] on_full"),
            )
        )
    budget = figures.get("budget")
    if isinstance(budget, dict):
        left, limit = int(budget.get("left", 0)), int(budget.get("limit", 0))
        paused = float(budget.get("paused_for", 0))
        detail = f"{left} of {limit} requests left in the current window"
        if paused:
            detail += f"; Cloudflare asked for a pause of {paused:.0f} s more"
        checks.append(("request budget", left > 0 and not paused, detail))
    return checks
