"""One native regex over whole chunks that every line a filter can match also matches.

For each failregex this builds a *chain*: the parts of the regex that every match contains,
in order, joined by "anything but a line end" (``[^\\n]*?``). Zero-width parts (anchors,
look-arounds, ``\\b``) are dropped. The chain of a regex with a positive lookahead follows the
lookahead's body and stops there (what follows may overlap the lookahead). Alternations give
an alternation of the alternatives' chains. The result matches a superset of the lines the
regex matches, so it may only be used to *find candidates*; the exact Python ``re`` match
follows on each candidate line.

Two things make a part unusable (it becomes a gap):

* it could match a line end (``\\s``, negated classes, ``.`` with DOTALL): the chain must stay
  within one line of the chunk;
* it could straddle the date cut. The failregexes see the line with its date cut out, so a part
  of a match may span the place of the date in the raw line. A part cannot if, for every date
  template of the filter, it cannot match the last character of the text before the date
  (``[`` for nginx's access log, whose date is in brackets), or it starts at or after the
  longest text a line-anchored template allows before the date (``max_len``), or that text
  is always empty.

The chain is built for ASCII text: lines with other bytes, or NUL (which the matcher rewrites),
are always candidates (``_candidates.PatternFinder``). Patterns with non-ASCII characters get no
chain. The native engine is ``google-re2`` (wheels for CPython 3.9-3.13 on Linux x86-64 and
aarch64, macOS and Windows; ``_engines``); without it ``_candidates.pattern_finder`` keeps
only the chains without gaps, for Python's ``re``, or the literal finder is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from cfban.fail2ban._cuts import REPEATS, ZERO_WIDTH, Cut, charset

__all__ = ["GAP_TEXT", "chain", "chain_pieces", "variants"]

_GAP = None  # a stretch of the line the chain says nothing about
GAP_TEXT = r"[^\n]*?"
_MAX_COUNT = 1000  # RE2's largest repeat count
#: A chain must require this many characters to be worth searching for.
MIN_CHAIN_CHARS = 3

Piece = str | None


def _items_chars(items: Iterable[tuple[Any, Any]], flags: int) -> frozenset[str] | None:
    """Every ASCII character a sequence of items can consume (``None``: unknown)."""
    out: set[str] = set()
    for op, av in items:
        chars = _item_chars(op, av, flags)
        if chars is None:
            return None
        out.update(chars)
    return frozenset(out)


def _item_chars(op: Any, av: Any, flags: int) -> frozenset[str] | None:
    single = charset(op, av, flags)
    if single is not None:
        return single
    if op in ZERO_WIDTH:
        return frozenset()
    if op is sre.SUBPATTERN:
        return _items_chars(av[3], (flags | av[1]) & ~av[2])
    if op is sre.ATOMIC_GROUP:
        return _items_chars(av, flags)
    if op is sre.BRANCH:
        out: set[str] = set()
        for alternative in av[1]:
            chars = _items_chars(alternative, flags)
            if chars is None:
                return None
            out.update(chars)
        return frozenset(out)
    if op in REPEATS:
        return _items_chars(av[2], flags)
    return None


def _class(chars: frozenset[str]) -> str:
    if len(chars) == 1:
        return _char(next(iter(chars)))
    codes = sorted(ord(c) for c in chars)
    parts: list[str] = []
    start = prev = codes[0]
    for code in [*codes[1:], -1]:
        if code == prev + 1:
            prev = code
            continue
        parts.append(_char(chr(start)) + ("" if prev == start else "-" + _char(chr(prev))))
        start = prev = code
    return "[" + "".join(parts) + "]"


def _char(char: str) -> str:
    return char if char.isalnum() else f"\\x{ord(char):02x}"


def _render(items: Iterable[tuple[Any, Any]], flags: int) -> str:
    """RE2 text for items already known to be safe (ASCII classes spelled out)."""
    out: list[str] = []
    for op, av in items:
        single = charset(op, av, flags)
        if single is not None:
            out.append(_class(single))
        elif op in ZERO_WIDTH:
            continue
        elif op is sre.SUBPATTERN:
            out.append("(?:" + _render(av[3], (flags | av[1]) & ~av[2]) + ")")
        elif op is sre.ATOMIC_GROUP:
            out.append("(?:" + _render(av, flags) + ")")
        elif op is sre.BRANCH:
            out.append("(?:" + "|".join(_render(alt, flags) for alt in av[1]) + ")")
        elif op in REPEATS:
            low, high = min(av[0], _MAX_COUNT), av[1]
            top = "" if high >= sre.MAXREPEAT or high > _MAX_COUNT else str(high)
            out.append(f"(?:{_render(av[2], flags)}){{{low},{top}}}")
        else:  # pragma: no cover - _item_chars refused it
            raise ValueError(f"cannot render {op}")
    return "".join(out)


class _Builder:
    def __init__(self, state: Any, cuts: Sequence[Cut]) -> None:
        self.state = state
        self.cuts = cuts

    def width(self, item: tuple[Any, Any]) -> int:
        low: int = sre_parse.SubPattern(self.state, [item]).getwidth()[0]
        return low

    def safe(self, op: Any, av: Any, flags: int, offset: int) -> bool:
        chars = _item_chars(op, av, flags)
        if chars is None or "\n" in chars:
            return False
        return all(cut.allows(chars, offset) for cut in self.cuts)

    def chain(
        self, items: Iterable[tuple[Any, Any]], flags: int, offset: int
    ) -> tuple[list[Piece], bool]:
        """The pieces of ``items`` starting ``offset`` into a match; True if it stopped early
        (at a lookahead: what follows may overlap it)."""
        pieces: list[Piece] = []
        for op, av in items:
            item = (op, av)
            if op is sre.ASSERT and av[0] == 1:  # a positive lookahead: follow its body
                inner, _ = self.chain(av[1], flags, offset)
                pieces.extend(inner)
                return pieces, True
            if op in ZERO_WIDTH:
                continue
            if self.safe(op, av, flags, offset):
                pieces.append(_render([item], flags))
                offset += self.width(item)
                continue
            stopped = False
            if op is sre.SUBPATTERN:
                inner, stopped = self.chain(av[3], (flags | av[1]) & ~av[2], offset)
                pieces.extend(inner)
            elif op is sre.ATOMIC_GROUP:
                inner, stopped = self.chain(av, flags, offset)
                pieces.extend(inner)
            elif op is sre.BRANCH:
                inner, stopped = self.branch(av[1], flags, offset)
                pieces.extend(inner)
            elif op in REPEATS and av[0] >= 1:
                inner, _ = self.chain(av[2], flags, offset)
                pieces.extend([*inner, _GAP])
            else:
                pieces.append(_GAP)
            if stopped:
                return pieces, True
            offset += self.width(item)
        return pieces, False

    def branch(
        self, alternatives: Iterable[Any], flags: int, offset: int
    ) -> tuple[list[Piece], bool]:
        """An alternation of the alternatives' chains (a gap if one requires nothing); True
        if one stopped early at a lookahead."""
        texts: list[str] = []
        stopped = False
        for alternative in alternatives:
            inner, early = self.chain(alternative, flags, offset)
            stopped = stopped or early
            text = join(inner)
            if text is None:
                return [_GAP], stopped
            texts.append(text)
        return [_GAP, "(?:" + "|".join(dict.fromkeys(texts)) + ")", _GAP], stopped


def join(pieces: Iterable[Piece]) -> str | None:
    """RE2 text of a chain, or ``None`` if it requires nothing.

    Pieces that may match nothing are left off both ends (a shorter chain matches more, so it
    stays a superset): a chain that starts with a required character lets the native engine
    skip ahead to it.
    """
    kept = list(pieces)
    while kept and (kept[0] is None or _required_chars(kept[0]) == 0):
        kept.pop(0)
    while kept and (kept[-1] is None or _required_chars(kept[-1]) == 0):
        kept.pop()
    out: list[str] = []
    gap = False
    for piece in kept:
        if piece is None:
            gap = True
            continue
        if gap:
            out.append(GAP_TEXT)
            gap = False
        out.append(piece)
    return "".join(out) if out else None


def chain_pieces(pattern: re.Pattern[str], cuts: Sequence[Cut]) -> list[Piece] | None:
    """The pieces of ``pattern``'s chain under these date cuts (``None``: no chain)."""
    if not pattern.pattern.isascii():
        return None
    try:
        parsed = sre_parse.parse(pattern.pattern, pattern.flags & ~re.UNICODE)
    except (re.error, RecursionError, OverflowError):  # pragma: no cover - it compiled
        return None
    flags = (pattern.flags | parsed.state.flags) & (re.IGNORECASE | re.DOTALL)
    builder = _Builder(parsed.state, cuts)
    try:
        pieces, _ = builder.chain(list(parsed), flags, 0)
    except (ValueError, RecursionError):
        return None
    return pieces


