"""How fast cfban's filter engine reads a log, next to fail2ban's own ``fail2ban-regex``.

Generates the benchmark logs if they are missing (``gen_access_log.py``: 1,000,000 lines of
nginx ``combined`` format, about 2 % attacks; ``gen_error_log.py``: 1,000,000 lines of nginx
error log, about 6 % of them what the error-log filters look for), then runs every bundled
filter and every Debian stock nginx filter (``/etc/fail2ban/filter.d/nginx-*.conf``) over the
log it is made for, each as a whole process on the same file:

* ``cfban test-filter FILTER LOG --json``
* ``fail2ban-regex LOG FILTER`` (Debian's, ``/usr/bin/fail2ban-regex``)

and prints, per filter, lines per CPU second and per wall-clock second of each, the ratio
(per CPU second: what the engine costs, whatever else runs on a shared machine; wall in
parentheses), both match counts (they must be equal), then the median ratio. cfban runs
with its bytecode cached (``bench/out/pycache``), as an installed package has it.

    python bench/bench_filter.py                       # the whole table (a few minutes)
    python bench/bench_filter.py --reference-lines 200000   # fail2ban-regex on 200k lines
    python bench/bench_filter.py --only nginx-botsearch --no-fail2ban
    python bench/bench_filter.py --profile             # also: where cfban's time goes
    python bench/bench_filter.py --seed 7              # other generated logs, same sizes

With ``--reference-lines N`` both tools also run on the first N lines (identical counts are
checked there) and fail2ban-regex's rate is taken from that run. Exit status 1 when match
counts differ. Not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STOCK_DIR = Path("/etc/fail2ban/filter.d")
STOCK_FILTER = STOCK_DIR / "nginx-botsearch.conf"
ACCESS_FILTERS = ["nginx-4xx", "nginx-bad-request", "nginx-botsearch", "nginx-probes"]
ERROR_FILTERS = ["nginx-botsearch", "nginx-forbidden", "nginx-http-auth", "nginx-limit-req"]
#: Stock nginx filters that read the access log (the others read the error log).
STOCK_ACCESS = {"nginx-bad-request", "nginx-botsearch"}
#: Stock nginx filters that also have a failregex for the error log.
STOCK_ERROR_TOO = {"nginx-botsearch"}
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
    ignored: int = 0

    @property
    def rate(self) -> float:
        """Lines per CPU second: what the engine costs, whatever else runs on the machine."""
        return self.lines / self.cpu if self.cpu else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ensure_log(
    path: Path, lines: int, generator: str = "gen_access_log.py", seed: int = 42
) -> None:
    if path.exists():
        return
    print(f"generating {path} ({lines} lines, seed {seed}) ...", file=sys.stderr)
    command = [sys.executable, str(HERE / generator), "-n", str(lines), "-o", str(path)]
    subprocess.run([*command, "--seed", str(seed)], check=True)


def head_of(log: Path, lines: int) -> Path:
    """A file with the first ``lines`` lines of ``log`` (made once, next to it)."""
    path = log.with_name(f"{log.stem}.head{lines}{log.suffix}")
    if not path.exists():
        with log.open("rb") as source, path.open("wb") as out:
            for _, raw in zip(range(lines), source, strict=False):
                out.write(raw)
    return path


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


def _cfban_env() -> dict[str, str]:
    """cfban's environment: its bytecode cached (in bench/out), as an installed package has
    it; with ``PYTHONDONTWRITEBYTECODE`` set every run would compile cfban's modules again
    (about 30 ms of CPU)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(HERE / "out" / "pycache")
    return env


def run_command(log: Path, spec: str) -> Run:
    start, cpu = time.perf_counter(), _children_cpu()
    out = subprocess.run(
        [*_cfban_command(), "test-filter", spec, str(log), "--json"],
        capture_output=True,
        check=True,
        env=_cfban_env(),
    )
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    report = json.loads(out.stdout)
    lines, matched = report["lines"], report["matched"]
    return Run("cfban test-filter --json", spec, lines, matched, seconds, cpu, report["ignored"])


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
    lines, ignored, matched = int(found.group(1)), int(found.group(2)), int(found.group(3))
    return Run("fail2ban-regex", spec, lines, matched, seconds, cpu, ignored)


