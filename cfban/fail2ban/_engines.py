"""Span searches over bytes: the native engine (``google-re2``), or Python's ``re``.

A :data:`SpanSearch` answers where a pattern first matches a chunk at or after a position.
:func:`compile_native` calls the compiled RE2 object directly when this version of the
package allows it (checked once per pattern), which saves the package's per-call Python
wrapping; :func:`compile_python` is the fallback where no wheel of ``google-re2`` exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["SpanSearch", "compile_native", "compile_python", "native_available"]


def native_available() -> bool:
    """Whether ``google-re2`` can be imported here."""
    try:
        import re2  # noqa: F401
    except ImportError:
        return False
    return True


#: Where a pattern first matches ``data`` at or after ``pos``: ``(start, end)``, or ``None``.
SpanSearch = Callable[[bytes, int], "tuple[int, int] | None"]


def compile_native(source: str) -> SpanSearch:
    """``source`` compiled by the native engine (``google-re2``), for bytes: its span search.

    The package's ``search`` wraps each call in Python (a generator, a match object): about
    5 us, more than the native search of a chunk's next candidate costs. The span search
    calls the compiled ``RE2`` object directly when it answers as expected (checked here
    once per pattern), else goes through the public ``search``.
    """
    import re2

    compiled = re2.compile(source.encode("ascii"))
    return _direct_span(compiled) or _span_of(compiled.search)


def _direct_span(compiled: Any) -> SpanSearch | None:
    """The compiled ``RE2`` object's own match call, if this version of the package has it
    and it agrees with the public ``search`` on a probe; else ``None``."""
    try:
        import re2

        match = compiled._regexp.Match
        unanchored = re2._Anchor.UNANCHORED
        probe = b"\n" + bytes(range(32, 127)) * 2
        expected = compiled.search(probe, 1)
        spans = match(unanchored, probe, 1, len(probe))
        if (expected.span() if expected is not None else (-1, -1)) != tuple(spans[0]):
            return None
    except Exception:  # noqa: BLE001 - any difference: use the public API
        return None

    def span(data: bytes, pos: int) -> tuple[int, int] | None:
        found: tuple[int, int] = match(unanchored, data, pos, len(data))[0]
        return None if found[0] < 0 else found

    return span


def compile_python(source: str) -> SpanSearch:
    """``source`` compiled by Python's ``re``, for bytes (chains are Python syntax too): its
    span search."""
    return _span_of(re.compile(source.encode("ascii")).search)


def _span_of(search: Callable[[bytes, int], Any]) -> SpanSearch:
    """The span search of a ``search`` that returns a match object or ``None``."""

    def span(data: bytes, pos: int) -> tuple[int, int] | None:
        found = search(data, pos)
        return None if found is None else found.span()

    return span
