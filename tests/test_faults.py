"""With 30 % of requests failing (5xx, HTML 429, timeouts, resets), 1,000 bans all land once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from cfban.bans import BanService
from cfban.clock import FakeClock
from cfban.config import Settings
from tests.cfemu import Emulator, Fault

N = 1000

FAULTS = [
    Fault.server_error(502, html=True),
    Fault.server_error(500),
    Fault.server_error(503, html=True),
    Fault.rate_limited(retry_after=None, html=True),
    Fault.rate_limited(retry_after=2, html=True),
    Fault.timeout(),
    Fault.dropped(),
    Fault.applied_then_dropped(),
]


def _targets() -> list[str]:
    return [f"198.51.{100 + i // 250}.{i % 250 + 1}" for i in range(N)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["access-rules", "list"])
def test_thousand_bans_land_under_thirty_percent_faults(
    tmp_path: Path, cf_emulator: Emulator, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = cf_emulator
    clock = emu.clock
    assert isinstance(clock, FakeClock)
    emu.options.bulk_polls = 0
    emu.faults.seed(20261125)
    emu.faults.randomly(0.3, FAULTS)
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "realip": {"allow_test_nets": True},
            "cloudflare": {"api_token": emu.token, "zone_id": emu.zone_id,
                           "account_id": emu.account_id, "backend": kind},
        }
    )  # fmt: skip
    targets = _targets()
    started = time.monotonic()
    with BanService(settings, clock=clock, transport=emu.transport()) as service:
        for target in targets:
            service.ban(target, jail="web", bantime=3600, deliver=False)
        rounds = 0
        while service.queue_depth() != {"add": 0, "remove": 0}:
            rounds += 1
            assert rounds < 50, service.queue_depth()
            report = service.deliver(deadline=None, wait=True, batch_size=100)
            assert report.stopped is None
        views = service.list_bans()
    elapsed = time.monotonic() - started

    if kind == "list":
        remote = [(item["ip"], item["id"]) for item in emu.list_items("cfban")]
    else:
        remote = [(r["configuration"]["value"], r["id"]) for r in emu.access_rules()]
    counts = Counter(ip for ip, _ in remote)
    assert sorted(counts) == sorted(targets)
    assert max(counts.values()) == 1  # no duplicates
    assert {v.state for v in views} == {"delivered"} and len(views) == N
    refs = dict(remote)
    assert all(v.ref == refs[v.target] for v in views)
    faulted = sum(1 for e in emu.log.entries if e.fault is not None)
    total = len(emu.log.entries)
    with capsys.disabled():
        print(
            f"\n[faults {kind}] {N} bans, {total} requests, {faulted} faulted "
            f"({faulted / total:.0%}), {rounds} deliver rounds, "
            f"{elapsed:.1f} s real, {clock.monotonic():.0f} s emulated"
        )
    assert faulted / total > 0.2
