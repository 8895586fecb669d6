"""The origin lock on real nftables, with real nginx, inside network namespaces made here.

Topology (every address from the benchmarking range 198.18.0.0/15, nothing else contacted)::

    cf       198.18.1.2 ──veth── 198.18.1.1 ┐
    outside  198.18.2.2 ──veth── 198.18.2.1 ├ origin: nginx on port 80, cfban's nft table
    new      198.18.3.2 ──veth── 198.18.3.1 ┘
    (and 2001:2:N::2 ── 2001:2:N::1 on link N, from the IPv6 benchmarking range)

cfban is handed 198.18.1.0/24 and 2001:2:1::/48 as "Cloudflare's ranges" by
writing its ranges file into its state directory, exactly as ``cfban ips --refresh`` stores
it. The namespaces are deleted at the end, also when a step fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_REAL, require_program
from tests.support.netlab import NetLab

pytestmark = pytest.mark.real

V6 = ["2001:2:1::/48"]  # the "cf" link's 2001:2:1::/64, not the others'


def _require_root() -> None:
    if os.geteuid() != 0:
        message = "network namespaces and nftables need root"
        if REQUIRE_REAL:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    for program in ("ip", "nft", "nginx", "curl", "ss"):
        require_program(program)
    _require_root()
    lab = NetLab(prefix=f"cfban-t{os.getpid()}", workdir=tmp_path)
    try:
        lab.origin = lab.add_namespace("origin")
        lab.add_client("cf", 1)
        lab.add_client("outside", 2)
        lab.add_client("new", 3)
        lab.start_nginx(require_program("nginx"), lab.origin)
        yield lab
    finally:
        lab.close()
        leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert lab.prefix not in leftover.stdout, leftover.stdout


def write_ranges(state: Path, ipv4: list[str]) -> None:
    """The ranges file cfban keeps in its state directory, fetched "now"."""
    state.mkdir(parents=True, exist_ok=True)
    data = {
        "url": None,
        "fetched_at": time.time(),
        "etag": None,
        "ipv4_cidrs": ipv4,
        "ipv6_cidrs": V6,
    }
    (state / "cloudflare-ranges.json").write_text(json.dumps(data))


def cfban(lab: NetLab, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CFBAN_", "CLOUDFLARE_"))}
    return subprocess.run(
        ["ip", "netns", "exec", lab.origin, sys.executable, "-m", "cfban", "--config",
         str(config), *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def origin_line(output: str) -> str:
    (line,) = [ln for ln in output.splitlines() if "  origin: " in ln]
    return line


def test_lock_refresh_unlock_in_namespaces(lab: NetLab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "cfban.toml"
    config.write_text(f'state_dir = "{state}"\n[origin]\nports = [80, 443]\n')
    write_ranges(state, ["198.18.1.0/24"])
    cf, outside, new = lab.clients["cf"], lab.clients["outside"], lab.clients["new"]
    ruleset_before = lab.exec(lab.origin, "nft", "list", "ruleset").stdout

    # Open: everybody reaches nginx, and `cfban check` says so.
    assert [lab.http_status(c) for c in (cf, outside, new)] == ["200", "200", "200"]
    assert lab.http_status(outside, ipv6=True) == "200"
    check = cfban(lab, config, "check")
    assert origin_line(check.stdout).startswith("FAIL  origin: open: 0.0.0.0:80"), check.stdout
    assert check.returncode == 1

    # The dry run is a valid ruleset and changes nothing.
    dry = cfban(lab, config, "origin", "lock", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    (tmp_path / "lock.nft").write_text(dry.stdout)
    lab.exec(lab.origin, "nft", "-c", "-f", str(tmp_path / "lock.nft"))
    assert lab.exec(lab.origin, "nft", "list", "ruleset").stdout == ruleset_before

    # Lock, twice: the same table both times.
    first = cfban(lab, config, "origin", "lock")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("locked (nftables table inet cfban): new TCP connections")
    listed = lab.exec(lab.origin, "nft", "list", "table", "inet", "cfban").stdout
    again = cfban(lab, config, "origin", "lock")
    assert again.returncode == 0, again.stderr
    assert lab.exec(lab.origin, "nft", "list", "table", "inet", "cfban").stdout == listed
    assert "198.18.1.0/24" in listed and "elements = { 80, 443 }" in listed

    # Cloudflare's range gets through; the outside client is dropped (its connect times out).
    assert lab.http_status(cf) == "200"
    started = time.monotonic()
    assert lab.http_status(outside) == "000"
    assert time.monotonic() - started >= 0.9  # dropped, not refused
    assert lab.http_status(new) == "000"
    assert lab.http_status(cf, ipv6=True) == "200"
    assert lab.http_status(outside, ipv6=True) == "000"
    check = cfban(lab, config, "check")
    assert origin_line(check.stdout).startswith("ok    origin: closed: "), check.stdout
    status = cfban(lab, config, "origin", "status")
    assert status.returncode == 0 and "closed" in status.stdout, status.stdout

    # A kept-open connection from Cloudflare's range, then a refresh that adds a prefix.
    kept = lab.keepalive(cf)
    assert kept.get() == "200"
    write_ranges(state, ["198.18.1.0/24", "198.18.3.0/24"])
    stale = cfban(lab, config, "origin", "status")
    assert stale.returncode == 1 and "cfban origin refresh" in stale.stdout, stale.stdout
    refreshed = cfban(lab, config, "origin", "refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert lab.http_status(new) == "200"
    assert kept.get() == "200"  # the same TCP connection, still up
    assert lab.http_status(outside) == "000"

    # A refresh that drops the kept-open connection's prefix: new connections from it are
    # dropped, the established one survives.
    write_ranges(state, ["198.18.3.0/24"])
    assert cfban(lab, config, "origin", "refresh").returncode == 0
    assert lab.http_status(cf) == "000"
    assert kept.get() == "200"
    assert lab.http_status(new) == "200"

    # Unlock: direct access is back and the ruleset is what it was before.
    unlocked = cfban(lab, config, "origin", "unlock")
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout == "unlocked: nftables table inet cfban removed\n"
    assert [lab.http_status(c) for c in (cf, outside, new)] == ["200", "200", "200"]
    assert lab.http_status(outside, ipv6=True) == "200"
    assert lab.exec(lab.origin, "nft", "list", "ruleset").stdout == ruleset_before
    assert cfban(lab, config, "origin", "unlock").stdout.startswith("no origin lock was applied")


def test_lock_refuses_stale_ranges_and_leaves_the_host_alone(lab: NetLab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "cfban.toml"
    config.write_text(f'state_dir = "{state}"\n[origin]\nports = [80]\nmax_range_age = "1d"\n')
    write_ranges(state, ["198.18.1.0/24"])
    path = state / "cloudflare-ranges.json"
    data = json.loads(path.read_text())
    data["fetched_at"] = time.time() - 3 * 86400
    path.write_text(json.dumps(data))
    refused = cfban(lab, config, "origin", "lock")
    assert refused.returncode == 1
    assert "are 3 days old, older than [origin] max_range_age (24 hours)" in refused.stderr
    assert "cfban ips --refresh" in refused.stderr
    assert lab.exec(lab.origin, "nft", "list", "ruleset").stdout == ""
    assert lab.http_status(lab.clients["outside"]) == "200"


NAT = """\
table ip lab_nat {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\ttcp dport 8080 dnat to 198.18.9.2:80
\t}
}
"""


def test_lock_covers_a_published_port_and_leaves_other_ports_alone(
    lab: NetLab, tmp_path: Path
) -> None:
    """A "container" namespace behind the origin, its port 80 published as the origin's 8080
    (DNAT, as podman's PublishPort does): the connections never reach the input hook."""
    web = lab.add_client("web", 9)
    lab.exec(web.netns, "ip", "route", "add", "default", "via", web.origin_address)
    lab.exec(lab.origin, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    (tmp_path / "nat.nft").write_text(NAT)
    lab.exec(lab.origin, "nft", "-f", str(tmp_path / "nat.nft"))
    lab.start_nginx(require_program("nginx"), web.netns)
    state = tmp_path / "state"
    config = tmp_path / "cfban.toml"
    config.write_text(f'state_dir = "{state}"\n[origin]\nports = [8080]\n')
    write_ranges(state, ["198.18.1.0/24"])
    cf, outside = lab.clients["cf"], lab.clients["outside"]
    assert lab.http_status(outside, 8080) == "200"

    locked = cfban(lab, config, "origin", "lock")
    assert locked.returncode == 0, locked.stderr
    assert lab.http_status(cf, 8080) == "200"
    assert lab.http_status(outside, 8080) == "000"
    assert lab.http_status(outside, 80) == "200"  # not a configured port: untouched

    assert cfban(lab, config, "origin", "unlock").returncode == 0
    assert lab.http_status(outside, 8080) == "200"
    assert lab.exec(lab.origin, "nft", "list", "ruleset").stdout.startswith("table ip lab_nat")
