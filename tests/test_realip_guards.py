"""Never-ban guards: each category, the allowlists, IPv6 /64s, counting, and properties."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cfban.config import JailSettings, Settings, load_settings
from cfban.errors import RefusedError
from cfban.realip import SPECIAL_RANGES, BanGuard, CloudflareRanges, GuardRefusal, GuardStats

GLOBAL_IGNORE = ["8.8.8.0/24", "1.2.3.4", "2a01:4f8:1:2::/64"]
JAIL_IGNORE = ["9.9.9.9", "2a01:4f8::5"]


def _settings(**realip: bool) -> Settings:
    return Settings.model_validate(
        {
            "ignoreip": GLOBAL_IGNORE,
            "realip": realip,
            "jails": {"web": JailSettings(filter="nginx-probes", ignoreip=JAIL_IGNORE)},
        }
    )


def _guard(**realip: bool) -> BanGuard:
    return BanGuard.from_settings(_settings(**realip), "web", ranges=CloudflareRanges.bundled())


def _reason(guard: BanGuard, address: str) -> str:
    with pytest.raises(RefusedError) as info:
        guard.check(address)
    assert isinstance(info.value, GuardRefusal)
    return info.value.reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("104.16.0.1", "cloudflare"),
        ("173.245.63.255", "cloudflare"),
        ("2a06:98c7:ffff::1", "cloudflare"),
        ("::ffff:104.16.0.1", "cloudflare"),
        ("8.8.8.8", "ignoreip"),
        ("1.2.3.4", "ignoreip"),
        ("2a01:4f8:1:2::abcd", "ignoreip"),
        ("9.9.9.9", "ignoreip"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "reserved"),
        ("192.0.0.8", "reserved"),
        ("::1.2.3.4", "reserved"),
        ("4000::1", "reserved"),
        ("2001::1", "reserved"),
        ("240.0.0.1", "cloudflare-pseudo-ipv4"),
        ("255.255.255.255", "cloudflare-pseudo-ipv4"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.7", "documentation"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("not-an-ip", "invalid"),
        ("", "invalid"),
    ],
)
def test_each_category_is_refused(address: str, reason: str) -> None:
    assert _reason(_guard(), address) == reason


@pytest.mark.parametrize(
    "address",
    ["1.1.1.1", "8.8.4.4", "9.9.9.10", "93.184.216.34", "2a00:1450:4001::1", "2a01:4f8:1:3::1"],
)
def test_public_addresses_are_accepted(address: str) -> None:
    _guard().check(address)


def test_cloudflare_refusal_says_loudly_what_is_wrong() -> None:
    with pytest.raises(RefusedError) as info:
        _guard().check("162.158.1.1")
    text = str(info.value)
    assert "Cloudflare's own range 162.158.0.0/15" in text
    assert "real-IP setup is missing" in text
    assert "cfban nginx-snippet" in text


def test_allowlist_refusal_names_the_entry_and_the_jail() -> None:
    with pytest.raises(
        RefusedError, match=r"allowlisted \(9\.9\.9\.9/32\) by ignoreip of jail web"
    ):
        _guard().check("9.9.9.9")
    with pytest.raises(RefusedError, match=r"allowlisted \(8\.8\.8\.0/24\) by ignoreip"):
        _guard().check("8.8.8.200")


def test_the_jail_allowlist_applies_to_its_jail_only() -> None:
    other = BanGuard.from_settings(_settings(), "other", ranges=CloudflareRanges.bundled())
    no_jail = BanGuard.from_settings(_settings(), None, ranges=CloudflareRanges.bundled())
    for guard in (other, no_jail):
        guard.check("9.9.9.9")
        assert _reason(guard, "8.8.8.8") == "ignoreip"


def test_test_nets_are_allowed_only_when_configured() -> None:
    allowed = _guard(allow_test_nets=True)
    for address in ("203.0.113.7", "198.51.100.4", "192.0.2.1", "2001:db8::1", "198.19.0.1"):
        allowed.check(address)
    # Everything else is still refused.
    assert _reason(allowed, "127.0.0.1") == "loopback"
    assert _reason(allowed, "104.16.0.1") == "cloudflare"
    with pytest.raises(RefusedError, match="CFBAN_ALLOW_TEST_NETS=1"):
        _guard().check("203.0.113.7")


def test_allow_test_nets_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "cfban.toml"
    config.write_text("[realip]\nallow_test_nets = false\n", encoding="utf-8")
    settings = load_settings(config, env={"CFBAN_ALLOW_TEST_NETS": "1"})
    assert settings.realip.allow_test_nets is True
    assert load_settings(config, env={}).realip.allow_test_nets is False
    BanGuard.from_settings(settings, None, ranges=CloudflareRanges.bundled()).check("203.0.113.7")


def test_ipv6_is_checked_as_its_64() -> None:
    guard = _guard()
    # 2a01:4f8::5 (allowlisted in the jail) shares its /64 with 2a01:4f8::7.
    with pytest.raises(RefusedError, match=r"banned as 2a01:4f8::/64\): it overlaps 2a01:4f8::5"):
        guard.check("2a01:4f8::7")
    guard.check("2a01:4f8:0:1::7")
    narrow = BanGuard(
        CloudflareRanges.bundled(), jail_ignoreip=JAIL_IGNORE, jail="web", ipv6_prefix=128
    )
    narrow.check("2a01:4f8::7")


def test_cidr_targets_must_not_overlap() -> None:
    guard = _guard()
    assert _reason(guard, "104.0.0.0/8") == "cloudflare"
    assert _reason(guard, "8.8.0.0/16") == "ignoreip"
    assert _reason(guard, "2a01:4f8::/32") == "ignoreip"
    assert _reason(guard, "::ffff:10.0.0.0/104") == "private"
    guard.check("93.184.0.0/16")
    guard.check("2a00:1450:4001::/48")


def test_stats_count_refusals_and_warn_about_edges() -> None:
    stats = GuardStats()
    guard = BanGuard.from_settings(
        _settings(), "web", ranges=CloudflareRanges.bundled(), stats=stats
    )
    for address in ("104.16.0.1", "10.0.0.1", "104.16.0.2"):
        with pytest.raises(RefusedError):
            guard.check(address)
    guard.check("93.184.216.34")
    assert stats.refused == {"cloudflare": 2, "private": 1}
    assert stats.total == 3
    assert stats.edge_warning() is None  # fewer than 3 edges so far
    with pytest.raises(RefusedError):
        guard.check("2400:cb00::1")
    warning = stats.edge_warning()
    assert warning is not None
    assert warning.startswith("3 of 4 refused bans were Cloudflare edge addresses")
    assert "cfban nginx-snippet" in warning
    for _ in range(5):
        with pytest.raises(RefusedError):
            guard.check("192.168.0.1")
    assert stats.edge_warning() is None  # edges are no longer most refusals


def test_load_ranges_is_used_when_no_ranges_are_given(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert _reason(BanGuard.from_settings(settings, None), "104.16.0.1") == "cloudflare"


# --- properties -------------------------------------------------------------------------

_RANGES = CloudflareRanges.bundled()
_PROTECTED = [
    *_RANGES.networks.networks,
    *(ipaddress.ip_network(n) for n in GLOBAL_IGNORE + JAIL_IGNORE),
    *(ipaddress.ip_network(n) for _, nets in SPECIAL_RANGES for n in nets),
]
_GUARD = _guard()


def _oracle_refuses(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An independent, linear answer: the address (and for IPv6 its /64) hits a protected net."""
    if address.version == 4:
        return any(address in net for net in _PROTECTED if net.version == 4)
    block = ipaddress.IPv6Network((address, 64), strict=False)
    return any(block.overlaps(net) for net in _PROTECTED if net.version == 6)


