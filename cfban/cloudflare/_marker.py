"""The marker cfban writes into what it creates at Cloudflare.

An IP Access Rule's ``notes`` and a list item's ``comment`` start with::

    cfban v1 exp=1767225600 jails=sshd,nginx-probes (until 2026-01-01T00:00:00Z)

``exp`` is the expiry as epoch seconds or ``never``; ``jails`` names who asked for the ban;
``act=managed_challenge`` (or ``js_challenge``, ``challenge``) follows the jails when the ban
is a challenge (no ``act``: a block).
The text in parentheses is for people reading the dashboard and is ignored when parsing.
Only text that *starts* with ``cfban v1 exp=`` is cfban's: anything else (including notes
that merely mention cfban) belongs to someone else and is never changed or deleted. With the
expiry in the entry itself, every host sharing an account can tell whether a ban another host
made is still wanted (design.md §6).

An entry of the shared allowlist (an IP Access Rule in mode ``whitelist``) is marked
``cfban v1 allow exp=... (until ...) NOTE``; it is not a ban marker, so nothing that handles
bans ever takes it for one (see :mod:`cfban.cloudflare._allow`).

The WAF custom rule of the list backend is marked by its ``ref`` (``cfban_<list name>``)
and a description starting with ``cfban v1 rule``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from cfban.rules import stricter

PREFIX = "cfban v1"
RULE_PREFIX = "cfban v1 rule"
_MARKER = re.compile(
    r"^cfban v1 exp=(?P<exp>never|\d{1,12})(?: jails=(?P<jails>[A-Za-z0-9_.,@:+-]*))?"
    r"(?: act=(?P<act>[a-z_]{1,30}))?(?:\s|$)"
)
_JAIL_UNSAFE = re.compile(r"[^A-Za-z0-9_.@:+-]")


@dataclass(frozen=True)
class Marker:
    """What a marker says: the expiry (``None`` = permanent) and the jails behind the ban."""

    expires_at: float | None
    jails: tuple[str, ...] = ()
    action: str = "block"

    @classmethod
    def of(
        cls, expires_at: float | None, jails: tuple[str, ...] | list[str], action: str = "block"
    ) -> Marker:
        """A marker with jail names made safe for the marker text, sorted, deduplicated."""
        safe = {_JAIL_UNSAFE.sub("_", j) for j in jails if j}
        expiry = None if expires_at is None else float(int(expires_at))
        return cls(expiry, tuple(sorted(safe)), action)

    def merged(self, other: Marker) -> Marker:
        """The later expiry of both (permanent wins), the union of the jails and the
        stricter action."""
        return Marker(
            later_expiry(self.expires_at, other.expires_at),
            _union(self, other),
            stricter(self.action, other.action),
        )

    def covers(self, other: Marker) -> bool:
        """True when this marker already says everything ``other`` would add."""
        expiry = later_expiry(self.expires_at, other.expires_at)
        return (
            expiry == self.expires_at
            and set(other.jails) <= set(self.jails)
            and stricter(self.action, other.action) == self.action
        )


def later_expiry(a: float | None, b: float | None) -> float | None:
    """The later of two expiries, where ``None`` (permanent) is later than any time."""
    if a is None or b is None:
        return None
    return max(a, b)


def _union(a: Marker, b: Marker) -> tuple[str, ...]:
    return tuple(sorted(set(a.jails) | set(b.jails)))


def format_marker(marker: Marker) -> str:
    """The note/comment text for ``marker`` (well under Cloudflare's 500-character limit)."""
    jails = sorted({_JAIL_UNSAFE.sub("_", j) for j in marker.jails if j})
    jail_text = ",".join(jails)
    while len(jail_text) > 300:  # many jails: keep the text short, drop the longest names
        jails.remove(max(jails, key=len))
        jail_text = ",".join(jails)
    if marker.expires_at is None:
        exp, human = "never", "permanent"
    else:
        exp = str(int(marker.expires_at))
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(marker.expires_at)))
        human = f"until {when}"
    act = "" if marker.action == "block" else f" act={marker.action}"
    return f"{PREFIX} exp={exp} jails={jail_text}{act} ({human})"


def parse_marker(text: str | None) -> Marker | None:
    """The marker at the start of ``text``; ``None`` when the text is not cfban's."""
    if not text:
        return None
    match = _MARKER.match(text)
    if match is None:
        return None
    exp = match.group("exp")
    jails = tuple(j for j in (match.group("jails") or "").split(",") if j)
    return Marker(None if exp == "never" else float(exp), jails, match.group("act") or "block")
