"""``cfban watch`` in-process: lines in, bans at the (emulated) Cloudflare, expiry out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cfban.config import Settings, load_settings
from cfban.watch import Daemon, DaemonStatus, Status, WatchOptions, judge, read_status
from tests.cfemu.plugin import ServedEmulator
from tests.support.logs import PROBE, log_date
from tests.support.waiting import wait_until


def _settings(tmp: Path, server: ServedEmulator, *, bantime: str = "1h") -> Settings:
    conf = tmp / "cfban.toml"
    conf.write_text(
        f'state_dir = "{tmp / "state"}"\n'
        "[realip]\nallow_test_nets = true\n"
        f'[cloudflare]\nzone_id = "{server.emulator.zone_id}"\n'
        f'[jails.probes]\nfilter = "nginx-probes"\nlogpath = ["{tmp / "logs" / "*.log"}"]\n'
        f'maxretry = 2\nfindtime = "10m"\nbantime = "{bantime}"\n',
        encoding="utf-8",
    )
    return load_settings(conf, env=server.env())


def _rules(server: ServedEmulator) -> set[str]:
    return {rule.value for rule in server.emulator.state.access_rules.values()}


@pytest.fixture
def running(
    tmp_path: Path, cf_server: ServedEmulator
) -> Iterator[Callable[..., tuple[Daemon, Path]]]:
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(**kw: str) -> tuple[Daemon, Path]:
        (tmp_path / "logs").mkdir(exist_ok=True)
        log = tmp_path / "logs" / "access.log"
        log.touch()
        daemon = Daemon(_settings(tmp_path, cf_server, **kw), WatchOptions(poll=0.1))
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        started.append((daemon, thread))
        wait_until(lambda: bool(daemon._files))
        return daemon, log

    yield start
    for daemon, thread in started:
        daemon.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_lines_to_bans_at_cloudflare(running: Callable[..., tuple[Daemon, Path]],
                                     cf_server: ServedEmulator) -> None:  # fmt: skip
    daemon, log = running()
    with log.open("a") as handle:
        handle.write(PROBE.format(ip="203.0.113.7", date=log_date()))
        handle.write(PROBE.format(ip="203.0.113.8", date=log_date()))
        handle.write(PROBE.format(ip="203.0.113.7", date=log_date()))
        handle.write(PROBE.format(ip="10.1.2.3", date=log_date()) * 3)  # private: refused
    wait_until(lambda: "203.0.113.7" in _rules(cf_server))
    assert _rules(cf_server) == {"203.0.113.7"}
    assert daemon.metrics.bans["probes"] == 1
    assert daemon.metrics.refused["private"] == 3
    assert daemon.metrics.lines == 6


def test_ban_expires(running: Callable[..., tuple[Daemon, Path]],
                     cf_server: ServedEmulator) -> None:  # fmt: skip
    _, log = running(bantime="2")
    with log.open("a") as handle:
        handle.write(PROBE.format(ip="203.0.113.9", date=log_date()) * 2)
    wait_until(lambda: "203.0.113.9" in _rules(cf_server))
    wait_until(lambda: "203.0.113.9" not in _rules(cf_server), timeout=10)


def test_new_file_matching_glob_is_followed(running: Callable[..., tuple[Daemon, Path]],
                                            cf_server: ServedEmulator) -> None:  # fmt: skip
    _, log = running()
    other = log.parent / "other.log"
    other.write_text(PROBE.format(ip="203.0.113.10", date=log_date()) * 2)
    wait_until(lambda: "203.0.113.10" in _rules(cf_server))


def test_status_and_health(running: Callable[..., tuple[Daemon, Path]],
                           tmp_path: Path) -> None:  # fmt: skip
    daemon, _ = running()
    daemon._write_status(daemon._factory(daemon.settings))
    raw = read_status(tmp_path / "state")
    assert raw is not None and raw["jails"]["probes"]["files"]
    daemon_status = DaemonStatus.from_json(raw)
    now = time.time()
    assert judge(Status(now, daemon_status), 900).ok
    assert not judge(Status(now + 120, daemon_status), 900).ok
    assert not judge(Status(now, None), 900).ok  # nothing ever ran
    stuck = Status(now, daemon_status, oldest_queued_at=now - 3600)
    assert "waited" in judge(stuck, 900).reason


def test_restart_resumes_at_cursor(tmp_path: Path, cf_server: ServedEmulator) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    log.write_text(PROBE.format(ip="203.0.113.20", date=log_date()))
    settings = _settings(tmp_path, cf_server)
    first = Daemon(settings, WatchOptions(poll=0.1, exit_idle=0.5, from_start=True))
    first.run()
    assert first.metrics.lines == 1
    with log.open("a") as handle:
        handle.write(PROBE.format(ip="203.0.113.20", date=log_date()))
    second = Daemon(settings, WatchOptions(poll=0.1, exit_idle=0.5, from_start=True))
    second.run()
    assert second.metrics.lines == 1  # only the new line: no line counted twice
    assert _rules(cf_server) == set()  # one failure per run: the count died with the process


def test_backlog_counts_are_not_purged_mid_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                cf_server: ServedEmulator) -> None:  # fmt: skip
    """Reading old lines (log times hours ago), a purge by the wall clock would forget each
    count between batches; the daemon purges only once every file is caught up."""
    import cfban.watch._daemon as daemon_module

    monkeypatch.setattr(daemon_module, "PURGE_INTERVAL", 0.0)
    monkeypatch.setattr(daemon_module, "BATCH_LINES", 1)
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    old = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(time.time() - 7200))
    log.write_text(PROBE.format(ip="203.0.113.30", date=old) * 2)
    settings = _settings(tmp_path, cf_server, bantime="1d")
    daemon = Daemon(settings, WatchOptions(poll=0.05, exit_idle=0.5, from_start=True))
    daemon.run()
    assert daemon.metrics.lines == 2
    assert daemon.metrics.bans["probes"] == 1
    assert _rules(cf_server) == {"203.0.113.30"}


class _CountingEvent(threading.Event):
    """An event that counts how often it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def set(self) -> None:
        self.calls += 1
        super().set()


