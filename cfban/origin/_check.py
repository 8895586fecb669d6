"""Is the origin still reachable directly? The ``origin`` line of ``cfban check``.

Two facts decide it, both read from this host (this network namespace): which of the
configured TCP ports listen on an address other than loopback (``/proc/net/tcp`` and
``tcp6``), and whether cfban's lock is in place and matches the ranges in use. A port a
container publishes (DNAT to another namespace) has no listener here, so without a lock it
goes unseen; the lock itself covers it. A port that
listens publicly with no lock in front of it accepts a connection from anybody, and a forged
``CF-Connecting-IP`` with it: that is a failure. An upstream lock (``firewall = "urltable"``)
cannot be seen from here; the check then reports whether the list it fetches is current.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cfban.checks import Check
from cfban.errors import FirewallError
from cfban.origin import _firewalld, _urltable
from cfban.origin._lock import OriginLock

if TYPE_CHECKING:
    from cfban.config import Settings

__all__ = ["origin_checks", "public_listeners"]

_LISTEN = "0A"
_NAME = "origin"


def _address(hexed: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hexed)
    # The kernel prints each 32-bit word in host (little-endian) byte order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def public_listeners(ports: Sequence[int], proc_net: Path = Path("/proc/net")) -> list[str]:
    """``address:port`` of every TCP listener on ``ports`` that is not bound to loopback."""
    found: list[str] = []
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != _LISTEN:
                continue
            hexed, _, port_hex = fields[1].partition(":")
            port = int(port_hex, 16)
            address = _address(hexed)
            if port in ports and not address.is_loopback:
                shown = f"[{address}]" if address.version == 6 else str(address)
                found.append(f"{shown}:{port}")
    return sorted(set(found))


def _nftables(lock: OriginLock, listening: list[str]) -> Check:
    ports = ", ".join(str(p) for p in lock.ports)
    try:
        live = lock.nft().live()
    except FirewallError as exc:
        if not listening:
            return Check(_NAME, True, f"nothing listens on TCP {ports} outside loopback here")
        return Check(
            _NAME,
            False,
            f"{', '.join(listening)} listen(s) and the lock cannot be confirmed: {exc}",
        )
    if live is None:
        if not listening:
            return Check(
                _NAME,
                True,
                f"not locked, but nothing listens on TCP {ports} here (ports that containers "
                "publish are not seen; `cfban origin lock` covers them too)",
            )
        return Check(
            _NAME,
            False,
            f"open: {', '.join(listening)} accept(s) direct connections from any source, "
            "bypassing Cloudflare (run `cfban origin lock`)",
        )
    try:
        allow = lock.allowlist()
    except FirewallError as exc:
        return Check(_NAME, True, f"closed by nftables table inet cfban; but {exc}")
    if not live.matches(allow, lock.ports):
        return Check(
            _NAME,
            False,
            "locked, but nftables table inet cfban differs from the ranges in use or "
            "[origin] (run `cfban origin refresh`)",
        )
    return Check(
        _NAME,
        True,
        f"closed: new TCP connections to port {ports} only from {len(allow.ipv4)} IPv4 + "
        f"{len(allow.ipv6)} IPv6 allowed networks (nftables table inet cfban)",
    )


def _current(expected: dict[Path, str], what: str) -> Check:
    for path, text in expected.items():
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            return Check(_NAME, False, f"{path} is missing (run `cfban origin lock`)")
        if current != text:
            return Check(_NAME, False, f"{path} is out of date (run `cfban origin refresh`)")
    return Check(_NAME, True, what)


def origin_checks(
    settings: Settings, *, always: bool = False, proc_net: Path = Path("/proc/net")
) -> list[Check]:
    """The ``origin`` check.

    None when ``[origin] check`` is off, unless ``always``.
    """
    if not (settings.origin.check or always):
        return []
    lock = OriginLock(settings)
    if lock.firewall == "nftables":
        return [_nftables(lock, public_listeners(lock.ports, proc_net))]
    try:
        allow = lock.allowlist()
    except FirewallError as exc:
        return [Check(_NAME, False, str(exc))]
    if lock.firewall == "firewalld":
        files = _firewalld.render_files(allow, lock.ports)
        expected = {lock.output / name: text for name, text in files.items()}
        return [
            _current(expected, f"firewalld's cfban policy and ipsets in {lock.output} are current")
        ]
    return [
        _current(
            {lock.output: _urltable.render_list(allow)},
            f"the list at {lock.output} is current (cfban cannot see whether the upstream "
            "firewall uses it)",
        )
    ]
