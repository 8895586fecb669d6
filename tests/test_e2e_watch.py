"""End to end, all real parts: nginx on loopback -> its log -> ``cfban watch`` (a process) ->
the Cloudflare emulator over HTTP. The nginx configuration comes from ``cfban nginx-snippet``,
with 127.0.0.1 standing in for a Cloudflare edge (``--trusted-proxy``) and 127.0.0.2 as a
client that reaches the origin directly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cfemu.plugin import ServedEmulator
from tests.conftest import require_program
from tests.support.nginx import NginxServer
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _cfban(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cfban", *args], capture_output=True, text=True, env=env, timeout=60
    )


Stack = tuple[NginxServer, Path, dict[str, str]]


@pytest.fixture
def stack(tmp_path: Path, cf_server: ServedEmulator) -> Iterator[Stack]:
    nginx_bin = require_program("nginx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFBAN_")}
    env.update(cf_server.env(), CFBAN_CONFIG=str(tmp_path / "cfban.toml"))
    (tmp_path / "cfban.toml").write_text("")
    snippet = _cfban("nginx-snippet", "--trusted-proxy", "127.0.0.1", env=env)
    assert snippet.returncode == 0, snippet.stderr
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "cfban-realip.conf").write_text(snippet.stdout)
    log = tmp_path / "nginx" / "logs" / "access.log"
    server = NginxServer(
        nginx_bin,
        tmp_path / "nginx",
        http_extra=f"    include {tmp_path / 'nginx' / 'cfban-realip.conf'};",
        server_extra=f"        access_log {log} cfban;",
    )
    server.start()
    (tmp_path / "cfban.toml").write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        '[realip]\ntrusted_proxies = ["127.0.0.1"]\nallow_test_nets = true\n'
        f'[cloudflare]\nzone_id = "{cf_server.emulator.zone_id}"\n'
        f'[jails.probes]\nfilter = "nginx-probes"\nlogpath = ["{log}"]\n'
        'maxretry = 2\nfindtime = "10m"\nbantime = 4\n'
        f'[jails.slow]\nfilter = "nginx-4xx"\nlogpath = ["{log}"]\n'
        'maxretry = 3\nfindtime = "10m"\nbantime = "1d"\n'
    )
    try:
        yield server, tmp_path, env
    finally:
        server.stop()


def _rules(server: ServedEmulator) -> set[str]:
    return {rule.value for rule in server.emulator.state.access_rules.values()}


def test_attack_through_nginx_is_banned_at_cloudflare_and_expires(
    stack: Stack, cf_server: ServedEmulator
) -> None:
    nginx, tmp, env = stack
    daemon = subprocess.Popen(
        [sys.executable, "-m", "cfban", "watch", "--poll", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: (tmp / "state" / "status.json").exists() or daemon.poll() is not None,
            timeout=20,
        )
        assert daemon.poll() is None, daemon.communicate()[0]
        # From the trusted peer, the header names the client.
        for _ in range(2):
            assert nginx.get("/.env", **{"CF-Connecting-IP": "203.0.113.50"}) == 404
        # From an untrusted peer, the header is forgeable: never ban its address.
        for _ in range(3):
            nginx.get("/.env", source="127.0.0.2", **{"CF-Connecting-IP": "203.0.113.51"})
        wait_until(lambda: "203.0.113.50" in _rules(cf_server), timeout=20)
        # The same address through a second jail with a long bantime, then the short one ends.
        nginx.get("/missing-1", **{"CF-Connecting-IP": "203.0.113.60"})
        nginx.get("/missing-2", **{"CF-Connecting-IP": "203.0.113.60"})
        nginx.get("/missing-3", **{"CF-Connecting-IP": "203.0.113.60"})
        wait_until(lambda: "203.0.113.60" in _rules(cf_server), timeout=20)
        wait_until(lambda: "203.0.113.50" not in _rules(cf_server), timeout=15)  # bantime 4 s
        assert "203.0.113.51" not in _rules(cf_server)
        assert "127.0.0.2" not in _rules(cf_server)
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "did not come through Cloudflare" in output
    # Stopping does not unban: the day-long ban stays.
    assert _rules(cf_server) == {"203.0.113.60"}
    assert cf_server.token not in output
