"""Write a realistic, reproducible nginx error log for benchmarks.

One day of an nginx error log (8 % of the clients over IPv6): mostly what a healthy site
logs — upstream timeouts and resets, client body buffering, SSL handshake noise, closed
keep-alive connections — with about 6 % of the lines being what the error-log filters look
for: basic-auth failures (``user "x": password mismatch``, ``was not found in``), rate
limiting (``limiting requests``/``delaying request``/``limiting connections``),
``access forbidden by rule`` and bot-search ``open() ... failed (2: No such file or
directory)`` misses. The same seed gives the same file; the counts built in go to stderr and,
as JSON, to ``PATH.expected.json``.

    python bench/gen_error_log.py                      # 1,000,000 lines, bench/out/error-1M.log
    python bench/gen_error_log.py -n 200000 -o bench/out/error-200000.log
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
import time
from pathlib import Path

START = 1795478400  # 2026-11-24 00:00:00 UTC
DAY = 86400
HOSTS = ["example.org", "www.example.org", "api.example.org"]
PAGES = ["/", "/blog/", "/docs/install/", "/api/v1/items", "/login", "/account/", "/feed.xml"]
BOT_PATHS = [
    "wp-login.php",
    "phpmyadmin/index.php",
    "roundcube/",
    "cgi-bin/test.cgi",
    "mysqladmin/",
]
USERS = ["admin", "root", "test", "user", "guest", "oracle", "alice"]


def _address(rng: random.Random) -> str:
    if rng.random() < 0.08:
        return str(ipaddress.IPv6Address((0x2001_0DB8 << 96) | rng.getrandbits(64)))
    return str(ipaddress.IPv4Address(rng.randrange(0x0B000000, 0xDF000000)))


def _stamp(epoch: int) -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(epoch))


def _tail(rng: random.Random, path: str, method: str = "GET") -> str:
    host = rng.choice(HOSTS)
    tail = f', server: {host}, request: "{method} {path} HTTP/1.1", host: "{host}"'
    if rng.random() < 0.3:
        tail += f', referrer: "https://{host}/"'
    return tail


def line(rng: random.Random, epoch: int, serial: int, counts: dict[str, int]) -> str:
    """One error log line; ``counts`` notes what kind of attack it is, if any."""
    head = f"{_stamp(epoch)} [error] 4121#4121: *{serial} "
    client = _address(rng)
    roll = rng.random()
    if roll < 0.02:
        counts["http-auth"] += 1
        user = rng.choice(USERS)
        if rng.random() < 0.5:
            text = f'user "{user}": password mismatch'
        else:
            text = f'user "{user}" was not found in "/etc/nginx/htpasswd"'
        return head + f"{text}, client: {client}" + _tail(rng, "/admin/")
    if roll < 0.035:
        counts["limit-req"] += 1
        excess = f"{rng.uniform(0, 30):.3f}"
        if rng.random() < 0.8:
            text = f'limiting requests, excess: {excess} by zone "one"'
        else:
            head = head.replace("[error]", "[warn]")
            text = f'delaying request, excess: {excess}, by zone "one"'
        return head + f"{text}, client: {client}" + _tail(rng, rng.choice(PAGES))
    if roll < 0.045:
        counts["forbidden"] += 1
        return head + f"access forbidden by rule, client: {client}" + _tail(rng, "/.git/config")
    if roll < 0.06:
        counts["botsearch"] += 1
        path = "/" + rng.choice(BOT_PATHS)
        text = f'open() "/srv/www{path}" failed (2: No such file or directory)'
        return head + f"{text}, client: {client}" + _tail(rng, path)
    if roll < 0.09:  # a miss that is not a bot path
        path = rng.choice(["/favicon.ico", "/apple-touch-icon.png", "/static/old.css"])
        text = f'open() "/srv/www{path}" failed (2: No such file or directory)'
        return head + f"{text}, client: {client}" + _tail(rng, path)
    if roll < 0.4:
        text = "upstream timed out (110: Connection timed out) while reading response header"
        return head + f"{text} from upstream, client: {client}" + _tail(rng, rng.choice(PAGES))
    if roll < 0.6:
        text = "recv() failed (104: Connection reset by peer) while reading response header"
        return head + f"{text} from upstream, client: {client}" + _tail(rng, rng.choice(PAGES))
    if roll < 0.8:
        warn = f"{_stamp(epoch)} [warn] 4121#4121: *{serial} "
        text = "a client request body is buffered to a temporary file /var/cache/nginx/1/00"
        return warn + f"{text}, client: {client}" + _tail(rng, "/upload", "POST")
    info = f"{_stamp(epoch)} [info] 4121#4121: *{serial} "
    return info + f"client {client} closed keepalive connection"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--lines", type=int, default=1_000_000)
    parser.add_argument("-o", "--output", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    output = args.output or Path(__file__).resolve().parent / "out" / "error-1M.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    counts = {"http-auth": 0, "limit-req": 0, "forbidden": 0, "botsearch": 0}
    with output.open("w", encoding="utf-8") as out:
        for serial in range(args.lines):
            epoch = START + serial * DAY // args.lines
            out.write(line(rng, epoch, serial + 1, counts) + "\n")
    summary = " ".join(f"{k}={v}" for k, v in counts.items())
    print(f"{output}: lines={args.lines} {summary}", file=sys.stderr)
    Path(f"{output}.expected.json").write_text(json.dumps(counts), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
