"""``cfban watch`` and ``fail2ban-server`` on the same 1,000,000-line log, the same jails.

Both daemons read a copy of ``bench/out/access-1M.log`` (made by ``gen_access_log.py`` if
missing) from its start, with one jail per filter on it:

* cfban's bundled access-log filters — nginx-4xx, nginx-bad-request, nginx-botsearch,
  nginx-probes (for fail2ban: the same files, installed as ``cfban-*`` by
  ``cfban fail2ban-install``);
* Debian's stock nginx-botsearch and nginx-bad-request (the stock filters for this log).

``maxretry = 3``, ``findtime = 30d`` (every line of the log is recent enough to count for
both), no action (fail2ban) / dry run (cfban). Two sentinel lines with the current time and
addresses of 198.18.0.0/15 are appended to the copy; fail2ban is done when each jail has
logged ``Found`` for its sentinel (it reads each file in order), cfban when it exits idle.
Lines per second are per wall second (start command to done) and per CPU second of the
daemon process. Then cfban alone with one jail against the six (nginx-botsearch, and
nginx-4xx, the jail with the most failures): the cost of more jails on one file. With
``--repeat N`` the three cfban runs are made N times in turn and each keeps its run with the
least CPU (on a shared machine the others' load only ever adds).

    .venv/bin/python bench/bench_watch_vs_fail2ban.py            # ~3-5 minutes
    .venv/bin/python bench/bench_watch_vs_fail2ban.py --skip-fail2ban --repeat 3
    .venv/bin/python bench/bench_watch_vs_fail2ban.py --log bench/out/access-1M-seed7.log
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_watch_throughput import run as run_cfban  # noqa: E402

from tests.support.fail2ban import Fail2ban  # noqa: E402

LOG = ROOT / "bench" / "out" / "access-1M.log"
CFBAN = Path(sys.executable).parent / "cfban"
STOCK = Path("/etc/fail2ban/filter.d")
BUNDLED = ["nginx-4xx", "nginx-bad-request", "nginx-botsearch", "nginx-probes"]
STOCK_FILTERS = ["nginx-botsearch", "nginx-bad-request"]
FINDTIME = "30d"
SENTINEL_BOT = "198.18.7.1"  # a bot-search 404: botsearch, 4xx, probes
SENTINEL_BAD = "198.18.7.2"  # a 400: bad-request, 4xx


def _sentinels() -> bytes:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    referer_ua = '"-" "bench"'
    return (
        f'{SENTINEL_BOT} - - [{stamp}] "GET /wp-login.php HTTP/1.1" 404 153 {referer_ua}\n'
        f'{SENTINEL_BAD} - - [{stamp}] "\\x16\\x03\\x01" 400 157 {referer_ua}\n'
    ).encode()


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_fail2ban(log: Path, root: Path, timeout: float) -> dict[str, float]:
    f2b = Fail2ban(root / "f2b")
    installed = subprocess.run(
        [str(CFBAN), "fail2ban-install", "--prefix", str(f2b.conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if installed.returncode != 0:
        raise SystemExit(f"cfban fail2ban-install failed: {installed.stderr}")
    jails = {f"c-{name}": f"cfban-{name}" for name in BUNDLED}
    jails.update({f"d-{name}": name for name in STOCK_FILTERS})
    (f2b.conf / "jail.local").write_text(
        "".join(
            f"[{jail}]\nenabled = true\nfilter = {flt}\nlogpath = {log}\n"
            f"backend = polling\nmaxretry = 3\nfindtime = {FINDTIME}\nbantime = 1h\naction =\n"
            for jail, flt in jails.items()
        )
    )
    start = time.monotonic()
    f2b.start()
    pid = int((f2b.run_dir / "fail2ban.pid").read_text())
    found = re.compile(r"\[([\w-]+)\] Found (198\.18\.7\.[12])")
    done: set[str] = set()
    deadline = start + timeout
    cpu = 0.0
    while time.monotonic() < deadline and done != set(jails):
        time.sleep(0.2)
        done = {m.group(1) for m in found.finditer(f2b.log())}
        cpu = _cpu_of(pid)
    wall = time.monotonic() - start
    f2b.stop()
    if done != set(jails):
        print(f"fail2ban did not finish within {timeout:.0f} s: done {sorted(done)}")
    lines = sum(1 for _ in log.open("rb"))
    return {"lines": lines, "wall": wall, "cpu": cpu, "jails": len(jails)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-fail2ban", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--repeat", type=int, default=1, help="cfban runs of each (least CPU)")
    parser.add_argument(
        "--log", type=Path, default=LOG, help="another access log (e.g. gen_access_log.py --seed 7)"
    )
    args = parser.parse_args()
    source: Path = args.log
    if not source.exists():
        command = [sys.executable, str(ROOT / "bench" / "gen_access_log.py"), "-o", str(source)]
        subprocess.run(command, check=True)
    filters = BUNDLED + [str(STOCK / f"{name}.conf") for name in STOCK_FILTERS]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "access.log"
        shutil.copyfile(source, log)
        with log.open("ab") as out:
            out.write(_sentinels())
        print(f"log: {source.name} + 2 sentinel lines, jails: {', '.join(filters)}", flush=True)
        runs: dict[str, list[dict[str, float]]] = {"six": [], "one": [], "heavy": []}
        for _ in range(max(1, args.repeat)):
            runs["six"].append(run_cfban(log, filters, findtime=FINDTIME))
            runs["one"].append(run_cfban(log, ["nginx-botsearch"], findtime=FINDTIME))
            runs["heavy"].append(run_cfban(log, ["nginx-4xx"], findtime=FINDTIME))
        six, one, heavy = (min(runs[name], key=lambda run: run["cpu"]) for name in runs)
        ref = None if args.skip_fail2ban else run_fail2ban(log, root, args.timeout)
    print(f"\nsummary{f' (least CPU of {args.repeat} runs each)' if args.repeat > 1 else ''}")
    print(f"  cfban watch, 6 jails : {six['rate_wall']:>9,.0f} lines/s wall "
          f"{six['rate_cpu']:>9,.0f} lines/s per CPU second")  # fmt: skip
    print(f"  cfban watch, 1 jail  : {one['rate_wall']:>9,.0f} lines/s wall "
          f"{one['rate_cpu']:>9,.0f} lines/s per CPU second")  # fmt: skip
    print(f"  cfban watch, 1 jail  : {heavy['rate_wall']:>9,.0f} lines/s wall "
          f"{heavy['rate_cpu']:>9,.0f} lines/s per CPU second (nginx-4xx, busiest)")  # fmt: skip
    print(f"  six jails cost {six['cpu'] / one['cpu']:.2f}x one jail (nginx-botsearch), "
          f"{six['cpu'] / heavy['cpu']:.2f}x the busiest one (CPU; goal <= 2x); "
          f"{six['cpu']:.2f} s, {one['cpu']:.2f} s, {heavy['cpu']:.2f} s CPU")  # fmt: skip
    if ref is not None:
        rate_wall, rate_cpu = ref["lines"] / ref["wall"], ref["lines"] / ref["cpu"]
        print(f"  fail2ban-server, 6 jails: {rate_wall:>9,.0f} lines/s wall "
              f"{rate_cpu:>9,.0f} lines/s per CPU second "
              f"({ref['wall']:.1f} s wall, {ref['cpu']:.1f} s CPU)")  # fmt: skip
        print(f"  cfban / fail2ban-server: {six['rate_wall'] / rate_wall:.1f}x wall, "
              f"{six['rate_cpu'] / rate_cpu:.1f}x per CPU second (goal >= 10x)")  # fmt: skip
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
