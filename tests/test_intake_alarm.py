"""A failing background deliverer is never silent: after hook calls, a revoked token or a
deleted list shows in ``cfban status``, fails ``cfban health`` and makes the hook warn on
stderr; once fixed, everything queued lands."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from cfban.clock import FakeClock
from tests.cfemu import Emulator, Fault
from tests.cfemu._server import serve
from tests.support.intake import cfban_process, wait_for_deliverer, write_config
from tests.support.waiting import wait_until

ADDRESSES = [f"198.51.100.{k}" for k in range(1, 7)]


@pytest.fixture
def served() -> Iterator[tuple[Emulator, str]]:
    emulator = Emulator(clock=FakeClock())
    with serve(emulator) as url:
        yield emulator, url


def _hook(conf: Path, ip: str) -> tuple[int, str]:
    done = cfban_process("--config", str(conf), "ban", ip, "--jail", "j", "--background")
    return done.returncode, done.stderr


def _breaks_then_recovers(
    conf: Path, delivered: Callable[[], set[str]], break_it: Callable[[], None],
    fix: Callable[[], None], kind: str, repair: str = "deliver",
) -> None:  # fmt: skip
    state = conf.parent / "state"
    assert cfban_process("--config", str(conf), "setup").returncode == 0
    for ip in ADDRESSES[:3]:
        assert _hook(conf, ip) == (0, "")  # healthy: no warning
    wait_until(lambda: delivered() >= set(ADDRESSES[:3]), timeout=30)
    wait_for_deliverer(state)
    break_it()
    for ip in ADDRESSES[3:5]:
        assert _hook(conf, ip)[0] == 0

    def status() -> str:
        return cfban_process("--config", str(conf), "status").stdout

    wait_until(lambda: "FAILING" in status(), timeout=30)
    shown = status()
    assert kind in shown and "last error:" in shown and "oldest queued" in shown
    wait_until(lambda: cfban_process("--config", str(conf), "health").returncode == 1, timeout=30)
    health = cfban_process("--config", str(conf), "health")
    # a problem waiting will not fix fails at once; any other once a ban waited too long
    assert "has waited" in health.stderr or "delivery waits" in health.stderr, health.stderr
    assert kind in health.stderr
    code, stderr = _hook(conf, ADDRESSES[5])
    assert code == 0 and "cfban: warning: delivery to Cloudflare has failed since" in stderr
    assert kind in stderr
    wait_for_deliverer(state)
    fix()
    done = cfban_process("--config", str(conf), repair)
    assert done.returncode == 0, done.stdout + done.stderr
    assert delivered() == set(ADDRESSES)
    assert "deliverer: ok" in status()
    assert cfban_process("--config", str(conf), "health").returncode == 0
    log = (state / "deliverer.log").read_text()
    assert kind in log or "failed" in log  # the background deliverer said so in its log


@pytest.mark.timeout(180)
def test_a_revoked_token_is_seen_then_fixed(tmp_path: Path, served: tuple[Emulator, str]) -> None:
    emulator, url = served
    conf = write_config(
        tmp_path / "cfban.toml", url=url, token=emulator.token, zone=emulator.zone_id,
        extra="max_queue_age = 1\n",
    )  # fmt: skip
    tokens = emulator.state.tokens

    def revoke(status: Literal["active", "disabled"]) -> Callable[[], None]:
        def change() -> None:
            tokens[emulator.token] = dataclasses.replace(tokens[emulator.token], status=status)

        return change

    def delivered() -> set[str]:
        return {rule.value for rule in emulator.state.access_rules.values()}

    _breaks_then_recovers(conf, delivered, revoke("disabled"), revoke("active"), "token_invalid")


@pytest.mark.timeout(180)
def test_a_deleted_list_is_seen_then_fixed(tmp_path: Path, served: tuple[Emulator, str]) -> None:
    emulator, url = served
    conf = write_config(
        tmp_path / "cfban.toml", url=url, token=emulator.token, zone=emulator.zone_id,
        extra=f'max_queue_age = 1\nbackend = "list"\naccount_id = "{emulator.account_id}"\n',
    )  # fmt: skip

    def delete() -> None:
        emulator.state.lists.clear()
        # and Cloudflare keeps refusing to create it again until someone looks
        emulator.faults.always(
            Fault.server_error(500), method="POST", path="/accounts/*/rules/lists", times=10_000
        )

    def delivered() -> set[str]:
        return {
            str(item.network.network_address)
            for ip_list in emulator.state.lists.values()
            for item in ip_list.items.values()
        }

    # the bans that were in the deleted list come back with `cfban sync`, the queued ones too
    _breaks_then_recovers(conf, delivered, delete, emulator.faults.clear, "unreachable", "sync")
