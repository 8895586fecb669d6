"""firewalld: the same lock as firewalld configuration files (two ipsets and one policy).

Files, relative to firewalld's configuration directory (``/etc/firewalld``)::

    ipsets/cfban-v4.xml     hash:net, family inet:  Cloudflare's IPv4 ranges + [origin] allow
    ipsets/cfban-v6.xml     hash:net, family inet6: the IPv6 ones
    policies/cfban.xml      ingress ANY -> HOST, priority -100, target CONTINUE, one rich rule
                            per family and port: ``source NOT ipset=... port ... drop``

The policy only drops: new TCP connections to the configured ports from outside the ipsets.
Its target ``CONTINUE`` and its negative priority make firewalld evaluate it before the
zones and then hand every other packet on to them, so the zones still decide what is open
(the web ports must be open there, e.g. ``firewall-cmd --add-service=https``). firewalld
accepts loopback and established connections before any policy. ``firewall-cmd --reload``
loads the files; removing the three files and reloading undoes it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from cfban.errors import FirewallError
from cfban.origin._allowlist import AllowList
from cfban.origin._urltable import write_file

__all__ = [
    "DEFAULT_DIR",
    "FILES",
    "IPSET_V4",
    "IPSET_V6",
    "POLICY",
    "reload_firewalld",
    "remove_files",
    "render_files",
    "write_files",
]

DEFAULT_DIR = Path("/etc/firewalld")
IPSET_V4 = "cfban-v4"
IPSET_V6 = "cfban-v6"
POLICY = "cfban"
FILES = (f"ipsets/{IPSET_V4}.xml", f"ipsets/{IPSET_V6}.xml", f"policies/{POLICY}.xml")


def _xml(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _ipset(family: str, short: str, cidrs: Sequence[str]) -> str:
    root = ET.Element("ipset", type="hash:net")
    ET.SubElement(root, "short").text = short
    ET.SubElement(
        root, "description"
    ).text = "Sources allowed to reach the web ports (cfban origin lock)"
    ET.SubElement(root, "option", name="family", value=family)
    for cidr in cidrs:
        ET.SubElement(root, "entry").text = cidr
    return _xml(root)


def _policy(ports: Sequence[int]) -> str:
    root = ET.Element("policy", target="CONTINUE", priority="-100")
    ET.SubElement(root, "short").text = "cfban origin lock"
    ET.SubElement(
        root, "description"
    ).text = "Drops new TCP connections to the web ports from sources outside the cfban ipsets."
    ET.SubElement(root, "ingress-zone", name="ANY")
    ET.SubElement(root, "egress-zone", name="HOST")
    for family, ipset in (("ipv4", IPSET_V4), ("ipv6", IPSET_V6)):
        for port in sorted(set(ports)):
            rule = ET.SubElement(root, "rule", family=family)
            ET.SubElement(rule, "source", ipset=ipset, invert="True")
            ET.SubElement(rule, "port", port=str(port), protocol="tcp")
            ET.SubElement(rule, "drop")
    return _xml(root)


def render_files(allow: AllowList, ports: Sequence[int]) -> dict[str, str]:
    """The three files, by path relative to firewalld's configuration directory."""
    return {
        FILES[0]: _ipset("inet", "cfban IPv4", allow.ipv4),
        FILES[1]: _ipset("inet6", "cfban IPv6", allow.ipv6),
        FILES[2]: _policy(ports),
    }


def write_files(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write each file atomically under ``directory``; return their paths.

    Raises:
        FirewallError: a file cannot be written.
    """
    written = []
    for relative, text in files.items():
        path = directory / relative
        write_file(path, text)
        written.append(path)
    return written


def remove_files(directory: Path) -> list[Path]:
    """Delete cfban's files under ``directory``; return those that were there.

    Raises:
        FirewallError: a file cannot be deleted.
    """
    removed = []
    for relative in FILES:
        path = directory / relative
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise FirewallError(f"cannot delete {path}: {exc.strerror or exc}") from None
        removed.append(path)
    return removed


def reload_firewalld() -> str:
    """``firewall-cmd --reload`` when firewalld runs; say what happened.

    Raises:
        FirewallError: firewalld runs but refused the reload.
    """
    program = shutil.which("firewall-cmd")
    if program is None:
        return "firewall-cmd not found: load the files with `firewall-cmd --reload`"
    try:
        state = subprocess.run(
            [program, "--state"], capture_output=True, text=True, timeout=30, check=False
        )
        if state.returncode != 0:
            return "firewalld is not running: the files take effect when it starts"
        proc = subprocess.run(
            [program, "--reload"], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirewallError(f"cannot run {program}: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise FirewallError(
            f"firewall-cmd --reload failed: {detail}",
            hint="check the files with `firewall-cmd --check-config`",
        )
    return "firewalld reloaded"
