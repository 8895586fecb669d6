"""Sustained lines per second through the whole ``cfban watch`` daemon.

Runs ``cfban watch --from-start --exit-idle`` as a child process over a large pre-generated
nginx log (``bench/out/access-1M.log``, written by ``gen_access_log.py`` if missing) with
two jails on it (``nginx-probes`` and ``nginx-botsearch``): tail, decode, filter, resolve the
real address, count, commit bans and cursors, deliver. Cloudflare is either the dry run (no
token: calls are logged) or the emulator served on loopback by this process.

The rate is lines / (time to exit - exit-idle wait - start-up), start-up being the time to
the daemon's "following" log line; the child's CPU seconds are printed too. No pass/fail.

    .venv/bin/python bench/bench_watch_throughput.py                 # dry run
    .venv/bin/python bench/bench_watch_throughput.py --emulator      # bans go to the emulator
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cfban.clock import FakeClock  # noqa: E402
from tests.cfemu import Emulator, serve  # noqa: E402

DEFAULT_LOG = ROOT / "bench" / "out" / "access-1M.log"
EXIT_IDLE = 1.0
#: No goal was set for this figure; the filter alone is benchmarked by bench_filter.py.
REFERENCE = "no goal set (fail2ban-regex: about 50,000 lines/s)"


@contextlib.contextmanager
def _api(use_emulator: bool) -> Iterator[dict[str, str]]:
    if not use_emulator:
        yield {}
        return
    emulator = Emulator(clock=FakeClock(), rate_limit=10**9)
    with serve(emulator) as url:
        yield {
            "CLOUDFLARE_API_TOKEN": emulator.token,
            "CFBAN_API_URL": url,
            "CFBAN_ZONE_ID": emulator.zone_id,
        }


def _cpu_since(before: resource.struct_rusage) -> float:
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    return now.ru_utime + now.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--emulator", action="store_true", help="deliver to the emulator")
    parser.add_argument(
        "--filters",
        default="nginx-probes,nginx-botsearch",
        help="comma-separated filters, one jail each, all on the log (default: %(default)s)",
    )
    args = parser.parse_args()
    print(json.dumps(run(args.log, args.filters.split(","), emulator=args.emulator)))


def run(
    log: Path, filters: list[str], *, emulator: bool = False, findtime: str = "10m"
) -> dict[str, float]:
    """Run the daemon over ``log`` with one jail per filter; print and return the figures."""
    args = argparse.Namespace(log=log, emulator=emulator)
    if not args.log.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "gen_access_log.py"), "-o", str(args.log)],
            check=True,
        )
    with open(args.log, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))

    with tempfile.TemporaryDirectory() as tmp, _api(args.emulator) as api:
        root = Path(tmp)
        (root / "cfban.toml").write_text(
            f'state_dir = "{root / "state"}"\n'
            "[cloudflare]\nrequests_per_window = 1000000\n"
            + "".join(
                f'[jails.j{n}]\nfilter = "{spec}"\nlogpath = ["{args.log}"]\n'
                f'maxretry = 3\nfindtime = "{findtime}"\nbantime = "30d"\n'
                for n, spec in enumerate(filters)
            ),
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CFBAN_")}
        env.pop("CLOUDFLARE_API_TOKEN", None)
        env.update(api, CFBAN_CONFIG=str(root / "cfban.toml"))
        command = [sys.executable, "-m", "cfban", "watch", "--from-start"]
        command += ["--exit-idle", str(EXIT_IDLE), "--poll", "0.2"]
        started = time.monotonic()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        daemon = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        following: list[float] = []

        def pump() -> None:
            assert daemon.stdout is not None
            for line in daemon.stdout:
                if "following " in line and not following:
                    following.append(time.monotonic())

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        daemon.wait()
        ended = time.monotonic()
        reader.join(timeout=10)
        cpu = _cpu_since(cpu_before)
        status = json.loads((root / "state" / "status.json").read_text())

    metrics = status["metrics"]
    ready = following[0] if following else started
    busy = ended - ready - EXIT_IDLE
    print(f"cfban watch throughput ({'emulator' if args.emulator else 'dry run'} backend), "
          f"{args.log.name}: {lines:,} lines")  # fmt: skip
    print(f"  lines read     : {metrics['lines']:,}   failures {metrics['failures']}   "
          f"bans {metrics['bans']}")  # fmt: skip
    print(f"  start-up       : {ready - started:6.2f} s")
    print(f"  reading        : {busy:6.2f} s wall, {cpu:6.2f} s CPU "
          "(whole run)")  # fmt: skip
    cpu_s = cpu
    print(f"  sustained rate : {metrics['lines'] / busy:10,.0f} lines/s (wall)   {REFERENCE}")
    print(f"  per CPU second : {metrics['lines'] / cpu_s:10,.0f} lines/s (whole run, start-up "
          "included; the figure that does not depend on other load)")  # fmt: skip
    print(f"  load average   : {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return {
        "lines": metrics["lines"],
        "wall": busy,
        "cpu": cpu_s,
        "rate_wall": metrics["lines"] / busy,
        "rate_cpu": metrics["lines"] / cpu_s,
        "failures": sum(metrics["failures"].values()),
    }


if __name__ == "__main__":
    main()
