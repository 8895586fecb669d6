"""``cfban fail2ban-install``: put cfban's filters, action and example jails into fail2ban.

Filters are installed as ``filter.d/cfban-<name>.conf`` so that fail2ban's own filters of the
same name (``nginx-http-auth``, ...) stay as the package shipped them; includes between
cfban's filters are renamed to match. The action goes to ``action.d/cfban.conf`` and
``action.d/cfban.py``, the example jails (all disabled) to ``jail.d/cfban-nginx.conf``.
A file that exists with other content is left alone unless ``force`` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cfban._resources import filters_dir, jails_dir
from cfban.errors import CfbanError

PREFIX = "cfban-"


@dataclass
class InstallReport:
    """What was written, what was already there, and what was left alone."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def _installed_name(name: str) -> str:
    return name if name.startswith(PREFIX) else PREFIX + name


def _rename_includes(text: str, names: set[str]) -> str:
    def fix(match: re.Match[str]) -> str:
        stem = match.group(2)
        return match.group(1) + (_installed_name(stem) if stem in names else stem) + ".conf"

    return re.sub(r"(^\s*(?:before|after)\s*=\s*|^\s+)([\w.-]+)\.conf", fix, text, flags=re.M)


def _files() -> list[tuple[str, str]]:
    """(relative destination, content) for everything to install."""
    out: list[tuple[str, str]] = []
    filters = sorted(filters_dir().glob("*.conf"))
    names = {path.stem for path in filters}
    for path in filters:
        text = _rename_includes(path.read_text(encoding="utf-8"), names)
        out.append((f"filter.d/{_installed_name(path.stem)}.conf", text))
    for sub in ("action.d", "jail.d"):
        for path in sorted((jails_dir() / sub).iterdir()):
            if path.is_file():
                out.append((f"{sub}/{path.name}", path.read_text(encoding="utf-8")))
    return out


def install(prefix: Path, *, force: bool = False, dry_run: bool = False) -> InstallReport:
    """Install into the fail2ban configuration directory ``prefix``.

    Raises:
        CfbanError: ``prefix`` is not a fail2ban configuration directory, or a file cannot
            be written.
    """
    if not (prefix / "filter.d").is_dir() or not (prefix / "action.d").is_dir():
        raise CfbanError(
            f"{prefix} is not a fail2ban configuration directory (no filter.d/ and action.d/)",
            hint="install fail2ban first, or pass --prefix DIR",
        )
    report = InstallReport()
    for relative, text in _files():
        target = prefix / relative
        try:
            current = target.read_text(encoding="utf-8") if target.exists() else None
        except OSError as exc:
            raise CfbanError(f"cannot read {target}: {exc.strerror}") from None
        if current == text:
            report.unchanged.append(target)
            continue
        if current is not None and not force:
            report.kept.append(target)
            continue
        if not dry_run:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CfbanError(f"cannot write {target}: {exc.strerror}") from None
        report.written.append(target)
    return report
