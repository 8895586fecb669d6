"""Addresses and sets of networks: parsing, normalising and fast membership.

Every address cfban decides about goes through :func:`parse_address` (or :func:`parse_target`
for something to ban, which may be a network): surrounding space is dropped, an IPv4-mapped
IPv6 address (``::ffff:203.0.113.7``) becomes the IPv4 address it stands for, and anything
that is not an address gives ``None`` (or :class:`ValueError`) instead of a half-parsed value.

:class:`NetworkSet` answers "is this address in any of these networks" and "does this network
overlap any of them" with a binary search over merged integer intervals, so a lookup costs
O(log n) however many ranges and allowlist entries are configured.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import TypeAlias

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def normalise_address(address: Address) -> Address:
    """``address`` with an IPv4-mapped IPv6 form turned into plain IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def normalise_network(network: Network) -> Network:
    """``network`` with an IPv4-mapped IPv6 network (``::ffff:0:0/96`` or longer) as IPv4."""
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_MAPPED)
    ):
        base = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((base, network.prefixlen - 96))
    return network


def parse_address(text: str | None) -> Address | None:
    """The address written in ``text``, normalised; ``None`` when it is not one address."""
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > 64:
        return None
    try:
        return normalise_address(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_target(text: str) -> Address | Network:
    """An address, or a network in CIDR notation (host bits are dropped), normalised.

    Raises:
        ValueError: ``text`` is neither.
    """
    text = text.strip()
    if "/" not in text:
        address = parse_address(text)
        if address is None:
            raise ValueError(f"{text!r} is not an IP address or CIDR network")
        return address
    try:
        network = normalise_network(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
    if network.num_addresses == 1:
        return network.network_address
    return network


def as_network(target: Address | Network) -> Network:
    """``target`` as a network (an address becomes its /32 or /128)."""
    if isinstance(target, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ipaddress.ip_network(target)
    return target


def _merge(intervals: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(intervals):
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


class NetworkSet:
    """An immutable set of IPv4 and IPv6 networks with O(log n) lookups.

    ``networks`` keeps the networks as given (normalised, duplicates dropped, in order) for
    display; lookups use sorted, merged ``[start, end]`` integer intervals per family.
    """

    def __init__(self, networks: Iterable[Network | Address | str]) -> None:
        seen: dict[Network, None] = {}
        for item in networks:
            if isinstance(item, str):
                net = as_network(parse_target(item))
            else:
                net = as_network(item)
                net = normalise_network(net)
            seen.setdefault(net, None)
        self.networks: tuple[Network, ...] = tuple(seen)
        raw: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for net in self.networks:
            raw[net.version].append((int(net.network_address), int(net.broadcast_address)))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version, intervals in raw.items():
            self._starts[version], self._ends[version] = _merge(intervals)

    def __len__(self) -> int:
        return len(self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"NetworkSet({[str(n) for n in self.networks]!r})"

    def of_version(self, version: int) -> tuple[Network, ...]:
        """The networks of one address family (4 or 6), in their original order."""
        return tuple(n for n in self.networks if n.version == version)

    def _covers(self, version: int, low: int, high: int) -> bool:
        starts = self._starts[version]
        index = bisect_right(starts, high) - 1
        return index >= 0 and self._ends[version][index] >= low

    def contains(self, address: Address | str) -> bool:
        """Whether ``address`` (an address object or text) lies in one of the networks."""
        if isinstance(address, str):
            parsed = parse_address(address)
            if parsed is None:
                return False
            address = parsed
        else:
            address = normalise_address(address)
        value = int(address)
        return self._covers(address.version, value, value)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            return self.contains(address)
        return False

    def overlaps(self, network: Network | Address) -> bool:
        """Whether any address of ``network`` lies in one of the networks."""
        net = normalise_network(as_network(network))
        return self._covers(net.version, int(net.network_address), int(net.broadcast_address))

    def intervals(self, version: int) -> list[tuple[int, int]]:
        """The merged ``[start, end]`` integer intervals of one address family."""
        return list(zip(self._starts[version], self._ends[version], strict=True))


class FirstCover:
    """Which of several network sets, in their order, is the first to contain an address,
    with one binary search however many sets there are.

    The sets' interval ends cut each family's address space into pieces that every set
    either covers whole or misses; each piece covered by some set is kept with the first
    such set (adjacent pieces of the same set joined).
    """

    def __init__(self, sets: Sequence[NetworkSet]) -> None:
        self._tables: dict[int, tuple[list[int], list[int], list[int]]] = {}
        for version in (4, 6):
            bounds = sorted(
                {
                    edge
                    for s in sets
                    for low, high in s.intervals(version)
                    for edge in (low, high + 1)
                }
            )
            starts: list[int] = []
            ends: list[int] = []
            owners: list[int] = []
            for low, beyond in pairwise(bounds):
                owner = next((n for n, s in enumerate(sets) if s._covers(version, low, low)), None)
                if owner is None:
                    continue
                if owners and owners[-1] == owner and ends[-1] == low - 1:
                    ends[-1] = beyond - 1
                else:
                    starts.append(low)
                    ends.append(beyond - 1)
                    owners.append(owner)
            self._tables[version] = (starts, ends, owners)

    def first(self, address: Address) -> int | None:
        """The position of the first set that contains ``address`` (normalised), or None."""
        address = normalise_address(address)
        starts, ends, owners = self._tables[address.version]
        value = int(address)
        index = bisect_right(starts, value) - 1
        if index >= 0 and ends[index] >= value:
            return owners[index]
        return None
