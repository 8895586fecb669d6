"""Repeat offenders in the daemon: ``bantime_factor`` grows each new ban of an address,
capped at ``bantime_maxtime``, within one run and across restarts (the ban history is in the
state); the recidive rule gives the long ban after N bans within its window."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfban.clock import SystemClock
from cfban.config import load_settings
from cfban.intake.commit import Intake
from cfban.rules import JailRules, Recidive, Rules
from cfban.state import PastBan, StateStore
from cfban.watch import Daemon, WatchOptions
from tests.cfemu.plugin import ServedEmulator
from tests.support.intake import write_config
from tests.support.logs import PROBE
from tests.support.waiting import wait_until

IP = "198.51.100.77"


class Run:
    """One daemon run over ``conf`` (stopped on exit)."""

    def __init__(self, conf: Path) -> None:
        settings = load_settings(conf, env={})
        self.daemon = Daemon(settings, WatchOptions(poll=0.05))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self) -> Run:
        self.thread.start()
        wait_until(lambda: bool(self.daemon._files))
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def _history(state: Path) -> list[PastBan]:
    with StateStore.open(state, SystemClock()) as store:
        return store.past_bans(IP)


def _offend(log: Path, state: Path) -> float:
    """Write one failure line now; wait for the ban it starts; return its length."""
    before = len(_history(state))
    stamp = int(time.time())
    date = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(stamp))
    with log.open("a") as handle:
        handle.write(PROBE.format(ip=IP, date=date))
    wait_until(lambda: len(_history(state)) == before + 1, timeout=20)
    ban = _history(state)[-1]
    assert ban.expires_at is not None
    return float(ban.expires_at) - stamp


def _unban(state: Path) -> None:
    with StateStore.open(state, SystemClock()) as store:
        store.release(IP, "j")


@pytest.fixture
def home(tmp_path: Path, cf_server: ServedEmulator) -> Iterator[tuple[Path, Path, Path]]:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    log.touch()
    jail = (
        f'[jails.j]\nfilter = "nginx-probes"\nlogpath = ["{log}"]\nmaxretry = 1\n'
        "bantime = 4\nbantime_factor = 3\nbantime_maxtime = 50\n"
    )
    conf = write_config(
        tmp_path / "cfban.toml", url=cf_server.base_url, token=cf_server.token,
        zone=cf_server.emulator.zone_id, extra=jail,
    )  # fmt: skip
    yield conf, log, tmp_path / "state"


@pytest.mark.timeout(90)
def test_bans_grow_in_one_run_and_across_restarts(
    home: tuple[Path, Path, Path], cf_server: ServedEmulator
) -> None:
    conf, log, state = home
    rules = cf_server.emulator.state.access_rules
    with Run(conf) as run:
        assert _offend(log, state) == 4
        wait_until(lambda: any(r.value == IP for r in rules.values()), timeout=20)
        wait_until(lambda: not any(r.value == IP for r in rules.values()), timeout=20)
        counter = run.daemon.jails[0].counter
        wait_until(lambda: IP not in counter._banned_until, timeout=10)  # the removal is seen
        assert _offend(log, state) == 12  # the ban ended; the next one is 4 × 3
    _unban(state)
    with Run(conf):  # a new process: the jail's memory is gone, the history is not
        assert _offend(log, state) == 36
    _unban(state)
    with Run(conf):
        assert _offend(log, state) == 50  # 108, capped at bantime_maxtime
    assert [b.jail for b in _history(state)] == ["j"] * 4


@pytest.mark.timeout(90)
def test_recidive_gives_the_long_ban(home: tuple[Path, Path, Path]) -> None:
    conf, log, state = home
    conf.write_text(
        conf.read_text().replace("bantime_factor = 3", "bantime_factor = 1")
        + "[recidive]\nbans = 3\nfindtime = '1h'\nbantime = '1d'\n"
    )
    for expected in (4, 4, 86400):
        with Run(conf):
            assert _offend(log, state) == expected
        _unban(state)


def test_bantime_rules() -> None:
    rules = Rules(
        state_dir=Path("/nonexistent"),
        jails={"j": JailRules(bantime=4, bantime_factor=3, bantime_maxtime=50)},
        recidive=Recidive(bans=3, findtime=100, bantime=1000),
    )
    one = [PastBan("j", 0.0, 4.0)]
    assert rules.bantime("j", None, [], 10) == 4
    assert rules.bantime("j", None, one, 10) == 12
    assert rules.bantime("j", 7, one, 10) == 7  # given (fail2ban's increment): as given
    assert rules.bantime("other", None, one, 10) == 600  # growth counts per jail
    two = [*one, PastBan("other", 5.0, 9.0)]
    assert rules.bantime("other", None, two, 10) == 1000  # third ban within 100 s: recidive
    assert rules.bantime("other", None, two, 1000) == 600  # outside the window
    assert rules.bantime("j", -1, two, 10) == -1  # permanent stays permanent


def test_a_request_while_banned_extends_and_is_no_repeat(tmp_path: Path) -> None:
    """The same commit path for the CLI and the hook: a second ``cfban ban`` while the first
    ban runs extends it (no growth, no history row); after an unban the next one grows."""
    rules = Rules(
        state_dir=tmp_path,
        allow_test_nets=True,
        jails={"j": JailRules(bantime=4, bantime_factor=3, bantime_maxtime=50)},
        recidive=Recidive(bans=3, findtime=3600, bantime=1000),
    )
    with StateStore.open(tmp_path, SystemClock()) as store:
        intake = Intake(rules, store)
        assert intake.ban(IP, "j").bantime == 4
        assert intake.ban(IP, "j").bantime == 4  # still banned: an extension
        assert len(store.past_bans(IP)) == 1
        intake.unban(IP, "j")
        assert intake.ban(IP, "j").bantime == 12
        intake.unban(IP, "j")
        assert intake.ban(IP, "j").bantime == 1000  # the third within the hour: recidive
        assert intake.ban(IP, "j").bantime == 1000  # extending it stays the same
        assert len(store.past_bans(IP)) == 3