def _protected_forms(seed: int) -> list[str]:
    """Addresses of one protected network chosen by ``seed``: one inside, its first and its
    last address, IPv4 also written IPv4-mapped and with spaces around it."""
    net = _PROTECTED[seed % len(_PROTECTED)]
    inside = net.network_address + (seed // len(_PROTECTED)) % net.num_addresses
    addresses = [inside, net.network_address, net.broadcast_address]
    forms = [str(a) for a in addresses]
    if net.version == 4:
        forms += [f"::ffff:{a}" for a in addresses] + [f" {inside} "]
    return forms


def _other(seed: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Any IPv4 address, or one in global unicast IPv6 (2000::/3), chosen by ``seed``."""
    if seed & 1:
        return ipaddress.IPv4Address((seed >> 1) % 2**32)
    return ipaddress.IPv6Address((0x2000 << 112) + (seed >> 1) % 2**125)


# Each example is one 384-bit integer (drawing one value keeps Hypothesis's own cost near
# 0.3 ms an example, so 10,000 examples stay well under 20 s on two busy cores). Its low
# half picks an address inside a protected network (Cloudflare, the allowlists, every
# special range) that must be refused in every form; its high half picks an address from all
# of IPv4 or global IPv6 on which the guard must agree with a linear oracle: accepted exactly
# when it, and for IPv6 its /64, is outside every protected network.
@hsettings(max_examples=10_000, deadline=None)
@given(st.integers(0, 2**384 - 1))
def test_protected_never_accepted_and_public_accepted(seed: int) -> None:
    forms = _protected_forms(seed & (2**192 - 1))
    for form in forms:
        assert not _GUARD.allows(form), form
    refusal = _GUARD.refusal(forms[0])
    assert refusal is not None and refusal.reason != "invalid"
    other = _other(seed >> 192)
    assert _GUARD.allows(str(other)) == (not _oracle_refuses(other)), other


def test_random_public_addresses_are_mostly_accepted() -> None:
    # The oracle property above could pass by refusing everything that the oracle refuses
    # *and* the oracle being too broad; pin that public space is really open.
    import random

    rng = random.Random(7)
    v4 = [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2000)]
    v6 = [ipaddress.IPv6Address((0x2 << 124) | rng.getrandbits(124)) for _ in range(2000)]
    accepted_v4 = sum(_GUARD.allows(str(a)) for a in v4)
    accepted_v6 = sum(_GUARD.allows(str(a)) for a in v6)
    assert accepted_v4 > 1600  # about 86 % of IPv4 is public and not Cloudflare
    assert accepted_v6 > 1990


def test_a_check_is_fast() -> None:
    addresses = [f"93.184.{i % 256}.{i // 256 % 256}" for i in range(20_000)]
    started = time.perf_counter()
    for address in addresses:
        _GUARD.allows(address)
    per_check = (time.perf_counter() - started) / len(addresses)
    assert per_check < 200e-6


def test_guards_that_protect_the_same_addresses_share_their_answers_number() -> None:
    """Jails without an ignoreip of their own get equal guards (the daemon asks once per
    client for all of them); a jail allowlist, test nets or another IPv6 block make another."""
    ranges = CloudflareRanges.bundled()
    settings = _settings()
    first, second = (BanGuard.from_settings(settings, j, ranges=ranges) for j in ("a", "b"))
    assert first.answers == second.answers
    assert first.refusal("9.9.9.9") is None and second.refusal("9.9.9.9") is None
    web = BanGuard.from_settings(settings, "web", ranges=ranges)  # the jail with JAIL_IGNORE
    assert web.answers != first.answers
    assert web.refusal("9.9.9.9") is not None
    assert _guard(allow_test_nets=True).answers != _guard().answers
    assert BanGuard(ranges, ipv6_prefix=56).answers != BanGuard(ranges).answers
