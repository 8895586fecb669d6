"""The origin lock without namespaces: the gate, the renderers, the list file, the CLI.

The nftables ruleset is checked by ``nft -c`` and the firewalld files by firewalld's own
``firewall-offline-cmd`` (both ``real``); the lock applied to live traffic is in
``test_origin_netns.py``.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock
from typer.testing import CliRunner

from cfban.cli import app
from cfban.cli._context import run_guarded
from cfban.config import Settings
from cfban.errors import FirewallError
from cfban.origin import AllowList, build_allowlist, origin_checks, public_listeners
from cfban.origin._firewalld import render_files
from cfban.origin._nft import parse_live, render_refresh, render_removal, render_ruleset
from cfban.origin._urltable import render_list
from cfban.realip import CloudflareRanges
from tests.conftest import require_program

NOW = 1_800_000_000.0
DAY = 86400
V4 = ("198.18.1.0/24", "198.18.0.0/24", "198.18.0.128/25")
V6 = ("2001:2::/48",)


def ranges(
    ipv4: tuple[str, ...] = V4, ipv6: tuple[str, ...] = V6, age: float = 60
) -> CloudflareRanges:
    return CloudflareRanges(ipv4, ipv6, source="stored in test", fetched_at=NOW - age)


def allowlist() -> AllowList:
    return build_allowlist(ranges(), ["192.0.2.7", "10.9.0.0/16"], now=NOW, max_age=DAY)


# ---- the gate --------------------------------------------------------------------------


def test_allowlist_collapses_and_orders_both_families() -> None:
    allow = allowlist()
    assert allow.ipv4 == ("10.9.0.0/16", "192.0.2.7/32", "198.18.0.0/23")
    assert allow.ipv6 == ("2001:2::/48",)
    assert allow.extra == ("192.0.2.7/32", "10.9.0.0/16")
    assert allow.cidrs == allow.ipv4 + allow.ipv6


@pytest.mark.parametrize(
    ("cloudflare", "extra", "max_age", "message"),
    [
        (
            ranges(ipv6=()),
            [],
            DAY,
            "have no IPv6 range; refusing to lock the origin with a partial",
        ),
        (ranges(ipv4=()), [], DAY, "have no IPv4 range"),
        (ranges(ipv4=(), ipv6=()), [], DAY, "have no IPv4 range"),
        (
            ranges(age=3 * DAY),
            [],
            DAY,
            "are 3 days old, older than [origin] max_range_age (24 hours)",
        ),
        (CloudflareRanges(V4, V6, source="hand-written"), [], DAY, "carry no fetch time"),
        (ranges(), ["0.0.0.0/0"], DAY, "0.0.0.0/0 in [origin] allow is wider than a /8"),
        (ranges(), ["::/1"], DAY, "wider than a /16"),
        (ranges(), ["example.org"], DAY, "'example.org' in [origin] allow is not an IP address"),
        (
            ranges(ipv4=("1.0.0.0/7",)),
            [],
            DAY,
            "1.0.0.0/7 in the Cloudflare ranges (stored in test) is wider than a /8",
        ),
    ],
)
def test_gate_refuses_with_the_reason(
    cloudflare: CloudflareRanges, extra: list[str], max_age: int, message: str
) -> None:
    with pytest.raises(FirewallError) as info:
        build_allowlist(cloudflare, extra, now=NOW, max_age=max_age)
    assert message in str(info.value)


def test_gate_names_the_fix_for_stale_ranges() -> None:
    with pytest.raises(FirewallError) as info:
        build_allowlist(ranges(age=40 * DAY), [], now=NOW, max_age=30 * DAY)
    assert "run `cfban ips --refresh`" in str(info.value)
    assert "or raise [origin] max_range_age" in str(info.value)


def test_gate_age_check_can_be_turned_off_and_bundled_ranges_have_an_age() -> None:
    old = build_allowlist(ranges(age=999 * DAY), [], now=NOW, max_age=-1)
    assert old.ipv4 == ("198.18.0.0/23",)
    bundled = CloudflareRanges.bundled()
    assert len(build_allowlist(bundled, [], now=NOW, max_age=-1).ipv4) == 15
    with pytest.raises(FirewallError, match="bundled with cfban.* days old"):
        build_allowlist(bundled, [], now=NOW, max_age=30 * DAY)


# ---- nftables ---------------------------------------------------------------------------

EXPECTED_RULESET = """\
# cfban origin lock: new TCP connections to the web ports only from Cloudflare's
# ranges and [origin] allow; `cfban origin unlock` removes it. The ranges are
# stored in test.
table inet cfban
delete table inet cfban
table inet cfban {
\tcomment "cfban origin lock; remove with: cfban origin unlock"
\tset allowed_v4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.9.0.0/16, 192.0.2.7/32, 198.18.0.0/23 }
\t}

