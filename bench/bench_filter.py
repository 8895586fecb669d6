"""How fast cfban's filter engine reads a log, next to fail2ban's own ``fail2ban-regex``.

Generates the benchmark log if it is missing (``gen_access_log.py``: 1,000,000 lines of
nginx ``combined`` format, about 2 % attacks), then runs, on the same file:

* cfban in-process: ``cfban.testfilter`` (load the filter, feed every line);
* cfban end to end: the ``cfban test-filter FILTER LOG --json`` command;
* ``fail2ban-regex LOG FILTER`` (Debian's, ``/usr/bin/fail2ban-regex``);

each with Debian's stock ``/etc/fail2ban/filter.d/nginx-botsearch.conf`` and with cfban's
bundled ``nginx-botsearch``, and prints lines per second side by side with the ratio and
both match counts. The goal is cfban at least 10 times faster with identical counts.
Rates are per CPU second of the process doing the work (user + system), so that other load
on a shared machine does not skew the ratio; wall-clock times are printed too.

    python bench/bench_filter.py                  # the whole comparison
    python bench/bench_filter.py --lines 100000   # a smaller log
    python bench/bench_filter.py --profile        # also: where cfban's time goes

Not a test: it takes a few minutes on 2 cores (fail2ban-regex needs about 20 s per million
lines). Exit status 1 when the match counts differ.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STOCK_FILTER = Path("/etc/fail2ban/filter.d/nginx-botsearch.conf")
FAIL2BAN_REGEX = "/usr/bin/fail2ban-regex"
_LINES_RE = re.compile(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched", re.M)


@dataclass
class Run:
    """One timed run: wall-clock seconds and CPU seconds (user + system) of the work."""

    tool: str
    filter: str
    lines: int
    matched: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        """Lines per CPU second: what the engine costs, whatever else runs on the machine."""
        return self.lines / self.cpu if self.cpu else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ensure_log(path: Path, lines: int) -> None:
    if path.exists():
        return
    print(f"generating {path} ({lines} lines) ...", file=sys.stderr)
    subprocess.run(
        [sys.executable, str(HERE / "gen_access_log.py"), "-n", str(lines), "-o", str(path)],
        check=True,
    )


def run_in_process(log: Path, spec: str) -> Run:
    from cfban.testfilter import open_filter, run_filter

    start, cpu = time.perf_counter(), time.process_time()
    flt = open_filter(spec)
    with log.open("rb") as stream:
        report = run_filter(flt, stream, source=str(log))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Run("cfban (in-process)", spec, report.lines, report.matched, seconds, cpu)


def _cfban_command() -> list[str]:
    installed = Path(sys.executable).parent / "cfban"
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "cfban"]


def run_command(log: Path, spec: str) -> Run:
    start, cpu = time.perf_counter(), _children_cpu()
    out = subprocess.run(
        [*_cfban_command(), "test-filter", spec, str(log), "--json"],
        capture_output=True,
        check=True,
    )
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    report = json.loads(out.stdout)
    lines, matched = report["lines"], report["matched"]
    return Run("cfban test-filter --json", spec, lines, matched, seconds, cpu)


def run_fail2ban(log: Path, spec: str) -> Run | None:
    program = shutil.which(FAIL2BAN_REGEX) or shutil.which("fail2ban-regex")
    if program is None:
        print("fail2ban-regex not found (apt-get install fail2ban)", file=sys.stderr)
        return None
    start, cpu = time.perf_counter(), _children_cpu()
    out = subprocess.run([program, str(log), spec], capture_output=True, text=True, check=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    found = _LINES_RE.search(out.stdout)
    if found is None:
        raise RuntimeError(f"unexpected fail2ban-regex output:\n{out.stdout[-2000:]}")
    lines, matched = int(found.group(1)), int(found.group(3))
    return Run("fail2ban-regex", spec, lines, matched, seconds, cpu)


def profile(log: Path, spec: str, top: int = 25) -> str:
    from cfban.testfilter import open_filter, run_filter

    flt = open_filter(spec)
    profiler = cProfile.Profile()
    with log.open("rb") as stream:
        profiler.runcall(run_filter, flt, stream)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--log", type=Path, default=None, help="use this log instead")
    parser.add_argument("--no-fail2ban", action="store_true", help="skip fail2ban-regex")
    parser.add_argument("--profile", action="store_true", help="profile cfban (in-process)")
    args = parser.parse_args(argv)
    log = args.log
    if log is None:
        suffix = f"{args.lines // 1_000_000}M" if args.lines % 1_000_000 == 0 else str(args.lines)
        log = HERE / "out" / f"access-{suffix}.log"
        ensure_log(log, args.lines)
    expected_file = Path(f"{log}.expected.json")
    expected = json.loads(expected_file.read_text()) if expected_file.exists() else {}

    specs = [str(ROOT / "filters" / "nginx-botsearch.conf")]
    if STOCK_FILTER.exists():
        specs.insert(0, str(STOCK_FILTER))
    failed = False
    print(f"log: {log} ({log.stat().st_size / 1e6:.0f} MB)")
    if expected:
        print(f"generator: {expected.get('botsearch')} bot-search lines built in")
    for spec in specs:
        label = "Debian stock" if spec == str(STOCK_FILTER) else "cfban bundled"
        print(f"\nnginx-botsearch, {label}: {spec}")
        runs = [run_in_process(log, spec), run_command(log, spec)]
        reference = None if args.no_fail2ban else run_fail2ban(log, spec)
        if reference is not None:
            runs.append(reference)
        for run in runs:
            ratio = f"{run.rate / reference.rate:5.1f}x" if reference else "     "
            print(
                f"  {run.tool:<26} {run.lines:>9} lines {run.seconds:7.2f} s wall "
                f"{run.cpu:7.2f} s CPU {run.rate:>10,.0f} lines/CPU-s  {ratio}  "
                f"matched {run.matched}"
            )
        counts = {run.matched for run in runs}
        if expected.get("botsearch") is not None:
            counts.add(int(expected["botsearch"]))
        if len(counts) != 1:
            failed = True
            print(f"  MATCH COUNTS DIFFER: {sorted(counts)}")
    if args.profile:
        print(f"\nprofile of cfban in-process, {specs[-1]}:")
        print(profile(log, specs[-1]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
