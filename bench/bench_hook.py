"""Wall time of one fail2ban hook call: ``cfban ban IP --jail J --bantime 600 --background``.

Runs the installed console script (``.venv/bin/cfban``) as a subprocess, as fail2ban's command
action does, against a temporary state directory (no API token: a dry run, so the
background deliverer it starts sends nothing anywhere), and prints median, p90 and min next
to processes for scale: ``/usr/bin/python3 -c pass``, the venv's ``python -c pass``, one ``curl``
process (what the stock Cloudflare action starts per ban, here without a network request)
and the full command (``cfban ban`` without ``--background``). The variants are interleaved
so that load from other work on the machine spreads over all of them. Goal: hook median
<= 150 ms. No pass/fail.

Bytecode: an installed package has its ``.pyc`` files, so the calls run with
``PYTHONPYCACHEPREFIX`` set to a temporary directory (and ``PYTHONDONTWRITEBYTECODE`` unset)
after warm-up calls; ``--cold`` adds a row without any bytecode cache.

    .venv/bin/python bench/bench_hook.py                 # 60 calls per variant
    .venv/bin/python bench/bench_hook.py --calls 100 --cold --importtime
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
CFBAN = ROOT / ".venv" / "bin" / "cfban"
GOAL_MS = 150.0
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"


def address(i: int) -> str:
    """The i-th address of 198.18.0.0/15 (a benchmarking range: ``allow_test_nets``)."""
    return f"198.{18 + i // 64516}.{i // 254 % 254 + 1}.{i % 254 + 1}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds for one run of ``argv`` to exit (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def import_profile(env: dict[str, str], argv: list[str], top: int = 15) -> list[str]:
    """The ``top`` modules by self import time for one hook call (``-X importtime``)."""
    done = subprocess.run([str(VENV_PYTHON), "-X", "importtime", *argv], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            rows.append((int(found.group(1)), int(found.group(2)), found.group(4)))
    total = sum(row[0] for row in rows)
    lines = [f"{len(rows)} modules imported, {total / 1000:.1f} ms of import time in all"]
    for self_us, cumulative, name in sorted(rows, reverse=True)[:top]:
        lines.append(f"  {self_us / 1000:6.1f} ms self {cumulative / 1000:7.1f} ms cum  {name}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=60, help="calls per variant (>= 50)")
    parser.add_argument("--cold", action="store_true", help="add a row without bytecode")
    parser.add_argument("--importtime", action="store_true", help="show the import profile")
    args = parser.parse_args()
    if not CFBAN.exists():
        raise SystemExit(f"{CFBAN} is missing: install cfban into .venv first")
    with tempfile.TemporaryDirectory(prefix="cfban-bench-hook-") as tmp:
        root = Path(tmp)
        config = root / "cfban.toml"
        config.write_text(f'state_dir = "{root / "state"}"\n[realip]\nallow_test_nets = true\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("CFBAN_")}
        env.pop("CLOUDFLARE_API_TOKEN", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(PYTHONPYCACHEPREFIX=str(root / "pycache"), CFBAN_CONFIG=str(config))
        cold = dict(env, PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(root / "none"))
        counter = iter(range(1, 10**6))

        def hook(environment: dict[str, str]) -> Callable[[], float]:
            return lambda: timed([str(CFBAN), "ban", address(next(counter)), "--jail", "bench",
                                  "--bantime", "600", "--background"], environment)  # fmt: skip

        def full() -> float:
            return timed([str(CFBAN), "ban", address(next(counter)), "--jail", "bench",
                          "--bantime", "600"], env)  # fmt: skip

        variants: dict[str, Callable[[], float]] = {
            "/usr/bin/python3 -c pass": lambda: timed([SYSTEM_PYTHON, "-c", "pass"], env),
            ".venv/bin/python -c pass": lambda: timed([str(VENV_PYTHON), "-c", "pass"], env),
        }
        curl = shutil.which("curl")
        if curl:
            variants["curl -s file:///dev/null (one curl)"] = lambda: timed(
                [curl, "-s", "-o", "/dev/null", "file:///dev/null"], env
            )
        variants["cfban ban ... --background (hook)"] = hook(env)
        if args.cold:
            variants["  the same without bytecode cache"] = hook(cold)
        variants["cfban ban ... (full command)"] = full
        for _ in range(3):  # warm-up: bytecode cache, state database, deliverer started
            hook(env)()
            full()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.calls):
            for name, call in variants.items():
                times[name].append(call())
        print(f"one call, wall time over {args.calls} calls each (subprocess, interleaved)")
        print(f"{'':40} {'median':>8} {'p90':>8} {'min':>8}")
        for name, values in times.items():
            print(f"{name:40} {statistics.median(values):6.1f}ms {percentile(values, 90):6.1f}ms"
                  f" {min(values):6.1f}ms")  # fmt: skip
        median = statistics.median(times["cfban ban ... --background (hook)"])
        print(f"goal: hook median <= {GOAL_MS:.0f} ms: {'met' if median <= GOAL_MS else 'NOT met'}")
        if args.importtime:
            print("\nimports of one hook call (python -X importtime), by self time:")
            argv = [str(CFBAN), "ban", address(next(counter)), "--jail", "bench", "--bantime",
                    "600", "--background"]  # fmt: skip
            print("\n".join(import_profile(env, argv)))
        time.sleep(0.2)
        lock = root / "state" / "spool" / ".deliverer.lock"
        out = subprocess.run(["fuser", str(lock)], capture_output=True, text=True, timeout=10)
        for pid in out.stdout.split():  # the lingering background deliverer
            os.kill(int(pid), 15)


if __name__ == "__main__":
    main()
