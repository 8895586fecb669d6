"""Builds the configured backend: access rules, list, or the dry run when no token is set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cfban import notify
from cfban.clock import Clock
from cfban.cloudflare._access_rules import AccessRulesBackend
from cfban.cloudflare._allow import AllowRules
from cfban.cloudflare._backend import Backend, DryRunBackend
from cfban.cloudflare._http import CloudflareHttp
from cfban.cloudflare._limiter import HostRateLimiter
from cfban.cloudflare._lists import ListBackend
from cfban.cloudflare._mirror import MIRROR_FILE
from cfban.cloudflare._routed import RoutedBackend
from cfban.config import Settings
from cfban.rules import mechanism

BUDGET_FILE = "ratelimit"
LIST_WRITES_FILE = "ratelimit-list-writes"


def request_budget(settings: Settings, state_dir: Path, *, clock: Clock) -> HostRateLimiter:
    """The host-wide request budget: ``budget_share`` of the account's requests per window."""
    cf = settings.cloudflare
    return HostRateLimiter(
        state_dir / BUDGET_FILE,
        limit=max(1, int(cf.requests_per_window * cf.budget_share)),
        window=float(cf.window_seconds),
        clock=clock,
    )


def list_writes_budget(settings: Settings, state_dir: Path, *, clock: Clock) -> HostRateLimiter:
    """The host-wide budget of list writes (the Lists API's own 12-hour limit), with the
    same share."""
    cf = settings.cloudflare
    return HostRateLimiter(
        state_dir / LIST_WRITES_FILE,
        limit=max(1, int(cf.list_writes_per_window * cf.budget_share)),
        window=float(cf.list_writes_window),
        clock=clock,
    )


def make_backend(
    settings: Settings,
    *,
    clock: Clock,
    state_dir: Path,
    transport: httpx.BaseTransport | None = None,
    writer: Callable[[str], None] | None = None,
    on_wait: Callable[[float], None] | None = None,
    max_budget_wait: float | None = None,
) -> Backend:
    """The backend ``settings`` ask for.

    With no token configured this is a :class:`DryRunBackend` that describes its calls to
    ``writer``. Otherwise every request goes through one :class:`CloudflareHttp` whose budget
    is the host-wide limiter in ``state_dir/ratelimit``; ``on_wait`` hears about each wait for
    that budget, and ``max_budget_wait`` (seconds) turns a longer wait into a
    :class:`~cfban.errors.RateLimitedError`. ``transport`` replaces the network (tests pass
    ``httpx.MockTransport``).

    Raises:
        ConfigError: a setting the backend needs is missing or the token file is unreadable.
    """
    cf = settings.cloudflare
    notify.configure(state_dir, settings.notify)
    if settings.token() is None:
        return DryRunBackend(cf.backend, writer)
    budget = request_budget(settings, state_dir, clock=clock)
    budget.on_wait = on_wait
    budget.max_wait = max_budget_wait
    http = CloudflareHttp.from_settings(settings, clock=clock, budget=budget, transport=transport)
    if cf.backend == "list":
        spill = None
        if cf.on_full == "spill":
            spill_http = CloudflareHttp.from_settings(
                settings, clock=clock, budget=budget, transport=transport
            )
            spill = AccessRulesBackend(
                spill_http, zone_id=None, account_id=cf.account_id, mode=cf.mode
            )
        writes = list_writes_budget(settings, state_dir, clock=clock)
        writes.max_wait = max_budget_wait
        lists = {"clock": clock, "state_dir": state_dir, "on_full": cf.on_full,
                 "writes_budget": writes, "spill": spill}  # fmt: skip
        return _list_backend(settings, http, lists)
    return AccessRulesBackend(http, zone_id=cf.zone_id, account_id=cf.account_id, mode=cf.mode)


def _list_backend(settings: Settings, http: CloudflareHttp, lists: dict[str, Any]) -> Backend:
    """One list for ``[cloudflare] mode``; for other actions in use, a list each (with its
    own mirror; one operation lock per host, as Cloudflare allows one pending operation per
    account), or IP Access Rules where the plan allows one list (see
    :mod:`cfban.cloudflare._routed`)."""
    cf = settings.cloudflare
    routes: dict[str, Backend] = {}
    rules: AccessRulesBackend | None = None
    for action in settings.actions_in_use():
        if mechanism("list", cf.mode, cf.max_lists, action) == "list":
            name = cf.list_name if action == cf.mode else f"{cf.list_name}_{action}"
            mirror = MIRROR_FILE if action == cf.mode else f"list-mirror-{action}.sqlite"
            routes[action] = ListBackend(
                http, account_id=cf.account_id, zones=cf.zones, list_name=name, mode=action,
                mirror_file=mirror, **lists,
            )  # fmt: skip
        else:
            if rules is None:
                rules = AccessRulesBackend(
                    http, zone_id=cf.zone_id, account_id=cf.account_id, mode=action
                )
            routes[action] = rules
    if list(routes) == [cf.mode]:
        return routes[cf.mode]
    return RoutedBackend(routes, cf.mode)


def make_allow_rules(
    settings: Settings,
    *,
    clock: Clock,
    state_dir: Path,
    transport: httpx.BaseTransport | None = None,
) -> AllowRules | None:
    """The shared allowlist at Cloudflare (see :mod:`cfban.cloudflare._allow`); None in a
    dry run (no token).

    Raises:
        ConfigError: no account or zone is configured, or the token file is unreadable.
    """
    cf = settings.cloudflare
    if settings.token() is None:
        return None
    budget = request_budget(settings, state_dir, clock=clock)
    http = CloudflareHttp.from_settings(settings, clock=clock, budget=budget, transport=transport)
    return AllowRules(http, zone_id=cf.zone_id, account_id=cf.account_id)
