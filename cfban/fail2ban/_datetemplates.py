"""Date templates: a ``datepattern`` value (or fail2ban's defaults) as compiled regexes.

Spec: fail2ban-format.md §3.1 (datepattern syntax) and §3.3 (default templates). Each template
is a regex whose group 1 is the text to cut; how fail2ban adds that group, the word and line
boundaries and the flags is reproduced in :func:`_shape`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from cfban.errors import FilterError
from cfban.fail2ban._strptime import directives, expand_directives, needs_ignorecase

#: The default templates, in fail2ban's order. Template 14 is the 1.0.2 form (HEAD also
#: accepts ``-`` between date and time and optional colons); Debian 12's 1.0.2 is the
#: reference cfban is tested against.
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    r"EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"TAI64N",
)

LN_BEG = "{^LN-BEG}"
_UNB = "{UNB}"
_LN_BEG_PREFIX = r"^(?:\W{0,2})?"
_WORD_BEGIN = r"(?=^|\b|\W)"
_WORD_END = r"(?=\b|\W|$)"
_EPOCH = r"\d{10,11}\b(?:\.\d{3,6})?"
_LONG_EPOCH = r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"

# How fail2ban reads the shape of a date regex (what counts as grouped, anchored, bounded).
_GROUPED = re.compile(r"(?<!\(\?)(?<!\\)\((?!\?)")
_WRAP = re.compile(r"^((?:\(\?\w+\))?\^?(?:\(\?\w+\))?)(.*?)(\$?)$")
_INLINE_FLAGS = re.compile(r"\(\?[a-z]+\)")
_NO_BEGIN_BOUND = re.compile(r"^\(*(?:\(\?\w+\))?(?:\^|\(*\*\*|\((?:\?:)?\^)")
_NO_END_BOUND = re.compile(r"(?<!\\)(?:\$\)?|\\b|\\s|\*\*\)*)$")
_STARS = re.compile(r"^\(*(?:\(\?\w+\))?\(*\*\*|(?<!\\)\*\*\)*$")
_LINE_BEGIN = re.compile(r"^(?:\(\?\w+\))?(?:\^|\((?:\?:)?\^(?!\|))")
_LINE_END = re.compile(r"(?<![\\|])(?:\$\)?)$")
_EMBEDDED_EPOCH = re.compile(r"(?<!\\)\{L?EPOCH\}", re.IGNORECASE)
_DATE_SLOT = re.compile(r"(?<!\\)\{DATE\}", re.IGNORECASE)
_UNBOUND = (
    re.compile(r"^\{UNB\}"),
    re.compile(r"^\{\^LN-BEG\}"),
    re.compile(r"^\((?:\?:)?\^\|\\b\|\\W\)"),
)
_UNBOUND_END = re.compile(r"\(\?=\\b\|\\W\|\$\)$")

Kind = Literal["pattern", "epoch", "long_epoch", "tai64n"]


@dataclass(frozen=True)
class DateTemplate:
    """One date template; group 1 of ``regex`` is the date text to cut.

    ``regex`` is compiled when first used: a filter uses only some of the 31 default
    templates (``{^LN-BEG}`` selects 17, a ``datepattern`` of its own often none), and
    compiling the others would cost a few milliseconds at every start. Templates from a
    filter's own ``datepattern`` are compiled (checked) when they are built.
    """

    name: str  # identity for duplicate detection, as fail2ban names templates
    pattern: str  # the text of ``regex``
    anchored: bool  # line-start or line-end anchored: a match ends the search
    kind: Kind = "pattern"
    value_group: int = 1  # epoch templates: the group holding the number
    line_begin: bool = False  # what ``{^LN-BEG}`` alone selects among the defaults
    text_key: bool = False  # group 1's text alone decides the epoch (a safe cache key)

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        """The compiled template."""
        return re.compile(self.pattern)


@dataclass(frozen=True)
class _Shape:
    regex: str
    name: str
    line_begin: bool
    line_end: bool


def _shape(regex: str, name: str, word_begin: bool | Literal["start"], word_end: bool) -> _Shape:
    """Add group 1, word/line boundaries and flags to a date regex, the way fail2ban does."""
    regex = regex.strip()
    flags = _INLINE_FLAGS.search(regex)
    if flags:
        regex = regex[: flags.start()] + regex[flags.end() :]
    bound_begin = bool(word_begin) and not _NO_BEGIN_BOUND.search(regex)
    bound_end = word_end and not _NO_END_BOUND.search(regex)
    if not _GROUPED.search(regex):
        regex = _WRAP.sub(r"\1(\2)\3", regex, count=1)
    line_begin = False
    if bound_begin:
        if word_begin == "start":
            regex = _LN_BEG_PREFIX + regex
            line_begin = True
            if not name.startswith(LN_BEG):
                name = LN_BEG + name
        else:
            regex = _WORD_BEGIN + regex
    if bound_end:
        regex += _WORD_END
    line_begin = line_begin or bool(_LINE_BEGIN.search(regex))
    line_end = bool(_LINE_END.search(regex))
    regex = _STARS.sub(lambda m: m.group().replace("**", ""), regex)
    if flags:
        regex = flags.group() + regex
    return _Shape(regex, name, line_begin, line_end)


def _compile(
    shape: _Shape, source: str, kind: Kind = "pattern", value_group: int = 1, *, check: bool
) -> DateTemplate:
    """The template of ``shape``; ``check``: compile it now (a filter's own datepattern)."""
    template = DateTemplate(
        name=shape.name,
        pattern=shape.regex,
        anchored=shape.line_begin or shape.line_end,
        kind=kind,
        value_group=value_group,
        line_begin=shape.line_begin,
        text_key=kind == "pattern" and _text_decides(shape.regex),
    )
    if check:
        _check(template, source)
    return template


def _check(template: DateTemplate, source: str) -> None:
    try:
        compiled = template.regex
    except (re.error, RecursionError, OverflowError) as exc:
        raise FilterError(
            f"datepattern {source!r} is not a valid regex: {exc}",
            hint="fix the datepattern line (in a filter file every % must be written %%)",
        ) from None
    if template.kind == "pattern" and compiled.groups < 1:
        raise FilterError(f"datepattern {source!r} has no group to cut")


_CONTEXT = re.compile(r"\(\?<?[=!]|\\[bBAZ1-9]|[$^]|\(\?\(")


def _text_decides(regex: str) -> bool:
    """Whether every named group is inside group 1, with nothing there that looks outside it.

    Then the text of group 1 fixes every captured field, so it can key the epoch cache.
    """
    span = _group_one(regex)
    if span is None:
        return False
    inside = regex[span[0] : span[1]]
    outside = regex[: span[0]] + regex[span[1] :]
    return "(?P<" not in outside and not _CONTEXT.search(inside)


def _group_one(regex: str) -> tuple[int, int] | None:
    """Where group 1 (the first capturing parenthesis) starts and ends in ``regex``."""
    stack: list[bool] = []
    start: int | None = None
    i, in_class = 0, False
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 1
            i += regex[i : i + 1] == "^"
            i += regex[i : i + 1] == "]"
            continue
        elif char == "(":
            capturing = regex[i + 1 : i + 2] != "?" or regex[i + 1 : i + 4] == "?P<"
            stack.append(start is None and capturing)
            if stack[-1]:
                start = i
        elif char == ")" and stack and stack.pop():
            assert start is not None
            return start, i + 1
        i += 1
    return None


def _pattern_template(pattern: str, table: dict[str, str], *, check: bool) -> DateTemplate:
    word_begin: bool | Literal["start"] = True
    word_end = True
    text = pattern
    if text.startswith(_UNB):
        text, word_begin, word_end = text[len(_UNB) :], False, False
    if word_begin and text.startswith(LN_BEG):
        text, word_begin = text[len(LN_BEG) :], "start"
    try:
        regex = expand_directives(text, table)
    except ValueError as exc:
        raise FilterError(
            f"datepattern {pattern!r}: {exc}",
            hint="use strptime directives such as %Y, %m, %d, %H:%M:%S, or write a literal % as %%",
        ) from None
    if needs_ignorecase(text):
        regex = "(?iu)" + regex
    return _compile(_shape(regex, text, word_begin, word_end), pattern, check=check)


def _epoch_template(
    pattern: str | None, *, line_begin: bool, long: bool, check: bool
) -> DateTemplate:
    number = _LONG_EPOCH if long else _EPOCH
    kind: Kind = "long_epoch" if long else "epoch"
    if pattern is not None:  # "{EPOCH}" inside a regex: the whole match is cut
        regex = "(" + _EMBEDDED_EPOCH.sub(lambda _: f"({number})", pattern) + ")"
        shape = _shape(regex, pattern, True, True)
        return _compile(shape, pattern, kind, value_group=2, check=check)
    name = "LongEpoch" if long else "Epoch"
    if line_begin:
        regex = rf"((?P<square>(?<=^\[))?{number})(?(square)(?=\]))"
        return _compile(_shape(regex, name, "start", True), name, kind, check=check)
    # at line start, just after a leading "[", or as an SELinux "audit(...)" stamp
    regex = (
        rf"((?:^|(?P<square>(?<=^\[))|(?P<selinux>(?<=\baudit\()))"
        rf"{number})(?:(?(selinux)(?=:\d+\)))|(?(square)(?=\])))"
    )
    return _compile(_shape(regex, name, False, True), name, kind, check=check)


def _make_template(pattern: str, table: dict[str, str], *, check: bool = True) -> DateTemplate:
    """One template from one datepattern line (special words ``EPOCH``, ``TAI64N``, ...).

    ``check``: compile it now, to report an invalid one (not for the default templates).
    """
    key = pattern if "%" in pattern else pattern.upper()
    if "EPOCH" in key:
        long = "LEPOCH" in key
        if _EMBEDDED_EPOCH.search(pattern):
            return _epoch_template(pattern, line_begin=False, long=long, check=check)
        for bare in ("EPOCH", "LEPOCH"):
            if key in (bare, LN_BEG + bare, "^" + bare):
                return _epoch_template(
                    None, line_begin=key != bare, long=bare == "LEPOCH", check=check
                )
    if key in ("TAI64N", LN_BEG + "TAI64N", "^TAI64N"):
        mode: bool | Literal["start"] = "start" if key != "TAI64N" else False
        shape = _shape("@[0-9a-f]{24}", "TAI64N", mode, True)
        return _compile(shape, pattern, "tai64n", check=check)
    return _pattern_template(pattern, table, check=check)


def _unbound(pattern: str) -> str:
    for prefix in _UNBOUND:
        pattern = prefix.sub("", pattern, count=1)
    return _UNBOUND_END.sub("", pattern, count=1)


def _fill_date(pattern: str, date: str) -> str:
    return _DATE_SLOT.sub(lambda _: date, pattern)


def _source_name(pattern: str) -> str:
    """What fail2ban's name of a default template is built from (its pattern or name)."""
    if pattern == "EPOCH":
        return "Epoch"
    return pattern


@functools.lru_cache(maxsize=64)
def _defaults(year: int) -> tuple[DateTemplate, ...]:
    """The 31 default templates for ``year``: line-start anchored copies first, then the 17."""
    table = directives(year)
    plain = tuple(_make_template(p, table, check=False) for p in DEFAULT_PATTERNS)
    anchored = tuple(
        _make_template(LN_BEG + p, table, check=False)
        for p in DEFAULT_PATTERNS
        if not p.startswith((LN_BEG, "^"))
    )
    return anchored + plain


@functools.lru_cache(maxsize=256)
def build_templates(datepattern: str | None, year: int) -> tuple[DateTemplate, ...]:
    """The templates of a ``datepattern`` value, in the order they are tried.

    Raises:
        FilterError: a line of the value is not a valid date template.
    """
    if datepattern is None:
        return _defaults(year)
    table = directives(year)
    templates: list[DateTemplate] = []
    names: set[str] = set()

    def add(candidates: list[DateTemplate], source: str, ignore_dup: bool) -> None:
        for template in candidates:
            if template.name in names:
                if ignore_dup:
                    continue
                raise FilterError(
                    f"datepattern {source!r} repeats the date template {template.name!r}",
                    hint="remove the duplicate datepattern line",
                )
            names.add(template.name)
            templates.append(template)

    for line in (part.strip() for part in datepattern.split("\n")):
        if not line:
            continue
        key = line if "%" in line else line.upper()
        some = bool(templates)
        if key == "{DEFAULT}":
            # fail2ban's filter for {DEFAULT} rejects every template (1.0.2 and later), so
            # it adds nothing; a value that yields no template at all gets the defaults below
            continue
        if key == LN_BEG:
            add([t for t in _defaults(year) if t.line_begin], line, some)
        elif "{DATE}" in key:
            expanded = [
                _make_template(_fill_date(line, _unbound(_source_name(p))), table)
                for p in DEFAULT_PATTERNS
            ]
            add(expanded, line, some)
        elif key == "{NONE}":
            add([_make_template(_UNB + "^", table)], line, False)
        else:
            add([_make_template(line, table)], line, False)
    return tuple(templates) or _defaults(year)
