"""The ban rules every way in applies, as a plain snapshot of the validated configuration.

:class:`Rules` holds what committing a ban needs (state dir, IPv6 prefix, never-ban lists,
each jail's bantime and growth, the recidive rule). The full configuration
(:mod:`cfban.config`, pydantic) builds it with ``Settings.rules()``; every way in commits
through :class:`cfban.intake.commit.Intake` under it. The hook's fast path, which must not
load pydantic, reads the same snapshot from ``STATE_DIR/rules.json``, written
by the full command after it validated the configuration (see :mod:`cfban.intake.snapshot`).
So there is one schema and one reader; the snapshot is only its cached result.

How long a ban lasts (:meth:`Rules.bantime`, over the target's :func:`earlier_bans`; a
request while the jail's ban still runs extends that ban, it is not a repeat):

1. the bantime given with the ban (``--bantime``, fail2ban's ``bantime.increment`` result, a
   daemon decision) is used as given; else the jail's ``bantime``, grown for a repeat
   offender: the n-th ban of a target in that jail lasts ``bantime × bantime_factor^(n-1)``,
   capped at ``bantime_maxtime``;
2. then the recidive rule: when the target was banned ``bans - 1`` times (any jail) within
   ``findtime`` before now, this ban is the recidive ``bantime`` (when that is longer).

What the ban does at Cloudflare (:meth:`Rules.action`): the jail's ``action`` (``block``,
``managed_challenge``, ``js_challenge`` or ``challenge``; by default ``[cloudflare] mode``),
and ``block`` once the target has ``escalate_after`` earlier bans (any jail) in its history:
a first offender may be a person behind a shared address and gets a challenge, a repeat
offender is blocked.

Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cfban.durations import DEFAULT_BANTIME

#: The jail of a ban or unban given without ``--jail``.
MANUAL_JAIL = "manual"
#: What a ban does at Cloudflare, mildest first: an entry several holders ask for does the
#: strictest of their actions.
ACTIONS = ("managed_challenge", "js_challenge", "challenge", "block")
#: Seconds a queued operation may wait before ``cfban health`` fails, by default.
DEFAULT_MAX_QUEUE_AGE = 900.0


class PastBanLike(Protocol):
    @property
    def jail(self) -> str: ...

    @property
    def banned_at(self) -> float: ...


@dataclass(frozen=True)
class JailRules:
    """What one jail's configuration says about its bans."""

    bantime: int = DEFAULT_BANTIME
    bantime_factor: float = 1.0
    bantime_maxtime: int | None = None
    ignoreip: tuple[str, ...] = ()
    action: str = "block"
    #: Earlier bans (any jail) after which this jail's bans block; 0: never escalate.
    escalate_after: int = 0


def stricter(a: str, b: str) -> str:
    """The stricter of two actions (see :data:`ACTIONS`)."""
    rank = {name: i for i, name in enumerate(ACTIONS)}
    return a if rank.get(a, len(ACTIONS)) >= rank.get(b, len(ACTIONS)) else b


@dataclass(frozen=True)
class Recidive:
    """An address banned ``bans`` times within ``findtime`` seconds gets ``bantime``."""

    bans: int
    findtime: int
    bantime: int


