"""Never-ban guards: the last check before any ban, in every mode (hook, daemon, CLI).

:meth:`BanGuard.check` refuses, with a reason a person can act on:

- Cloudflare's own ranges: a ban there blocks Cloudflare's edge and every visitor with it.
  It means nginx logs the edge instead of the client, so the message says loudly that the
  real-IP setup is missing and points at ``cfban nginx-snippet``;
- the ``ignoreip`` allowlist, top level and the jail's (addresses and CIDRs);
- addresses Cloudflare never sees as a client: unspecified, loopback, link-local, multicast,
  private (RFC 1918, shared 100.64.0.0/10, unique-local fc00::/7), reserved (including
  Cloudflare's pseudo-IPv4 range 240.0.0.0/4 and all IPv6 outside 2000::/3);
- documentation and benchmarking ranges (TEST-NET-1/2/3, 2001:db8::/32, 3fff::/20,
  198.18.0.0/15), unless ``[realip] allow_test_nets`` (``CFBAN_ALLOW_TEST_NETS=1``) is on,
  for tests and demos.

IPv4-mapped IPv6 forms are normalised first. An IPv6 address is checked as an address and
then as the network cfban bans for it (``[cloudflare] ipv6_prefix``, /64 by default): that
network must not overlap any protected range either. A CIDR target must not overlap one.

Every refusal is counted in :class:`GuardStats`; :meth:`GuardStats.edge_warning` turns a run
of Cloudflare-edge refusals into one loud warning. The guard raises; logging the refusal is
the caller's job (the CLI prints it, the daemon logs it).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfban.errors import GuardRefusal as GuardRefusal  # defined there, re-exported here
from cfban.realip._netset import (
    Address,
    FirstCover,
    Network,
    NetworkSet,
    as_network,
    parse_target,
)
from cfban.realip._ranges import CloudflareRanges, load_ranges

if TYPE_CHECKING:
    from cfban.config import Settings
    from cfban.rules import Rules

__all__ = ["SPECIAL_RANGES", "TEST_NET_REASONS", "BanGuard", "GuardRefusal", "GuardStats"]

log = logging.getLogger(__name__)

#: Special-purpose ranges in the order their reason is reported (IANA registries).
SPECIAL_RANGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("unspecified", ("0.0.0.0/32", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("cloudflare-pseudo-ipv4", ("240.0.0.0/4",)),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    (
        "private",
        (
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "fc00::/7",
            "64:ff9b:1::/48",
        ),
    ),
    (
        "documentation",
        ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
    ),
    ("benchmarking", ("198.18.0.0/15",)),
    (
        "reserved",
        (
            "0.0.0.0/8",
            "192.0.0.0/24",
            "192.88.99.0/24",
            "::/3",
            "4000::/2",
            "8000::/1",
            "2001::/23",
        ),
    ),
)
#: Reasons that ``allow_test_nets`` lifts.
TEST_NET_REASONS = frozenset({"documentation", "benchmarking"})

_EDGE_HINT = (
    "nginx is logging Cloudflare's edge instead of the real client: its real-IP setup is "
    "missing or incomplete. Run `cfban nginx-snippet` and include its output in nginx's "
    "http {} block"
)
_NEVER_CLIENT = "Cloudflare never sees it as a client address"
_DESCRIBE = {
    "unspecified": "the unspecified address",
    "loopback": "a loopback address",
    "cloudflare-pseudo-ipv4": "a reserved address Cloudflare uses for pseudo-IPv4",
    "link-local": "a link-local address",
    "multicast": "a multicast address",
    "private": "a private address",
    "documentation": "a documentation (TEST-NET) address",
    "benchmarking": "a benchmarking address",
    "reserved": "a reserved address",
}
_HINTS = {
    "private": "when nginx logs private addresses, a proxy in front of it is not trusted: "
    "add it to [realip] trusted_proxies and to nginx (cfban nginx-snippet --trusted-proxy)",
    "loopback": "when nginx logs loopback addresses, a local proxy (cloudflared?) is not "
    "trusted: add it to [realip] trusted_proxies and to nginx "
    "(cfban nginx-snippet --trusted-proxy 127.0.0.1)",
    "documentation": "for tests and demos set CFBAN_ALLOW_TEST_NETS=1 or "
    "[realip] allow_test_nets = true",
    "benchmarking": "for tests and demos set CFBAN_ALLOW_TEST_NETS=1 or "
    "[realip] allow_test_nets = true",
}


@dataclass
class GuardStats:
    """Refusals counted by reason, with the loud warning about Cloudflare edges."""

    refused: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.refused.values())

    def record(self, reason: str) -> None:
        self.refused[reason] += 1

    def edge_warning(self, *, minimum: int = 3, share: float = 0.5) -> str | None:
        """A warning when at least ``minimum`` refusals, and most of them, were edges."""
        edges = self.refused["cloudflare"]
        if edges < minimum or edges < share * self.total:
            return None
        return f"{edges} of {self.total} refused bans were Cloudflare edge addresses: {_EDGE_HINT}"


@dataclass(frozen=True)
class _Category:
    reason: str
    networks: NetworkSet
    where: str = ""


#: Each distinct set of protected categories seen, numbered (``BanGuard.answers``).
_ANSWERS: dict[object, int] = {}


class BanGuard:
    """Refuses bans on addresses cfban must never ban (see the module docstring)."""

    def __init__(
        self,
        ranges: CloudflareRanges,
        *,
        ignoreip: list[str] | tuple[str, ...] = (),
        jail_ignoreip: list[str] | tuple[str, ...] = (),
        jail: str | None = None,
        allow_test_nets: bool = False,
        ipv6_prefix: int = 64,
        stats: GuardStats | None = None,
    ) -> None:
        specials = {reason: NetworkSet(nets) for reason, nets in SPECIAL_RANGES}
        order: list[_Category] = []
        for reason, _ in SPECIAL_RANGES[:3]:
            order.append(_Category(reason, specials[reason]))
        order.append(_Category("cloudflare", ranges.networks))
        order.append(_Category("ignoreip", NetworkSet(ignoreip), "ignoreip"))
        if jail is not None:
            order.append(
                _Category("ignoreip", NetworkSet(jail_ignoreip), f"ignoreip of jail {jail}")
            )
        for reason, _ in SPECIAL_RANGES[3:]:
            if allow_test_nets and reason in TEST_NET_REASONS:
                continue
            order.append(_Category(reason, specials[reason]))
        self._order = tuple(c for c in order if c.networks)
        self._first = FirstCover([c.networks for c in self._order])
        self.ipv6_prefix = ipv6_prefix
        self.stats = stats if stats is not None else GuardStats()
        what = (tuple((c.reason, c.where, c.networks.networks) for c in self._order), ipv6_prefix)
        #: Guards with the same number give the same answer (refusal or not) about any
        #: address: the jails of one configuration usually share one (no ignoreip of their own).
        self.answers = _ANSWERS.setdefault(what, len(_ANSWERS))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        jail: str | None,
        *,
        ranges: CloudflareRanges | None = None,
        stats: GuardStats | None = None,
    ) -> BanGuard:
        """The guard for ``jail`` (``None``: no jail), with the ranges in use.

        Raises:
            ConfigError: the token file cannot be read.
        """
        ranges = ranges if ranges is not None else load_ranges(settings)
        return cls.from_rules(settings.rules(), jail, ranges, stats)

    @classmethod
    def from_rules(
        cls, rules: Rules, jail: str | None, ranges: CloudflareRanges, stats: GuardStats | None
    ) -> BanGuard:
        """The guard for ``jail`` under the ban rules every way in applies."""
        return cls(
            ranges,
            ignoreip=rules.ignoreip,
            jail_ignoreip=rules.jail(jail).ignoreip,
            jail=jail,
            allow_test_nets=rules.allow_test_nets,
            ipv6_prefix=rules.ipv6_prefix,
            stats=stats,
        )

    def _find(self, target: Address | Network) -> tuple[_Category, Network | None] | None:
        """The first protected category ``target`` hits, and the banned block if that hit."""
        if isinstance(target, ipaddress.IPv4Address | ipaddress.IPv6Address):
            first = self._first.first(target)
            if first is not None:
                return self._order[first], None
        else:
            for category in self._order:
                if category.networks.overlaps(target):
                    return category, None
        if isinstance(target, ipaddress.IPv6Address) and self.ipv6_prefix < 128:
            block = ipaddress.IPv6Network((target, self.ipv6_prefix), strict=False)
            for category in self._order:
                if category.networks.overlaps(block):
                    return category, block
        return None

    def refusal(self, address: str) -> GuardRefusal | None:
        """Why ``address`` (an address or a CIDR) must not be banned; ``None`` if it may."""
        try:
            target = parse_target(address)
        except ValueError as exc:
            return GuardRefusal(address, "invalid", str(exc), hint="pass an IP address or CIDR")
        found = self._find(target)
        if found is None:
            return None
        category, block = found
        return self._refuse(str(target), category, block or target, block)

    def check(self, address: str) -> None:
        """Return if ``address`` may be banned; count and raise otherwise.

        Raises:
            GuardRefusal: a :class:`~cfban.errors.RefusedError` whose message gives the
                reason and whose ``reason`` attribute is its short code.
        """
        refusal = self.refusal(address)
        if refusal is None:
            return
        self.stats.record(refusal.reason)
        log.debug("refused to ban %s: %s", address, refusal.reason)
        raise refusal

    def allows(self, address: str) -> bool:
        """Whether ``address`` may be banned (counts nothing)."""
        try:
            target = parse_target(address)
        except ValueError:
            return False
        return self._find(target) is None

    @staticmethod
    def _refuse(
        shown: str, category: _Category, target: Address | Network, block: Network | None
    ) -> GuardRefusal:
        net = as_network(target)
        match = next((n for n in category.networks.networks if n.overlaps(net)), net)
        subject = shown if block is None else f"{shown} (banned as {block})"
        overlap = net.num_addresses > 1
        reason = category.reason
        if reason == "cloudflare":
            where = "overlaps" if overlap else "is in"
            message = (
                f"refusing to ban {subject}: it {where} Cloudflare's own range {match}, and a "
                "ban there blocks Cloudflare's edge and every visitor with it"
            )
            return GuardRefusal(shown, reason, message, hint=_EDGE_HINT)
        if reason == "ignoreip":
            where = f"overlaps {match}, allowlisted" if overlap else f"is allowlisted ({match})"
            message = f"refusing to ban {subject}: it {where} by {category.where}"
            return GuardRefusal(shown, reason, message, hint="remove it from ignoreip to ban it")
        what = _DESCRIBE[reason]
        where = f"overlaps {match}, {what}" if overlap else f"is {what} ({match})"
        message = f"refusing to ban {subject}: it {where}; {_NEVER_CLIENT}"
        return GuardRefusal(shown, reason, message, hint=_HINTS.get(reason))
