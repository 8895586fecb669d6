"""Ban targets: IPv4 as itself, IPv6 as its /64 (configurable), one canonical spelling."""

from __future__ import annotations

import pytest

from cfban.errors import RefusedError
from cfban.targets import (
    ban_target,
    canonical_target,
    parse_address,
    parse_target,
    unban_target,
)


def test_ipv4_is_itself() -> None:
    assert ban_target("198.51.100.7") == ban_target(" 198.51.100.7 ")
    assert ban_target("198.51.100.7").target == "198.51.100.7"


def test_ipv6_is_its_64_and_addresses_of_one_64_merge() -> None:
    a = ban_target("2001:db8:1:2::17")
    b = ban_target("2001:DB8:1:2:ffff:0:0:1")
    assert a.target == b.target == "2001:db8:1:2::/64"
    assert a.address == "2001:db8:1:2::17"
    assert ban_target("2001:db8:1:3::17").target == "2001:db8:1:3::/64"


def test_ipv6_prefix_is_configurable() -> None:
    assert ban_target("2001:db8:1:2::17", 48).target == "2001:db8:1::/48"
    assert ban_target("2001:db8:1:2::17", 128).target == "2001:db8:1:2::17"


def test_brackets_and_mapped_addresses() -> None:
    assert ban_target("[2001:db8::1]").target == "2001:db8::/64"
    assert ban_target("::ffff:198.51.100.7").target == "198.51.100.7"
    assert str(parse_address("::ffff:198.51.100.7")) == "198.51.100.7"


def test_canonical_target_of_ipv4_ignores_prefix() -> None:
    assert canonical_target(parse_address("198.51.100.7"), 64) == "198.51.100.7"


@pytest.mark.parametrize(
    "text",
    ["", "foo", "198.51.100", "198.51.100.300", "198.51.100.0/24", "2001:db8::/64",
     "1.2.3.4; rm -rf /", "[::1", "1" * 80],
)  # fmt: skip
def test_invalid_input_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(RefusedError) as info:
        ban_target(text)
    message = str(info.value)
    assert "not an IP address" in message
    assert "give" in message


def test_zone_index_is_dropped_as_the_guards_do() -> None:
    assert ban_target("fe80::1%eth0").address == "fe80::1"


def test_unban_takes_a_listed_target() -> None:
    assert parse_target("2001:db8:1:2::/64") == "2001:db8:1:2::/64"
    assert parse_target("198.51.100.7/32") == "198.51.100.7"
    with pytest.raises(RefusedError):
        parse_target("198.51.100.7/99")
    assert unban_target("2001:db8:1:2::99") == "2001:db8:1:2::/64"
    assert unban_target("2001:db8:1:2::/64") == "2001:db8:1:2::/64"
    assert unban_target("198.51.100.7") == "198.51.100.7"
