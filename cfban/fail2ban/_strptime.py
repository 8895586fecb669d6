"""strptime-style ``%X`` directives as fail2ban reads them, and the fields they capture.

Spec: fail2ban-format.md §3.2 (directives) and §3.5 (zones, fields to time). A datepattern's
directives become named regex groups (``%d`` -> ``(?P<d>...)``); :func:`parse_fields` turns a
match's named groups into :class:`DateFields`, and :func:`fields_to_epoch` turns those into an
epoch, applying the missing-year and missing-day rules against "now".

Times here are often *naive seconds*: ``calendar.timegm`` of a wall-clock tuple, whatever zone
that wall clock is in. fail2ban compares naive datetimes the same way (a zoned date, shifted to
UTC, against the host's local "now"), and cfban must agree with it.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import re
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

# English names whatever the locale (fail2ban runs with the C locale's names)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(_MONTHS)} | {
    name: i + 1 for i, name in enumerate(_MONTH_NAMES)
}
_WEEKDAY_NUMBER = {name: i for i, name in enumerate(_DAYS)} | {
    name: i for i, name in enumerate(_DAY_NAMES)
}


def _alternatives(names: tuple[str, ...]) -> str:
    # longest first, as Python's own TimeRE does, so no name shadows a longer one
    return "|".join(sorted(names, key=len, reverse=True))


_ZONE_ABBR = r"[A-Z](?:[A-Z]{2,4})?"
_ZONE_OFFSET = r"[+-][01]\d(?::?\d{2})?"

# Python's stock regexes, used inside the composite %c, %x and %X (fail2ban's overrides of
# %d, %H, ... come after those composites were built, so they keep the stock forms).
_STOCK = {
    "d": r"(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])",
    "H": r"(?P<H>2[0-3]|[0-1]\d|\d)",
    "M": r"(?P<M>[0-5]\d|\d)",
    "S": r"(?P<S>6[0-1]|[0-5]\d|\d)",
    "m": r"(?P<m>1[0-2]|0[1-9]|[1-9])",
    "y": r"(?P<y>\d\d)",
    "Y": r"(?P<Y>\d\d\d\d)",
}

#: Directive -> regex, except ``ExY`` (which depends on the current year, see ``directives``).
_FIXED_DIRECTIVES: dict[str, str] = {
    "a": rf"(?P<a>{_alternatives(_DAYS)})",
    "A": rf"(?P<A>{_alternatives(_DAY_NAMES)})",
    "b": rf"(?P<b>{_alternatives(_MONTHS)})",
    "B": rf"(?P<B>{_alternatives(_MONTH_NAMES)})",
    "c": (
        rf"(?P<a>{_alternatives(_DAYS)})\s+(?P<b>{_alternatives(_MONTHS)})\s+{_STOCK['d']}"
        rf"\s+{_STOCK['H']}:{_STOCK['M']}:{_STOCK['S']}\s+{_STOCK['Y']}"
    ),
    "x": rf"{_STOCK['m']}/{_STOCK['d']}/{_STOCK['y']}",
    "X": rf"{_STOCK['H']}:{_STOCK['M']}:{_STOCK['S']}",
    "d": r"(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])",
    "Exd": r"(?P<d>[1-2]\d|0[1-9]|3[0-1])",
    "f": r"(?P<f>[0-9]{1,6})",
    "G": r"(?P<G>\d\d\d\d)",
    "H": r"(?P<H>[0-1]?\d|2[0-3])",
    "ExH": r"(?P<H>[0-1]\d|2[0-3])",
    "k": r" ?(?P<H>[0-2]?\d)",
    "Exk": r" ?(?P<H>[0-1]?\d|2[0-3])",
    "I": r"(?P<I>1[0-2]|0[1-9]|[1-9])",
    "l": r" ?(?P<I>1?\d)",
    "Exl": r" ?(?P<I>1[0-2]|\d)",
    "j": r"(?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])",
    "m": r"(?P<m>0?[1-9]|1[0-2])",
    "Exm": r"(?P<m>0[1-9]|1[0-2])",
    "M": r"(?P<M>[0-5]?\d)",
    "ExM": r"(?P<M>[0-5]\d)",
    "p": r"(?P<p>am|pm)",
    "S": r"(?P<S>[0-5]?\d|6[0-1])",
    "ExS": r"(?P<S>[0-5]\d|6[0-1])",
    "U": r"(?P<U>5[0-3]|[0-4]\d|\d)",
    "W": r"(?P<W>5[0-3]|[0-4]\d|\d)",
    "V": r"(?P<V>5[0-3]|0[1-9]|[1-4]\d|\d)",
    "w": r"(?P<w>[0-6])",
    "u": r"(?P<u>[1-7])",
    "y": r"(?P<y>\d\d)",
    "Exy": r"(?P<y>\d{2})",
    "Y": r"(?P<Y>\d{4})",
    "z": rf"(?P<z>Z|UTC|GMT|{_ZONE_OFFSET})",
    "Z": r"(?P<Z>Z|[A-Z]{3,5})",
    "Exz": rf"(?P<z>(?:{_ZONE_ABBR})?{_ZONE_OFFSET}|{_ZONE_ABBR})",
    "ExZ": rf"(?P<Z>{_ZONE_ABBR})",
    "%": "%",
}

_DIRECTIVE = re.compile(r"%(Ex[YydmHkMSlzZ]|[%aAbBcxXdfGHkIljmMpSUWVwuyYzZ])")
_ANY_PERCENT = re.compile(r"%")
#: Names or AM/PM in a pattern make fail2ban compile the whole date regex case-insensitive.
_NEEDS_IGNORECASE = re.compile(r"(?<!%)%[aAbBpc]")


def plausible_year_regex(current_year: int) -> str:
    """The ``%ExY`` regex: years of the decades from the 2000s to that of ``current_year + 3``."""
    decades = [str(d) for d in range(200, (current_year + 3) // 10 + 1)] or ["200"]
    return rf"(?P<Y>(?:{'|'.join(decades)})\d)"


def directives(current_year: int) -> dict[str, str]:
    """Every directive's regex, with ``%ExY`` computed for ``current_year``."""
    return _FIXED_DIRECTIVES | {"ExY": plausible_year_regex(current_year)}