def chain(pattern: re.Pattern[str], cuts: Sequence[Cut]) -> str | None:
    """The RE2 text of ``pattern``'s chain under these date cuts, or ``None``."""
    pieces = chain_pieces(pattern, cuts)
    return join(pieces) if pieces is not None else None


#: The most variants of one chain tried on the first chunk.
MAX_VARIANTS = 10
#: The fewest letters and digits a word start needs to be tried as the start of a chain.
MIN_WORD = 4
_WORD_PIECE = re.compile(r"[A-Za-z0-9]")


def variants(pieces: Sequence[Piece]) -> list[str]:
    """The whole chain, then the chain without its leading runs, from each later run (pieces
    between gaps), then the chain from each word of letters and digits inside a run (at least
    :data:`MIN_WORD` of them): a shorter chain matches more lines, but the native engine
    skips ahead much faster to a start that is a rare word (``limiting`` rather than
    ``[a-z]+\\]``). Each matches a superset of the regex's lines: dropping leading pieces of
    a chain only widens it."""
    runs: list[list[Piece]] = [[]]
    for piece in pieces:
        if piece is None:
            runs.append([])
        else:
            runs[-1].append(piece)
    starts: list[tuple[int, int]] = [(index, 0) for index, run in enumerate(runs) if run]
    for index, run in enumerate(runs):
        starts.extend((index, at) for at in _word_starts(run) if at > 0)
    out: list[str] = []
    words = 0
    for index, at in starts:
        rest = [*runs[index][at:], _GAP] + [
            piece for later in runs[index + 1 :] for piece in [*later, _GAP]
        ]
        text = join(rest)
        if text is not None and _required_chars(text) >= MIN_CHAIN_CHARS and text not in out:
            out.append(text)
            words += at > 0
    runs_out = out[: len(out) - words]  # the whole chain first, then the latest runs
    return (runs_out[:1] + runs_out[1:][-(MAX_VARIANTS // 2 - 1) :] + out[len(runs_out) :])[
        :MAX_VARIANTS
    ]


def _word_starts(run: Sequence[Piece]) -> list[int]:
    """Where words of at least :data:`MIN_WORD` literal letters or digits start in ``run``."""
    found: list[int] = []
    length = 0
    for at, piece in enumerate([*run, None]):
        if piece is not None and _WORD_PIECE.fullmatch(piece):
            length += 1
            continue
        if length >= MIN_WORD:
            found.append(at - length)
        length = 0
    return found


@lru_cache(maxsize=4096)  # the jails on one file weigh the same chains' parts
def _required_chars(text: str) -> int:
    """The fewest characters a chain's text matches (it is Python syntax too)."""
    width: int = sre_parse.parse(text).getwidth()[0]
    return width
