"""From an address to what cfban bans at Cloudflare: the *ban target*.

An IPv4 address is banned as itself. An IPv6 address is banned as its network of
``[cloudflare] ipv6_prefix`` bits (a /64 by default): a client hops freely inside its /64, so
banning one address of it bans nothing. Every address of one /64 maps to the same target, so
one /64 is one entry at Cloudflare however many of its addresses misbehave.

Targets are written in one canonical spelling (``203.0.113.7``, ``2001:db8:1:2::/64``, a bare
address when the prefix is the whole address) so the state and Cloudflare agree on what is the
same ban. IPv4-mapped IPv6 addresses (``::ffff:203.0.113.7``) are the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cfban import realip
from cfban.errors import RefusedError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = [
    "Address",
    "BanTarget",
    "ban_target",
    "canonical_target",
    "parse_address",
    "parse_target",
    "range_target",
    "unban_target",
]

#: Prefix lengths an IP Access Rule takes for a range (``ip_range``), by IP version.
ACCESS_RULE_RANGES = {4: (16, 24), 6: (32, 48, 64)}
#: Prefix lengths a custom IP list takes, by IP version (inclusive bounds).
LIST_RANGES = {4: (8, 32), 6: (12, 128)}


@dataclass(frozen=True)
class BanTarget:
    """An address and the target it is banned as."""

    address: str
    target: str


def parse_address(text: str) -> Address:
    """``text`` as one IP address, normalised as the never-ban guards see it (``[v6]``
    brackets allowed; a mapped IPv6 address becomes IPv4; a zone index is dropped).

    Raises:
        RefusedError: ``text`` is not a single IP address.
    """
    raw = text.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    address = realip.parse_address(raw)
    if address is None:
        if "/" in raw:
            hint = "give one address; cfban bans IPv6 clients as their /64 by itself"
        else:
            hint = "give an IPv4 address such as 203.0.113.7 or an IPv6 address such as 2001:db8::7"
        raise RefusedError(f"{text!r} is not an IP address", hint=hint)
    return address


def parse_target(text: str) -> str:
    """``text`` as a target as ``cfban list`` shows it: an address (banned as itself, not
    widened) or a network in CIDR notation.

    Raises:
        RefusedError: ``text`` is neither.
    """
    try:
        return str(realip.parse_target(text))
    except ValueError:
        raise RefusedError(
            f"{text!r} is not an IP address or network",
            hint="give an address, or a target as `cfban list` shows it",
        ) from None


def canonical_target(address: Address, ipv6_prefix: int = 64) -> str:
    """The ban target of ``address``: itself for IPv4, its network for IPv6."""
    if isinstance(address, ipaddress.IPv4Address) or ipv6_prefix >= 128:
        return str(address)
    network = ipaddress.IPv6Network((int(address), ipv6_prefix), strict=False)
    return str(network)


def ban_target(text: str, ipv6_prefix: int = 64) -> BanTarget:
    """Parse ``text`` and return its canonical address and ban target.

    Raises:
        RefusedError: ``text`` is not a single IP address.
    """
    address = parse_address(text)
    return BanTarget(str(address), canonical_target(address, ipv6_prefix))


def unban_target(text: str, ipv6_prefix: int = 64) -> str:
    """The target to unban for ``text``: an address (mapped as a ban maps it) or a target as
    ``cfban list`` shows it (``2001:db8:1:2::/64``).

    Raises:
        RefusedError: ``text`` is neither.
    """
    if "/" in text:
        return parse_target(text)
    return ban_target(text, ipv6_prefix).target


def range_target(text: str, ipv6_prefix: int, mechanism: str) -> BanTarget:
    """A network given by hand (``cfban ban 203.0.113.0/24``) as a ban target, when the
    mechanism that will carry it (``list`` or ``access-rules``) can express it. An IPv6
    network narrower than ``ipv6_prefix`` is banned as that prefix, like an address.

    Raises:
        RefusedError: not a network, or one Cloudflare cannot ban that way.
    """
    target = parse_target(text)
    net = ipaddress.ip_network(target, strict=False)
    if net.version == 6 and net.prefixlen > ipv6_prefix:
        net = ipaddress.IPv6Network((int(net.network_address), ipv6_prefix), strict=False)
    if net.prefixlen == net.max_prefixlen:
        one = str(net.network_address)
        return BanTarget(one, one)
    shown = str(net)
    if mechanism == "list":
        low, high = LIST_RANGES[net.version]
        if not low <= net.prefixlen <= high:
            raise RefusedError(
                f"cannot ban {shown}: a Cloudflare IP list takes IPv{net.version} networks "
                f"from /{low} to /{high} only",
                hint="ban a narrower network, or several",
            )
        return BanTarget(shown, shown)
    allowed = ACCESS_RULE_RANGES[net.version]
    if net.prefixlen not in allowed:
        sizes = ", ".join(f"/{n}" for n in allowed)
        raise RefusedError(
            f"cannot ban {shown} with an IP Access Rule: Cloudflare takes IPv{net.version} "
            f"ranges of {sizes} only",
            hint="ban it as ranges of those sizes, or use the list backend "
            "(IPv4 /8 to /32, IPv6 /12 to /128)",
        )
    return BanTarget(shown, shown)
