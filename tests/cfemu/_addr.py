"""Address rules: access-rule targets and values, list item formats, sort keys.

Facts from cloudflare-api.md §2 (access-rule targets, ``ip_range`` prefixes) and §3 (list item
formats, current and legacy). Functions raise :class:`ApiError` with the documented codes.
"""

from __future__ import annotations

import ipaddress
import re

from ._envelope import ApiError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ACCESS_RULE_TARGETS = frozenset({"ip", "ip6", "ip_range", "asn", "country"})
RANGE_PREFIXES_V4 = frozenset({16, 24})
RANGE_PREFIXES_V6 = frozenset({32, 48, 64})
_ASN = re.compile(r"AS[0-9]{1,10}", re.IGNORECASE)
_COUNTRY = re.compile(r"[A-Za-z][A-Za-z0-9]")


def access_rule_error(message: str) -> ApiError:
    """A validation failure of an access rule. The message prefix is observed (§2); the code
    is UNVERIFIED — 10014 is a plausible pick, nothing in the doc names it."""
    return ApiError(400, 10014, f"firewallaccessrules.api.validation_error:{message}")


def access_rule_value(target: str, value: object, *, enterprise: bool) -> str:
    """The canonical stored value for an access rule, or a validation error.

    IPv6 values are stored compressed and lowercased; ``ip_range`` host bits are cleared
    (both UNVERIFIED: what Cloudflare echoes back is not documented).
    """
    if target not in ACCESS_RULE_TARGETS:
        raise access_rule_error(f"unsupported target received: {target}")
    if not isinstance(value, str) or not value:
        raise access_rule_error("invalid value received")
    if target == "ip":
        if "/" in value or not _is_ip(value, 4):
            raise access_rule_error("invalid ip provided")
        return str(ipaddress.IPv4Address(value))
    if target == "ip6":
        if "/" in value or not _is_ip(value, 6):
            raise access_rule_error("invalid ip provided")
        return str(ipaddress.IPv6Address(value))
    if target == "ip_range":
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise access_rule_error("invalid ip provided") from None
        allowed = RANGE_PREFIXES_V4 if net.version == 4 else RANGE_PREFIXES_V6
        if "/" not in value or net.prefixlen not in allowed:
            raise access_rule_error("invalid ip provided")
        return str(net)
    if target == "asn":
        if not _ASN.fullmatch(value):
            raise access_rule_error("invalid asn provided")
        return value.upper()
    if not _COUNTRY.fullmatch(value):
        raise access_rule_error("invalid country code provided")
    if not enterprise:
        # Country blocks are Enterprise-only (§2); the exact error is UNVERIFIED.
        raise access_rule_error("country blocking requires an Enterprise plan")
    return value.upper()


def canonical_value(value: str) -> str:
    """A ``configuration.value`` in stored form: addresses and networks as Python prints them
    (IPv6 compressed, lowercase), anything else uppercased. Exact matching compares these, so
    ``2001:DB8::1`` finds ``2001:db8::1`` but ``1.2.3.4`` never finds ``1.2.3.45``."""
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value.upper()


def list_item_network(value: object, position: int, *, legacy_v6: bool) -> IPNetwork:
    """Parse one list item ``ip`` under the current rules (IPv4 /8–/32, IPv6 /12–/128) or the
    legacy ones (IPv6 /12–/64 only; a single IPv6 address is rejected). Error 10035."""
    if not isinstance(value, str):
        raise _item_error(position, f"invalid IP address {value!r}")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _item_error(position, f"invalid IP address {value!r}") from None
    if net.version == 4 and not 8 <= net.prefixlen <= 32:
        raise _item_error(position, "IPv4 CIDRs should have a prefix length from /8 to /32")
    if net.version == 6:
        top = 64 if legacy_v6 else 128
        if not 12 <= net.prefixlen <= top:
            raise _item_error(
                position, f"IPv6 CIDRs should have a prefix length from /12 to /{top} inclusive"
            )
    return net


def item_display(net: IPNetwork, *, cidr_singles: bool) -> str:
    """How an item's ``ip`` is echoed: single addresses bare (the spec example) unless
    ``cidr_singles`` (the docs example); which one Cloudflare sends is UNVERIFIED."""
    if net.prefixlen == net.max_prefixlen and not cidr_singles:
        return str(net.network_address)
    return str(net)


def sort_key(net: IPNetwork) -> tuple[int, int, int]:
    """Items sort ascending by address, then by mask (§3); IPv4 before IPv6."""
    return (net.version, int(net.network_address), net.prefixlen)


def _item_error(position: int, detail: str) -> ApiError:
    return ApiError(
        400, 10035, f"invalid value for ip at position {position}: filters.api.{detail}"
    )


def _is_ip(value: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(value).version == version
    except ValueError:
        return False
