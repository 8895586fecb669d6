"""1,000 bans through real fail2ban, side by side: the stock ``cloudflare-token`` action,
cfban's command action (``action = cfban``) and cfban's Python action (``action = cfban.py``).

For each run: a fresh Cloudflare emulator served on loopback in this process, a private
fail2ban configuration directory (Debian's stock files plus ``cfban fail2ban-install``), one
jail (``filter = cfban-nginx-probes``, ``backend = polling``, ``maxretry = 1``, ``bantime =
1h``) reading a log into which 1,000 attack lines for 1,000 distinct addresses from
198.18.0.0/15 are appended in one write. Measured:

* wall time from that write until all 1,000 addresses are present at the emulator (its state
  is read directly: zone access rules, or the items of cfban's IP list);
* API requests from that write until the requests stop (one quiet second);
* a fail2ban restart with the 1,000 bans active (``fail2ban-client stop``, then ``start``,
  waiting until the jail reports 1,000 bans again): API requests during stop + start.

cfban runs with ``[realip] allow_test_nets = true`` (the addresses are a benchmarking range,
which cfban refuses otherwise) and a client-side request budget high enough not to throttle;
the emulator's rate limit is off for every run (Cloudflare's 1,200 requests per 5 minutes
would otherwise stop the stock action half-way). Prints a table and the ratios against the
stock action next to the goals. No pass/fail.

    .venv/bin/python bench/bench_fail2ban.py                 # all but cmd-rules
    .venv/bin/python bench/bench_fail2ban.py --only cmd-rules
    .venv/bin/python bench/bench_fail2ban.py --only stock py-list --bans 300
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cfban.clock import FakeClock  # noqa: E402
from tests.cfemu import Emulator, serve  # noqa: E402
from tests.support.fail2ban import Fail2ban  # noqa: E402

CFBAN = ROOT / ".venv" / "bin" / "cfban"
JAIL = "bench-probes"
LINE = '{ip} - - [{date}] "GET /.env HTTP/1.1" 404 153 "-" "curl/8"\n'
RUNS = {
    "stock": "stock cloudflare-token (access rules)",
    "cmd-list": "cfban command action, list backend",
    "py-list": "cfban.py Python action, list backend",
    "cmd-rules": "cfban command action, access-rules backend",
    "py-rules": "cfban.py Python action, access-rules backend",
    "noop": "reference: a Python action doing nothing",
}
# cmd-rules is left out by default to keep a run near five minutes: its hook calls are the
# same as cmd-list's, only the requests differ (one per ban, like py-rules).
DEFAULT_RUNS = ["noop", "stock", "py-list", "py-rules", "cmd-list"]
NOOP_ACTION = """from fail2ban.server.actions import ActionBase


class NoopAction(ActionBase):
    def ban(self, aInfo):
        pass

    def unban(self, aInfo):
        pass


Action = NoopAction
"""


def address(i: int) -> str:
    """The i-th address of 198.18.0.0/15 (i < 130,000), skipping .0 and .255."""
    return f"198.{18 + i // 64516}.{i // 254 % 254 + 1}.{i % 254 + 1}"


@dataclass
class Result:
    """One run's figures."""

    name: str
    banned: int = 0
    seconds: float | None = None
    requests: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    restart_requests: int | None = None
    restart_kinds: Counter[str] = field(default_factory=Counter)
    restart_seconds: float | None = None
    restored: int = 0
    f2b_seconds: float | None = None
    note: str = ""


def present(emulator: Emulator) -> set[str]:
    """Addresses banned at the emulator: zone/account access rules and list items."""
    for _ in range(20):
        try:
            found = {rule.value for rule in list(emulator.state.access_rules.values())}
            for ip_list in list(emulator.state.lists.values()):
                found.update(str(net.network_address) for net in list(ip_list.items))
            return found
        except RuntimeError:  # changed while read by the server thread; read again
            time.sleep(0.001)
    return set()


def kinds(emulator: Emulator, start: int, end: int | None = None) -> Counter[str]:
    """Requests in the log slice, as ``METHOD last-path-part`` counts."""
    counts: Counter[str] = Counter()
    for entry in emulator.log.entries[start:end]:
        tail = entry.path.rstrip("/").split("/")[-1]
        counts[f"{entry.method} {tail if not tail.isalnum() or len(tail) < 32 else '<id>'}"] += 1
    return counts


