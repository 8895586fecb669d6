"""``cfban watch``: tail nginx logs, run the jails, ban and expire at Cloudflare.

==============  ===========================================================================
``_jails``      the configured jails, built: filter, counter, guard, log paths
``_scan``       one pass over a batch of a file's lines for all the jails on the file
``_pipeline``   lines through filter -> real-IP resolver -> guard -> jail (no I/O)
``_metrics``    counters, Prometheus text, the optional metrics endpoint
``_status``     typed status (state DB + daemon file), ``cfban status``/``health``
``_deliverer``  the delivery thread: rounds into Cloudflare, gathered while a backlog is read
``_daemon``     wiring: followers, the pipeline, commits, calls on the delivery thread, signals
==============  ===========================================================================
"""

from __future__ import annotations

from cfban.watch._daemon import Daemon, WatchOptions
from cfban.watch._status import DaemonStatus, Health, Status, gather, judge, read_status

__all__ = [
    "DaemonStatus",
    "Daemon",
    "Health",
    "Status",
    "WatchOptions",
    "gather",
    "judge",
    "read_status",
]