def expand_directives(pattern: str, table: Mapping[str, str]) -> str:
    """Replace each ``%X`` of ``pattern`` with its regex.

    Raises:
        ValueError: ``pattern`` holds a ``%`` that starts no known directive.
    """
    parts: list[str] = []
    pos = 0
    for found in _DIRECTIVE.finditer(pattern):
        parts.append(pattern[pos : found.start()])
        parts.append(table[found.group(1)])
        pos = found.end()
    rest = pattern[pos:]
    stray = [p for p in parts[::2] + [rest] if _ANY_PERCENT.search(p)]
    if stray:
        raise ValueError(f"unknown or unescaped '%' in {pattern!r}")
    parts.append(rest)
    return "".join(parts)


def needs_ignorecase(pattern: str) -> bool:
    """Whether fail2ban compiles this datepattern with ``(?iu)`` (month/day names, AM/PM)."""
    return _NEEDS_IGNORECASE.search(pattern) is not None


# Zone abbreviations, fixed offsets in hours, no DST (the table fail2ban uses: CET is +1 all
# year). Mixed-case names can never match the upper-case zone syntax, so none are listed.
_ZONE_TABLE = """
-12 Y
-11 X NUT SST
-10 W CKT HAST HST TAHT TKT
-9 V AKST GAMT GIT HADT HNY
-8 U AKDT CIST HAY HNP PST PT
-7 T HAP HNR MST PDT
-6 S CST EAST GALT HAR HNC MDT
-5 R CDT COT EASST ECT EST ET HAC HNE PET
-4 Q AST BOT CLT COST EDT FKT GYT HAE HNA PYT
-3 P ADT ART BRT CLST FKST GFT HAA PMST PYST SRT UYT WGT
-2 O BRST FNT PMDT UYST WGST
-1 N AZOT CVT EGT
0 Z EGST GMT UTC WET WT
1 A CET DFT WAT WEDT WEST
2 B CAT CEDT CEST EET SAST WAST
3 C EAT EEDT EEST IDT MSK
4 D AMT AZT GET GST KUYT MSD MUT RET SAMT SCT
5 E AMST AQTT AZST HMT MAWT MVT PKT TFT TJT TMT UZT YEKT
6 F ALMT BIOT BTT IOT KGT NOVT OMST YEKST
7 G CXT DAVT HOVT ICT KRAT NOVST OMSST THA WIB
8 H ACT AWST BDT BNT CAST HKT IRKT KRAST MYT PHT SGT ULAT WITA WST
9 I AWDT IRKST JST KST PWT TLT WDT WIT YAKT
10 K AEST PGT VLAT YAKST YAPT
11 L AEDT LHDT MAGT NCT PONT SBT VLAST VUT
12 M ANAST ANAT FJT GILT MAGST MHT NZST PETST PETT TVT WFT
13 FJST NZDT
11.5 NFT
10.5 ACDT LHST
9.5 ACST
6.5 CCT MMT
5.75 NPT
5.5 SLT
4.5 AFT IRDT
3.5 IRST
-2.5 HAT NDT
-3.5 HNT NST NT
-4.5 HLV VET
-9.5 MART MIT
"""
#: Zone abbreviation -> offset in minutes.
ZONE_OFFSETS: dict[str, int] = {
    name: int(float(hours) * 60)
    for hours, *names in (row.split() for row in _ZONE_TABLE.strip().splitlines())
    for name in names
}
_ZONE_SPEC = re.compile(rf"({_ZONE_ABBR})?({_ZONE_OFFSET})?")


