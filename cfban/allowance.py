"""The operations on the shared allowlist: allow, disallow, list, and refresh the local copy.

The allowlist is kept at Cloudflare (:mod:`cfban.cloudflare._allow`) and copied to each host
(:mod:`cfban.allowlist`), where the commit path refuses to ban what it covers. Refreshing
the copy also makes this host let go of every hold the allowlist now covers (an allow made on
another host), so neither its delivery nor its ``sync`` adds such a ban again.

Allowing an address first lifts any live ban of it, on every host: the unban is forced (the
entry at Cloudflare goes whoever holds it) and the allow rule replaces a ban rule at the same
level. A manual ``cfban unban`` allows the address for ``[cloudflare] unban_allow`` so that
other hosts do not ban it again right away.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfban import allowlist
from cfban.allowlist import AllowEntry, AllowList
from cfban.errors import CfbanError
from cfban.targets import unban_target

if TYPE_CHECKING:
    from cfban.bans import BanService
    from cfban.cloudflare import AllowRules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Allowed:
    """What ``cfban allow`` did."""

    entry: AllowEntry
    lifted: bool
    shared: bool


def _rules(service: BanService) -> AllowRules | None:
    return service.allow_rules


def refresh(service: BanService, *, force: bool = False) -> AllowList:
    """Read the allowlist from Cloudflare into the local copy when it is older than
    ``allowlist_refresh`` (always with ``force``), drop lapsed entries at Cloudflare, and let
    go of the holds it covers. Without a token, the copy is what this host allowed itself.

    Raises:
        CloudflareError: the allowlist could not be read.
        StateError: the state could not be written.
    """
    state_dir, now = service.state_dir, service.clock.now()
    current = allowlist.load(state_dir)
    rules = _rules(service)
    if rules is not None and (force or now - current.read_at >= service.rules.allowlist_refresh):
        try:
            entries = rules.prune(rules.entries(), now)
        except CfbanError:
            # keep the copy, but do not ask again before the next refresh is due
            allowlist.save(state_dir, current.entries, now)
            raise
        current = allowlist.save(state_dir, entries, now)
    release_covered(service, current)
    return current


def release_covered(service: BanService, current: AllowList) -> list[str]:
    """Let go of every hold the allowlist covers; return those targets."""
    now = service.clock.now()
    released = []
    for target in service.store.held_targets():
        if current.covering(target, now) is not None:
            service.store.release(target, None)
            released.append(target)
    for target in released:
        log.info("%s is on the shared allowlist: no longer banned by this host", target)
    return released


def allow(
    service: BanService, text: str, *, seconds: float | None, note: str, deliver: bool = True
) -> Allowed:
    """Put ``text`` (an address, as the target cfban bans for it, or a network) on the
    allowlist for ``seconds`` (None: until disallowed), lifting any live ban of it.

    Raises:
        RefusedError: not an address or network, or one an access rule cannot express.
        CloudflareError: Cloudflare refused or could not be reached.
    """
    target = unban_target(text, service.rules.ipv6_prefix)
    now = service.clock.now()
    expires = None if seconds is None else now + seconds
    had_ban = service.store.state_of(target) is not None
    released = service.intake.unban(target, None)  # forced: whichever host holds it
    lifted = had_ban or bool(released.jails)
    if deliver and released.queued:
        service.deliver(deadline=service.settings.cloudflare.deliver_deadline)
    rules = _rules(service)
    current = allowlist.load(state_dir := service.state_dir)
    if rules is None:  # a dry run: this host alone honours it
        entry = AllowEntry(target, expires, note, "", "local")
        others = [e for e in current.entries if e.target != target]
        allowlist.save(state_dir, [*others, entry], current.read_at)
        return Allowed(entry, lifted, shared=False)
    entry = rules.allow(target, expires, note)
    others = [e for e in current.entries if e.target != target]
    allowlist.save(state_dir, [*others, entry], current.read_at)
    return Allowed(entry, lifted, shared=True)


def disallow(service: BanService, text: str) -> bool:
    """Take ``text`` off the allowlist; False when it was not on it.

    Raises:
        RefusedError: not an address or network.
        CloudflareError: Cloudflare refused or could not be reached.
    """
    target = unban_target(text, service.rules.ipv6_prefix)
    rules = _rules(service)
    found = rules.disallow(target) if rules is not None else False
    current = allowlist.load(service.state_dir)
    kept = [e for e in current.entries if e.target != target]
    found = found or len(kept) != len(current.entries)
    allowlist.save(service.state_dir, kept, current.read_at)
    return found


def after_manual_unban(service: BanService, target: str) -> AllowEntry | None:
    """Allow ``target`` for ``[cloudflare] unban_allow`` after a manual unban (None: off, a
    dry run, or it could not be done, which is logged: the unban itself stands)."""
    seconds = service.settings.cloudflare.unban_allow
    if not seconds or _rules(service) is None:
        return None
    note = f"manual unban on {socket.gethostname()}"
    try:
        return allow(service, target, seconds=float(seconds), note=note, deliver=False).entry
    except CfbanError as exc:
        log.warning("could not put %s on the shared allowlist after the unban: %s", target, exc)
        return None
