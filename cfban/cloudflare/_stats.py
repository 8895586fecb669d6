"""Requests this process sent to Cloudflare, by route and status, for the metrics.

A route is the request path with every id replaced by ``{id}`` (``/accounts/{id}/rules/
lists/{id}/items``), so the number of series stays small whatever cfban touches. A request
that got no answer (network error, timeout) counts with status ``none``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

_ID = re.compile(r"/[0-9a-f]{32}(?=/|$)")
_lock = threading.Lock()
_counts: Counter[tuple[str, str, str]] = Counter()


def route_of(path: str) -> str:
    """``path`` with its ids replaced by ``{id}``."""
    return _ID.sub("/{id}", path)


def record_request(method: str, path: str, status: int | None) -> None:
    """Count one request."""
    key = (method.upper(), route_of(path), "none" if status is None else str(status))
    with _lock:
        _counts[key] += 1


def request_counts() -> dict[tuple[str, str, str], int]:
    """Requests so far, by (method, route, status)."""
    with _lock:
        return dict(_counts)
