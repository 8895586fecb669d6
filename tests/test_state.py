"""The state store: migrations, holders, outbox coalescing, expiry, concurrent writers."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from cfban.clock import FakeClock
from cfban.errors import StateError
from cfban.state import DB_FILENAME, MIGRATIONS, StateStore, applied, migrate


def _open(tmp_path: Path, clock: FakeClock | None = None) -> StateStore:
    return StateStore.open(tmp_path / "state", clock or FakeClock())


def _ops(store: StateStore) -> list[tuple[str, str, float | None, bool]]:
    return [(o.target, o.op, o.not_after, o.force) for o in store.outbox()]


def test_fresh_database_is_private_wal_and_fully_migrated(tmp_path: Path) -> None:
    store = _open(tmp_path)
    state_dir = tmp_path / "state"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / DB_FILENAME).stat().st_mode) == 0o600
    assert applied(store.db) == [m.__name__ for m in MIGRATIONS]
    mode = store.db.read("PRAGMA journal_mode")[0][0]
    assert mode == "wal"
    tables = {r["name"] for r in store.db.read("SELECT name FROM sqlite_master")}
    assert {"holders", "bans", "outbox", "cursors", "migrations"} <= tables
    store.close()


def test_migrations_run_once_and_new_ones_are_applied_later(tmp_path: Path) -> None:
    store = _open(tmp_path)
    assert migrate(store.db, store.clock) == []

    def m999_extra(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE extra (x INTEGER)")

    assert migrate(store.db, store.clock, (*MIGRATIONS, m999_extra)) == ["m999_extra"]
    assert migrate(store.db, store.clock, (*MIGRATIONS, m999_extra)) == []
    assert applied(store.db)[-1] == "m999_extra"
    store.close()
    reopened = _open(tmp_path)
    assert applied(reopened.db)[-1] == "m999_extra"
    reopened.close()


def test_a_failing_migration_leaves_nothing_half_done(tmp_path: Path) -> None:
    store = _open(tmp_path)

    def m998_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x INTEGER)")
        conn.execute("THIS IS NOT SQL")

    with pytest.raises(StateError, match="failed"):
        migrate(store.db, store.clock, (*MIGRATIONS, m998_broken))
    names = {r["name"] for r in store.db.read("SELECT name FROM sqlite_master")}
    assert "half" not in names
    assert "m998_broken" not in applied(store.db)


def test_ban_is_committed_with_its_outbox_op(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    assert store.hold(address="198.51.100.7", target="198.51.100.7", jail="sshd",
                      expires_at=clock.now() + 600)  # fmt: skip
    assert _ops(store) == [("198.51.100.7", "add", None, False)]
    [view] = store.bans()
    assert (view.target, view.jails, view.state) == ("198.51.100.7", ("sshd",), "pending")
    assert view.expires_at == clock.now() + 600


def test_two_jails_are_one_entry_longest_expiry_wins(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    t = "198.51.100.7"
    store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 100)
    store.hold(address=t, target=t, jail="b", expires_at=clock.now() + 900)
    assert len(store.outbox()) == 1
    held = store.held_targets()[t]
    assert held.jails == ("a", "b") and held.expires_at == clock.now() + 900
    # a shorter re-ban by the same jail never shortens its hold
    store.hold(address=t, target=t, jail="b", expires_at=clock.now() + 10)
    assert store.held_targets()[t].expires_at == clock.now() + 900
    # permanent beats any time
    store.hold(address=t, target=t, jail="c", expires_at=None)
    assert store.held_targets()[t].expires_at is None


def _deliver_all(store: StateStore) -> None:
    jobs = store.take_adds(100)
    store.added(jobs, {j.op.target: f"ref-{j.op.target}" for j in jobs}, "fake")


def test_release_of_one_jail_keeps_the_entry_until_the_last(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    t = "198.51.100.7"
    store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 100)
    store.hold(address=t, target=t, jail="b", expires_at=clock.now() + 900)
    _deliver_all(store)
    assert store.state_of(t) == "delivered" and store.outbox() == []
    assert store.release(t, "a") == (["a"], False)
    assert store.outbox() == []
    assert store.release(t, "x") == ([], False)
    assert store.release(t, "b") == (["b"], True)
    # the remove keeps an entry held past what this host pushed (another host's)
    assert _ops(store) == [(t, "remove", clock.now() + 900, False)]


def test_manual_unban_forces_and_works_without_local_record(tmp_path: Path) -> None:
    store = _open(tmp_path)
    assert store.release("198.51.100.9", None) == ([], True)
    assert _ops(store) == [("198.51.100.9", "remove", None, True)]


def test_add_then_remove_never_sent_cancels_both(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    t = "198.51.100.7"
    store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 100)
    assert store.release(t, "a") == (["a"], False)
    assert store.outbox() == [] and store.bans() == []


def test_add_then_remove_after_a_send_becomes_a_remove(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    t = "198.51.100.7"
    store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 100)
    [job] = store.take_adds(10)  # sent; the answer never came (crash, timeout)
    assert store.release(t, None) == (["a"], True)
    assert _ops(store) == [(t, "remove", None, True)]
    # the late answer to the add finishes nothing: the remove still goes out
    store.added([job], {t: "ref-1"}, "fake")
    assert _ops(store) == [(t, "remove", None, True)]
    assert store.state_of(t) == "removing"
    assert store.refs([t]) == {t: "ref-1"}


def test_remove_then_add_becomes_an_add_and_removes_merge(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    t = "198.51.100.7"
    store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 100)
    _deliver_all(store)
    store.release(t, "a")
    assert _ops(store)[0][1] == "remove"
    store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 200)
    assert _ops(store) == [(t, "add", None, False)]
    assert store.state_of(t) == "pending"
    _deliver_all(store)
    store.release(t, "a")
    store.release(t, None)  # a forced remove on top of a queued one: one forced remove
    assert _ops(store) == [(t, "remove", None, True)]


def test_delivered_entry_is_not_queued_again_when_nothing_changes(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    t = "198.51.100.7"
    store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 600)
    _deliver_all(store)
    assert not store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 300)
    assert store.outbox() == []
    assert store.hold(address=t, target=t, jail="a", expires_at=clock.now() + 900)
    assert store.hold(address=t, target=t, jail="new", expires_at=clock.now() + 10)


def test_expiry_releases_due_holds_and_queues_removes(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    now = clock.now()
    store.hold(address="198.51.100.1", target="198.51.100.1", jail="a", expires_at=now + 60)
    store.hold(address="198.51.100.2", target="198.51.100.2", jail="a", expires_at=now + 60)
    store.hold(address="198.51.100.2", target="198.51.100.2", jail="b", expires_at=now + 6000)
    store.hold(address="198.51.100.3", target="198.51.100.3", jail="a", expires_at=None)
    _deliver_all(store)
    assert store.expire() == []
    clock.advance(3600)  # a long downtime: everything overdue goes at once
    assert store.expire() == ["198.51.100.1"]
    assert _ops(store) == [("198.51.100.1", "remove", now + 60, False)]
    assert store.held_targets()["198.51.100.2"].jails == ("b",)
    assert "198.51.100.3" in store.held_targets()
    jobs = store.take_removes(10)
    assert store.removed(jobs) == 1
    assert store.outbox() == [] and store.state_of("198.51.100.1") is None


def test_failed_send_is_postponed_never_lost(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _open(tmp_path, clock)
    store.hold(address="198.51.100.1", target="198.51.100.1", jail="a", expires_at=None)
    jobs = store.take_adds(10)
    store.postpone([j.op for j in jobs], clock.now() + 30, "HTTP 502")
    assert store.take_adds(10) == []
    [op] = store.outbox()
    assert (op.attempts, op.last_error, op.next_attempt_at) == (1, "HTTP 502", clock.now() + 30)
    clock.advance(30)
    assert [j.op.target for j in store.take_adds(10)] == ["198.51.100.1"]
    assert store.outbox()[0].attempts == 2


def test_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    _open(tmp_path).close()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with _open(tmp_path) as store:
                for i in range(40):
                    ip = f"198.51.{n}.{i}"
                    store.hold(address=ip, target=ip, jail="j", expires_at=None)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with _open(tmp_path) as store:
        assert len(store.bans()) == 240 and store.depth() == {"add": 240, "remove": 0}


def test_oldest_queued_at(tmp_path: Path) -> None:
    clock = FakeClock(start=1000.0)
    store = _open(tmp_path, clock)
    assert store.oldest_queued_at() is None
    store.hold(address="203.0.113.1", target="203.0.113.1", jail="j", expires_at=5000.0)
    clock.advance(10)
    store.hold(address="203.0.113.2", target="203.0.113.2", jail="j", expires_at=5000.0)
    assert store.oldest_queued_at() == 1000.0
