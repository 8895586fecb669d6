"""nginx access-log lines for tests: a probe of ``/.env`` that the nginx-probes filter
counts as one failure."""

from __future__ import annotations

import time

PROBE = '{ip} - - [{date}] "GET /.env HTTP/1.1" 404 153 "-" "curl/8"\n'


def log_date(when: float | None = None) -> str:
    """``when`` (default now) as nginx writes it."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(when))


def probe(ip: str, when: float | None = None) -> str:
    """One probe line from ``ip`` at ``when`` (default now)."""
    return PROBE.format(ip=ip, date=log_date(when))