def last_ban_seconds(f2b: Fail2ban, since: float) -> float | None:
    """Seconds from wall-clock ``since`` to the last ``Ban`` line in fail2ban's log."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*\] Ban ", f2b.log(), re.M)
    if not stamps:
        return None
    day, ms = stamps[-1]
    return time.mktime(time.strptime(day, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000 - since


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step)
    return check()


def settle(emulator: Emulator, quiet: float, timeout: float = 60.0) -> int:
    """Wait until no request has arrived for ``quiet`` seconds; return the request count."""
    end = time.monotonic() + timeout
    count, since = len(emulator.log), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = len(emulator.log)
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return count


def child_env(pycache: Path) -> dict[str, str]:
    """fail2ban's (and so the actions') environment: cfban's bytecode cached, as installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFBAN_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def server_pid(f2b: Fail2ban) -> int | None:
    try:
        return int((f2b.run_dir / "fail2ban.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_fail2ban(f2b: Fail2ban, timeout: float = 240.0) -> None:
    """``fail2ban-client stop`` and wait for the server to exit (killed after ``timeout``)."""
    pid = server_pid(f2b)
    try:
        f2b.client("stop", timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    if pid is not None and not wait_for(lambda: not alive(pid), timeout, 0.1):
        os.kill(pid, signal.SIGKILL)


def current_bans(f2b: Fail2ban) -> int:
    out = f2b.client("status", JAIL, timeout=30)
    for line in out.stdout.splitlines():
        if "Currently banned:" in line:
            return int(line.rsplit(":", 1)[1])
    return -1


def jail_action(run: str, emulator: Emulator, base_url: str, root: Path) -> str:
    """The jail's ``action =`` value; writes cfban's configuration for the cfban runs."""
    if run == "noop":
        return "benchnoop.py"
    if run == "stock":
        rules = f"{base_url}/zones/{emulator.zone_id}/firewall/access_rules/rules"
        return (
            f'cloudflare-token[cfzone="{emulator.zone_id}", cftoken="{emulator.token}", '
            f'notes="Fail2Ban_<name>", _cf_api_url="{rules}"]'
        )
    token = root / "token"
    token.write_text(emulator.token)
    token.chmod(0o600)
    config = root / "cfban.toml"
    backend = "list" if run.endswith("-list") else "access-rules"
    config.write_text(
        f'state_dir = "{root / "state"}"\n'
        "[realip]\nallow_test_nets = true\n"
        f'[cloudflare]\napi_url = "{base_url}"\napi_token_file = "{token}"\n'
        f'backend = "{backend}"\nzone_id = "{emulator.zone_id}"\n'
        f'account_id = "{emulator.account_id}"\nrequests_per_window = 1000000\n',
        encoding="utf-8",
    )
    if backend == "list":
        setup = subprocess.run(
            [str(CFBAN), "--config", str(config), "setup"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if setup.returncode != 0:
            raise SystemExit(f"cfban setup failed: {setup.stdout}{setup.stderr}")
    if run.startswith("cmd"):
        return f'cfban[cfban="{CFBAN} --config {config}"]'
    return f'cfban.py[state_dir="{root / "state"}", cfban="{CFBAN}", config="{config}"]'


@contextmanager
def fail2ban(root: Path, log: Path, action: str, env: dict[str, str]) -> Iterator[Fail2ban]:
    f2b = Fail2ban(root / "f2b")
    installed = subprocess.run(
        [str(CFBAN), "fail2ban-install", "--prefix", str(f2b.conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if installed.returncode != 0:
        raise SystemExit(f"cfban fail2ban-install failed: {installed.stderr}")
    (f2b.conf / "action.d" / "benchnoop.py").write_text(NOOP_ACTION)
    (f2b.conf / "jail.local").write_text(
        f"[{JAIL}]\nenabled = true\nfilter = cfban-nginx-probes\nlogpath = {log}\n"
        "backend = polling\nmaxretry = 1\nfindtime = 10m\nbantime = 1h\n"
        f"action = {action}\n"
    )
    try:
        f2b.start(env=env)
        yield f2b
    finally:
        stop_fail2ban(f2b, timeout=120)


def reap_deliverers(state: Path) -> None:
    """Stop a cfban deliverer still lingering on ``state`` (it holds the spool lock)."""
    lock = state / "spool" / ".deliverer.lock"
    if not lock.exists():
        return
    out = subprocess.run(["fuser", str(lock)], capture_output=True, text=True, timeout=10)
    for pid in out.stdout.split():
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass


def one_run(run: str, bans: int, pycache: Path, timeout: float) -> Result:
    result = Result(RUNS[run])
    emulator = Emulator(clock=FakeClock(), rate_limit=10**9)
    expected = {address(i) for i in range(bans)}
    root = Path(tempfile.mkdtemp(prefix=f"cfban-bench-f2b-{run}-"))
    try:
        with serve(emulator) as base_url:
            log = root / "access.log"
            log.write_text("")
            action = jail_action(run, emulator, base_url, root)
            with fail2ban(root, log, action, child_env(pycache)) as f2b:
                time.sleep(1.0)
                first = len(emulator.log)
                date = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
                text = "".join(LINE.format(ip=ip, date=date) for ip in sorted(expected))
                fd = os.open(log, os.O_WRONLY | os.O_APPEND)
                started, wall = time.monotonic(), time.time()
                os.write(fd, text.encode())
                os.close(fd)
                if run == "noop":
                    done = wait_for(lambda: current_bans(f2b) >= bans, timeout, 0.2)
                    result.f2b_seconds = last_ban_seconds(f2b, wall)
                    result.seconds, result.banned = result.f2b_seconds, current_bans(f2b)
                    return result
                done = wait_for(lambda: expected <= present(emulator), timeout)
                if done:
                    result.seconds = time.monotonic() - started
                result.banned = len(expected & present(emulator))
                result.f2b_seconds = last_ban_seconds(f2b, wall)
                last = settle(emulator, quiet=1.0)
                result.requests = last - first
                result.kinds = kinds(emulator, first, last)
                if not done:
                    result.note = f"only {result.banned} of {bans} banned after {timeout:.0f} s"
                    return result
                wait_for(lambda: current_bans(f2b) == bans, 30, 0.2)
                before = settle(emulator, quiet=1.0)
                restart = time.monotonic()
                stop_fail2ban(f2b)
                f2b.start(env=child_env(pycache))
                wait_for(lambda: current_bans(f2b) >= bans, timeout, 0.2)
                result.restart_seconds = time.monotonic() - restart
                result.restored = current_bans(f2b)
                after = settle(emulator, quiet=2.0)
                result.restart_requests = after - before
                result.restart_kinds = kinds(emulator, before, after)
                if present(emulator) != expected:
                    result.note = "after the restart the emulator holds a different set"
    finally:
        reap_deliverers(root / "state")
        shutil.rmtree(root, ignore_errors=True)
    return result


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[Result], bans: int) -> None:
    stock = next((r for r in results if r.name == RUNS["stock"]), None)
    print(f"\n{bans} bans through fail2ban 1.0.2 (polling backend, maxretry 1), "
          "emulator on loopback")  # fmt: skip
    head = f"{'action':44} {'all banned':>10} {'f2b done':>9} {'requests':>8} " \
           f"{'restart req':>11} {'speed-up':>8} {'req. ratio':>10}"  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in results:
        speed = ratio = None
        if stock and stock.seconds and r.seconds:
            speed = stock.seconds / r.seconds
        if stock and stock.requests:
            ratio = r.requests / stock.requests
        print(f"{r.name:44} {_fmt(r.seconds, '9.2f')}s {_fmt(r.f2b_seconds, '8.2f')}s "
              f"{r.requests:8d} "
              f"{_fmt(r.restart_requests, '11d')} {_fmt(speed, '7.2f')}x "
              f"{_fmt(ratio, '10.3f')}")  # fmt: skip
    print("\ngoals for cfban: >= 5x faster to all-banned, <= 0.1 of the requests, "
          "0 requests on restart")  # fmt: skip
    print("(f2b done: fail2ban's last 'Ban' log line; speed-up and req. ratio: the stock "
          "action's figure divided by / into this one)")  # fmt: skip
    print("\ndetails:")
    for r in results:
        print(
            f"  {r.name}: banned {r.banned}; fail2ban's last Ban line after "
            f"{_fmt(r.f2b_seconds, '.2f')} s; requests {dict(sorted(r.kinds.items()))}"
        )
        print(f"    restart: {_fmt(r.restart_seconds, '.1f')} s, {r.restored} bans restored, "
              f"requests {dict(sorted(r.restart_kinds.items()))}"
              + (f"  NOTE: {r.note}" if r.note else ""))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bans", type=int, default=1000)
    parser.add_argument("--only", nargs="+", choices=list(RUNS), default=DEFAULT_RUNS)
    parser.add_argument("--repeat", type=int, default=1, help="run each this many times")
    parser.add_argument("--timeout", type=float, default=240.0, help="per phase, seconds")
    args = parser.parse_args()
    if shutil.which("fail2ban-server") is None or not CFBAN.exists():
        raise SystemExit("needs fail2ban (Debian's package) and cfban installed in .venv")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cfban-bench-pyc-") as pycache:
        warm = subprocess.run([str(CFBAN), "--help"], env=child_env(Path(pycache)),
                              capture_output=True, timeout=60)  # fmt: skip
        if warm.returncode != 0:
            raise SystemExit("cfban --help failed")
        for run in [run for run in args.only for _ in range(args.repeat)]:
            print(f"running: {RUNS[run]} ...", flush=True)
            results.append(one_run(run, args.bans, Path(pycache), args.timeout))
            r = results[-1]
            print(f"  all banned in {_fmt(r.seconds, '.2f')} s, {r.requests} requests, "
                  f"restart {_fmt(r.restart_requests, 'd')} requests", flush=True)  # fmt: skip
    report(results, args.bans)


if __name__ == "__main__":
    main()
