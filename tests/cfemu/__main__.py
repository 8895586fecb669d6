"""Run the emulator standalone: ``python -m tests.cfemu --port N --token T``.

Prints ``CFEMU_URL=<base url>`` on the first line of stdout once listening, serves until SIGTERM
or SIGINT, then prints a JSON summary of the state and request counts (also written to
``--summary PATH`` when given). Uses the real clock.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType

from ._emulator import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, DEFAULT_ZONE_ID, Emulator
from ._faults import Fault
from ._server import serve


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.cfemu", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--token", default=DEFAULT_TOKEN, help="a token with every permission")
    p.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    p.add_argument("--zone-id", default=DEFAULT_ZONE_ID)
    p.add_argument("--plan", default="free", choices=["free", "pro", "business", "enterprise"])
    p.add_argument("--rate-limit", type=int, default=1200, help="requests per window per token")
    p.add_argument("--rate-window", type=float, default=300.0, help="seconds")
    p.add_argument("--bulk-polls", type=int, default=1)
    p.add_argument("--bulk-seconds", type=float, default=0.5)
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability of a 5xx/drop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", type=Path, help="also write the final summary here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    emulator = Emulator(
        account_id=args.account_id,
        zone_id=args.zone_id,
        plan=args.plan,
        token=args.token,
        seed=args.seed,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
    )
    emulator.options.bulk_polls = args.bulk_polls
    emulator.options.bulk_seconds = args.bulk_seconds
    if args.fault_rate > 0:
        kinds = [Fault.server_error(502, html=True), Fault.server_error(500), Fault.dropped()]
        emulator.faults.randomly(args.fault_rate, kinds)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with serve(emulator, args.host, args.port) as base_url:
        print(f"CFEMU_URL={base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    statuses = Counter(str(e.status) for e in emulator.log.entries)
    summary = {
        "state": emulator.summary(),
        "requests": len(emulator.log),
        "statuses": dict(sorted(statuses.items())),
    }
    text = json.dumps(summary, indent=2, sort_keys=True)
    print(text, flush=True)
    if args.summary:
        args.summary.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
