"""The one way a ban (or an unban) is committed, whichever way it came in.

``cfban ban``/``unban`` (the CLI), the hook's fast path, the spool a fail2ban Python action
writes, and the daemon's decisions all go through :class:`Intake`:

guard (never-ban rules, then the shared allowlist as this host last read it,
:mod:`cfban.allowlist`) → target (an IPv6 address becomes its /64; a network given by hand
must be one the backend can ban) → bantime (given, else the jail's, grown from the target's
history; then the recidive rule) and action (the jail's, ``block`` after ``escalate_after``
earlier bans) → expiry → the holder row and the outbox operation, in one transaction
(:class:`cfban.state.StateStore`).

The messages for the outcomes are here too, so every way in says the same thing. Standard
library only (like :mod:`cfban.realip` and :mod:`cfban.state`, which it uses).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cfban.allowlist import AllowCache, describe
from cfban.errors import GuardRefusal
from cfban.realip import BanGuard, CloudflareRanges, GuardStats, load_ranges_at
from cfban.rules import MANUAL_JAIL, PastBanLike, Rules, earlier_bans
from cfban.state import Hold, StateStore, StoredCursor
from cfban.targets import BanTarget, ban_target, range_target, unban_target


@dataclass(frozen=True)
class Committed:
    """A ban committed to the state."""

    hold: Hold
    bantime: float
    queued: bool

    @property
    def subject(self) -> str:
        """What was banned, as the messages name it."""
        hold = self.hold
        return hold.address if hold.target == hold.address else f"{hold.address} as {hold.target}"


@dataclass(frozen=True)
class Released:
    """An unban committed to the state."""

    target: str
    jail: str
    jails: tuple[str, ...]
    queued: bool


class Intake:
    """Guards, plans and commits bans for one state store under one set of rules."""

    def __init__(
        self,
        rules: Rules,
        store: StateStore,
        *,
        ranges: CloudflareRanges | None = None,
        stats: GuardStats | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.rules = rules
        self.store = store
        self._ranges = ranges
        self._stats = stats
        self._now = now or store.clock.now
        self._guards: dict[str | None, BanGuard] = {}
        self.allowlist = AllowCache(rules.state_dir)

    def guard(self, jail: str | None) -> BanGuard:
        """The never-ban guard of ``jail`` (built once: it indexes every protected network)."""
        guard = self._guards.get(jail)
        if guard is None:
            if self._ranges is None:
                self._ranges = load_ranges_at(self.rules.state_dir)
            guard = BanGuard.from_rules(self.rules, jail, self._ranges, self._stats)
            self._guards[jail] = guard
        return guard

    def plan(
        self,
        address: str,
        jail: str | None,
        bantime: float | None = None,
        *,
        start: float | None = None,
        network: bool = False,
    ) -> tuple[Hold, float]:
        """The hold to commit for a ban of ``address`` and its bantime in seconds.

        ``bantime`` None takes the jail's (grown for a repeat offender); ``start`` is when the
        ban begins (default now); ``network`` lets ``address`` be a network (a ban by hand).

        Raises:
            RefusedError: not an address, an address cfban must never ban, one on the shared
                allowlist, or a network the backend cannot ban.
        """
        rules = self.rules
        name = jail or MANUAL_JAIL
        is_range = network and "/" in address
        if is_range:
            mechanism = rules.mechanism(rules.jail(jail).action)
            target = range_target(address, rules.ipv6_prefix, mechanism)
        else:
            target = ban_target(address, rules.ipv6_prefix)
        self.guard(jail).check(target.target if is_range else target.address)
        now = self._now()
        self._check_allowed(target, now)
        history = (
            self.earlier_bans(target.target, name) if rules.needs_history(jail, bantime) else []
        )
        action = rules.action(jail, history)
        if is_range and "/" in target.target:
            range_target(target.target, rules.ipv6_prefix, rules.mechanism(action))
        seconds = rules.bantime(jail, bantime, history, now)
        begin = now if start is None else start
        expires = None if seconds < 0 else begin + seconds
        return Hold(target.address, target.target, name, expires, action), seconds

    def _check_allowed(self, target: BanTarget, now: float) -> None:
        entry = self.allowlist.current().covering(target.target, now)
        if entry is None:
            return
        subject = target.address if target.address == target.target else target.target
        message = (
            f"refusing to ban {subject}: it is on the shared allowlist ({describe(entry)}"
            + (f": {entry.note}" if entry.note else "")
            + ")"
        )
        if self._stats is not None:
            self._stats.record("allowlist")
        raise GuardRefusal(
            subject, "allowlist", message, hint=f"run `cfban disallow {entry.target}` to ban it"
        )

    def earlier_bans(self, target: str, jail: str) -> list[PastBanLike]:
        """The target's bans before a new one of ``jail`` (see :func:`earlier_bans`)."""
        running = self.store.holding(target, jail, self._now())
        return earlier_bans(self.store.past_bans(target), jail, running)

    def ban(
        self, address: str, jail: str | None, bantime: float | None = None, *, network: bool = False
    ) -> Committed:
        """Guard, plan and commit one ban.

        Raises:
            RefusedError: the address must not be banned (or is not an address).
            StateError: the ban could not be committed.
        """
        hold, seconds = self.plan(address, jail, bantime, network=network)
        queued = bool(self.store.commit_holds([hold]))
        return Committed(hold, seconds, queued)

    def commit(
        self, holds: Sequence[Hold], cursors: Mapping[str, StoredCursor] | None = None
    ) -> list[str]:
        """Commit planned holds (with the daemon's cursors) in one transaction; return the
        targets whose add was queued.

        Raises:
            StateError: nothing was committed.
        """
        return self.store.commit_holds(holds, cursors)

    def unban(self, address: str, jail: str | None) -> Released:
        """Commit an unban: ``jail`` lets go (every jail, forcing removal, when None).

        Raises:
            RefusedError: ``address`` is not an address or target.
            StateError: the unban could not be committed.
        """
        target = unban_target(address, self.rules.ipv6_prefix)
        jails, queued = self.store.release(target, jail)
        return Released(target, jail or MANUAL_JAIL, tuple(jails), queued)


# -- what every way in says --------------------------------------------------------------


def describe_expiry(expires_at: float | None) -> str:
    """``until 2026-01-02 03:04:05 UTC`` or ``permanent``."""
    if expires_at is None:
        return "permanent"
    return time.strftime("until %Y-%m-%d %H:%M:%S UTC", time.gmtime(expires_at))


def queued_ban_message(done: Committed, *, dry_run: bool) -> str:
    """The line ``cfban ban … --background`` prints (on either path)."""
    hold = done.hold
    suffix = " (dry run)" if dry_run else ""
    action = "" if hold.action == "block" else f", {hold.action}"
    return (
        f"banned {done.subject} (jail {hold.jail}, {describe_expiry(hold.expires_at)}{action}): "
        f"queued; a background cfban delivers it{suffix}"
    )


def queued_unban_message(done: Released, *, dry_run: bool) -> str:
    """The line ``cfban unban … --background`` prints (on either path)."""
    suffix = " (dry run)" if dry_run else ""
    return (
        f"unbanned {done.target} (jail {done.jail}): queued; a background cfban delivers it{suffix}"
    )


def refused_message(jail: str, address: str, reason: object) -> str:
    """The log line for a refused ban that arrived without a terminal (spool, daemon)."""
    return f"jail {jail}: not banning {address}: {reason}"