@dataclass(frozen=True)
class Rules:
    """The validated configuration, as far as committing bans needs it."""

    state_dir: Path
    ipv6_prefix: int = 64
    ignoreip: tuple[str, ...] = ()
    allow_test_nets: bool = False
    dry_run: bool = True
    jails: Mapping[str, JailRules] = field(default_factory=dict)
    recidive: Recidive | None = None
    max_queue_age: float = DEFAULT_MAX_QUEUE_AGE
    #: The action of a ban without a configured jail (``[cloudflare] mode``).
    default_action: str = "block"
    #: The backend: what a range ban may be depends on it.
    backend: str = "access-rules"
    #: Seconds the shared allowlist copy may age before the full command reads it again.
    allowlist_refresh: float = 300.0
    #: Custom lists the plan allows: with one, the list backend keeps ``default_action``
    #: bans in it and puts the others into IP Access Rules (see :meth:`mechanism`).
    max_lists: int = 1

    def mechanism(self, action: str) -> str:
        """Where a ban with ``action`` goes: ``list`` or ``access-rules``."""
        return mechanism(self.backend, self.default_action, self.max_lists, action)

    def jail(self, name: str | None) -> JailRules:
        """The rules of jail ``name`` (defaults for an unconfigured jail or none)."""
        found = self.jails.get(name) if name is not None else None
        return found if found is not None else JailRules(action=self.default_action)

    def needs_history(self, jail: str | None, given: float | None) -> bool:
        """Whether a new ban's action or bantime depends on the target's earlier bans (an
        escalation, a bantime that grows, ``[recidive]``); else they need not be read."""
        rules = self.jail(jail)
        growing = given is None and grows(rules.bantime, rules.bantime_factor)
        return bool(rules.escalate_after) or growing or self.recidive is not None

    def action(self, jail: str | None, history: Sequence[PastBanLike]) -> str:
        """What a new ban of ``jail`` does, given the target's earlier bans."""
        rules = self.jail(jail)
        if rules.escalate_after and len(history) >= rules.escalate_after:
            return "block"
        return rules.action

    def bantime(
        self,
        jail: str | None,
        given: float | None,
        history: Sequence[PastBanLike],
        now: float,
    ) -> float:
        """Seconds the ban lasts (negative: permanent); see the module docstring."""
        rules = self.jail(jail)
        seconds: float = given if given is not None else rules.bantime
        if given is None:
            count = 1 + sum(1 for past in history if past.jail == (jail or MANUAL_JAIL))
            seconds = grown(rules.bantime, rules.bantime_factor, rules.bantime_maxtime, count)
        recidive = self.recidive
        if recidive is not None and seconds >= 0:
            recent = sum(1 for past in history if past.banned_at > now - recidive.findtime)
            if recent + 1 >= recidive.bans:
                seconds = (
                    recidive.bantime if recidive.bantime < 0 else max(seconds, recidive.bantime)
                )
        return seconds

    # -- the snapshot --------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["jails"] = {name: asdict(j) for name, j in self.jails.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rules:
        """The rules a snapshot holds.

        Raises:
            ValueError, TypeError, KeyError: not a snapshot this version wrote.
        """
        recidive = data.get("recidive")
        return cls(
            state_dir=Path(data["state_dir"]),
            ipv6_prefix=int(data["ipv6_prefix"]),
            ignoreip=tuple(data["ignoreip"]),
            allow_test_nets=bool(data["allow_test_nets"]),
            dry_run=bool(data["dry_run"]),
            jails={
                str(name): JailRules(
                    bantime=int(j["bantime"]),
                    bantime_factor=float(j["bantime_factor"]),
                    bantime_maxtime=j["bantime_maxtime"],
                    ignoreip=tuple(j["ignoreip"]),
                    action=str(j["action"]),
                    escalate_after=int(j["escalate_after"]),
                )
                for name, j in dict(data["jails"]).items()
            },
            recidive=Recidive(**recidive) if recidive is not None else None,
            max_queue_age=float(data["max_queue_age"]),
            default_action=str(data["default_action"]),
            backend=str(data["backend"]),
            allowlist_refresh=float(data["allowlist_refresh"]),
            max_lists=int(data["max_lists"]),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def earlier_bans(history: Sequence[PastBanLike], jail: str, running: bool) -> list[PastBanLike]:
    """The bans that came before a new one of ``jail``: while ``jail``'s ban of the target
    still runs, a new request extends it, so that ban (its latest) is not an earlier one."""
    past = list(history)
    if running:
        for index in range(len(past) - 1, -1, -1):
            if past[index].jail == jail:
                del past[index]
                break
    return past


def grows(bantime: float, factor: float) -> bool:
    """Whether the bantime of a repeat offender grows (else every ban has ``bantime``)."""
    return bantime > 0 and factor > 1


def grown(bantime: int, factor: float, maxtime: int | None, count: int) -> int:
    """The bantime of an address's ``count``-th ban: ``bantime × factor^(count-1)``, capped
    at ``maxtime`` (when set and positive); a permanent ban stays permanent."""
    if not grows(bantime, factor) or count <= 1:
        return bantime
    value = bantime * factor ** (count - 1)
    if maxtime is not None and maxtime > 0:
        value = min(value, maxtime)
    return int(value)


def mechanism(backend: str, default_action: str, max_lists: int, action: str) -> str:
    """Where a ban with ``action`` goes (``list`` or ``access-rules``): the list backend keeps
    one list per action, or, when the plan allows a single list (Free), that list holds the
    ``default_action`` and IP Access Rules (every plan, any mode) take the rest."""
    if backend != "list":
        return "access-rules"
    return "list" if action == default_action or max_lists >= 2 else "access-rules"
