"""What bans cost at Cloudflare with the list backend: requests per flood, burst, trickle,
expiry, a full list, and how a revoked token or a deleted list shows and heals.

Serves the Cloudflare emulator on loopback in this process, strict like the real API: item
pages of 500, one pending bulk operation per account, operations complete 0.5 s after they
were sent (however often they are polled). ``cfban watch`` runs as a child process on a log
this script writes (``maxretry = 1``: every line is a ban); the fail2ban hook is
``cfban ban IP --background``. Each figure is printed beside the figure measured before
this version and beside the stock fail2ban Cloudflare action (one request per ban, two per
unban). No pass/fail.

    .venv/bin/python bench/bench_budget.py                   # every scenario (~6 minutes)
    .venv/bin/python bench/bench_budget.py flood expiry      # some of them
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cfban.clock import SystemClock  # noqa: E402
from cfban.cloudflare._stats import route_of  # noqa: E402
from tests.cfemu import Emulator, serve  # noqa: E402
from tests.cfemu._state import Plan  # noqa: E402

LINE = '{ip} - - [{date}] "GET /.env HTTP/1.1" 404 153 "-" "curl/8"\n'
RESULTS: list[tuple[str, str, str, str, str]] = []


def _address(i: int) -> str:
    """Distinct public-looking IPv4 addresses (never contacted: the API is the emulator)."""
    return f"11.{i // 64516 % 254 + 1}.{i // 254 % 254 + 1}.{i % 254 + 1}"


def _lines(ips: list[str]) -> str:
    date = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return "".join(LINE.format(ip=ip, date=date) for ip in ips)


def _wait(what: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(step)
    return what()


def _record(name: str, measured: str, goal: str, before: str, stock: str) -> None:
    RESULTS.append((name, measured, goal, before, stock))
    print(f"  {name}: {measured} (goal {goal}; before {before}; stock fail2ban {stock})")


class Receiver:
    """A webhook receiver on loopback that keeps every JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


class Rig:
    """One emulator, one configuration, one state directory, and the daemon when started."""

    def __init__(self, root: Path, url: str, emu: Emulator, **config: Any) -> None:
        self.root, self.url, self.emu = root, url, emu
        self.log = root / "access.log"
        self.log.touch()
        notify = f'[notify]\nwebhook_url = "{config["webhook"]}"\n' if "webhook" in config else ""
        (root / "cfban.toml").write_text(
            f'state_dir = "{root / "state"}"\n'
            f'[cloudflare]\nbackend = "list"\nzone_id = "{emu.zone_id}"\n'
            f'account_id = "{emu.account_id}"\non_full = "{config.get("on_full", "evict")}"\n'
            f"{notify}"
            f'[jails.bench]\nfilter = "nginx-probes"\nlogpath = ["{self.log}"]\n'
            f'maxretry = 1\nfindtime = "10m"\nbantime = "{config.get("bantime", "1d")}"\n',
            encoding="utf-8",
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CFBAN_")}
        self.env.update(
            CLOUDFLARE_API_TOKEN=emu.token,
            CFBAN_API_URL=url,
            CFBAN_CONFIG=str(root / "cfban.toml"),
        )
        self.daemon: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def watch(self, *args: str) -> None:
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "cfban", "watch", "--poll", "1", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        following = threading.Event()

        def pump() -> None:
            assert self.daemon is not None and self.daemon.stdout is not None
            for line in self.daemon.stdout:
                self.output.append(line)
                if "following " in line:
                    following.set()

        threading.Thread(target=pump, daemon=True).start()
        if not following.wait(60):
            self.stop()
            raise SystemExit("cfban watch did not start:\n" + "".join(self.output[-20:]))

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
            self.daemon = None

    def cfban(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cfban", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def append(self, ips: list[str]) -> None:
        with self.log.open("a", encoding="utf-8") as out:
            out.write(_lines(ips))

    def listed(self) -> set[str]:
        try:
            return set(self.emu.list_ips("cfban"))
        except Exception:  # no list yet
            return set()

    def mark(self) -> int:
        return len(self.emu.log.entries)

    def since(self, mark: int) -> int:
        return len(self.emu.log.entries) - mark

    def idle(self, quiet: float = 3.0, timeout: float = 120.0) -> None:
        """Wait until no request reached the emulator for ``quiet`` seconds."""
        end = time.monotonic() + timeout
        seen, since = self.mark(), time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.2)
            now = self.mark()
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return


@contextlib.contextmanager
def rig(plan: Plan = "free", rate_limit: int = 10**9, **config: Any) -> Iterator[Rig]:
    emu = Emulator(clock=SystemClock(), plan=plan, rate_limit=rate_limit)
    emu.options.items_per_page = 500
    emu.options.bulk_polls = 10**6  # polls never finish an operation: only time does
    emu.options.bulk_seconds = 0.5
    with tempfile.TemporaryDirectory() as tmp, serve(emu) as url:
        made = Rig(Path(tmp), url, emu, **config)
        try:
            yield made
        finally:
            made.stop()


# -- scenarios ------------------------------------------------------------------------------


def flood_and_expiry() -> None:
    print("flood: 5,000 offenders through cfban watch, then their expiry")
    ips = [_address(i) for i in range(5000)]
    with rig(bantime="60s") as r:
        r.append(ips)
        started = time.monotonic()
        r.watch("--from-start")
        ok = _wait(lambda: len(r.listed()) == 5000, 120)
        listed_after, took = r.mark(), time.monotonic() - started
        _record("flood, requests from watch start to all listed", f"{listed_after}"
                + ("" if ok else " (NOT all listed)"), "<= 20", "73", "5,000")  # fmt: skip
        print(f"    all listed {took:.1f} s after start")
        r.idle(quiet=13.0)  # ids are learnt after 10 s without a write
        settle = r.since(listed_after)
        print(f"    then, while idle, ids of the new items learnt with {settle} requests")
        before_expiry = r.mark()
        ok = _wait(lambda: not r.listed(), 180)
        _record("expiry of 5,000 listed bans", f"{r.since(before_expiry)}"
                + ("" if ok else " (NOT all removed)"), "<= 20", "(not measured)",
                "10,000 (GET + DELETE per unban)")  # fmt: skip
        _record("flood + id learning + expiry, whole life of 5,000 bans",
                f"{r.mark()}", "-", "-", "15,000")  # fmt: skip


def burst() -> None:
    print("burst: 200 hook calls (cfban ban IP --background, 8 at a time) in ~10 s")
    ips = [_address(10000 + i) for i in range(200)]
    with rig() as r:
        r.watch()
        warm = _address(9999)  # the first ban creates the list and its rule: done beforehand
        r.append([warm])
        _wait(lambda: warm in r.listed(), 30)
        r.idle(quiet=2.0)
        print(f"    set-up before the burst (list, rule, a first ban): {r.mark()} requests")
        mark, start = r.mark(), time.monotonic()

        def call(i: int) -> int:
            time.sleep(max(0.0, start + i * 0.05 - time.monotonic()))
            return r.cfban("ban", ips[i], "--jail", "bench", "--background").returncode

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(call, range(200)))
        ok = _wait(lambda: r.listed() >= set(ips), 120)
        spent = time.monotonic() - start
        r.idle(quiet=3.0)
        _record("burst, 200 hook calls with the daemon running", f"{r.since(mark)}"
                + ("" if ok else " (NOT all listed)"), "<= 20", "91", "200")  # fmt: skip
        print(f"    exit codes {sorted(set(codes))}; all listed {spent:.1f} s after the first")


