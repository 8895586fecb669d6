"""The configured jails, built for the daemon: each with its filter, counter, guard and logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cfban.config import Settings
from cfban.errors import ConfigError, FilterError
from cfban.fail2ban import LineMatcher, load_filter
from cfban.jail import Jail
from cfban.realip import BanGuard, CloudflareRanges, GuardStats
from cfban.tailer import expand_logpaths


@dataclass
class JailRuntime:
    """One running jail."""

    name: str
    logpaths: tuple[str, ...]
    matcher: LineMatcher
    counter: Jail
    guard: BanGuard

    def paths(self) -> set[Path]:
        """The files the jail's ``logpath`` patterns name now (globs expanded)."""
        return set(expand_logpaths(self.logpaths))


def build_jails(
    settings: Settings,
    *,
    now: Callable[[], float],
    ranges: CloudflareRanges,
    stats: GuardStats,
    history: Callable[[str, str], int] | None = None,
) -> list[JailRuntime]:
    """Every enabled jail of ``settings``; ``history(jail, address)`` counts the bans the
    jail has started for the address (its growth with ``bantime_factor``).

    Raises:
        ConfigError: no jail is enabled, or a jail has no log path.
        FilterError: a jail's filter cannot be loaded (the message names jail and file).
    """
    jails: list[JailRuntime] = []
    for name, conf in settings.jails.items():
        if not conf.enabled:
            continue
        if not conf.logpath:
            raise ConfigError(
                f"jail {name!r} has no logpath", hint=f"add logpath = [...] to [jails.{name}]"
            )
        try:
            flt = load_filter(conf.filter, now=now)
        except FilterError as exc:
            raise FilterError(f"jail {name!r}: {exc}") from None
        jails.append(
            JailRuntime(
                name=name,
                logpaths=tuple(conf.logpath),
                matcher=LineMatcher(flt),
                counter=Jail(
                    name,
                    maxretry=conf.maxretry,
                    findtime=conf.findtime,
                    bantime=conf.bantime,
                    now=now,
                    bantime_factor=conf.bantime_factor,
                    bantime_maxtime=conf.bantime_maxtime,
                    previous_bans=(None if history is None else partial(history, name)),
                ),
                guard=BanGuard.from_settings(settings, name, ranges=ranges, stats=stats),
            )
        )
    if not jails:
        raise ConfigError(
            f"no enabled jail in {settings.source}",
            hint='add a [jails.NAME] table with filter = "..." and logpath = [...]',
        )
    return jails
