"""The real-client decision: table tests over what a log line captured."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from cfban.config import RealIpSettings, Settings
from cfban.realip import CloudflareRanges, Resolution, Resolver

CF4 = "172.64.1.2"  # inside Cloudflare's 172.64.0.0/13
CF6 = "2606:4700::6810:1"  # inside Cloudflare's 2606:4700::/32


def _resolver(*, use_xff: bool = False) -> Resolver:
    settings = Settings(
        realip=RealIpSettings(
            trusted_proxies=["127.0.0.1", "10.0.0.0/8"], use_x_forwarded_for=use_xff
        )
    )
    return Resolver.from_settings(settings, CloudflareRanges.bundled())


def _groups(
    peer: str | None = None, cfip: str | None = None, xff: str | None = None
) -> dict[str, str]:
    found = {"peer": peer, "cfip": cfip, "xff": xff}
    return {name: value for name, value in found.items() if value is not None}


CASES: list[tuple[str, str | None, Mapping[str, str], str | None, str]] = [
    # (case, host, groups, expected client, expected source)
    ("combined format: logged address as is", "198.51.100.4", {}, "198.51.100.4", "logged"),
    ("combined format, IPv6", "2001:DB8::0:1", {}, "2001:db8::1", "logged"),
    (
        "peer field '-' counts as not captured",
        "198.51.100.4",
        _groups("-"),
        "198.51.100.4",
        "logged",
    ),
    ("Cloudflare peer: the header", CF4, _groups(CF4, "198.51.100.4"), "198.51.100.4", "header"),
    (
        "Cloudflare IPv6 peer, IPv6 client",
        "2a01:4f8::1234",
        _groups(CF6, "2a01:4f8:0:0::1234"),
        "2a01:4f8::1234",
        "header",
    ),
    (
        "trusted local proxy: the header",
        "x",
        _groups("127.0.0.1", "203.0.113.7"),
        "203.0.113.7",
        "header",
    ),
    ("trusted proxy CIDR", "x", _groups("10.1.2.3", "203.0.113.7"), "203.0.113.7", "header"),
    ("header '-' falls back to the peer", CF4, _groups(CF4, "-"), CF4, "peer"),
    ("header empty falls back to the peer", CF4, _groups(CF4, ""), CF4, "peer"),
    ("garbage header falls back to the peer", CF4, _groups(CF4, "not-an-ip"), CF4, "peer"),
    ("header with a port is not an address", CF4, _groups(CF4, "198.51.100.4:443"), CF4, "peer"),
    (
        "a list gives its last element, as nginx",
        "203.0.113.13",
        _groups("127.0.0.1", "203.0.113.12, 203.0.113.13"),
        "203.0.113.13",
        "header",
    ),
    ("spaces around the value", CF4, _groups(CF4, "  198.51.100.4 "), "198.51.100.4", "header"),
    (
        "IPv4-mapped peer and header are normalised",
        "x",
        _groups("::ffff:" + CF4, "::ffff:198.51.100.4"),
        "198.51.100.4",
        "header",
    ),
    (
        "untrusted peer: the header is ignored",
        "127.0.0.2",
        _groups("127.0.0.2", "203.0.113.9"),
        "127.0.0.2",
        "direct",
    ),
    (
        "untrusted public peer",
        "198.51.100.77",
        _groups("198.51.100.77", "-"),
        "198.51.100.77",
        "direct",
    ),
    (
        "untrusted IPv6 peer",
        "2a01:4f8::9",
        _groups("2a01:4f8::9", "203.0.113.9"),
        "2a01:4f8::9",
        "direct",
    ),
    ("no host, nothing captured", None, {}, None, "none"),
    ("garbage host in the combined format", "localhost", {}, None, "none"),
    (
        "peer that is no address: the logged host",
        "198.51.100.4",
        _groups("unix:", "x"),
        "198.51.100.4",
        "logged",
    ),
    (
        "upper-case group names",
        "x",
        {"PEER": CF4, "CFIP": "198.51.100.4"},
        "198.51.100.4",
        "header",
    ),
    (
        "X-Forwarded-For is ignored unless configured",
        "x",
        _groups(CF4, "198.51.100.4", "192.0.2.1"),
        "198.51.100.4",
        "header",
    ),
]


@pytest.mark.parametrize(
    ("host", "groups", "client", "source"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_resolution_table(
    host: str | None, groups: Mapping[str, str], client: str | None, source: str
) -> None:
    result = _resolver().resolve(host, groups)
    assert (result.client, result.source) == (client, source)
    assert result.direct_origin_access == (source == "direct")


def test_untrusted_peer_warns_that_the_origin_is_reachable() -> None:
    result = _resolver().resolve("127.0.0.2", _groups("127.0.0.2", "203.0.113.9"))
    assert result.direct_origin_access
    assert result.warning is not None
    assert "did not come through Cloudflare" in result.warning
    assert "'203.0.113.9' was ignored" in result.warning
    assert "cfban nginx-snippet" in result.warning


def test_untrusted_peer_that_nginx_believed_names_the_setting() -> None:
    result = _resolver().resolve("203.0.113.9", _groups("192.168.7.7", "203.0.113.9"))
    assert result == Resolution("192.168.7.7", "direct", result.warning, direct_origin_access=True)
    assert result.warning is not None
    assert "nginx believed the header and logged 203.0.113.9" in result.warning
    assert "trusted_proxies" in result.warning


@pytest.mark.parametrize(
    ("cfip", "why"),
    [("-", "carried no CF-Connecting-IP header"), ("not-an-ip", "is not an address ('not-an-ip')")],
)
def test_fallback_to_the_peer_says_why(cfip: str, why: str) -> None:
    result = _resolver().resolve(CF4, _groups(CF4, cfip))
    assert result.client == CF4
    assert result.warning is not None and why in result.warning


def test_a_clean_header_resolution_has_no_warning() -> None:
    assert _resolver().resolve("x", _groups(CF4, "198.51.100.4")).warning is None


XFF_CASES = [
    # (xff, cfip, expected client, source)
    # Right to left: Cloudflare edge, then a trusted proxy, then the client; the leftmost
    # entry is whatever the client sent and is never reached.
    ("1.1.1.1, 198.51.100.7, 10.0.0.5, 172.64.0.9", "-", "198.51.100.7", "x-forwarded-for"),
    ("198.51.100.7", "203.0.113.1", "198.51.100.7", "x-forwarded-for"),
    ("2a01:4f8::7, 2400:cb00::1", "-", "2a01:4f8::7", "x-forwarded-for"),
    # Garbage met on the walk: the header rule applies.
    ("198.51.100.7, junk", "203.0.113.1", "203.0.113.1", "header"),
    # Only trusted peers: the header rule applies.
    ("10.0.0.1, 172.64.0.9", "203.0.113.1", "203.0.113.1", "header"),
    ("-", "203.0.113.1", "203.0.113.1", "header"),
    ("-", "-", CF4, "peer"),
]


@pytest.mark.parametrize(("xff", "cfip", "client", "source"), XFF_CASES)
def test_x_forwarded_for_walk(xff: str, cfip: str, client: str, source: str) -> None:
    result = _resolver(use_xff=True).resolve("x", _groups(CF4, cfip, xff))
    assert (result.client, result.source) == (client, source)


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    result = _resolver(use_xff=True).resolve("x", _groups("127.0.0.9", "-", "198.51.100.7"))
    assert (result.client, result.source) == ("127.0.0.9", "direct")


def test_trusted_peers_are_cloudflare_plus_configured_proxies() -> None:
    resolver = _resolver()
    assert resolver.is_trusted(CF4)
    assert resolver.is_trusted(CF6)
    assert resolver.is_trusted("10.200.0.1")
    assert resolver.is_trusted("127.0.0.1")
    assert not resolver.is_trusted("127.0.0.2")
    assert not resolver.is_trusted("198.51.100.4")


def test_warning_key_ignores_the_header_text() -> None:
    resolver = _resolver()
    first = resolver.resolve("127.0.0.2", _groups("127.0.0.2", "203.0.113.9"))
    second = resolver.resolve("127.0.0.2", _groups("127.0.0.2", "198.51.100.1"))
    assert first.warning != second.warning
    assert first.warning_key == second.warning_key == "direct:127.0.0.2"
    assert resolver.resolve("x", _groups(CF4, "198.51.100.4")).warning_key is None
