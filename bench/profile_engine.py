"""Where cfban's filter engine spends its time, per stage, on a slice of the benchmark log.

Times three loops over the same lines (CPU seconds, best of ``--repeat``):

* ``read``: split the file into lines and decode them (the floor for any engine);
* ``feed``: ``LineMatcher.feed`` on every decoded line (what the daemon does per line);
* ``run_filter``: ``cfban.testfilter.run_filter`` (what ``cfban test-filter`` does);
* ``feed_raw loop``: the loop of ``run_filter`` rewritten on ``LineMatcher.feed_raw`` (the
  prefilter tests the raw bytes; lines it rules out are never decoded);

and prints lines per CPU second and the failure count of each, optionally with a cProfile
table of the ``feed`` loop (``--profile``) and with the prefilter switched off
(``--no-prefilter``, for comparison).

    python bench/profile_engine.py                       # 100k lines of the 1M log
    python bench/profile_engine.py --lines 20000 --profile
    python bench/profile_engine.py --filter /etc/fail2ban/filter.d/nginx-botsearch.conf
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from cfban.fail2ban import Filter, LineMatcher, decode_line  # noqa: E402
from cfban.testfilter import iter_log_lines, open_filter, run_filter  # noqa: E402

DEFAULT_LOG = HERE / "out" / "access-1M.log"


def _lines(log: Path, count: int) -> list[bytes]:
    with log.open("rb") as stream:
        return list(itertools.islice(iter_log_lines(stream), count))


def _best(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(repeat):
        cpu = time.process_time()
        result = work()
        best = min(best, time.process_time() - cpu)
    return best, result


def _feed_all(flt: Filter, lines: list[str]) -> int:
    feed = LineMatcher(flt).feed
    found = 0
    for line in lines:
        if feed(line):
            found += 1
    return found


def _feed_raw_loop(flt: Filter, blob: bytes) -> int:
    """``run_filter``'s loop (comments skipped, lines counted) on ``feed_raw``: matched lines."""
    matcher = LineMatcher(flt)
    feed_raw = matcher.feed_raw
    matched = 0
    for raw in iter_log_lines(io.BytesIO(blob)):
        if not raw or raw[0] == 0x23 or raw == b"\r":
            continue
        result = feed_raw(raw)
        if result is not None and result[1]:
            matched += 1
    return matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--filter", default=str(ROOT / "filters" / "nginx-botsearch.conf"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the feed loop")
    parser.add_argument("--no-prefilter", action="store_true", help="switch the prefilter off")
    args = parser.parse_args(argv)

    raw = _lines(args.log, args.lines)
    flt = open_filter(args.filter)
    if args.no_prefilter:
        flt.prefilter = None
    print(f"{len(raw)} lines of {args.log}, filter {args.filter}")
    print(f"prefilter: {flt.prefilter!r}")
    blob = b"\n".join(raw) + b"\n"

    def read() -> int:
        return sum(1 for r in iter_log_lines(io.BytesIO(blob)) if decode_line(r))

    decoded = [decode_line(r) for r in raw]

    def report() -> int:
        return run_filter(flt, io.BytesIO(blob)).matched

    for name, work in (
        ("read", read),
        ("feed", lambda: _feed_all(flt, decoded)),
        ("run_filter", report),
        ("feed_raw loop", lambda: _feed_raw_loop(flt, blob)),
    ):
        cpu, result = _best(args.repeat, work)
        rate = len(raw) / cpu if cpu else 0.0
        print(f"  {name:<14} {cpu:7.3f} s CPU {rate:>12,.0f} lines/s  {result:>8} results")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(_feed_all, flt, decoded)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
        print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
