"""Cloudflare's ranges: membership, bundled set, refresh (pytest-httpx), storage, `cfban ips`."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pytest_httpx import HTTPXMock
from typer.testing import CliRunner

from cfban.cli import app
from cfban.clock import FakeClock
from cfban.config import Settings
from cfban.errors import CloudflareError, StateError, TransportError
from cfban.realip import (
    BUNDLED_IPV4,
    BUNDLED_IPV6,
    CloudflareRanges,
    FirstCover,
    NetworkSet,
    fetch_ranges,
    load_ranges,
    ranges_path,
    refresh_ranges,
    store_ranges,
)
from tests.cfemu import Emulator

API = "http://127.0.0.1:9/client/v4"
IPS_URL = API + "/ips"
NEW_V4 = ["173.245.48.0/20", "104.16.0.0/13", "192.200.0.0/24"]
NEW_V6 = ["2400:cb00::/32", "2606:4700::/32"]


def _envelope(v4: object = NEW_V4, v6: object = NEW_V6) -> dict[str, object]:
    result = {"etag": "abc123", "ipv4_cidrs": v4, "ipv6_cidrs": v6}
    return {"success": True, "errors": [], "messages": [], "result": result}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {"state_dir": str(tmp_path / "state"), "cloudflare": {"api_url": API}}
    )


# --- membership ---------------------------------------------------------------------------


def test_bundled_ranges_are_cloudflares_published_list() -> None:
    ranges = CloudflareRanges.bundled()
    assert (len(ranges.ipv4), len(ranges.ipv6)) == (15, 7)
    assert ranges.ipv4[0] == "173.245.48.0/20" and ranges.ipv6[-1] == "2c0f:f248::/32"
    assert "bundled" in ranges.source


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("173.245.48.0", True),
        ("173.245.63.255", True),
        ("173.245.64.0", False),
        ("104.23.255.255", True),
        ("104.24.0.0", True),
        ("104.28.0.0", False),
        ("::ffff:162.159.1.1", True),
        ("2a06:98c7:ffff:ffff::1", True),
        ("2a06:98c8::", False),
        ("1.1.1.1", False),
        ("not-an-ip", False),
    ],
)
def test_membership(address: str, inside: bool) -> None:
    ranges = CloudflareRanges.bundled()
    assert ranges.contains(address) is inside
    assert (address in ranges) is inside


def test_overlap_of_networks() -> None:
    ranges = CloudflareRanges.bundled()
    assert ranges.overlaps(ipaddress.ip_network("104.0.0.0/8"))
    assert ranges.overlaps(ipaddress.ip_network("2400:cb00:1::/48"))
    assert not ranges.overlaps(ipaddress.ip_network("93.184.216.0/24"))


_nets4 = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)).map(
        lambda t: ipaddress.IPv4Network((t[0], t[1]), strict=False)
    ),
    max_size=12,
)


@hsettings(max_examples=300, deadline=None)
@given(_nets4, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_network_set_agrees_with_a_linear_scan(
    nets: list[ipaddress.IPv4Network], probes: list[int]
) -> None:
    found = NetworkSet(nets)
    for value in probes:
        address = ipaddress.IPv4Address(value)
        assert found.contains(address) == any(address in n for n in nets)
        # Neighbours of every boundary too: merging adjacent intervals is where bugs hide.
    for net in nets:
        for value in (int(net.network_address) - 1, int(net.broadcast_address) + 1):
            if 0 <= value < 2**32:
                address = ipaddress.IPv4Address(value)
                assert found.contains(address) == any(address in n for n in nets)


@hsettings(max_examples=300, deadline=None)
@given(
    st.lists(_nets4, min_size=1, max_size=5),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_first_cover_agrees_with_asking_each_set_in_turn(
    groups: list[list[ipaddress.IPv4Network]], probes: list[int]
) -> None:
    sets = [NetworkSet(nets) for nets in groups]
    cover = FirstCover(sets)
    edges = {
        edge
        for nets in groups
        for net in nets
        for edge in (int(net.network_address) - 1, int(net.network_address),
                     int(net.broadcast_address), int(net.broadcast_address) + 1)
    }  # fmt: skip
    for value in {*probes, *edges}:
        if not 0 <= value < 2**32:
            continue
        address = ipaddress.IPv4Address(value)
        first = next((n for n, s in enumerate(sets) if s.contains(address)), None)
        assert cover.first(address) == first


def test_first_cover_of_ipv6_and_mapped_addresses() -> None:
    sets = [NetworkSet(["2001:db8::/32"]), NetworkSet(["2001:db8:1::/48", "10.0.0.0/8"])]
    cover = FirstCover(sets)
    assert cover.first(ipaddress.ip_address("2001:db8:1::5")) == 0
    assert cover.first(ipaddress.ip_address("::ffff:10.1.2.3")) == 1
    assert cover.first(ipaddress.ip_address("2001:db9::1")) is None


# --- load and store -----------------------------------------------------------------------


def test_load_without_a_stored_file_gives_the_bundled_set(settings: Settings) -> None:
    assert load_ranges(settings) == CloudflareRanges.bundled()


def test_a_broken_stored_file_falls_back_to_bundled_and_says_so(settings: Settings) -> None:
    path = ranges_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("<html>oops", encoding="utf-8")
    ranges = load_ranges(settings)
    assert ranges.ipv4 == BUNDLED_IPV4 and ranges.ipv6 == BUNDLED_IPV6
    assert "unreadable" in ranges.source and "cfban ips --refresh" in ranges.source


def test_a_stored_file_missing_a_family_is_not_used(settings: Settings) -> None:
    path = ranges_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"ipv4_cidrs": NEW_V4, "ipv6_cidrs": []}), encoding="utf-8")
    assert load_ranges(settings).ipv4 == BUNDLED_IPV4


def test_store_is_atomic_and_readable_back(settings: Settings) -> None:
    fetched = CloudflareRanges(
        tuple(NEW_V4), tuple(NEW_V6), source="x", fetched_at=1.5, etag="e", url=IPS_URL
    )
    stored = store_ranges(settings, fetched)
    path = ranges_path(settings)
    assert [p.name for p in path.parent.iterdir()] == ["cloudflare-ranges.json"]
    loaded = load_ranges(settings)
    assert loaded == stored
    assert (loaded.ipv4, loaded.ipv6, loaded.etag, loaded.fetched_at) == (
        tuple(NEW_V4),
        tuple(NEW_V6),
        "e",
        1.5,
    )
    assert loaded.source == f"stored in {path}"


def test_store_into_an_unwritable_place_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    settings = Settings.model_validate({"state_dir": str(blocker / "state")})
    with pytest.raises(StateError, match="cannot write the Cloudflare ranges"):
        store_ranges(settings, CloudflareRanges.bundled())


# --- refresh ------------------------------------------------------------------------------


def test_refresh_stores_a_good_answer(settings: Settings, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=IPS_URL, json=_envelope())
    result = refresh_ranges(settings, clock=FakeClock(1_800_000_000.0))
    assert result.ranges.ipv4 == tuple(NEW_V4) and result.ranges.ipv6 == tuple(NEW_V6)
    assert "192.200.0.0/24" in result.added
    assert "131.0.72.0/22" in result.removed
    stored = json.loads(ranges_path(settings).read_text(encoding="utf-8"))
    assert stored["ipv4_cidrs"] == NEW_V4 and stored["etag"] == "abc123"
    assert stored["fetched_at"] == 1_800_000_000.0 and stored["url"] == IPS_URL
    assert load_ranges(settings).contains("192.200.0.9")
    request = httpx_mock.get_request()
    assert request is not None and "authorization" not in request.headers


def _bad_answers() -> list[tuple[str, dict[str, object], type[Exception], str]]:
    html = "<!DOCTYPE html><html><title>Just a moment...</title></html>"
    failure = {"success": False, "errors": [{"code": 7003, "message": "No route"}], "result": None}
    return [
        ("html challenge", {"text": html, "status_code": 403}, TransportError, "not JSON"),
        ("html with 200", {"text": html}, TransportError, "not JSON"),
        ("empty body", {"content": b""}, TransportError, "not JSON"),
        ("not the envelope", {"json": [1, 2]}, TransportError, "envelope"),
        ("api error", {"json": failure, "status_code": 404}, CloudflareError, "No route"),
        ("error in a 500", {"json": failure, "status_code": 500}, CloudflareError, "HTTP 500"),
        ("no result", {"json": {"success": True, "result": None}}, CloudflareError, "no result"),
        ("ipv6 missing", {"json": _envelope(v6=None)}, CloudflareError, "no ipv6_cidrs"),
        ("ipv4 empty", {"json": _envelope(v4=[])}, CloudflareError, "no ipv4_cidrs"),
        (
            "not a CIDR",
            {"json": _envelope(v4=["173.245.48.0/20", "oops"])},
            CloudflareError,
            "'oops'",
        ),
        ("bare address", {"json": _envelope(v4=["173.245.48.1"])}, CloudflareError, "not a CIDR"),
        ("host bits", {"json": _envelope(v4=["173.245.48.1/20"])}, CloudflareError, "not a CIDR"),
        ("wrong family", {"json": _envelope(v4=["2400:cb00::/32"])}, CloudflareError, "not IPv4"),
        ("everything", {"json": _envelope(v4=["0.0.0.0/0"])}, CloudflareError, "too broad"),
        ("private", {"json": _envelope(v6=["fc00::/7"])}, CloudflareError, "not a public"),
        ("not a string", {"json": _envelope(v4=[17])}, CloudflareError, "not a CIDR"),
    ]


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [case[1:] for case in _bad_answers()],
    ids=[case[0] for case in _bad_answers()],
)
def test_a_bad_answer_keeps_the_previous_set(
    settings: Settings,
    httpx_mock: HTTPXMock,
    answer: dict[str, object],
    error: type[Exception],
    text: str,
) -> None:
    previous = store_ranges(settings, CloudflareRanges.bundled())
    before = ranges_path(settings).read_bytes()
    httpx_mock.add_response(url=IPS_URL, **answer)  # type: ignore[arg-type]
    with pytest.raises(error) as info:
        refresh_ranges(settings)
    assert text in str(info.value)
    assert "kept" in str(info.value)
    assert ranges_path(settings).read_bytes() == before
    assert load_ranges(settings) == previous


def test_a_network_error_keeps_the_bundled_set(settings: Settings, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=IPS_URL)
    with pytest.raises(TransportError, match="cannot reach"):
        refresh_ranges(settings)
    assert not ranges_path(settings).exists()
    assert load_ranges(settings) == CloudflareRanges.bundled()


def test_refresh_against_the_emulator(settings: Settings, cf_emulator: Emulator) -> None:
    fetched = fetch_ranges(settings, transport=httpx.MockTransport(cf_emulator.handler))
    assert fetched.contains("104.16.0.1") and fetched.contains("2606:4700::1")
    assert fetched.etag


# --- cfban ips ----------------------------------------------------------------------------


def test_cli_ips_shows_the_bundled_set(isolated_env: Path) -> None:
    result = CliRunner().invoke(app, ["ips"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Cloudflare ranges in use: 15 IPv4 + 7 IPv6"
    assert lines[1].startswith("Source: bundled with cfban")
    assert "  173.245.48.0/20" in lines and "  2c0f:f248::/32" in lines


def test_cli_ips_refresh_and_json(
    isolated_env: Path, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFBAN_API_URL", API)
    httpx_mock.add_response(url=IPS_URL, json=_envelope())
    result = CliRunner().invoke(app, ["ips", "--refresh"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Refreshed from {IPS_URL}: 1 added, 18 removed\n")
    assert "  + 192.200.0.0/24" in result.output
    assert "Cloudflare ranges in use: 3 IPv4 + 2 IPv6" in result.output
    state = isolated_env / "state" / "cloudflare-ranges.json"
    assert state.exists()
    shown = CliRunner().invoke(app, ["ips", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["ipv4_cidrs"] == NEW_V4 and data["ipv6_cidrs"] == NEW_V6
    assert data["source"] == f"stored in {state}" and data["etag"] == "abc123"


def test_cli_ips_refresh_failure_is_one_line_and_exit_1(
    isolated_env: Path,
    httpx_mock: HTTPXMock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cfban.cli._context import run_guarded

    monkeypatch.setenv("CFBAN_API_URL", API)
    httpx_mock.add_response(url=IPS_URL, text="<html>challenge</html>")
    code = run_guarded(app, ["ips", "--refresh"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cfban: error: {IPS_URL} answered HTTP 200 with something that is not")
    assert len(err.splitlines()) == 1
    assert not (isolated_env / "state" / "cloudflare-ranges.json").exists()