def profile(log: Path, spec: str, top: int = 25) -> str:
    from cfban.testfilter import open_filter, run_filter

    flt = open_filter(spec)
    profiler = cProfile.Profile()
    with log.open("rb") as stream:
        profiler.runcall(run_filter, flt, stream)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def _name(spec: str) -> str:
    return ("Debian " if spec.startswith(str(STOCK_DIR)) else "cfban ") + Path(spec).stem


def rows(access: Path, error: Path, only: list[str] | None) -> list[tuple[str, Path]]:
    """(filter file, log) for every bundled filter and every stock nginx filter."""
    pairs = [(str(ROOT / "filters" / f"{name}.conf"), access) for name in ACCESS_FILTERS]
    pairs += [(str(ROOT / "filters" / f"{name}.conf"), error) for name in ERROR_FILTERS]
    for path in sorted(STOCK_DIR.glob("nginx-*.conf")):
        if path.stem in STOCK_ACCESS:
            pairs.append((str(path), access))
        if path.stem not in STOCK_ACCESS or path.stem in STOCK_ERROR_TOO:
            pairs.append((str(path), error))
    if only:
        pairs = [(spec, log) for spec, log in pairs if Path(spec).stem in only]
    return pairs


def _log_path(kind: str, lines: int, seed: int = 42) -> Path:
    suffix = f"{lines // 1_000_000}M" if lines % 1_000_000 == 0 else str(lines)
    if seed != 42:
        suffix += f"-seed{seed}"
    return HERE / "out" / f"{kind}-{suffix}.log"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42, help="generate other logs (not 42)")
    parser.add_argument("--reference-lines", type=int, default=0, help="fail2ban-regex on N")
    parser.add_argument("--no-fail2ban", action="store_true", help="skip fail2ban-regex")
    parser.add_argument("--only", nargs="*", help="filter names (stem) to run")
    parser.add_argument("--profile", action="store_true", help="profile cfban (in-process)")
    args = parser.parse_args(argv)
    access, error = (
        _log_path("access", args.lines, args.seed),
        _log_path("error", args.lines, args.seed),
    )
    ensure_log(access, args.lines, seed=args.seed)
    ensure_log(error, args.lines, "gen_error_log.py", seed=args.seed)
    failed = False
    ratios: list[float] = []
    print(f"logs: {access} ({access.stat().st_size / 1e6:.0f} MB), "
          f"{error} ({error.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
    print(f"{'filter':<26} {'log':<6} {'cfban lines/CPU-s':>18} {'(wall)':>11} "
          f"{'fail2ban-regex':>15} {'(wall)':>9} {'ratio CPU':>9} {'(wall)':>7}  "
          "matched cfban / fail2ban")  # fmt: skip
    warm_up = str(ROOT / "filters" / f"{ACCESS_FILTERS[0]}.conf")
    run_command(Path(os.devnull), warm_up)  # fills cfban's bytecode cache; not timed
    for spec, log in rows(access, error, args.only):
        mine = run_command(log, spec)
        reference = None
        checked = mine
        if not args.no_fail2ban:
            if args.reference_lines:
                head = head_of(log, args.reference_lines)
                reference, checked = run_fail2ban(head, spec), run_command(head, spec)
            else:
                reference = run_fail2ban(log, spec)
        kind = "access" if log == access else "error"
        line = (
            f"{_name(spec):<26} {kind:<6} {mine.rate:>18,.0f} {mine.lines / mine.seconds:>11,.0f}"
        )
        if reference is not None:
            ratio = mine.rate / reference.rate
            wall = (mine.lines / mine.seconds) / (reference.lines / reference.seconds)
            ratios.append(ratio)
            same = (checked.matched, checked.ignored) == (reference.matched, reference.ignored)
            failed = failed or not same
            line += (
                f" {reference.rate:>15,.0f} {reference.lines / reference.seconds:>9,.0f}"
                f" {ratio:>8.1f}x {wall:>6.1f}x  {checked.matched} / {reference.matched}"
                + ("" if same else "  COUNTS DIFFER")
            )
        else:
            line += f"  matched {mine.matched}"
        print(line, flush=True)
    if ratios:
        print(f"median ratio (per CPU second): {statistics.median(ratios):.1f}x  "
              f"lowest {min(ratios):.1f}x; goal >= 10x on every filter, median >= 20x")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.profile:
        spec = str(STOCK_FILTER)
        print(f"\nprofile of cfban in-process, {spec}:")
        print(profile(access, spec))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