\tset allowed_v6 {
\t\ttype ipv6_addr
\t\tflags interval
\t\telements = { 2001:2::/48 }
\t}

\tset web_ports {
\t\ttype inet_service
\t\telements = { 80, 443 }
\t}

\tchain input {
\t\ttype filter hook input priority filter - 10; policy accept;
\t\tiifname "lo" accept
\t\tct state established,related accept
\t\tip saddr @allowed_v4 accept
\t\tip6 saddr @allowed_v6 accept
\t\ttcp dport @web_ports counter drop
\t}

\tchain forward {
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tct state established,related accept
\t\tip saddr @allowed_v4 accept
\t\tip6 saddr @allowed_v6 accept
\t\tct status dnat meta l4proto tcp ct original proto-dst @web_ports counter drop
\t}
}
"""


def test_nft_ruleset_text() -> None:
    assert render_ruleset(allowlist(), [443, 80, 443]) == EXPECTED_RULESET


def test_nft_refresh_and_removal_touch_only_cfbans_table() -> None:
    assert render_refresh(allowlist()).splitlines()[1:] == [
        "flush set inet cfban allowed_v4",
        "add element inet cfban allowed_v4 { 10.9.0.0/16, 192.0.2.7/32, 198.18.0.0/23 }",
        "flush set inet cfban allowed_v6",
        "add element inet cfban allowed_v6 { 2001:2::/48 }",
    ]
    assert render_removal() == "table inet cfban\ndelete table inet cfban\n"


@pytest.mark.real
def test_nft_accepts_the_ruleset(tmp_path: Path) -> None:
    nft = require_program("nft")
    path = tmp_path / "lock.nft"
    path.write_text(render_ruleset(allowlist(), [80, 443]))
    proc = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    if "Operation not permitted" in proc.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert proc.returncode == 0, proc.stderr
    path.write_text(render_ruleset(allowlist(), [80]).replace("ip saddr", "ip saddrr"))
    broken = subprocess.run(
        [nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert broken.returncode != 0  # the check above can fail


def test_parse_live_reads_prefixes_addresses_and_ranges() -> None:
    port_match = {
        "match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@web_ports"}
    }
    document = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "cfban"}},
            {"set": {"name": "allowed_v4", "type": "ipv4_addr", "elem": [
                "192.0.2.7", {"prefix": {"addr": "10.9.0.0", "len": 16}},
                {"range": ["198.18.0.0", "198.18.1.255"]}]}},
            {"set": {"name": "allowed_v6", "type": "ipv6_addr", "elem": [
                {"prefix": {"addr": "2001:2::", "len": 48}}]}},
            {"set": {"name": "web_ports", "type": "inet_service", "elem": [80, 443]}},
            {"chain": {"name": "input", "hook": "input", "prio": -10}},
            {"chain": {"name": "forward", "hook": "forward", "prio": -10}},
            {"rule": {"chain": "input", "expr": [
                {"match": {"left": {"meta": {"key": "iifname"}}, "right": "lo"}},
                {"accept": None}]}},
            {"rule": {"chain": "input", "expr": [port_match, {"counter": {}}, {"drop": None}]}},
            {"rule": {"chain": "forward", "expr": [port_match, {"drop": None}]}},
        ]
    }  # fmt: skip
    live = parse_live(document)
    assert live.ipv4 == ("192.0.2.7/32", "10.9.0.0/16", "198.18.0.0/23")
    assert live.ports == (80, 443) and live.hooked
    assert live.matches(allowlist(), [443, 80])
    assert not live.matches(allowlist(), [80])
    document["nftables"].pop()  # a table without its forward rule is not the lock
    assert not parse_live(document).hooked


# ---- firewalld ---------------------------------------------------------------------------


#: Where ``./scripts/dev`` unpacks firewalld's files (the service itself is never installed).
UNPACKED_FIREWALLD = Path(__file__).resolve().parent.parent / ".cache" / "firewalld"


def _firewalld_root() -> Path:
    """The root firewalld's files are under: the unpacked copy, else an installed firewalld."""
    if (UNPACKED_FIREWALLD / "usr/bin/firewall-offline-cmd").exists():
        return UNPACKED_FIREWALLD
    require_program("firewall-offline-cmd")
    return Path("/")


