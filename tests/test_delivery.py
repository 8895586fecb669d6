"""Delivery: batching, retry with backoff on a fake clock, deadlines, the lock, the emulator."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from cfban.bans import BanService
from cfban.clock import FakeClock
from cfban.cloudflare import BanEntry, RemoteEntry
from cfban.config import Settings
from cfban.delivery import (
    BACKOFF_CAP,
    DeadlineClock,
    DeadlineReached,
    backoff,
    deliver,
)
from cfban.errors import AuthError, CloudflareError, RateLimitedError
from cfban.intake.lock import delivery_lock
from cfban.state import StateStore
from tests.cfemu import Emulator, Fault


class FakeBackend:
    """A stateful in-memory Cloudflare: entries by target, with scripted failures."""

    name = "fake"

    def __init__(self, clock: FakeClock | DeadlineClock | None = None) -> None:
        self.entries: dict[str, RemoteEntry] = {}
        self.add_calls: list[list[str]] = []
        self.remove_calls: list[tuple[list[str], float | None]] = []
        self.failures: list[Exception] = []
        self.clock = clock
        self.sleep_in_add = 0.0
        self._next = 0

    def _fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    def add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        self.add_calls.append([e.target for e in entries])
        if self.clock is not None and self.sleep_in_add:
            self.clock.sleep(self.sleep_in_add)
        self._fail()
        refs = {}
        for e in entries:
            old = self.entries.get(e.target)
            expiry = e.expires_at
            if old is not None:
                expiry = (
                    None
                    if old.expires_at is None or expiry is None
                    else max(old.expires_at, expiry)
                )
            self._next += 1
            ref = old.ref if old else f"r{self._next}"
            self.entries[e.target] = RemoteEntry(e.target, ref, expiry, e.jails, "fake")
            refs[e.target] = ref
        return refs

    def remove(
        self, targets: Sequence[tuple[str, str | None]], *, not_after: float | None
    ) -> list[str]:
        self.remove_calls.append(([t for t, _ in targets], not_after))
        self._fail()
        removed = []
        for target, _ref in targets:
            entry = self.entries.get(target)
            if (
                entry is not None
                and not_after is not None
                and (entry.expires_at is None or entry.expires_at > not_after)
            ):
                continue
            self.entries.pop(target, None)
            removed.append(target)
        return removed

    def list_owned(self) -> list[RemoteEntry]:
        return list(self.entries.values())

    def setup(self) -> list[str]:
        return []

    def check(self) -> list[tuple[str, bool, str]]:
        return [("fake", True, "fine")]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> StateStore:
    return StateStore.open(tmp_path, clock)


def _ban(store: StateStore, n: int, expires_at: float | None = None) -> list[str]:
    targets = [f"198.51.{i // 250}.{i % 250 + 1}" for i in range(n)]
    for t in targets:
        store.hold(address=t, target=t, jail="j", expires_at=expires_at)
    return targets


def test_adds_go_in_batches_and_are_marked_delivered(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    targets = _ban(store, 250)
    backend = FakeBackend()
    report = deliver(store, backend, clock=clock, state_dir=tmp_path, batch_size=100)
    assert [len(c) for c in backend.add_calls] == [100, 100, 50]
    assert sorted(report.added) == sorted(targets) and report.queue_depth == 0
    assert {v.state for v in store.bans()} == {"delivered"}
    assert store.refs(targets[:1]) == {targets[0]: backend.entries[targets[0]].ref}


def test_first_targets_go_before_the_backlog(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    _ban(store, 30)
    store.hold(address="192.0.2.9", target="192.0.2.9", jail="j", expires_at=None)
    backend = FakeBackend()
    deliver(store, backend, clock=clock, state_dir=tmp_path, batch_size=10, first=["192.0.2.9"])
    assert backend.add_calls[0][0] == "192.0.2.9"


def test_failures_back_off_and_respect_retry_after(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    _ban(store, 5)
    backend = FakeBackend()
    backend.failures = [CloudflareError("HTTP 502"), CloudflareError("HTTP 502")]
    start = clock.now()
    report = deliver(store, backend, clock=clock, state_dir=tmp_path)
    assert report.failed == 5 and report.added == [] and report.queue_depth == 5
    [op, *_] = store.outbox()
    assert op.attempts == 1 and op.last_error == "HTTP 502"
    assert op.next_attempt_at == start + backoff(1)
    # waiting mode sleeps on the clock until due and retries: 2 s, then 4 s
    report = deliver(store, backend, clock=clock, state_dir=tmp_path, wait=True)
    assert len(report.added) == 5 and report.queue_depth == 0
    assert clock.now() - start == backoff(1) + backoff(2)
    assert backoff(50) == BACKOFF_CAP
    hinted = RateLimitedError("429")
    hinted.retry_after = 120.0  # type: ignore[attr-defined]
    store.hold(address="192.0.2.1", target="192.0.2.1", jail="j", expires_at=None)
    backend.failures = [hinted]
    deliver(store, backend, clock=clock, state_dir=tmp_path)
    assert store.outbox()[0].next_attempt_at == clock.now() + 120.0


def test_auth_error_stops_the_round_and_keeps_everything(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    _ban(store, 3)
    backend = FakeBackend()
    backend.failures = [AuthError("bad token")]
    report = deliver(store, backend, clock=clock, state_dir=tmp_path, wait=True)
    assert isinstance(report.stopped, AuthError)
    assert len(backend.add_calls) == 1 and report.queue_depth == 3


def test_deadline_interrupts_waits_inside_a_backend_call(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    _ban(store, 3)
    dclock = DeadlineClock(clock)
    backend = FakeBackend(dclock)
    backend.sleep_in_add = 10.0  # e.g. a Retry-After inside the HTTP layer
    report = deliver(store, backend, clock=dclock, state_dir=tmp_path, deadline=3.0)
    assert report.deadline_reached and report.queue_depth == 3
    assert dclock.deadline_at is None
    assert store.outbox()[0].next_attempt_at <= clock.now()  # due again at once
    with pytest.raises(DeadlineReached):
        dclock.deadline_at = clock.monotonic() + 1
        dclock.sleep(2)


def test_deadline_between_batches(store: StateStore, clock: FakeClock, tmp_path: Path) -> None:
    _ban(store, 40)
    dclock = DeadlineClock(clock)
    backend = FakeBackend(dclock)
    backend.sleep_in_add = 1.0
    report = deliver(store, backend, clock=dclock, state_dir=tmp_path, deadline=2.5, batch_size=10)
    # two batches fit; the third's one-second wait would end past the deadline
    assert len(report.added) == 20 and report.deadline_reached
    assert report.queue_depth == 20


def test_removes_group_by_not_after(store: StateStore, clock: FakeClock, tmp_path: Path) -> None:
    now = clock.now()
    store.hold(address="192.0.2.1", target="192.0.2.1", jail="a", expires_at=now + 10)
    store.hold(address="192.0.2.2", target="192.0.2.2", jail="a", expires_at=now + 20)
    store.hold(address="192.0.2.3", target="192.0.2.3", jail="a", expires_at=now + 5000)
    store.hold(address="192.0.2.4", target="192.0.2.4", jail="a", expires_at=now + 5000)
    backend = FakeBackend()
    deliver(store, backend, clock=clock, state_dir=tmp_path)
    backend.entries["192.0.2.2"] = RemoteEntry("192.0.2.2", "x", now + 9000, ("b",), "fake")
    clock.advance(100)
    store.release("192.0.2.3", "a")  # a jail lets go early
    store.release("192.0.2.4", None)  # a person unbans
    report = deliver(store, backend, clock=clock, state_dir=tmp_path)
    calls = sorted(backend.remove_calls, key=lambda c: (c[1] is None, c[1] or 0))
    assert calls == [
        (["192.0.2.1", "192.0.2.2"], clock.now()),  # expired: one call, not_after = now
        (["192.0.2.3"], now + 5000),
        (["192.0.2.4"], None),
    ]
    assert sorted(report.removed) == ["192.0.2.1", "192.0.2.3", "192.0.2.4"]
    assert report.kept == ["192.0.2.2"]  # another host holds it until now + 9000
    assert store.bans() == [] and store.outbox() == []


def test_only_one_process_delivers(store: StateStore, clock: FakeClock, tmp_path: Path) -> None:
    _ban(store, 2)
    holder = delivery_lock(tmp_path)
    assert holder.acquire()
    backend = FakeBackend()
    report = deliver(store, backend, clock=clock, state_dir=tmp_path)
    assert report.locked and backend.add_calls == [] and report.queue_depth == 2
    holder.release()
    assert len(deliver(store, backend, clock=clock, state_dir=tmp_path).added) == 2


def test_replay_after_a_lost_answer_is_harmless(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    _ban(store, 3)
    jobs = store.take_adds(10)  # sent, then the process died before recording
    backend = FakeBackend()
    backend.add([BanEntry(j.op.target, j.expires_at, j.jails) for j in jobs])
    report = deliver(store, backend, clock=clock, state_dir=tmp_path)
    assert len(report.added) == 3 and len(backend.entries) == 3


def _settings(tmp_path: Path, emu: Emulator, **cloudflare: object) -> Settings:
    return Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "realip": {"allow_test_nets": True},
            "cloudflare": {"api_token": emu.token, "zone_id": emu.zone_id,
                           "account_id": emu.account_id, **cloudflare},
        }
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["access-rules", "list"])
def test_bans_reach_the_emulator_and_expire(
    tmp_path: Path, cf_emulator: Emulator, kind: str
) -> None:
    clock = cf_emulator.clock
    assert isinstance(clock, FakeClock)
    settings = _settings(tmp_path, cf_emulator, backend=kind)
    with BanService(settings, clock=clock, transport=cf_emulator.transport()) as service:
        for i in range(1, 21):
            service.ban(f"198.51.100.{i}", jail="j", bantime=600, deliver=False)
        service.ban("2001:db8:7::1", jail="j", bantime=60, deliver=False)
        service.ban("2001:db8:7::2", jail="k", bantime=60, deliver=False)
        report = service.deliver(deadline=None)
        assert report.queue_depth == 0 and len(report.added) == 21
        remote = {e.target: e for e in service.list_remote()}
        assert set(remote) == {f"198.51.100.{i}" for i in range(1, 21)} | {"2001:db8:7::/64"}
        assert remote["2001:db8:7::/64"].jails == ("j", "k")
        clock.advance(120)
        report = service.deliver(deadline=None)
        assert report.removed == ["2001:db8:7::/64"]
        assert len(service.list_remote()) == 20
        assert {v.state for v in service.list_bans()} == {"delivered"}


def test_emulator_faults_are_retried_not_lost(tmp_path: Path, cf_emulator: Emulator) -> None:
    clock = cf_emulator.clock
    assert isinstance(clock, FakeClock)
    cf_emulator.faults.sequence(
        [Fault.server_error(502, html=True)] * 6, method="POST", path="/zones/*/firewall/**"
    )
    settings = _settings(tmp_path, cf_emulator)
    with BanService(settings, clock=clock, transport=cf_emulator.transport()) as service:
        service.ban("198.51.100.1", deliver=False)
        first = service.deliver(deadline=None)
        assert first.failed == 1 and "502" in first.errors[0]
        assert service.list_bans()[0].attempts == 1
        second = service.deliver(deadline=None, wait=True)
        assert second.added == ["198.51.100.1"]
    assert len(cf_emulator.access_rules()) == 1


def test_bans_a_dry_run_recorded_are_sent_once_a_token_is_set(
    store: StateStore, clock: FakeClock, tmp_path: Path
) -> None:
    from cfban.cloudflare import DryRunBackend

    lines: list[str] = []
    _ban(store, 2)
    dry = DryRunBackend("access-rules", lines.append)
    assert len(deliver(store, dry, clock=clock, state_dir=tmp_path).added) == 2
    assert len(lines) == 2 and lines[0].startswith("dry run: would ban 198.51.0.1")
    real = FakeBackend()
    report = deliver(store, real, clock=clock, state_dir=tmp_path)
    assert sorted(report.added) == ["198.51.0.1", "198.51.0.2"]
    assert sorted(real.entries) == ["198.51.0.1", "198.51.0.2"]
    assert deliver(store, real, clock=clock, state_dir=tmp_path).added == []
