"""Durations as fail2ban writes them: ``600``, ``10m``, ``1h``, ``1d12h``, ``1w``, ``-1``."""

from __future__ import annotations

import re

#: fail2ban's default bantime (10 minutes), for a jail or a ban that names none.
DEFAULT_BANTIME = 600

_UNITS: dict[str, float] = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "mm": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "mo": 2629800, "mon": 2629800, "month": 2629800, "months": 2629800,
    "y": 31557600, "year": 31557600, "years": 31557600,
}  # fmt: skip
_PART = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*([a-z]*)\s*")


def parse_duration(value: str | int | float) -> int:
    """Return ``value`` in whole seconds; ``-1`` means forever.

    Raises:
        ValueError: the text is not a duration (the message says what is accepted).
    """
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or text such as 10m, 1h, 1d")
    if isinstance(value, int | float):
        return int(value)
    text = value.strip().lower()
    if not text:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(
                f"not a duration: {value!r} (use seconds, or combine units s, m, h, d, w, "
                "mo, y as in 10m, 1h30m, 1d)"
            )
        number, unit = m.groups()
        if unit and unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {value!r} (s, m, h, d, w, mo, y)")
        total += float(number) * _UNITS[unit or "s"]
        pos = m.end()
    return int(total)
