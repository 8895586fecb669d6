"""Saying that delivery fails, wherever a person or fail2ban's log may see it.

The delivery record (:class:`cfban.state.DeliveryRecord`) and the outbox's oldest operation
say whether bans reach Cloudflare. :func:`delivery_warning` turns them into the one-line
warning the hook prints on stderr (fail2ban logs an action's stderr) and ``cfban status``
shows. Standard library only.
"""

from __future__ import annotations

import time

from cfban.state import DeliveryRecord


def age(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def delivery_warning(
    record: DeliveryRecord, oldest_queued_at: float | None, now: float
) -> str | None:
    """One line saying that delivery is failing, or None when it is not."""
    if not record.failing or record.failing_since is None:
        return None
    waiting = (
        f"; the oldest queued ban has waited {age(now - oldest_queued_at)}"
        if oldest_queued_at is not None
        else ""
    )
    fix = f" (fix: {record.fix})" if record.fix else ""
    return (
        f"delivery to Cloudflare has failed since {stamp(record.failing_since)}: "
        f"{record.kind or 'error'}: {record.last_error}{fix}{waiting}"
    )
