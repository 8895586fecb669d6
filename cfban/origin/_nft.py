"""nftables: cfban's own table, rendered, applied, refreshed, read back and removed.

The lock is one table, ``table inet cfban``, and nothing else of the host's ruleset is read
or written::

    table inet cfban {
        set allowed_v4 { type ipv4_addr; flags interval; elements = { ... } }
        set allowed_v6 { type ipv6_addr; flags interval; elements = { ... } }
        set web_ports { type inet_service; elements = { 80, 443 } }
        chain input {
            type filter hook input priority filter - 10; policy accept;
            iifname "lo" accept
            ct state established,related accept
            ip saddr @allowed_v4 accept
            ip6 saddr @allowed_v6 accept
            tcp dport @web_ports counter drop
        }
        chain forward {
            type filter hook forward priority filter - 10; policy accept;
            ct state established,related accept
            ip saddr @allowed_v4 accept
            ip6 saddr @allowed_v6 accept
            ct status dnat meta l4proto tcp ct original proto-dst @web_ports counter drop
        }
    }

Only TCP to the configured ports is ever dropped; every other port (SSH included), every
other protocol, loopback and established connections go on to the host's own rules. The
``forward`` chain covers ports published by containers (podman's and Docker's
``PublishPort``/``-p``): their connections are DNATed in prerouting and never reach
``input``. It drops only connections that were DNATed and whose original destination port
is a web port, so traffic this host merely routes is left alone. (The ports are a named set
because nft 1.0 cannot print ``ct original proto-dst`` against literal ports.) The ``accept``
verdicts end a chain only: a packet still meets every other base chain of its hook, so the
table never opens what another firewall closes. The chains run before the usual ``filter``
priority so that a broad accept elsewhere cannot let a direct visitor in.

Every change is one ``nft -f`` transaction, all or nothing: the lock declares the table,
deletes it and defines it again (the same result however often it runs); a refresh flushes
and refills the two address sets, leaving the chains and established connections alone; the
removal deletes the table and nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfban.errors import FirewallError
from cfban.origin._allowlist import AllowList

__all__ = [
    "CHAIN",
    "FORWARD",
    "SET_V4",
    "SET_PORTS",
    "SET_V6",
    "TABLE",
    "LiveLock",
    "Nft",
    "find_nft",
    "parse_live",
    "render_refresh",
    "render_removal",
    "render_ruleset",
]

TABLE = "cfban"
FAMILY = "inet"
SET_V4 = "allowed_v4"
SET_V6 = "allowed_v6"
SET_PORTS = "web_ports"
CHAIN = "input"
FORWARD = "forward"
PRIORITY = "filter - 10"
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_TIMEOUT = 30.0


def _elements(cidrs: Sequence[str]) -> str:
    return ", ".join(cidrs)


def _set(name: str, kind: str, elements: Sequence[str], *, interval: bool = True) -> list[str]:
    return [
        f"\tset {name} {{",
        f"\t\ttype {kind}",
        *(["\t\tflags interval"] if interval else []),
        f"\t\telements = {{ {_elements(elements)} }}",
        "\t}",
    ]


def render_ruleset(allow: AllowList, ports: Sequence[int]) -> str:
    """The whole lock as an ``nft -f`` file: (re)create cfban's table, nothing else."""
    lines = [
        "# cfban origin lock: new TCP connections to the web ports only from Cloudflare's",
        "# ranges and [origin] allow; `cfban origin unlock` removes it. The ranges are",
        f"# {allow.source}.",
        f"table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
        '\tcomment "cfban origin lock; remove with: cfban origin unlock"',
        *_set(SET_V4, "ipv4_addr", allow.ipv4),
        "",
        *_set(SET_V6, "ipv6_addr", allow.ipv6),
        "",
        *_set(SET_PORTS, "inet_service", [str(p) for p in sorted(set(ports))], interval=False),
        "",
        f"\tchain {CHAIN} {{",
        f"\t\ttype filter hook input priority {PRIORITY}; policy accept;",
        '\t\tiifname "lo" accept',
        "\t\tct state established,related accept",
        f"\t\tip saddr @{SET_V4} accept",
        f"\t\tip6 saddr @{SET_V6} accept",
        f"\t\ttcp dport @{SET_PORTS} counter drop",
        "\t}",
        "",
        f"\tchain {FORWARD} {{",
        f"\t\ttype filter hook forward priority {PRIORITY}; policy accept;",
        "\t\tct state established,related accept",
        f"\t\tip saddr @{SET_V4} accept",
        f"\t\tip6 saddr @{SET_V6} accept",
        f"\t\tct status dnat meta l4proto tcp ct original proto-dst @{SET_PORTS} counter drop",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_refresh(allow: AllowList) -> str:
    """New elements for both sets, in one transaction; the chain stays as it is."""
    lines = [f"# cfban origin refresh ({allow.source})"]
    for name, cidrs in ((SET_V4, allow.ipv4), (SET_V6, allow.ipv6)):
        lines.append(f"flush set {FAMILY} {TABLE} {name}")
        lines.append(f"add element {FAMILY} {TABLE} {name} {{ {_elements(cidrs)} }}")
    return "\n".join(lines) + "\n"


def render_removal() -> str:
    """Delete cfban's table; declaring it first makes this a no-op when it is absent."""
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


@dataclass(frozen=True)
class LiveLock:
    """cfban's table as the kernel has it: the sets, and the hooks whose chain drops."""

    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    ports: tuple[int, ...]
    guarded_hooks: frozenset[str]

    @property
    def hooked(self) -> bool:
        """Both chains are there, hooked, each with its drop rule on the web ports."""
        return self.guarded_hooks == {"input", "forward"}

    def guards(self, ports: Sequence[int]) -> bool:
        """Both chains are hooked and drop exactly ``ports``."""
        return self.hooked and set(self.ports) == set(ports)

    def matches(self, allow: AllowList, ports: Sequence[int]) -> bool:
        """The table is what :func:`render_ruleset` makes of ``allow`` and ``ports``."""
        return (
            self.guards(ports)
            and set(self.ipv4) == set(allow.ipv4)
            and set(self.ipv6) == set(allow.ipv6)
        )


def _element(value: Any) -> list[str]:
    """One set element of ``nft -j`` output as CIDRs (address, prefix or range)."""
    if isinstance(value, dict) and "elem" in value:
        return _element(value["elem"].get("val"))
    if isinstance(value, str):
        return [str(ipaddress.ip_network(value))]
    if isinstance(value, dict) and "prefix" in value:
        prefix = value["prefix"]
        return [str(ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}"))]
    if isinstance(value, dict) and "range" in value:
        low, high = (ipaddress.ip_address(v) for v in value["range"])
        return [str(n) for n in ipaddress.summarize_address_range(low, high)]
    raise ValueError(f"unexpected set element {value!r}")


def _drops_web_ports(expr: list[Any]) -> bool:
    """Whether a rule drops what matches ``@web_ports``."""
    drops = any(isinstance(e, dict) and "drop" in e for e in expr)
    return drops and any(
        isinstance(e, dict) and e.get("match", {}).get("right") == f"@{SET_PORTS}" for e in expr
    )


def parse_live(document: dict[str, Any]) -> LiveLock:
    """Read cfban's table out of ``nft -j list table inet cfban``.

    Raises:
        ValueError, KeyError, TypeError: the document is not nftables' JSON shape.
    """
    sets: dict[str, list[Any]] = {}
    hooks: dict[str, str] = {}
    guarded: set[str] = set()
    for entry in document["nftables"]:
        if "set" in entry:
            sets[entry["set"]["name"]] = list(entry["set"].get("elem", []))
        elif "chain" in entry and entry["chain"].get("hook"):
            hooks[entry["chain"]["name"]] = entry["chain"]["hook"]
        elif "rule" in entry and _drops_web_ports(entry["rule"].get("expr", [])):
            guarded.add(entry["rule"]["chain"])
    return LiveLock(
        ipv4=tuple(c for v in sets.get(SET_V4, []) for c in _element(v)),
        ipv6=tuple(c for v in sets.get(SET_V6, []) for c in _element(v)),
        ports=tuple(int(p) for p in sets.get(SET_PORTS, [])),
        guarded_hooks=frozenset(hooks[name] for name in guarded if name in hooks),
    )


def find_nft() -> str | None:
    """The ``nft`` program (also looked for in the sbin directories a user's PATH may lack)."""
    found = shutil.which("nft")
    if found:
        return found
    return next((str(Path(d) / "nft") for d in _SBIN if (Path(d) / "nft").exists()), None)


class Nft:
    """The ``nft`` program, fed rulesets on stdin."""

    def __init__(self, program: str | None = None) -> None:
        found = program or find_nft()
        if found is None:
            raise FirewallError(
                "the nft program is not installed",
                hint="install nftables (Debian: apt-get install nftables), or pick another "
                "[origin] firewall",
            )
        self.program = found

    def _run(self, args: list[str], text: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.program, *args],
                input=text,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"cannot run {self.program}: {exc}") from None

    @staticmethod
    def _failure(what: str, proc: subprocess.CompletedProcess[str]) -> FirewallError:
        detail = (proc.stderr or proc.stdout).strip().replace("\n", " | ")
        hint = None
        if "Operation not permitted" in detail or "Permission denied" in detail:
            hint = "run it as root or with CAP_NET_ADMIN"
        return FirewallError(f"nft refused to {what}: {detail}", hint=hint)

    def apply(self, text: str, what: str = "apply the ruleset") -> None:
        """Load ``text`` in one transaction.

        Raises:
            FirewallError: nft refused it; nothing was changed.
        """
        proc = self._run(["-f", "-"], text)
        if proc.returncode != 0:
            raise self._failure(what, proc)

    def validate(self, text: str) -> None:
        """Check ``text`` without loading it (``nft -c``).

        Raises:
            FirewallError: nft found an error.
        """
        proc = self._run(["-c", "-f", "-"], text)
        if proc.returncode != 0:
            raise self._failure("accept the ruleset", proc)

    def list_table(self) -> str | None:
        """``nft list table inet cfban`` as text; None when the table does not exist.

        Raises:
            FirewallError: the ruleset cannot be read (e.g. not root).
        """
        proc = self._run(["list", "table", FAMILY, TABLE])
        if proc.returncode == 0:
            return proc.stdout
        if "No such file or directory" in proc.stderr:
            return None
        raise self._failure("list the ruleset", proc)

    def live(self) -> LiveLock | None:
        """cfban's table as the kernel has it; None when no lock is applied.

        Raises:
            FirewallError: the ruleset cannot be read or understood.
        """
        proc = self._run(["-j", "list", "table", FAMILY, TABLE])
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return None
            raise self._failure("list the ruleset", proc)
        try:
            return parse_live(json.loads(proc.stdout))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FirewallError(f"cannot read nft's JSON listing of cfban's table: {exc}") from None
