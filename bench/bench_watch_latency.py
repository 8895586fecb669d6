"""Detection latency of ``cfban watch``: from a line appended to the watched log to the ban
request arriving at (emulated) Cloudflare.

Serves the Cloudflare emulator on loopback in this process, runs ``cfban watch`` as a child
process (access-rules backend, ``maxretry = 1``: every line is a ban), appends one attack
line per distinct address at a steady pace, and timestamps each ban request as the emulator
receives it (both clocks are this process's ``time.monotonic``). Prints p50/p90/p99/max next
to the goal (p99 <= 100 ms). No pass/fail.

    .venv/bin/python bench/bench_watch_latency.py            # 1,000 bans, one every 20 ms
    .venv/bin/python bench/bench_watch_latency.py --bans 2000 --interval 0.01 --poll 1
    .venv/bin/python bench/bench_watch_latency.py --backend list     # bulk list items
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cfban.clock import SystemClock  # noqa: E402
from tests.cfemu import Emulator, serve  # noqa: E402

GOAL_P99_MS = 100.0
LINE = '{ip} - - [{date}] "GET /.env HTTP/1.1" 404 153 "-" "curl/8"\n'


def _address(i: int) -> str:
    """Distinct public-looking IPv4 addresses (never contacted: the API is the emulator)."""
    return f"11.{i // 64516 % 254 + 1}.{i // 254 % 254 + 1}.{i % 254 + 1}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bans", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between lines")
    parser.add_argument("--poll", type=float, default=1.0, help="cfban watch --poll")
    parser.add_argument("--backend", choices=["access-rules", "list"], default="access-rules")
    args = parser.parse_args()

    # The real clock: a list operation completes within ``bulk_seconds`` (2 s) even when
    # nobody polls it, as at Cloudflare.
    emulator = Emulator(clock=SystemClock(), rate_limit=10**9)
    arrived: dict[str, float] = {}
    inner = emulator.process

    def process(method: str, target: str, headers: Mapping[str, str], body: bytes,
                **kw: Any) -> Any:  # fmt: skip
        now = time.monotonic()
        path = target.split("?")[0]
        if method.upper() == "POST" and path.endswith("/access_rules/rules"):
            arrived.setdefault(json.loads(body)["configuration"]["value"], now)
        elif method.upper() == "POST" and path.endswith("/items"):  # the list backend
            for item in json.loads(body):
                arrived.setdefault(item["ip"], now)
        return inner(method, target, headers, body, **kw)

    emulator.process = process  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp, serve(emulator) as url:
        root = Path(tmp)
        log = root / "access.log"
        log.touch()
        (root / "cfban.toml").write_text(
            f'state_dir = "{root / "state"}"\n'
            f'[cloudflare]\nzone_id = "{emulator.zone_id}"\nrequests_per_window = 1000000\n'
            f'backend = "{args.backend}"\naccount_id = "{emulator.account_id}"\n'
            f'[jails.bench]\nfilter = "nginx-probes"\nlogpath = ["{log}"]\n'
            'maxretry = 1\nfindtime = "10m"\nbantime = "1d"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CFBAN_")}
        env.update(
            CLOUDFLARE_API_TOKEN=emulator.token,
            CFBAN_API_URL=url,
            CFBAN_CONFIG=str(root / "cfban.toml"),
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "cfban", "watch", "--poll", str(args.poll)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        following = threading.Event()
        output: list[str] = []

        def pump() -> None:
            assert daemon.stdout is not None
            for line in daemon.stdout:
                output.append(line)
                if "following " in line:
                    following.set()

        threading.Thread(target=pump, daemon=True).start()
        if not following.wait(30):
            daemon.kill()
            raise SystemExit("cfban watch did not start:\n" + "".join(output[-20:]))
        time.sleep(0.5)
        written: dict[str, float] = {}
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        date = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        started = time.monotonic()
        for i in range(args.bans):
            ip = _address(i + 1)
            os.write(fd, LINE.format(ip=ip, date=date).encode())
            written[ip] = time.monotonic()
            time.sleep(max(0.0, started + (i + 1) * args.interval - time.monotonic()))
        os.close(fd)
        end = time.monotonic() + 30
        while len(arrived) < len(written) and time.monotonic() < end:
            time.sleep(0.05)
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            print("cfban watch did not stop within 30 s of SIGTERM; its last lines:")
            print("".join(output[-15:]))

    latencies = [(arrived[ip] - t) * 1000 for ip, t in written.items() if ip in arrived]
    p50, p90, p99 = (_percentile(latencies, q) for q in (50, 90, 99))
    print(f"detection latency, line appended -> ban request at the emulator "
          f"({args.backend} backend, --poll {args.poll})")  # fmt: skip
    print(f"  bans measured : {len(latencies)} of {len(written)} (one line every "
          f"{args.interval * 1000:.0f} ms)")  # fmt: skip
    print(f"  p50           : {p50:8.1f} ms")
    print(f"  p90           : {p90:8.1f} ms")
    print(f"  p99           : {p99:8.1f} ms   goal <= {GOAL_P99_MS:.0f} ms   "
          f"{'met' if p99 <= GOAL_P99_MS else 'NOT met'}")  # fmt: skip
    print(f"  max           : {max(latencies):8.1f} ms   mean {statistics.mean(latencies):.1f} ms")


if __name__ == "__main__":
    main()