@functools.lru_cache(maxsize=256)
def zone_offset(text: str) -> int:
    """Offset in minutes of a zone: ``Z``/``UTC``/``GMT``, ``±hh[[:]mm]``, ``CET``, ``CET+0100``.

    Raises:
        ValueError: not a zone fail2ban understands (unknown abbreviation, lower case, ...).
    """
    if text in ("Z", "UTC", "GMT"):
        return 0
    found = _ZONE_SPEC.fullmatch(text)
    if found is None:
        raise ValueError(f"unknown or unsupported time zone {text!r}")
    abbr, offset = found.groups()
    base = 0
    if abbr:
        if abbr not in ZONE_OFFSETS:
            raise ValueError(f"unknown time zone abbreviation {abbr!r}")
        base = ZONE_OFFSETS[abbr]
    if not offset:
        return base
    sign = -1 if offset[0] == "-" else 1
    if len(offset) <= 3:
        return base + int(offset) * 60
    minutes = offset[4:6] if offset[3] == ":" else offset[3:5]
    return base + sign * (int(offset[1:3]) * 60 + int(minutes))


class DateFields(NamedTuple):
    """What a date match says, before "now" fills the gaps. ``None`` means not in the text."""

    year: int | None
    month: int | None
    day: int | None
    hour: int
    minute: int
    second: int
    offset: int | None  # minutes east of UTC, from the text
    julian: int | None = None
    week: int | None = None
    week_starts_monday: bool = False
    weekday: int | None = None  # 0 = Monday

    @property
    def needs_now(self) -> bool:
        """Whether the epoch depends on the current time (year or day missing)."""
        return self.year is None or (self.month is None and self.day is None)


def parse_fields(groups: Mapping[str, str | None]) -> DateFields:
    """Read the named groups of a date match, in order (a later group wins, as in fail2ban).

    Raises:
        ValueError: a zone that cannot be used, or an impossible combination.
    """
    # slots of DateFields: year month day hour minute second offset julian week monday weekday
    values: list[int | bool | None] = [None, None, None, 0, 0, 0, None, None, None, False, None]
    for key, val in groups.items():
        if val is None:
            continue
        slot = _PLAIN_SLOTS.get(key)
        if slot is not None:
            values[slot] = int(val)
        elif key not in _SPECIAL:
            continue  # %f, %p (read with %I), helper groups such as _sep
        elif key == "y":
            values[0] = int(val) + 2000  # two-digit years always mean 20xx
        elif key in ("b", "B"):
            values[1] = _name_number(_MONTH_NUMBER, val)
        elif key == "I":
            values[3] = _twelve_hour(int(val), (groups.get("p") or "").lower())
        elif key in ("a", "A"):
            values[10] = _name_number(_WEEKDAY_NUMBER, val)
        elif key == "w":
            values[10] = (int(val) - 1) % 7
        elif key in ("U", "W"):
            values[8], values[9] = int(val), key == "W"
        else:  # z, Z
            values[6] = zone_offset(val)
    return DateFields(*values)  # type: ignore[arg-type]


