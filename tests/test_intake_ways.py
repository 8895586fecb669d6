"""The same 200 bans through each way in — the CLI, the hook's fast path, the spool of
fail2ban's Python action, the daemon — give the same state rows and the same entries at the
(emulated) Cloudflare: one commit path."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cfban.clock import FakeClock
from cfban.config import load_settings
from cfban.intake.spool import spool_dir, write_entry
from cfban.watch import Daemon, WatchOptions
from tests.cfemu import Emulator
from tests.cfemu._server import serve
from tests.support.intake import (
    cfban,
    cfban_process,
    state_rows,
    wait_for_deliverer,
    write_config,
)
from tests.support.logs import PROBE

BANTIME = 3600
JAILS = (
    '[jails.one]\nfilter = "nginx-probes"\nlogpath = ["{logs}/one.log"]\nmaxretry = 1\n'
    f"bantime = {BANTIME}\n"
    '[jails.two]\nfilter = "nginx-probes"\nlogpath = ["{logs}/two.log"]\nmaxretry = 1\n'
    f"bantime = {BANTIME}\n"
)


def two_hundred() -> list[tuple[str, str]]:
    """(address, jail): IPv4, IPv6 (two per /64), refused, duplicates, two jails."""
    bans = [(f"198.51.100.{k}", "one") for k in range(1, 61)]
    bans += [(f"198.51.100.{k}", "two") for k in range(1, 21)]  # the same target, two jails
    bans += [(f"198.51.100.{k}", "one") for k in range(21, 41)]  # plain duplicates
    bans += [(f"203.0.113.{k}", "two") for k in range(1, 21)]
    bans += [(f"2001:db8:0:{k:x}::1", "two") for k in range(1, 41)]
    bans += [(f"2001:db8:0:{k:x}::2", "two") for k in range(1, 21)]  # same /64
    bans += [(f"10.0.{k}.1", "one") for k in range(10)]  # private: refused
    bans += [(f"127.0.0.{k}", "one") for k in range(1, 6)]  # loopback: refused
    bans += [(f"192.168.7.{k}", "one") for k in range(1, 6)]  # private: refused
    assert len(bans) == 200
    rng = random.Random(7)
    order = sorted(range(200), key=lambda _: rng.random())
    # keep each address's own order (a duplicate after its first) while interleaving
    return [bans[i] for i in sorted(order, key=lambda i: (order.index(i) // 50, i))]


def _cli(conf: Path, bans: list[tuple[str, str]]) -> None:
    for ip, jail in bans:
        code = cfban(["--config", str(conf), "ban", ip, "--jail", jail, "--bantime", str(BANTIME)])
        assert code in (0, 1)


def _hook(conf: Path, bans: list[tuple[str, str]]) -> None:
    assert cfban(["--config", str(conf), "list"]) == 0  # the full command caches the rules
    for ip, jail in bans:
        argv = ["--config", str(conf), "ban", ip, "--jail", jail, "--bantime", str(BANTIME),
                "--background"]  # fmt: skip
        from cfban.intake.hook import fast_path

        assert fast_path(argv) in (0, 1)  # the fast path took it (None: handed over)
    wait_for_deliverer(conf.parent / "state")
    assert cfban(["--config", str(conf), "deliver"]) == 0


def _spool(conf: Path, bans: list[tuple[str, str]]) -> None:
    directory = spool_dir(conf.parent / "state")
    now = time.time()
    for ip, jail in bans:
        write_entry(directory, op="ban", ip=ip, jail=jail, expires_at=now + BANTIME, now=now)
    done = cfban_process("--config", str(conf), "deliver", "--linger", "0")
    assert done.returncode == 0, done.stderr


def _daemon(conf: Path, bans: list[tuple[str, str]]) -> None:
    logs = conf.parent / "logs"
    date = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    for jail in ("one", "two"):
        (logs / f"{jail}.log").write_text(
            "".join(PROBE.format(ip=ip, date=date) for ip, j in bans if j == jail)
        )
    settings = load_settings(conf, env={})
    Daemon(settings, WatchOptions(from_start=True, exit_idle=0.5, poll=0.05)).run()


WAYS: dict[str, Callable[[Path, list[tuple[str, str]]], None]] = {
    "cli": _cli,
    "hook": _hook,
    "spool": _spool,
    "daemon": _daemon,
}


@pytest.mark.timeout(240)
def test_two_hundred_bans_through_every_way_in(tmp_path: Path) -> None:
    bans = two_hundred()
    seen: dict[str, tuple[dict[str, list[tuple[object, ...]]], list[tuple[str, str]]]] = {}
    for name, way in WAYS.items():
        home = tmp_path / name
        (home / "logs").mkdir(parents=True)
        emulator = Emulator(clock=FakeClock())
        with serve(emulator) as url:
            conf = write_config(
                home / "cfban.toml", url=url, token=emulator.token, zone=emulator.zone_id,
                extra=JAILS.format(logs=home / "logs"),
            )  # fmt: skip
            way(conf, bans)
            remote = sorted((r.value, r.mode) for r in emulator.state.access_rules.values())
        seen[name] = (state_rows(home / "state"), remote)
    rows, remote = seen["cli"]
    assert len(rows["bans"]) == 60 + 20 + 40  # IPv4 targets + IPv6 /64s; refused: none
    assert {state for _target, state in rows["bans"]} == {"delivered"}
    assert len(remote) == 120 and not rows["outbox"]
    assert ("2001:db8:0:1::/64", "block") in remote
    for name, (other_rows, other_remote) in seen.items():
        assert other_rows == rows, name
        assert other_remote == remote, name
