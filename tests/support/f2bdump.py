"""A filter as the reader resolved it, in the shape of ``fail2ban-client -d``'s regex settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfban.fail2ban._loader import load_definition


def as_dump(spec: str, root: Path, jail: dict[str, str] | None = None) -> dict[str, Any]:
    """failregex, ignoreregex, prefregex, datepattern and maxlines (the ones that are set)."""
    definition = load_definition(spec, search_path=[root], jail_options=jail)
    mine: dict[str, Any] = {
        "failregex": [r.text for r in definition.failregex],
        "ignoreregex": [r.text for r in definition.ignoreregex],
    }
    if definition.prefregex is not None:
        mine["prefregex"] = definition.prefregex.text
    if definition.datepattern is not None:
        mine["datepattern"] = definition.datepattern
    if "maxlines" in definition.options:
        mine["maxlines"] = definition.maxlines
    return {k: v for k, v in mine.items() if v != []}