_PLAIN_SLOTS = {"Y": 0, "m": 1, "d": 2, "H": 3, "M": 4, "S": 5, "j": 7}
_SPECIAL = frozenset("y b B I a A w U W z Z".split())


def _name_number(table: Mapping[str, int], name: str) -> int:
    # case-insensitive matching also lets through look-alikes such as "ſep" (long s)
    number = table.get(name.lower())
    if number is None:
        raise ValueError(f"not an English month or day name: {name!r}")
    return number


def _twelve_hour(hour: int, ampm: str) -> int:
    if ampm in ("", "am"):
        return 0 if hour == 12 else hour
    if ampm == "pm" and hour != 12:
        return hour + 12
    return hour


def _julian_from_week(year: int, week: int, weekday: int, starts_monday: bool) -> int:
    first = calendar.weekday(year, 1, 1)
    if not starts_monday:
        first = (first + 1) % 7
        weekday = (weekday + 1) % 7
    if week == 0:
        return 1 + weekday - first
    return 1 + (7 - first) % 7 + 7 * (week - 1) + weekday


_EPOCH_DAY = 719163  # date(1970, 1, 1).toordinal()
_MIN_NAIVE = -62135596800  # 0001-01-01T00:00:00 in naive seconds
_MAX_NAIVE = 253402300799  # 9999-12-31T23:59:59


def _naive(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("time out of range")
    days = datetime.date(year, month, day).toordinal() - _EPOCH_DAY  # ValueError if no such day
    return days * 86400 + hour * 3600 + minute * 60 + second


def fields_to_epoch(
    fields: DateFields,
    *,
    default_offset: int | None,
    now_naive: Callable[[], float],
    local_to_epoch: Callable[[int], float],
) -> float:
    """The epoch of ``fields``, with fail2ban's rules for what the text leaves out.

    ``default_offset`` is ``logtimezone`` in minutes (``None``: local time); ``now_naive`` is
    "now" as naive local seconds; ``local_to_epoch`` turns naive local seconds into an epoch.
    Missing year: this year, or last year when that is more than a day ahead of now. Missing
    month and day: today, or yesterday when that is ahead of now.

    Raises:
        ValueError: the fields name no real date or time.
    """
    now = now_naive() if fields.needs_now else None
    year, month, day = fields.year, fields.month, fields.day
    if year is None:
        assert now is not None
        year = _civil(now)[0]
    julian = fields.julian
    if julian is None and fields.week is not None and fields.weekday is not None:
        julian = _julian_from_week(year, fields.week, fields.weekday, fields.week_starts_monday)
    if (month is None or day is None) and julian is not None:
        ordinal = julian - 1 + _EPOCH_DAY + _naive(year, 1, 1, 0, 0, 0) // 86400
        if not 1 <= ordinal <= 3652059:
            raise ValueError("day of year out of range")
        year, month, day = _civil((ordinal - _EPOCH_DAY) * 86400.0)
    assume_today = month is None and day is None
    if assume_today:
        assert now is not None
        _, month, day = _civil(now)
    if month is None or day is None:
        raise ValueError("a month without a day, or a day without a month")
    naive = _naive(year, month, day, fields.hour, fields.minute, fields.second)
    offset = fields.offset if fields.offset is not None else default_offset
    if offset is not None:
        naive -= offset * 60
    if assume_today and now is not None and naive > now:
        naive -= 86400
    if fields.year is None and now is not None and naive > now + 86400:
        # fail2ban keeps the (shifted) time of day but resets year, month and day
        naive = _naive(year - 1, month, day, 0, 0, 0) + naive % 86400
    if not _MIN_NAIVE <= naive <= _MAX_NAIVE:
        raise ValueError("date out of range")
    if offset is not None:
        return float(naive)
    return local_to_epoch(naive)


def _civil(naive: float) -> tuple[int, int, int]:
    tm = time.gmtime(naive)
    return tm.tm_year, tm.tm_mon, tm.tm_mday
