"""Date detection: find a line's date with a ``datepattern`` and turn it into an epoch.

Spec: fail2ban-format.md §3 (and §2.4 for how the match is used). A :class:`DateDetector` is
built from a filter's ``datepattern`` (``None``: the default templates, see
``_datetemplates``) and finds, per line, the span to cut (group 1 of the winning template) and
the epoch it means (``_strptime``).

Template selection follows a freshly started fail2ban detector: templates are tried in order;
a match by a line-anchored template, a match at position 0 or 1, or a match by the last
template wins at once; other matches are held and the nearest one wins (the earlier template
on a tie). A long-running fail2ban also reorders templates by hits; for consistent logs the
result is the same.

Speed: trying up to 35 regexes through every line is slow. :class:`_SearchPlan` gives the
same answer with less work: each unanchored template is first only tried at positions 0 and
1 (where it would win at once), and only if no template wins that way are the unanchored ones
searched through the line, all at once, as one alternation (the leftmost match, the earlier
template on a tie: the loop's answer). Templates with numbered back-references cannot be
folded into one alternation; the detector then uses the plain loop. Results are cached per
date text (and position), so a burst of lines in the same second costs one parse.
"""

from __future__ import annotations

import calendar
import datetime
import math
import re
import time
from collections.abc import Callable
from typing import Any

from cfban.errors import FilterError
from cfban.fail2ban._datetemplates import DateTemplate, build_templates
from cfban.fail2ban._model import DateMatch
from cfban.fail2ban._strptime import DateFields, fields_to_epoch, parse_fields, zone_offset

_CACHE_LIMIT = 4096
_UNSEEN = object()
_WORD_BEGIN = r"(?=^|\b|\W)"
_LEADING_FLAGS = re.compile(r"\(\?([a-zA-Z]+)\)")
_NAMED = re.compile(r"\(\?P<(\w+)>|\(\?P=(\w+)\)|\(\?\((\w+)\)")
_NUMBERED_REFERENCE = re.compile(r"\\[1-9]|\(\?\(\d")


def _alternative(template: DateTemplate, index: int) -> tuple[str, str]:
    """(inline flags, body) of a template's regex, its group names made unique to ``index``."""
    regex = template.regex.pattern
    flags = ""
    leading = _LEADING_FLAGS.match(regex)
    if leading:
        flags, regex = leading.group(1).replace("u", ""), regex[leading.end() :]

    def rename(found: re.Match[str]) -> str:
        name, ref, cond = found.groups()
        if name:
            return f"(?P<{name}_{index}_>"
        if ref:
            return f"(?P={ref}_{index}_)"
        return f"(?({cond}_{index}_)"

    return flags, _NAMED.sub(rename, regex)


class _SearchPlan:
    """How :meth:`DateDetector.find` tries the templates, with the same result as the loop.

    ``steps`` are tried in order: an anchored template (or the last one) wins if it matches
    anywhere, an unanchored one only if it matches at position 0 or 1. If none does, ``late``
    (all other unanchored templates as one alternation) finds the nearest match.
    """

    def __init__(self, templates: tuple[DateTemplate, ...]) -> None:
        last = len(templates) - 1
        steps: list[tuple[int, re.Pattern[str], bool]] = []
        late: list[str] = []
        for index, template in enumerate(templates):
            if _NUMBERED_REFERENCE.search(template.regex.pattern):
                raise ValueError("numbered references cannot be folded")
            early = not template.anchored and index != last
            steps.append((index, template.regex, early))
            if early:
                late.append(self._late(index, *_alternative(template, index)))
        self.steps = tuple(steps)
        self.late = re.compile(self._fold(late)) if late else None
        self.late_index = {
            number: int(name[2:])
            for name, number in (self.late.groupindex.items() if self.late else ())
            if name.startswith("_t") and name[2:].isdigit()
        }

    @staticmethod
    def _late(index: int, flags: str, body: str) -> str:
        # the word-begin lookahead most templates start with is factored out of runs
        bounded = body.startswith(_WORD_BEGIN)
        if bounded:
            body = body[len(_WORD_BEGIN) :]
        scoped = f"(?{flags}:{body})" if flags else body
        return ("W" if bounded else "-") + f"(?P<_t{index}>{scoped})"

    @staticmethod
    def _fold(alternatives: list[str]) -> str:
        parts: list[str] = []
        run: list[str] = []
        for alternative in alternatives + ["-"]:
            if alternative[0] == "W":
                run.append(alternative[1:])
                continue
            if run:
                parts.append(_WORD_BEGIN + "(?:" + "|".join(run) + ")")
                run = []
            if alternative != "-":
                parts.append(alternative[1:])
        return "|".join(parts)


