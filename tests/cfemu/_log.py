"""The request log, and the path patterns used to count requests and aim faults.

A pattern is a path relative to the API base (``/client/v4`` left off) in which ``*`` or any
``{name}`` matches exactly one path segment, and ``**`` matches the rest of the path:
``/accounts/{account_id}/rules/lists/*/items`` or ``/zones/**``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex for a path pattern (see the module docstring)."""
    parts = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append(".*")
        elif segment == "*" or (segment.startswith("{") and segment.endswith("}")):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts) + "/?")


def path_matches(pattern: str, path: str) -> bool:
    return compile_pattern(pattern).fullmatch(path) is not None


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the emulator saw it.

    ``status`` is None when no answer was sent (a dropped connection or a timeout);
    ``fault`` names the injected fault, if any; ``applied`` says whether the request reached
    the API logic (False for edge faults: those never change state).
    """

    method: str
    path: str
    query: str
    status: int | None
    fault: str | None = None
    applied: bool = True


class RequestLog:
    """Every request in arrival order; thread-safe."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def select(self, method: str | None = None, pattern: str | None = None) -> list[LoggedRequest]:
        """Entries with this method (any if None) whose path matches ``pattern`` (any if None)."""
        return [
            e
            for e in self.entries
            if (method is None or e.method == method.upper())
            and (pattern is None or path_matches(pattern, e.path))
        ]

    def count(self, method: str | None = None, pattern: str | None = None) -> int:
        """How many requests match (see :meth:`select`)."""
        return len(self.select(method, pattern))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
