"""The per-token request budget: 1,200 requests per 5 minutes by default (cloudflare-api.md §5).

Going over blocks every call from that token for the next 5 minutes (§5: "all calls are blocked
for the next 5 minutes"). Time comes from the emulator's clock, so a fake clock makes the window
pass instantly. The per-IP 200/s limit is not modelled (in-process requests have no address).
"""

from __future__ import annotations

import math
from collections import deque


class RateLimiter:
    """A sliding window of request times per key, and a block once the window overflows."""

    def __init__(self, limit: int = 1200, window: float = 300.0, block: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self._hits: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def hit(self, key: str, now: float) -> int | None:
        """Count one request; None if allowed, else the seconds to wait (``Retry-After``)."""
        until = self._blocked_until.get(key, 0.0)
        if until > now:
            return max(1, math.ceil(until - now))
        hits = self._prune(key, now)
        if len(hits) >= self.limit:
            self._blocked_until[key] = now + self.block
            return max(1, math.ceil(self.block))
        hits.append(now)
        return None

    def headers(self, key: str, now: float) -> dict[str, str]:
        """The ``Ratelimit`` and ``Ratelimit-Policy`` headers sent on every answer."""
        hits = self._prune(key, now)
        remaining = max(0, self.limit - len(hits))
        reset = math.ceil(hits[0] + self.window - now) if hits else 0
        until = self._blocked_until.get(key, 0.0)
        if until > now:
            remaining, reset = 0, math.ceil(until - now)
        window = math.ceil(self.window)
        return {
            "Ratelimit": f'"default";r={remaining};t={max(0, reset)}',
            "Ratelimit-Policy": f'"default";q={self.limit};w={window}',
        }

    def reset(self) -> None:
        self._hits.clear()
        self._blocked_until.clear()

    def _prune(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits
