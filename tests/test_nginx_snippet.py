"""`cfban nginx-snippet`: its content, `nginx -t` on it, and the resolver on real nginx output."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfban._resources import filters_dir
from cfban.cli import app
from cfban.config import RealIpSettings, Settings
from cfban.realip import (
    BUNDLED_IPV4,
    BUNDLED_IPV6,
    LOG_FORMAT,
    CloudflareRanges,
    Resolver,
    store_ranges,
)
from tests.conftest import require_program


def _snippet(*args: str, env: dict[str, str]) -> str:
    result = CliRunner().invoke(app, ["nginx-snippet", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _env(base: Path) -> dict[str, str]:
    config = base / "cfban.toml"
    if not config.exists():
        config.write_text("", encoding="utf-8")
    return {"CFBAN_CONFIG": str(config), "CFBAN_STATE_DIR": str(base / "state")}


# --- content ------------------------------------------------------------------------------


def test_snippet_trusts_every_cloudflare_range_and_the_given_proxies(tmp_path: Path) -> None:
    text = _snippet("--trusted-proxy", "127.0.0.1", "--trusted-proxy", "::1", env=_env(tmp_path))
    lines = text.splitlines()
    trusted = [line for line in lines if line.startswith("set_real_ip_from ")]
    expected = [*BUNDLED_IPV4, *BUNDLED_IPV6, "127.0.0.1", "::1"]
    assert trusted == [f"set_real_ip_from {cidr};" for cidr in expected]
    assert lines.count("real_ip_header CF-Connecting-IP;") == 1
    assert f"log_format cfban '{LOG_FORMAT}';" in lines
    assert lines[0].startswith("# cfban ")
    geo = lines[lines.index("geo $realip_remote_addr $cfban_via_cloudflare {") :]
    assert geo[1] == "    default 0;"
    assert [line.strip() for line in geo[2 : 2 + len(expected)]] == [f"{c} 1;" for c in expected]
    assert "#        if ($cfban_via_cloudflare = 0) { return 444; }" in lines
    assert any("firewall" in line for line in lines if line.startswith("#"))


def test_snippet_uses_stored_ranges_and_configured_proxies(tmp_path: Path) -> None:
    env = _env(tmp_path)
    (tmp_path / "cfban.toml").write_text(
        '[realip]\ntrusted_proxies = ["10.9.0.0/16"]\n', encoding="utf-8"
    )
    settings = Settings.model_validate({"state_dir": str(tmp_path / "state")})
    store_ranges(
        settings,
        CloudflareRanges(("173.245.48.0/20",), ("2400:cb00::/32",), source="x", url="u"),
    )
    text = _snippet(
        *("--trusted-proxy", "10.9.0.0/16", "--trusted-proxy", "127.0.0.1/32"),
        *("--trusted-proxy", "fd00:1::/32", "--trusted-proxy", "::ffff:10.1.0.0/112"),
        env=env,
    )
    trusted = [line for line in text.splitlines() if line.startswith("set_real_ip_from ")]
    assert trusted == [
        "set_real_ip_from 173.245.48.0/20;",
        "set_real_ip_from 2400:cb00::/32;",
        "set_real_ip_from 10.9.0.0/16;",
        "set_real_ip_from 127.0.0.1;",
        "set_real_ip_from fd00:1::/32;",
        "set_real_ip_from 10.1.0.0/16;",
    ]
    assert "1 IPv4 + 1 IPv6, stored in" in text


def test_a_bad_trusted_proxy_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["nginx-snippet", "--trusted-proxy", "localhost"], env=_env(tmp_path)
    )
    assert result.exit_code == 2
    assert "'localhost' is not an IP address or CIDR network" in result.output


def test_log_format_matches_what_the_filters_read() -> None:
    common = (filters_dir() / "cfban-access-common.conf").read_text(encoding="utf-8")
    fields = 'peer=$realip_remote_addr cf="$http_cf_connecting_ip"'
    assert fields in common
    assert LOG_FORMAT.startswith("$remote_addr - $remote_user [$time_local] ")
    assert LOG_FORMAT.endswith(f'"$http_user_agent" {fields} xff="$http_x_forwarded_for"')


# --- real nginx ---------------------------------------------------------------------------


def _nginx_conf(prefix: Path, port: int) -> Path:
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(exist_ok=True)
    temp = "\n".join(
        f"  {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
{temp}
  include {prefix}/cfban.conf;
  access_log {prefix}/logs/access.log cfban;
  server {{
    listen 127.0.0.1:{port};
    server_name cfban-test;
    location / {{ return 200 "ok\\n"; }}
    location = /wp-login.php {{ return 404; }}
    location /locked/ {{
      if ($cfban_via_cloudflare = 0) {{ return 403; }}
      return 200 "in\\n";
    }}
  }}
}}
""",
        encoding="utf-8",
    )
    return conf


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.real
def test_nginx_accepts_the_snippet(tmp_path: Path) -> None:
    nginx = require_program("nginx")
    snippet = _snippet("--trusted-proxy", "127.0.0.1", "--trusted-proxy", "::1", env=_env(tmp_path))
    (tmp_path / "cfban.conf").write_text(snippet, encoding="utf-8")
    conf = _nginx_conf(tmp_path, _free_port())
    out = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr and "test is successful" in out.stderr
    # The check has teeth: a broken include is rejected.
    (tmp_path / "cfban.conf").write_text(snippet + "set_real_ip_from not-a-net;\n", "utf-8")
    bad = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0


@dataclass(frozen=True)
class Sent:
    path: str
    source: str
    cf: str | None
    status: int


