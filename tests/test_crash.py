"""SIGKILL during delivery loses nothing and duplicates nothing: 20 seeded trials.

Each trial queues 1,000 bans and starts ``cfban deliver`` against the loopback emulator (list
backend, 250 bans per bulk write). The status poll that completes each write answers slowly,
so a kill can land between Cloudflare applying a write and cfban recording it. The process
is killed with SIGKILL at a random moment after its first request and restarted; then every
ban must be at Cloudflare exactly once and recorded as delivered with the right item id.
Trials run four at a time.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from cfban.clock import FakeClock
from cfban.state import StateStore
from tests.cfemu import Emulator, Fault, serve
from tests.support.intake import clean_env
from tests.test_cli_bans import write_config

TRIALS = 20
BANS = 1000
SEED = 20261125
TARGETS = [f"198.51.{100 + i // 250}.{i % 250 + 1}" for i in range(BANS)]


@dataclass
class Trial:
    kill_after: float
    remote_at_kill: int
    delivered_at_kill: int
    killed: bool
    seconds: float


def _template(tmp: Path) -> Path:
    state = tmp / "template"
    with StateStore.open(state, FakeClock(time.time())) as store:
        for target in TARGETS:
            store.hold(address=target, target=target, jail="web", expires_at=time.time() + 86400)
    return state / "cfban.sqlite3"


def _env(base: Path, url: str, emu: Emulator) -> dict[str, str]:

    env = clean_env()
    config = write_config(base / "cfban.toml", emu, 'backend = "list"\n')
    env.update(
        CFBAN_CONFIG=str(config),
        CFBAN_STATE_DIR=str(base / "state"),
        CFBAN_API_URL=url,
        CLOUDFLARE_API_TOKEN=emu.token,
    )
    return env


def _delivered(state: Path) -> dict[str, str | None]:
    with StateStore.open(state, FakeClock()) as store:
        return {v.target: v.ref for v in store.bans() if v.state == "delivered"}


def _trial(number: int, tmp: Path, template: Path) -> Trial:
    rng = random.Random(SEED + number)
    base = tmp / f"trial{number}"
    (base / "state").mkdir(parents=True)
    shutil.copyfile(template, base / "state" / "cfban.sqlite3")
    emu = Emulator(rate_limit=10**6)  # the real clock: an orphaned bulk write still finishes
    emu.options.bulk_polls = 0
    emu.options.bulk_seconds = 0.2
    # the status poll that completes a bulk write answers late: a kill in that window
    # leaves items at Cloudflare that the state does not show as delivered yet
    emu.faults.always(Fault.slow(0.3), method="GET", times=10**6,
                      path="/accounts/*/rules/lists/bulk_operations/*")  # fmt: skip
    started = time.monotonic()
    with serve(emu) as url:
        env = _env(base, url, emu)
        args = [sys.executable, "-m", "cfban", "deliver", "--batch-size", "250"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while not emu.log.entries and proc.poll() is None:
            time.sleep(0.01)
        kill_after = rng.uniform(0.0, 2.5)
        time.sleep(kill_after)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        remote_at_kill = len(emu.list_ips("cfban")) if emu.lists() else 0
        delivered_at_kill = len(_delivered(base / "state"))
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        assert again.stdout.endswith("; 0 queued\n"), again.stdout
        items = [(item["ip"], item["id"]) for item in emu.list_items("cfban")]
    counts = Counter(ip for ip, _ in items)
    assert sorted(counts) == sorted(TARGETS), f"trial {number}: bans lost"
    assert max(counts.values()) == 1, f"trial {number}: duplicate entries"
    delivered = _delivered(base / "state")
    assert delivered == dict(items), f"trial {number}: state disagrees with Cloudflare"
    return Trial(kill_after, remote_at_kill, delivered_at_kill, killed,
                 time.monotonic() - started)  # fmt: skip


@pytest.mark.slow
def test_sigkill_during_delivery_loses_and_duplicates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    template = _template(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        trials = list(pool.map(lambda n: _trial(n, tmp_path, template), range(TRIALS)))
    elapsed = time.monotonic() - started
    mid_flight = sum(1 for t in trials if t.remote_at_kill > t.delivered_at_kill)
    partial = sum(1 for t in trials if 0 < t.delivered_at_kill < BANS)
    with capsys.disabled():
        print(
            f"\n[crash] {TRIALS} trials x {BANS} bans in {elapsed:.1f} s; killed mid-run "
            f"{sum(t.killed for t in trials)}, partly delivered at kill {partial}, "
            f"applied-but-unrecorded at kill {mid_flight}; "
            f"remote/local at kill: {[(t.remote_at_kill, t.delivered_at_kill) for t in trials]}"
        )
    # the kills really interrupted deliveries, at different stages (how many land between
    # Cloudflare applying a write and cfban recording it depends on the machine's speed;
    # the in-process tests of that case are in test_delivery and test_faults)
    assert sum(t.killed for t in trials) >= TRIALS // 2
    assert partial >= 3 and any(t.delivered_at_kill == 0 for t in trials)
    assert mid_flight >= 2
