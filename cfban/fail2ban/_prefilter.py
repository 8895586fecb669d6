"""A safe literal prefilter: lines that cannot produce a failure skip the whole pipeline.

Every match of a regex contains the literal text its pattern requires at top level (text not
inside an optional part, an alternation, a repeat that may run zero times, a look-around or a
case-insensitive part). :func:`required_literals` finds those literals by walking the parsed
regex (``re._parser``).

The regexes see the line with its date cut out, so a literal in the cut line is either in the
raw line too, or it spans the cut: ``L = x + y`` with ``x`` just before the date and ``y`` just
after it, both in the raw line. Splitting ``L`` at an inner position ``m`` into the probes
``head = L[:m + 1]`` and ``tail = L[m:]`` covers both cases: ``tail`` is a substring of ``L``
and of every ``y`` of a cut at or before ``m``; ``head`` is a substring of every ``x`` of a cut
after ``m``. So a raw line that contains neither probe cannot contain ``L`` once its date is
cut, whatever and wherever the date is, and cannot match the regex.

A line can give a failure only if some failregex matches it, and, when there is a prefregex,
if the prefregex matches it too (failregexes then see a part of the cut line). The
:class:`Prefilter` therefore passes a line when the prefregex's probes (if any) and at least
one failregex's probes are found in it. When a failregex requires no usable literal the
failregex part is dropped; when nothing is left there is no prefilter (``build`` gives
``None``). Multi-line filters (``maxlines > 1``) get none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

#: Probes shorter than this are found in almost any line: not worth checking.
MIN_PROBE_CHARS = 2
#: A literal the date cut cannot split is used alone from this length on (else: probes).
MIN_UNCUT_CHARS = 4

_NEWLINE = ord("\n")  # the buffer gets a "\n" the raw line does not have
_INLINE_OPS = frozenset({sre.SUBPATTERN, sre.ATOMIC_GROUP})
_REPEATS = frozenset(
    {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
)


def requirements(pattern: re.Pattern[str]) -> list[tuple[str, ...]]:
    """What every match of ``pattern`` contains: groups of literals, one of each group.

    A group of one is a literal every match contains; a larger group comes from an
    alternation (each alternative's longest literal). Literals never contain ``\\n``.
    Conservative: an empty list means "nothing is known", never "no match possible". A pattern
    with a global case-insensitive flag gives none.
    """
    if pattern.flags & re.IGNORECASE:
        return []
    try:
        parsed = sre_parse.parse(pattern.pattern, pattern.flags & ~re.UNICODE)
    except (re.error, RecursionError, OverflowError):  # pragma: no cover - it compiled
        return []
    if parsed.state.flags & re.IGNORECASE:
        return []
    found: list[tuple[str, ...]] = []
    _walk(parsed, found, [])
    return list(dict.fromkeys(found))


def required_literals(pattern: re.Pattern[str]) -> list[str]:
    """The literals every match of ``pattern`` contains, longest first."""
    single = {group[0] for group in requirements(pattern) if len(group) == 1}
    return sorted(single, key=lambda text: (-len(text), text))


def _walk(items: Iterable[tuple[Any, Any]], found: list[tuple[str, ...]], run: list[str]) -> None:
    """Collect the requirements of a mandatory sequence into ``found``; ``run``: open literal."""
    for op, av in items:
        if op is sre.LITERAL and av != _NEWLINE:
            run.append(chr(av))
            continue
        if op in _INLINE_OPS:
            sub = av if op is sre.ATOMIC_GROUP else av[3]
            if op is sre.SUBPATTERN and av[1] & re.IGNORECASE:
                _close(run, found)
                continue
            _walk(sub, found, run)
            continue
        _close(run, found)
        if op in _REPEATS and av[0] >= 1:
            _walk(av[2], found, [])
        elif op is sre.BRANCH:
            _branch(av[1], found)
    _close(run, found)


def _branch(alternatives: Iterable[Any], found: list[tuple[str, ...]]) -> None:
    """An alternation requires what one of its alternatives requires, if each requires some."""
    group: list[str] = []
    for alternative in alternatives:
        inner: list[tuple[str, ...]] = []
        _walk(alternative, inner, [])
        if not inner:
            return
        best: tuple[str, ...] = max(inner, key=_strength)
        group.extend(best)
    found.append(tuple(dict.fromkeys(group)))


def _strength(group: tuple[str, ...]) -> tuple[int, int]:
    """How selective a requirement is: its shortest literal, then fewer alternatives."""
    return min(len(text) for text in group), -len(group)


def _close(run: list[str], found: list[tuple[str, ...]]) -> None:
    if run:
        found.append(("".join(run),))
        run.clear()


def probes(literal: str) -> tuple[str, ...]:
    """The substrings of ``literal`` a raw line must contain if its cut line contains it."""
    if len(literal) <= 1:
        return (literal,)
    middle = (len(literal) - 1) // 2
    return (literal[: middle + 1], literal[middle:])


def best_probes(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """The probes of ``pattern``'s most selective required literal, or ``None``."""
    best: tuple[str, ...] | None = None
    for literal in required_literals(pattern):
        candidate = probes(literal)
        weakest = min(len(p) for p in candidate)
        if weakest < MIN_PROBE_CHARS:
            continue
        if best is None or weakest > min(len(p) for p in best):
            best = candidate
    return best


@dataclass(frozen=True)
class DateCut:
    """What a date template tells of the text before the date it cuts out of a line.

    ``last_chars``: the characters that text can end with (``None``: any); ``max_len``: its
    longest length (``None``: unbounded). A literal that cannot straddle the cut under every
    template of a filter needs no probes: the literal itself must be in the raw line.
    """

    last_chars: frozenset[str] | None
    max_len: int | None


_UNKNOWN_CUT = DateCut(None, None)
_LINE_START = frozenset({sre.AT_BEGINNING, sre.AT_BEGINNING_STRING})


def _parse(pattern: re.Pattern[str]) -> Any:
    return sre_parse.parse(pattern.pattern, pattern.flags & ~re.UNICODE)


def _starts_at_line_start(parsed: Any, flags: int) -> bool:
    items = list(parsed)
    return (
        not flags & re.MULTILINE
        and not parsed.state.flags & re.MULTILINE
        and bool(items)
        and items[0][0] is sre.AT
        and items[0][1] in _LINE_START
    )


def date_cut(regex: re.Pattern[str]) -> DateCut:
    """What ``regex`` (a date template; group 1 is the date) tells of the text before a date.

    Remembered per pattern: the prefilter and the candidate finder each ask it of every
    date template of a filter, and parsing a template costs a fraction of a millisecond.
    """
    return _date_cut(regex.pattern, regex.flags)


@functools.lru_cache(maxsize=256)
def _date_cut(pattern: str, flags: int) -> DateCut:
    try:
        parsed = sre_parse.parse(pattern, flags & ~re.UNICODE)
    except (re.error, RecursionError, OverflowError):  # pragma: no cover - it compiled
        return _UNKNOWN_CUT
    items = list(parsed)
    index = next(
        (i for i, (op, av) in enumerate(items) if op is sre.SUBPATTERN and av[0] == 1), None
    )
    if index is None:
        return _UNKNOWN_CUT
    prefix = items[:index]
    last_chars: frozenset[str] | None = None
    if prefix and prefix[-1][0] is sre.LITERAL:
        char = chr(prefix[-1][1])
        folding = (flags | parsed.state.flags) & re.IGNORECASE
        if not (folding and (char.isalpha() or char.lower() != char.upper())):
            last_chars = frozenset(char)
    max_len: int | None = None
    if not prefix:
        max_len = 0 if _starts_at_line_start(parsed, flags) else None
    elif _starts_at_line_start(parsed, flags):
        widest = sre_parse.SubPattern(parsed.state, prefix).getwidth()[1]
        max_len = widest if widest < sre.MAXREPEAT else None
    return DateCut(last_chars, max_len)


def literal_offsets(pattern: re.Pattern[str]) -> list[tuple[str, int]]:
    """The top-level literals of ``pattern`` (outside alternations and repeats), each with its
    least offset from the start of a match."""
    if pattern.flags & re.IGNORECASE:
        return []
    try:
        parsed = _parse(pattern)
    except (re.error, RecursionError, OverflowError):  # pragma: no cover - it compiled
        return []
    if parsed.state.flags & re.IGNORECASE:
        return []
    found: list[tuple[str, int]] = []
    run: list[str] = []
    start = offset = 0

    def close() -> None:
        if run:
            found.append(("".join(run), start))
            run.clear()

    def walk(items: Iterable[tuple[Any, Any]]) -> None:
        nonlocal start, offset
        for op, av in items:
            if op is sre.LITERAL and av != _NEWLINE:
                if not run:
                    start = offset
                run.append(chr(av))
                offset += 1
                continue
            if op is sre.ATOMIC_GROUP or (op is sre.SUBPATTERN and not av[1] & re.IGNORECASE):
                walk(av if op is sre.ATOMIC_GROUP else av[3])
                continue
            close()
            offset += sre_parse.SubPattern(parsed.state, [(op, av)]).getwidth()[0]

    walk(parsed)
    close()
    return found


def uncut_literal(pattern: re.Pattern[str], cuts: Iterable[DateCut]) -> str | None:
    """The longest literal of ``pattern`` that no template's date cut can straddle, if any.

    A cut straddles a literal only if the text before the date ends with one of the literal's
    characters but its last, or if that text (at most ``max_len`` long, at the line start)
    ends inside the literal, which then starts before ``max_len``: it cannot when the
    literal's least offset in any match (the cut line, or a part of it) is ``max_len`` or more.
    """
    cuts = tuple(cuts)
    best: str | None = None
    for literal, offset in literal_offsets(pattern):
        inner = set(literal[:-1])
        safe = all(
            (cut.last_chars is not None and not inner & cut.last_chars)
            or cut.max_len == 0
            or (cut.max_len is not None and offset >= cut.max_len)
            for cut in cuts
        )
        if safe and len(literal) >= MIN_UNCUT_CHARS and (best is None or len(literal) > len(best)):
            best = literal
    return best


def formula(pattern: re.Pattern[str]) -> list[tuple[str, ...]]:
    """All usable requirements of ``pattern`` as probe groups, most selective first.

    Each group lists probes of which a raw line that could match contains at least one.
    """
    groups: list[tuple[str, ...]] = []
    for group in sorted(requirements(pattern), key=_strength, reverse=True):
        found = [probes(text) for text in group]
        if any(min(len(p) for p in pair) < MIN_PROBE_CHARS for pair in found):
            continue
        groups.append(tuple(dict.fromkeys(p for pair in found for p in pair)))
    return groups


@dataclass(frozen=True)
class Prefilter:
    """The probes of a filter and the compiled test ``might_match(line) -> bool``.

    ``required``: probes of which one must be in the line (prefregex); ``any_of``: probes of
    which one must be in the line (the best literal of each failregex). Lines that pass both
    are then checked against every requirement of the prefregex and of each failregex.
    ``plain_text_safe``: no probe holds U+FFFD or NUL, so the test may be run on the plain
    decoded bytes of a line instead of ``decode_line``'s result.
    """

    required: tuple[str, ...]
    any_of: tuple[str, ...]
    might_match: Callable[[str], bool]
    plain_text_safe: bool = False

    def __repr__(self) -> str:
        return f"Prefilter(required={self.required!r}, any_of={self.any_of!r})"


def build(
    prefregex: re.Pattern[str] | None,
    failregex: Iterable[re.Pattern[str]],
    cuts: Iterable[DateCut] | None = None,
) -> Prefilter | None:
    """The prefilter for a single-line filter with these regexes, or ``None`` if none helps.

    ``cuts``: what the filter's date templates tell of where they cut (``None``: unknown, so
    every literal is tested through its probes).
    """
    known_cuts = tuple(cuts) if cuts is not None else None

    def first_probes(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
        if known_cuts is not None:
            literal = uncut_literal(pattern, known_cuts)
            if literal is not None:
                return (literal,)
        return best_probes(pattern)

    required: tuple[str, ...] = ()
    # the test: every group of "first" and of "then" matched; "either": one of its parts
    then: list[list[tuple[str, ...]]] = []
    if prefregex is not None:
        required = first_probes(prefregex) or ()
        then.append(formula(prefregex))
    any_of: list[str] = []
    either: list[list[tuple[str, ...]]] = []
    for pattern in failregex:
        found = first_probes(pattern)
        if found is None:
            any_of, either = [], []
            break
        any_of.extend(p for p in found if p not in any_of)
        either.append(formula(pattern))
    if not required and not any_of:
        return None
    first = [group for group in (required, tuple(any_of)) if group]
    probes_used = {p for group in first for p in group}
    probes_used.update(p for part in then + either for group in part for p in group)

    def expression(show: Callable[[str], str]) -> str:
        def one_of(group: Iterable[str]) -> str:
            return "(" + " or ".join(f"{show(p)} in line" for p in group) + ")"

        def all_of(groups: list[tuple[str, ...]]) -> str:
            return "(" + " and ".join(one_of(g) for g in groups) + ")" if groups else "True"

        parts = [one_of(group) for group in first] + [all_of(part) for part in then]
        if either:
            parts.append("(" + " or ".join(all_of(part) for part in either) + ")")
        return " and ".join(parts)

    test: Callable[[str], bool] = _compile(expression(repr))
    safe = not any(_NOT_PLAIN.intersection(p) for p in probes_used)
    return Prefilter(required, tuple(any_of), test, safe)


# ``decode_line`` strips a raw line's ends and turns inner NULs into U+FFFD: a probe without
# either character that is in its result is in the plain decoded text too.
_NOT_PLAIN = frozenset("\ufffd\x00")


def _compile(expression: str) -> Callable[[Any], bool]:
    """One Python function of ``in`` tests with the probes as constants (no loop, no lookups)."""
    source = "lambda line: " + expression
    test: Callable[[Any], bool] = eval(source, {"__builtins__": {}})  # noqa: S307 - reprs only
    return test
