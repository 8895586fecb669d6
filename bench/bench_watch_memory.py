"""Memory of a jail tracking 1,000,000 distinct failing addresses.

A child process (so nothing else this script allocated counts) imports the daemon's modules,
builds a :class:`cfban.jail.Jail` (``maxretry = 5``), and feeds it one failure from each of
N distinct addresses (IPv4, plus 10 % IPv6 — below ``maxretry``, so every one stays tracked),
at distinct times as a live log would. It reports VmRSS from ``/proc/self/status`` and
``ru_maxrss`` before and after, and the bytes per tracked address. Printed next to the goal
(<= 300 MB). No pass/fail.

    .venv/bin/python bench/bench_watch_memory.py                  # 1,000,000 addresses
    .venv/bin/python bench/bench_watch_memory.py --addresses 200000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_MB = 300.0


def _vmrss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(count: int) -> None:
    """Runs in the child: fill one jail, print the figures as JSON."""
    sys.path.insert(0, str(ROOT))
    import cfban.watch  # noqa: F401  (the daemon's own imports count, as in production)
    from cfban.jail import Jail

    start = 1_800_000_000.0
    jail = Jail("bench", maxretry=5, findtime=86_400, bantime=3_600, now=lambda: start + count)
    before = _vmrss_kb()
    for i in range(count):
        if i % 10 == 9:
            address = f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1"
        else:
            address = f"{11 + (i >> 24)}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        assert jail.add_failure(address, start + i * 0.001) is None
    after = _vmrss_kb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tracked": len(jail), "before_kb": before, "after_kb": after,
                      "peak_kb": peak}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.addresses)
        return
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--addresses", str(args.addresses)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    rss_mb = figures["after_kb"] / 1024
    grown = (figures["after_kb"] - figures["before_kb"]) * 1024
    print(f"jail memory, {figures['tracked']:,} distinct failing addresses tracked")
    print(f"  RSS before feeding : {figures['before_kb'] / 1024:7.1f} MB (interpreter + cfban)")
    print(f"  RSS after          : {rss_mb:7.1f} MB   goal <= {GOAL_MB:.0f} MB   "
          f"{'met' if rss_mb <= GOAL_MB else 'NOT met'}")  # fmt: skip
    print(f"  peak (ru_maxrss)   : {figures['peak_kb'] / 1024:7.1f} MB")
    print(f"  per address        : {grown / max(1, figures['tracked']):7.0f} bytes")


if __name__ == "__main__":
    main()