def _offline(root: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    program = root / "usr/bin/firewall-offline-cmd"
    if not program.exists():
        program = Path(require_program("firewall-offline-cmd"))
    return subprocess.run(
        ["/usr/bin/python3", str(program),
         "--system-config", str(config), "--default-config", str(root / "usr/lib/firewalld"),
         *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.real
def test_firewalld_files_pass_firewalld_offline_check(tmp_path: Path) -> None:
    root = _firewalld_root()
    config = tmp_path / "firewalld"
    config.mkdir()
    shutil.copy(root / "etc/firewalld/firewalld.conf", config / "firewalld.conf")
    allow = allowlist()
    for name, text in render_files(allow, [80, 443]).items():
        (config / name).parent.mkdir(parents=True, exist_ok=True)
        (config / name).write_text(text)
    checked = _offline(root, config, "--check-config")
    assert checked.returncode == 0, checked.stderr
    assert "WARNING" not in checked.stderr and "ERROR" not in checked.stderr, checked.stderr
    entries = _offline(root, config, "--ipset", "cfban-v4", "--get-entries").stdout.split()
    assert entries == list(allow.ipv4)
    info = _offline(root, config, "--info-ipset", "cfban-v6").stdout
    assert "type: hash:net" in info and "family=inet6" in info and "2001:2::/48" in info
    policy = _offline(root, config, "--info-policy", "cfban").stdout
    assert "priority: -100" in policy and "target: CONTINUE" in policy
    assert "ingress-zones: ANY" in policy and "egress-zones: HOST" in policy
    rules = [line.strip() for line in policy.splitlines() if line.strip().startswith("rule ")]
    assert rules == [
        f'rule family="{fam}" source NOT ipset="cfban-{v}" port port="{port}" protocol="tcp" drop'
        for fam, v in (("ipv4", "v4"), ("ipv6", "v6"))
        for port in (80, 443)
    ]
    # The check notices a bad entry (so the clean result above means something).
    bad = config / "ipsets" / "cfban-v4.xml"
    bad.write_text(bad.read_text().replace("10.9.0.0/16", "10.9.0.0/99"))
    assert "INVALID_ENTRY" in _offline(root, config, "--check-config").stderr


# ---- the URL-table list ------------------------------------------------------------------


def test_urltable_is_one_cidr_a_line() -> None:
    text = render_list(allowlist())
    assert text == "10.9.0.0/16\n192.0.2.7/32\n198.18.0.0/23\n2001:2::/48\n"
    lines = text.split("\n")
    assert lines[-1] == "" and all(lines[:-1])
    nets = [ipaddress.ip_network(line, strict=True) for line in lines[:-1]]
    assert [n.version for n in nets] == sorted(n.version for n in nets)
    assert "\r" not in text and "#" not in text


def _env(tmp: Path, monkeypatch: pytest.MonkeyPatch, config: str) -> Path:
    state = tmp / "state"
    state.mkdir()
    data = {"fetched_at": time.time(), "ipv4_cidrs": list(V4), "ipv6_cidrs": list(V6)}
    (state / "cloudflare-ranges.json").write_text(json.dumps(data))
    (tmp / "cfban.toml").write_text(config)
    monkeypatch.setenv("CFBAN_STATE_DIR", str(state))
    return state


def test_cli_urltable_lock_status_refresh_unlock(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock
) -> None:
    out = isolated_env / "list.txt"
    _env(isolated_env, monkeypatch, f'[origin]\nfirewall = "urltable"\noutput = "{out}"\n'
         "max_range_age = -1\n")  # fmt: skip
    runner = CliRunner()
    status = runner.invoke(app, ["origin", "status"])
    assert status.exit_code == 1 and f"FAIL  origin: {out} is missing" in status.output
    locked = runner.invoke(app, ["origin", "lock"])
    assert locked.exit_code == 0, locked.output
    assert locked.output.startswith(f"wrote {out} (2 networks, one a line)")
    assert out.read_text() == "198.18.0.0/23\n2001:2::/48\n"
    assert runner.invoke(app, ["origin", "status"]).exit_code == 0
    # `cfban ips --refresh` brings the applied list up to date.
    monkeypatch.setenv("CFBAN_API_URL", "http://127.0.0.1:9/client/v4")
    answer = {"etag": "e", "ipv4_cidrs": ["104.16.0.0/13"], "ipv6_cidrs": ["2606:4700::/32"]}
    httpx_mock.add_response(json={"success": True, "errors": [], "result": answer})
    refreshed = runner.invoke(app, ["ips", "--refresh"])
    assert refreshed.exit_code == 0, refreshed.output
    assert out.read_text() == "104.16.0.0/13\n2606:4700::/32\n"
    assert runner.invoke(app, ["origin", "unlock"]).output.startswith(f"removed {out}")
    assert not out.exists()


def test_cli_dry_run_prints_and_changes_nothing(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(isolated_env, monkeypatch, '[origin]\nports = [8443]\nallow = ["192.0.2.0/24"]\n')
    result = CliRunner().invoke(app, ["origin", "lock", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "192.0.2.0/24, 198.18.0.0/23" in result.output
    assert "type inet_service\n\t\telements = { 8443 }" in result.output
    fw = CliRunner().invoke(app, ["origin", "lock", "--dry-run", "--firewall", "firewalld"])
    assert '<port port="8443" protocol="tcp" />' in fw.output
    into = isolated_env / "fw"
    args = ["origin", "lock", "--dry-run", "--firewall", "firewalld", "--output", str(into)]
    written = CliRunner().invoke(app, args)
    assert written.exit_code == 0 and written.output.endswith("(nothing applied)\n")
    assert sorted(str(p.relative_to(into)) for p in into.rglob("*.xml")) == [
        "ipsets/cfban-v4.xml",
        "ipsets/cfban-v6.xml",
        "policies/cfban.xml",
    ]


# ---- the check, the CLI's edges -----------------------------------------------------------

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2
   2: 010112C6:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3
   3: 010112C6:0050 020112C6:C350 01 00000000:00000000 00:00000000 00000000     0        0 4
   4: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5
"""
TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A
   2: 0000000000000000FFFF00000100007F:01BB 00000000000000000000000000000000:0000 0A
"""


def test_public_listeners_skip_loopback_other_ports_and_connections(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text(TCP6)
    assert public_listeners([80, 443], tmp_path) == ["0.0.0.0:443", "198.18.1.1:80", "[::]:80"]
    assert public_listeners([8080], tmp_path) == []


def test_check_can_be_turned_off() -> None:
    settings = Settings.model_validate({"origin": {"check": False}})
    assert origin_checks(settings) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[origin]\nports = [0]\n", "origin.ports.0"),
        ("[origin]\nports = []\n", "origin.ports"),
        ('[origin]\nfirewall = "iptables"\n', "origin.firewall"),
        ('[origin]\nallow = ["nope"]\n', "'nope' is not an IP address or CIDR network"),
        ("[origin]\nprots = [80]\n", "origin.prots: unknown setting"),
    ],
)
def test_bad_origin_config_exits_78(
    tmp_path: Path, config: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cfban.toml"
    path.write_text(config)
    assert run_guarded(app, ["--config", str(path), "origin", "lock", "--dry-run"]) == 78
    assert message in capsys.readouterr().err


def test_output_with_nftables_is_a_usage_error(isolated_env: Path) -> None:
    result = CliRunner().invoke(app, ["origin", "lock", "--output", "x.nft"])
    assert result.exit_code == 2
    assert "nftables has no output file" in result.output


@pytest.mark.parametrize("command", ["lock", "unlock", "refresh", "status"])
def test_every_origin_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, ["origin", command, "--help"])
    assert result.exit_code == 0
    assert "cfban origin" in result.output and "Example" in result.output


def test_fetch_first_and_go_on_with_the_stored_ranges_when_it_fails(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock
) -> None:
    out = isolated_env / "list.txt"
    state = _env(isolated_env, monkeypatch, f'[origin]\nfirewall = "urltable"\noutput = "{out}"\n')
    stored = state / "cloudflare-ranges.json"
    monkeypatch.setenv("CFBAN_API_URL", "http://127.0.0.1:9/client/v4")
    runner = CliRunner()
    httpx_mock.add_response(text="<html>challenge</html>")
    kept = runner.invoke(app, ["origin", "lock", "--fetch"])
    assert kept.exit_code == 0, kept.output
    assert "cfban: warning: http://127.0.0.1:9/client/v4/ips answered HTTP 200" in kept.output
    assert "going on with the stored ranges" in kept.output
    assert out.read_text() == "198.18.0.0/23\n2001:2::/48\n"
    # Stored ranges that are too old are refused even so.
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "fetched_at": 1.0}))
    httpx_mock.add_response(text="<html>challenge</html>")
    stale = runner.invoke(app, ["origin", "lock", "--fetch"])
    assert stale.exit_code == 1 and "refusing to lock the origin with stale ranges" in str(
        stale.exception or stale.output
    )
    answer = {"etag": "e", "ipv4_cidrs": ["104.16.0.0/13"], "ipv6_cidrs": ["2606:4700::/32"]}
    httpx_mock.add_response(json={"success": True, "errors": [], "result": answer})
    fetched = runner.invoke(app, ["origin", "lock", "--fetch"])
    assert fetched.exit_code == 0, fetched.output
    assert out.read_text() == "104.16.0.0/13\n2606:4700::/32\n"