class DateDetector:
    """Finds the date of a log line with a filter's ``datepattern``, as fail2ban would.

    ``logtimezone`` (``UTC``, ``UTC+0200``, ``CET``, ...) applies to dates without a zone;
    without it they are local time of ``tz`` (default: the host's zone, as ``time.mktime``).
    ``now`` gives the current epoch: it decides missing years and days, and the ``%ExY``
    window of plausible years (fixed when the detector is built).

    Raises:
        FilterError: ``datepattern`` or ``logtimezone`` is not valid.
    """

    def __init__(
        self,
        datepattern: str | None,
        *,
        logtimezone: str | None = None,
        tz: datetime.tzinfo | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._now = now
        self._tz = tz
        try:
            self._default_offset = zone_offset(logtimezone) if logtimezone is not None else None
        except ValueError:
            raise FilterError(
                f"logtimezone {logtimezone!r} is not supported",
                hint="use a fixed offset such as UTC, UTC+0200, GMT-0500 or CET",
            ) from None
        year = time.gmtime(self._now_naive())[0]
        self.templates = build_templates(datepattern, year)
        self._parsed: dict[tuple[object, ...], float | DateFields | None] = {}
        self._matches: dict[tuple[int, int, str], DateMatch] = {}
        self._hours: dict[int, float] = {}
        self._minutes: dict[tuple[int, str, str], object] = {}
        self._last = len(self.templates) - 1
        #: Per template, the group number of its seconds (``%S``), 0 without.
        self._seconds = tuple(t.regex.groupindex.get("S", 0) for t in self.templates)
        try:
            self._plan: _SearchPlan | None = _SearchPlan(self.templates)
        except (ValueError, re.error, RecursionError, OverflowError):
            self._plan = None

    def find(self, line: str) -> DateMatch | None:
        """The date of ``line``: the span to cut and its epoch, or ``None`` if no template matches.

        ``epoch`` is ``None`` when the span is empty (``{NONE}``) or when the text matched
        but names no valid time (an impossible date, an unknown zone).
        """
        plan = self._plan
        if plan is None:
            return self.find_exhaustive(line)
        for index, regex, early in plan.steps:
            if early:
                found = regex.match(line) or regex.match(line, 1)
            else:
                found = regex.search(line)
            if found is not None:
                return self._result(index, found)
        if plan.late is None:
            return None
        late = plan.late.search(line)
        if late is None:
            return None
        index = plan.late_index.get(late.lastindex or 0, -1)
        found = self.templates[index].regex.match(line, late.start()) if index >= 0 else None
        if found is None:  # pragma: no cover - the alternation and the loop disagree
            return self.find_exhaustive(line)
        return self._result(index, found)

    def find_exhaustive(self, line: str) -> DateMatch | None:
        """:meth:`find` by trying every template in turn: the reference for the fast path."""
        held: tuple[int, re.Match[str]] | None = None
        for index, template in enumerate(self.templates):
            found = template.regex.search(line)
            if found is None:
                continue
            if template.anchored or found.start() <= 1 or index == self._last:
                return self._result(index, found)
            if held is None or found.start() < held[1].start():
                held = (index, found)
        if held is None:
            return None
        return self._result(*held)

    def _result(self, index: int, found: re.Match[str]) -> DateMatch:
        start, end = found.span(1)
        if start == end:
            return DateMatch(start, end, None)
        template = self.templates[index]
        text_key = template.text_key
        if text_key:  # the same date at the same place: the very same answer
            span_key = (index, start, found.string[start:end])
            known = self._matches.get(span_key)
            if known is not None:
                return known
            parsed = self._same_minute(index, found, start, end)
            if parsed is not _UNSEEN:
                result = DateMatch(start, end, parsed)  # type: ignore[arg-type]
                self._remember(self._matches, span_key, result)
                return result
        key = (index, found.group(1)) if text_key else (index, found.groups())
        parsed = self._parsed.get(key, _UNSEEN)
        if parsed is _UNSEEN:
            parsed = self._parse(template, found)
            self._remember(self._parsed, key, parsed)
        if isinstance(parsed, DateFields):  # depends on "now": never cached as a match
            try:
                return DateMatch(start, end, self._to_epoch(parsed))
            except ValueError:
                return DateMatch(start, end, None)
        assert parsed is None or isinstance(parsed, float)
        result = DateMatch(start, end, parsed)
        if text_key:
            self._remember(self._matches, span_key, result)
        return result

    @staticmethod
    def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value

    def _parse(self, template: DateTemplate, found: re.Match[str]) -> float | DateFields | None:
        """The epoch of a match, or the fields when it depends on "now"; ``None``: invalid."""
        if template.kind == "tai64n":
            return float(int(found.group(1)[2:17], 16))
        if template.kind != "pattern":
            value = found.group(template.value_group)
            if template.kind == "long_epoch" and len(value) >= 13:
                scale = 1e6 if len(value) >= 16 and "." not in value else 1e3
                return float(value) / scale
            return float(value)
        return self._parse_groups(found.groupdict())

    def _same_minute(self, index: int, found: re.Match[str], start: int, end: int) -> object:
        """The epoch of a date whose text alone decides it, from its minute's epoch plus its
        seconds (``%S``, 00-59): within a minute the epoch grows with the seconds, so a log
        costs one parse per minute. ``_UNSEEN`` when that does not apply (no ``%S``, or the
        epoch depends on "now")."""
        seconds = self._seconds[index]
        if not seconds:
            return _UNSEEN
        first, last = found.span(seconds)
        text = found.string
        if not (start <= first < last <= end and last - first <= 2):
            return _UNSEEN
        second = text[first:last]
        if not second.isdigit() or int(second) >= 60:
            return _UNSEEN
        minute = (index, text[start:first], text[last:end])
        base = self._minutes.get(minute, _UNSEEN)
        if base is _UNSEEN:
            base = self._parse_groups({**found.groupdict(), "S": "0"})
            self._remember(self._minutes, minute, base)
        if base is None:
            return None
        return base + int(second) if isinstance(base, float) else _UNSEEN

    def _parse_groups(self, groups: dict[str, str | Any]) -> float | DateFields | None:
        try:
            fields = parse_fields(groups)
            return fields if fields.needs_now else self._to_epoch(fields)
        except ValueError:
            return None

    def _to_epoch(self, fields: DateFields) -> float:
        return fields_to_epoch(
            fields,
            default_offset=self._default_offset,
            now_naive=self._now_naive,
            local_to_epoch=self._local_to_epoch,
        )

    def _now_naive(self) -> float:
        now = self._now()
        if self._tz is None:
            return calendar.timegm(time.localtime(now)) + (now - int(now))
        moment = datetime.datetime.fromtimestamp(now, self._tz)
        return calendar.timegm(moment.timetuple()) + moment.microsecond / 1e6

    def _local_to_epoch(self, naive: int) -> float:
        # mktime is slow (it re-reads the zone); an hour with no offset change is linear
        hour, into = divmod(naive, 3600)
        base = self._hours.get(hour)
        if base is None:
            try:
                start, end = self._mktime(hour * 3600), self._mktime(hour * 3600 + 3600)
                base = start if end - start == 3600 else math.nan
            except ValueError:
                base = math.nan
            if len(self._hours) >= _CACHE_LIMIT:
                self._hours.clear()
            self._hours[hour] = base
        if base != base:  # nan: the offset changes within this hour
            return self._mktime(naive)
        return base + into

    def _mktime(self, naive: int) -> float:
        tm = time.gmtime(naive)
        try:
            if self._tz is None:
                return time.mktime((*tm[:6], 0, 0, -1))
            return datetime.datetime(*tm[:6], tzinfo=self._tz).timestamp()
        except (OverflowError, OSError) as exc:
            raise ValueError(str(exc)) from None
