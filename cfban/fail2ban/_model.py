"""The values that flow between the parts of the fail2ban layer. Plain dataclasses, frozen
except the two made per log line, :class:`DateMatch` and :class:`Failure` (read-only by
convention)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RegexSource:
    """One regex of a filter, after config-time interpolation, with where it was written.

    ``option`` is the option it belongs to (``failregex``, ``ignoreregex``, ``prefregex``);
    ``path``/``line`` locate the option in the file that defined it (best effort).
    """

    text: str
    option: str
    path: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class FilterDefinition:
    """A filter as fail2ban's client would hand it to the server: all interpolation done.

    Regex tags such as ``<HOST>`` are still in the text; ``_regex`` expands them.
    ``datepattern`` is ``None`` when the filter sets none (default templates apply); it is
    the interpolated value, so ``%%`` is already ``%``.
    """

    name: str
    failregex: tuple[RegexSource, ...]
    ignoreregex: tuple[RegexSource, ...] = ()
    prefregex: RegexSource | None = None
    datepattern: str | None = None
    maxlines: int = 1
    usedns: str = "no"
    logtimezone: str | None = None
    files: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: one per new date text, and frozen costs 3x to make
class DateMatch:
    """Where a date was found in a line, and what time it means.

    ``start``/``end`` delimit the text to cut before matching (fail2ban's group 1 of the
    date regex); ``epoch`` is ``None`` for ``{NONE}`` templates (a line with no date).
    """

    start: int
    end: int
    epoch: float | None


@dataclass(slots=True)  # not frozen: made once per failure, and frozen costs 3x to make
class Failure:
    """One failure found in the log.

    ``host`` is the failure's address, normalised (IPv6 compressed lower-case, IPv4-mapped
    IPv6 as IPv4, brackets stripped), or the raw id/name when it is not an address.
    ``groups`` holds every named group the regexes captured (``user``, ``fid``, custom
    ``<F-NAME>`` groups, ...); ``lines`` the original matched line(s), date included.
    """

    host: str | None
    time: float | None
    groups: Mapping[str, str] = field(default_factory=dict)
    lines: tuple[str, ...] = ()
    regex_index: int = 0
