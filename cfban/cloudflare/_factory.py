"""Builds the configured backend: access rules, list, or the dry run when no token is set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from cfban.clock import Clock
from cfban.cloudflare._access_rules import AccessRulesBackend
from cfban.cloudflare._allow import AllowRules
from cfban.cloudflare._backend import Backend, DryRunBackend
from cfban.cloudflare._http import CloudflareHttp
from cfban.cloudflare._limiter import HostRateLimiter
from cfban.cloudflare._lists import ListBackend
from cfban.cloudflare._routed import RoutedBackend
from cfban.config import Settings
from cfban.rules import mechanism

BUDGET_FILE = "ratelimit"


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
    if settings.token() is None:
        return DryRunBackend(cf.backend, writer)
    budget = HostRateLimiter(
        state_dir / BUDGET_FILE,
        limit=cf.requests_per_window,
        window=float(cf.window_seconds),
        clock=clock,
        on_wait=on_wait,
        max_wait=max_budget_wait,
    )
    http = CloudflareHttp.from_settings(settings, clock=clock, budget=budget, transport=transport)
    if cf.backend == "list":
        return _list_backend(settings, http, clock)
    return AccessRulesBackend(http, zone_id=cf.zone_id, account_id=cf.account_id, mode=cf.mode)


def _list_backend(settings: Settings, http: CloudflareHttp, clock: Clock) -> Backend:
    """One list for ``[cloudflare] mode``; for other actions in use, a list each, or IP
    Access Rules where the plan allows one list (see :mod:`cfban.cloudflare._routed`)."""
    cf = settings.cloudflare
    routes: dict[str, Backend] = {}
    rules: AccessRulesBackend | None = None
    for action in settings.actions_in_use():
        if mechanism("list", cf.mode, cf.max_lists, action) == "list":
            name = cf.list_name if action == cf.mode else f"{cf.list_name}_{action}"
            routes[action] = ListBackend(
                http, account_id=cf.account_id, zones=cf.zones, list_name=name, mode=action,
                clock=clock,
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
    budget = HostRateLimiter(
        state_dir / BUDGET_FILE,
        limit=cf.requests_per_window,
        window=float(cf.window_seconds),
        clock=clock,
    )
    http = CloudflareHttp.from_settings(settings, clock=clock, budget=budget, transport=transport)
    return AllowRules(http, zone_id=cf.zone_id, account_id=cf.account_id)