def trickle(size: int) -> None:
    print(f"trickle: 10 bans 3 s apart into a list already holding {size:,} cfban items")
    with rig() as r:
        r.emu.seed_list("cfban")
        r.emu.seed_custom_rule(
            "(ip.src in $cfban)",
            ref="cfban_cfban",
            description="cfban v1 rule: clients banned by cfban",
        )
        far = int(time.time()) + 86400
        r.emu.seed_items(
            "cfban",
            [(_address(20000 + i), f"cfban v1 exp={far} jails=old") for i in range(size)],
        )
        mark = r.mark()
        r.watch()
        r.idle(quiet=2.0)
        print(f"    start-up (list, rule, one read of the list into the mirror): {r.since(mark)}")
        mark = r.mark()
        ips = [_address(40000 + i) for i in range(10)]
        for ip in ips:
            r.append([ip])
            time.sleep(3)
        ok = _wait(lambda: r.listed() >= set(ips), 30)
        r.idle(quiet=3.0)
        per_ban = r.since(mark) / len(ips)
        before = "6" if size == 5000 else "(not measured)"
        _record(f"trickle into {size:,} items, requests per ban", f"{per_ban:.1f}"
                + ("" if ok else " (NOT all listed)"), "<= 3", before, "1")  # fmt: skip


