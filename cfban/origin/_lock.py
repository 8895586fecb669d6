"""The origin lock for one configuration: render it, apply it, refresh it, remove it.

:class:`OriginLock` ties the pieces together for the firewall kind in ``[origin] firewall``
(or the one asked for): it builds the :class:`AllowList` through the gate, renders it for
nftables, firewalld or an upstream URL-table file, and applies it. Every method returns the
lines to show a person; errors are :class:`~cfban.errors.FirewallError` with the fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cfban.clock import Clock, SystemClock
from cfban.errors import FirewallError
from cfban.origin import _firewalld, _nft, _urltable
from cfban.origin._allowlist import AllowList, build_allowlist

if TYPE_CHECKING:
    from cfban.config import Settings

__all__ = ["Firewall", "OriginLock", "refresh_if_locked"]

log = logging.getLogger(__name__)

Firewall = Literal["nftables", "firewalld", "urltable"]


def _ports(ports: Sequence[int]) -> str:
    return ", ".join(str(p) for p in sorted(set(ports)))


class OriginLock:
    """The lock described by ``settings`` (``firewall`` and ``output`` override it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        firewall: Firewall | None = None,
        output: Path | None = None,
        clock: Clock | None = None,
        nft: str | None = None,
    ) -> None:
        self.settings = settings
        self.origin = settings.origin
        self.firewall: Firewall = firewall or self.origin.firewall
        self.ports = tuple(sorted(set(self.origin.ports)))
        self.clock = clock or SystemClock()
        self._output = output or self.origin.output
        self._nft_program = nft

    # ---- what ---------------------------------------------------------------------------

    @property
    def output(self) -> Path:
        """Where the firewalld files or the URL-table list go."""
        if self._output is not None:
            return self._output
        if self.firewall == "firewalld":
            return _firewalld.DEFAULT_DIR
        return self.settings.resolved_state_dir / _urltable.DEFAULT_NAME

    def allowlist(self) -> AllowList:
        """The allowed sources, through the gate.

        Raises:
            FirewallError: empty, partial, stale or too broad ranges.
        """
        from cfban.realip import load_ranges

        return build_allowlist(
            load_ranges(self.settings),
            self.origin.allow,
            now=self.clock.now(),
            max_age=self.origin.max_range_age,
        )

    def render(self, allow: AllowList | None = None) -> str:
        """The text the lock consists of: a ruleset, the firewalld files, or the list."""
        allow = allow or self.allowlist()
        if self.firewall == "nftables":
            return _nft.render_ruleset(allow, self.ports)
        if self.firewall == "firewalld":
            files = _firewalld.render_files(allow, self.ports)
            return "".join(f"<!-- {name} -->\n{text}" for name, text in files.items())
        return _urltable.render_list(allow)

    def nft(self) -> _nft.Nft:
        return _nft.Nft(self._nft_program)

    def _summary(self, allow: AllowList) -> str:
        extra = f" + {len(allow.extra)} from [origin] allow" if allow.extra else ""
        return (
            f"new TCP connections to port {_ports(self.ports)} only from "
            f"{len(allow.ipv4)} IPv4 + {len(allow.ipv6)} IPv6 networks "
            f"(Cloudflare's ranges, {allow.source}{extra})"
        )

    # ---- do -----------------------------------------------------------------------------

    def lock(self) -> list[str]:
        """Apply the lock (idempotent: the same result however often it runs).

        Raises:
            FirewallError: refused by the gate, or the firewall refused it.
        """
        allow = self.allowlist()
        if self.firewall == "nftables":
            nft = self.nft()
            nft.apply(_nft.render_ruleset(allow, self.ports), "apply the origin lock")
            live = nft.live()
            if live is None or not live.matches(allow, self.ports):
                raise FirewallError(
                    "nft accepted the origin lock but cfban's table reads back different",
                    hint="inspect it with `nft list table inet cfban`",
                )
            return [f"locked (nftables table inet {_nft.TABLE}): {self._summary(allow)}"]
        if self.firewall == "firewalld":
            paths = _firewalld.write_files(self.output, _firewalld.render_files(allow, self.ports))
            written = ", ".join(str(p) for p in paths)
            return [
                f"wrote {written}: {self._summary(allow)}",
                _firewalld.reload_firewalld(),
            ]
        _urltable.write_file(self.output, _urltable.render_list(allow))
        return [
            f"wrote {self.output} ({len(allow.cidrs)} networks, one a line): point the "
            "upstream firewall's URL-table alias at it, and allow only that alias to reach "
            f"port {_ports(self.ports)}"
        ]

    def refresh(self) -> list[str]:
        """Bring an applied lock up to date with the ranges in use.

        nftables: the two sets are replaced in one transaction (the chain and established
        connections are left alone); when the ports changed, the whole table is re-applied.

        Raises:
            FirewallError: no lock is applied, or the gate or the firewall refused.
        """
        if self.firewall == "nftables":
            nft = self.nft()
            live = nft.live()
            if live is None:
                raise FirewallError(
                    "no origin lock is applied (nftables has no table inet cfban)",
                    hint="apply it with `cfban origin lock`",
                )
            allow = self.allowlist()
            if live.guards(self.ports):
                nft.apply(_nft.render_refresh(allow), "refresh the origin lock's sets")
            else:
                nft.apply(_nft.render_ruleset(allow, self.ports), "apply the origin lock")
            return [f"refreshed (nftables table inet {_nft.TABLE}): {self._summary(allow)}"]
        if not self.applied():
            raise FirewallError(
                f"no origin lock is applied ({self.output} has no cfban files)",
                hint=f"apply it with `cfban origin lock --firewall {self.firewall}`",
            )
        return self.lock()

    def applied(self) -> bool:
        """Whether a lock of this kind is in place (its table or files exist).

        Raises:
            FirewallError: nftables' ruleset cannot be read.
        """
        if self.firewall == "nftables":
            return self.nft().live() is not None
        if self.firewall == "firewalld":
            return (self.output / _firewalld.FILES[-1]).exists()
        return self.output.exists()

    def unlock(self) -> list[str]:
        """Remove the lock and nothing else; a no-op when none is applied.

        Raises:
            FirewallError: the firewall refused, or a file cannot be deleted.
        """
        if self.firewall == "nftables":
            nft = self.nft()
            if nft.live() is None:
                return ["no origin lock was applied (nftables has no table inet cfban)"]
            nft.apply(_nft.render_removal(), "remove the origin lock")
            return [f"unlocked: nftables table inet {_nft.TABLE} removed"]
        if self.firewall == "firewalld":
            removed = _firewalld.remove_files(self.output)
            if not removed:
                return [f"no origin lock was applied (no cfban files in {self.output})"]
            return [
                "removed " + ", ".join(str(p) for p in removed),
                _firewalld.reload_firewalld(),
            ]
        try:
            self.output.unlink()
        except FileNotFoundError:
            return [f"no list was written ({self.output} does not exist)"]
        except OSError as exc:
            raise FirewallError(f"cannot delete {self.output}: {exc.strerror or exc}") from None
        return [f"removed {self.output}; remove the alias from the upstream firewall too"]


def refresh_if_locked(settings: Settings, *, clock: Clock | None = None) -> list[str]:
    """Refresh the lock of ``[origin] firewall`` when one is applied; else do nothing.

    For ``cfban ips --refresh`` and timers. A user who may not read the ruleset (not root)
    cannot have applied an nftables lock either, so that case is skipped quietly.

    Raises:
        FirewallError: a lock is applied but could not be refreshed.
    """
    lock = OriginLock(settings, clock=clock)
    if lock.firewall == "nftables" and _nft.find_nft() is None:
        return []
    try:
        applied = lock.applied()
    except FirewallError as exc:
        if os.geteuid() != 0:
            log.debug("origin lock not checked: %s", exc)
            return []
        raise
    return lock.refresh() if applied else []
