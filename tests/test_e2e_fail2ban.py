"""End to end with real fail2ban: log lines -> fail2ban jail -> cfban's action -> Cloudflare
(the emulator over HTTP), and back out on unban; a fail2ban restart costs no API call."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cfemu.plugin import ServedEmulator
from tests.conftest import require_program
from tests.support.fail2ban import Fail2ban
from tests.support.logs import PROBE, log_date
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _rules(server: ServedEmulator) -> set[str]:
    return {rule.value for rule in server.emulator.state.access_rules.values()}


@pytest.fixture(params=["cfban", "cfban.py"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, cf_server: ServedEmulator
) -> Iterator[tuple[Fail2ban, Path, ServedEmulator]]:
    require_program("fail2ban-server")
    require_program("fail2ban-client")
    f2b = Fail2ban(tmp_path / "f2b")
    installed = os.system(  # noqa: S605 - the real command, as a user would run it
        f"{sys.executable} -m cfban fail2ban-install --prefix {f2b.conf} > /dev/null"
    )
    assert installed == 0
    token = tmp_path / "token"
    token.write_text(cf_server.token)
    token.chmod(0o600)
    state = tmp_path / "state"
    config = tmp_path / "cfban.toml"
    config.write_text(
        f'state_dir = "{state}"\n[realip]\nallow_test_nets = true\n'
        f'[cloudflare]\napi_url = "{cf_server.base_url}"\napi_token_file = "{token}"\n'
        f'zone_id = "{cf_server.emulator.zone_id}"\n'
    )
    log = tmp_path / "access.log"
    log.write_text("")
    cfban = f"{sys.executable} -m cfban --config {config}"
    action = (
        f'cfban[cfban="{cfban}"]'
        if request.param == "cfban"
        else f'cfban.py[state_dir="{state}", cfban="{cfban}"]'
    )
    (f2b.conf / "jail.local").write_text(
        "[cfban-nginx-probes]\nenabled = true\n"
        f"logpath = {log}\nbackend = polling\nmaxretry = 2\nbantime = 1h\n"
        f"action = {action}\n"
    )
    f2b.start()
    try:
        yield f2b, log, cf_server
    finally:
        f2b.stop()


def test_ban_unban_and_free_restart(setup: tuple[Fail2ban, Path, ServedEmulator]) -> None:
    f2b, log, server = setup
    with log.open("a") as handle:
        handle.write(PROBE.format(ip="203.0.113.70", date=log_date()) * 2)
        handle.write(PROBE.format(ip="203.0.113.71", date=log_date()) * 2)
    wait_until(lambda: {"203.0.113.70", "203.0.113.71"} <= _rules(server), timeout=30)
    assert set(f2b.banned("cfban-nginx-probes")) == {"203.0.113.70", "203.0.113.71"}

    out = f2b.client("set", "cfban-nginx-probes", "unbanip", "203.0.113.70")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: "203.0.113.70" not in _rules(server), timeout=30)

    before = len(server.emulator.log.entries)
    f2b.stop()
    f2b.start()
    wait_until(lambda: "203.0.113.71" in f2b.banned("cfban-nginx-probes"), timeout=30)
    time.sleep(2)  # give any (unwanted) unban/re-ban time to reach the emulator
    assert len(server.emulator.log.entries) == before, "a fail2ban restart made API calls"
    assert _rules(server) == {"203.0.113.71"}
    assert server.token not in f2b.log()