@dataclass(frozen=True)
class LiveNginx:
    sent: list[Sent]
    lines: list[str]


REQUESTS = [
    # (path, source address, CF-Connecting-IP)
    ("/r1", "127.0.0.1", "203.0.113.7"),
    ("/r2", "127.0.0.2", "203.0.113.9"),
    ("/r3", "127.0.0.1", "not-an-ip"),
    ("/r4", "127.0.0.1", "203.0.113.12, 203.0.113.13"),
    ("/r5", "127.0.0.1", "2001:db8::1"),
    ("/r6", "127.0.0.1", None),
    ("/r7", "127.0.0.2", None),
    ("/wp-login.php", "127.0.0.1", "198.51.100.200"),
    ("/wp-login.php", "127.0.0.2", "198.51.100.201"),
    ("/locked/", "127.0.0.1", "203.0.113.40"),
    ("/locked/", "127.0.0.2", "203.0.113.41"),
]


def _get(port: int, path: str, source: str, cf: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"CF-Connecting-IP": cf} if cf else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def live_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNginx]:
    """Real nginx with the snippet (--trusted-proxy 127.0.0.1), after REQUESTS were sent."""
    nginx = require_program("nginx")
    prefix = tmp_path_factory.mktemp("nginx")
    snippet = _snippet("--trusted-proxy", "127.0.0.1", env=_env(prefix))
    (prefix / "cfban.conf").write_text(snippet, encoding="utf-8")
    port = _free_port()
    conf = _nginx_conf(prefix, port)
    with (prefix / "stderr.txt").open("wb") as stderr:
        proc = subprocess.Popen(
            [nginx, "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail("nginx exited: " + (prefix / "stderr.txt").read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not start listening within 10 s")
                time.sleep(0.05)
        sent = [Sent(p, s, cf, _get(port, p, s, cf)) for p, s, cf in REQUESTS]
        log = prefix / "logs" / "access.log"
        deadline = time.monotonic() + 5
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = log.read_text(encoding="utf-8").splitlines()
            if len(lines) >= len(REQUESTS):
                break
            time.sleep(0.05)
        assert len(lines) == len(REQUESTS), lines
        yield LiveNginx(sent, lines)
    finally:
        _stop(proc)


LINE = re.compile(
    r'^(?P<host>\S+) - \S+ \[[^\]]+\] "GET (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3}) \d+ '
    r'"[^"]*" "[^"]*" peer=(?P<peer>\S+) cf="(?P<cfip>[^"]*)" xff="(?P<xff>[^"]*)"$'
)

EXPECTED = [
    # (client, source) the resolver must pick, in REQUESTS order
    ("203.0.113.7", "header"),
    ("127.0.0.2", "direct"),
    ("127.0.0.1", "peer"),
    ("203.0.113.13", "header"),
    ("2001:db8::1", "header"),
    ("127.0.0.1", "peer"),
    ("127.0.0.2", "direct"),
    ("198.51.100.200", "header"),
    ("127.0.0.2", "direct"),
    ("203.0.113.40", "header"),
    ("127.0.0.2", "direct"),
]


def _resolver() -> Resolver:
    settings = Settings(realip=RealIpSettings(trusted_proxies=["127.0.0.1"]))
    return Resolver.from_settings(settings, CloudflareRanges.bundled())


@pytest.mark.real
def test_resolver_on_real_nginx_lines(live_nginx: LiveNginx) -> None:
    resolver = _resolver()
    for sent, line, (client, source) in zip(
        live_nginx.sent, live_nginx.lines, EXPECTED, strict=True
    ):
        found = LINE.match(line)
        assert found is not None, line
        assert found["path"] == sent.path
        assert found["peer"] == sent.source  # $realip_remote_addr is the TCP peer
        result = resolver.resolve(found["host"], found.groupdict())
        assert (result.client, result.source) == (client, source), line
        assert result.direct_origin_access == (sent.source == "127.0.0.2")
        if source == "header":
            # From the trusted peer cfban and nginx's real-IP module agree on the client.
            assert found["host"] == client


@pytest.mark.real
def test_the_header_is_believed_only_from_the_trusted_peer(live_nginx: LiveNginx) -> None:
    resolver = _resolver()
    believed = {
        result.client
        for line in live_nginx.lines
        if (found := LINE.match(line))
        for result in [resolver.resolve(found["host"], found.groupdict())]
        if result.source == "header"
    }
    spoofed = {s.cf for s in live_nginx.sent if s.source == "127.0.0.2"}
    assert believed and not believed & spoofed


@pytest.mark.real
def test_origin_lock_variable_sees_the_tcp_peer(live_nginx: LiveNginx) -> None:
    locked = {s.source: s.status for s in live_nginx.sent if s.path == "/locked/"}
    assert locked == {"127.0.0.1": 200, "127.0.0.2": 403}
    assert [s.status for s in live_nginx.sent if s.path == "/wp-login.php"] == [404, 404]


@pytest.mark.real
def test_bundled_filter_and_resolver_on_real_nginx_lines(live_nginx: LiveNginx) -> None:
    from cfban.fail2ban import load_filter

    botsearch = load_filter("nginx-botsearch")
    resolver = _resolver()
    clients = []
    for line in live_nginx.lines:
        failure = botsearch.match(line)
        if failure is not None:
            clients.append(resolver.resolve(failure.host, failure.groups).client)
    # The spoofed CF-Connecting-IP (198.51.100.201) sent from 127.0.0.2 is not believed.
    assert clients == ["198.51.100.200", "127.0.0.2"]
