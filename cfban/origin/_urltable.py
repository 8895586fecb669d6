"""A plain list for an upstream firewall: a pfSense/OPNsense "URL Table (IPs)" alias file.

One CIDR a line, IPv4 first, then IPv6, ``\\n`` line ends, no comments or blank lines (so any
parser of "one network per line" reads it). The upstream firewall fetches it from wherever the
user serves it (e.g. a file nginx serves to the firewall's address only); cfban writes it
atomically, so a fetch never sees half a list.
"""

from __future__ import annotations

from pathlib import Path

from cfban.errors import FirewallError
from cfban.files import write_atomic
from cfban.origin._allowlist import AllowList

__all__ = ["DEFAULT_NAME", "render_list", "write_file"]

DEFAULT_NAME = "origin-allowlist.txt"


def render_list(allow: AllowList) -> str:
    """The file's text."""
    return "".join(f"{cidr}\n" for cidr in allow.cidrs)


def write_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (world-readable: it is no secret).

    Raises:
        FirewallError: the file cannot be written.
    """
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise FirewallError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="run it as root, or choose a writable place with --output or [origin] output",
        ) from None