@pytest.mark.parametrize("lead", [0, 1], ids=["ends-on-full-batch", "ends-on-short-batch"])
def test_backlog_bans_are_gathered_into_few_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cf_server: ServedEmulator, lead: int
) -> None:
    """While a backlog is read, batch after batch, the delivery thread is called once and
    then again only when the backlog ends - wherever it ends - and every ban lands."""
    import cfban.watch._daemon as daemon_module
    import cfban.watch._deliverer as deliverer_module

    monkeypatch.setattr(daemon_module, "BATCH_LINES", 2)
    monkeypatch.setattr(deliverer_module, "DELIVERY_GATHER", 3600.0)
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    offenders = [f"203.0.113.{n}" for n in range(40, 60)]
    # one line ahead of the pairs makes the last batch a short one with the last ban
    lines = PROBE.format(ip="198.51.100.1", date=log_date()) * lead
    log.write_text(lines + "".join(PROBE.format(ip=ip, date=log_date()) * 2 for ip in offenders))
    daemon = Daemon(
        _settings(tmp_path, cf_server),
        WatchOptions(poll=0.05, exit_idle=0.5, from_start=True),
    )
    calls = daemon.deliverer.called = _CountingEvent()
    daemon.run()
    assert daemon.metrics.bans["probes"] == len(offenders)
    assert _rules(cf_server) == set(offenders)
    # the first batch's ban, the backlog's end, and the stop: not one call per batch
    assert calls.calls <= 3


def test_a_ban_held_back_is_sent_once_the_gather_time_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cf_server: ServedEmulator
) -> None:
    """A ban queued within the gather time of the last call is not forgotten while the
    backlog goes on: the next batch after the gather time calls, even one with no ban."""
    import cfban.watch._daemon as daemon_module
    import cfban.watch._deliverer as deliverer_module
    from cfban.clock import FakeClock

    monkeypatch.setattr(daemon_module, "BATCH_LINES", 2)
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    ips = ["203.0.113.61"] * 2 + ["203.0.113.62"] * 2 + ["203.0.113.63", "203.0.113.64"] * 2
    log.write_text("".join(PROBE.format(ip=ip, date=log_date()) for ip in ips))
    clock = FakeClock(time.time())
    daemon = Daemon(_settings(tmp_path, cf_server), WatchOptions(from_start=True), clock=clock)
    calls = daemon.deliverer.called = _CountingEvent()
    service = daemon._factory(daemon.settings)
    try:
        daemon._intake = daemon._make_intake(service)
        daemon._attach_files({})
        daemon._read_all(service)  # a ban: the first call
        assert calls.calls == 1
        clock.advance(0.01)
        daemon._read_all(service)  # another ban, within the gather time: held back
        assert calls.calls == 1 and daemon.deliverer.held
        clock.advance(deliverer_module.DELIVERY_GATHER)
        daemon._read_all(service)  # no ban in this batch, but the held one is called for
        assert calls.calls == 2 and not daemon.deliverer.held
    finally:
        for entry in daemon._files.values():
            entry.follower.close()
        service.close()