def full(policy: str) -> None:
    print(f"full list, on_full = {policy}: 12,000 offenders, Free plan (10,000 items)")
    receiver = Receiver()
    ips = [_address(50000 + i) for i in range(12000)]
    port = _free_port()
    with rig(rate_limit=1200, on_full=policy, webhook=receiver.url) as r:
        r.append(ips)
        started = time.monotonic()
        r.watch("--from-start", "--metrics", f"127.0.0.1:{port}")
        _wait(lambda: len(r.listed()) >= 10000, 180, step=0.5)
        full_at = time.monotonic()
        time.sleep(15)  # the overflow is handled by then
        mark = r.mark()
        time.sleep(60)
        first_minute = r.since(mark)
        mark = r.mark()
        time.sleep(60)
        per_minute = r.since(mark)
        routes = Counter(
            f"{e.method} {route_of(e.path)} {e.status}"
            for e in r.emu.log.entries[mark - first_minute :]
        )
        print(f"    requests once full, by route: {dict(routes.most_common())}")
        listed = r.listed()
        newest = set(ips[-2000:])
        status = r.cfban("status").stdout
        health = r.cfban("health")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        _record(f"full list ({policy}), requests in the 1st / 2nd minute once full",
                f"{first_minute} / {per_minute}", "<= 10", "248", "1 per ban")  # fmt: skip
        spilled = len(r.emu.access_rules())
        what = {
            "evict": f"newest 2,000 offenders listed: {len(newest & listed)} of 2,000",
            "hold": f"list holds {len(listed):,}; {len(newest - listed):,} newest offenders wait",
            "spill": f"list holds {len(listed):,}; {spilled} spilled to access rules so far",
        }[policy]
        print(f"    {what}; the list reached 10,000 items {full_at - started:.0f} s after start")
        print(
            f"    webhook calls: {len(receiver.bodies)} {[b.get('event') for b in receiver.bodies]}"
        )
        for line in status.splitlines():
            if line.startswith(("list:", "delivery waits", "request budget")):
                print(f"    status: {line}")
        said = health.stdout.strip() or health.stderr.strip()
        print(f"    health: exit {health.returncode}: {said}")
        for line in metrics.decode().splitlines():
            if line.startswith(
                ("cfban_list_fill_ratio", "cfban_budget_left", "cfban_queue_depth")
            ) or (line.startswith("cfban_delivery_problem{") and line.endswith(" 1")):
                print(f"    metric: {line}")
    receiver.close()


def revoked_and_deleted() -> None:
    print("revoked token, then a deleted list, while bans keep coming (one every 0.5 s)")
    with rig() as r:
        r.watch()
        sent: list[str] = []
        stop = threading.Event()

        def feed() -> None:
            i = 0
            while not stop.is_set():
                ip = _address(70000 + i)
                r.append([ip])
                sent.append(ip)
                i += 1
                time.sleep(0.5)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(5)
        token = r.emu.state.tokens[r.emu.token]
        token.status = "disabled"
        revoked = time.monotonic()
        mark = r.mark()
        seen = _wait(lambda: "token_invalid" in r.cfban("status").stdout, 90, step=1.0)
        shown = time.monotonic() - revoked
        health = r.cfban("health")
        _record("revoked token: visible in cfban status", f"{shown:.0f} s" if seen else "NOT seen",
                "<= 60 s", "never (silent)", "never (curl exits 0)")  # fmt: skip
        print(f"    health: exit {health.returncode}: {health.stderr.strip()[:160]}")
        time.sleep(30)
        print(f"    requests while revoked (until {time.monotonic() - revoked:.0f} s): "
              f"{r.since(mark)}")  # fmt: skip
        token.status = "active"
        fixed = time.monotonic()
        time.sleep(2)
        snapshot = list(sent)
        landed = _wait(lambda: r.listed() >= set(snapshot), 120, step=0.5)
        print(f"    after the fix: {len(snapshot)} bans queued so far "
              f"{'all listed' if landed else 'NOT all listed'} {time.monotonic() - fixed:.0f} s "
              "after it")  # fmt: skip
        # someone deletes the custom rule, then the list, in the dashboard
        with r.emu._lock:
            r.emu.state.rulesets.clear()
            r.emu.state.lists.clear()
        deleted = time.monotonic()
        time.sleep(3)
        stop.set()
        feeder.join()
        landed = _wait(lambda: r.listed() >= set(sent), 90, step=0.5)
        _record("deleted list: every ban (old and new) listed again",
                f"{time.monotonic() - deleted:.0f} s" if landed else "NOT healed",
                "<= 60 s", "-", "-")  # fmt: skip
        rules = r.emu.custom_rules(r.emu.zone_id)
        print(f"    list and rule made again: {bool(r.listed())}, {len(rules)} rule(s)")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _trickles() -> None:
    trickle(5000)
    trickle(9000)


def _fulls() -> None:
    for policy in ("evict", "hold", "spill"):
        full(policy)


SCENARIOS: dict[str, Callable[[], None]] = {
    "flood": flood_and_expiry,
    "burst": burst,
    "trickle": _trickles,
    "full": _fulls,
    "full-evict": lambda: full("evict"),
    "full-hold": lambda: full("hold"),
    "full-spill": lambda: full("spill"),
    "token": revoked_and_deleted,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="*", choices=[*SCENARIOS, []], default=[])
    args = parser.parse_args()
    default = ["flood", "burst", "trickle", "full", "token"]
    for name in args.scenario or default:
        SCENARIOS[name]()
    print("\n| figure | measured | goal | before | stock fail2ban action |")
    print("|---|---|---|---|---|")
    for row in RESULTS:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
