"""Counters of the daemon, shown by ``cfban status`` and, optionally, to Prometheus.

Besides the daemon's own counters, the Prometheus text carries what the Cloudflare layer
knows: requests sent by method, route and status, the request budget left, a pause Cloudflare
asked for, the list's fill, and the current delivery problem (one series per kind, 1 for the
kind delivery waits on). :data:`EXPORTED` names every metric, for the dashboard's test.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cfban.clock import SystemClock
from cfban.cloudflare import KINDS, request_counts

_Emit = Callable[[str, str, str, list[tuple[str, float]]], None]


#: Every metric name this module exports.
EXPORTED = frozenset(
    {
        "cfban_lines_read_total",
        "cfban_bad_lines_total",
        "cfban_failures_total",
        "cfban_bans_total",
        "cfban_unbans_total",
        "cfban_refused_total",
        "cfban_api_batches_total",
        "cfban_api_errors_total",
        "cfban_queue_depth",
        "cfban_oldest_queued_age_seconds",
        "cfban_api_requests_total",
        "cfban_budget_left",
        "cfban_budget_limit",
        "cfban_api_paused_seconds",
        "cfban_list_items",
        "cfban_list_capacity",
        "cfban_list_fill_ratio",
        "cfban_delivery_problem",
        "cfban_delivery_problem_seconds",
    }
)


@dataclass
class Metrics:
    """Everything the daemon counts. Updated from two threads; plain ints under the GIL."""

    lines: int = 0
    bad_lines: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bans: Counter[str] = field(default_factory=Counter)
    unbans: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    api_batches: int = 0
    api_errors: int = 0
    delivered: int = 0
    queue_add: int = 0
    queue_remove: int = 0
    rotations: int = 0
    direct_origin: int = 0
    oldest_queued_at: float | None = None
    #: the Cloudflare figures (``cfban.cloudflare.cloudflare_status``), read at each scrape
    cloudflare: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)
    now: Callable[[], float] = field(default=SystemClock().now, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "bad_lines": self.bad_lines,
            "failures": dict(self.failures),
            "bans": dict(self.bans),
            "unbans": self.unbans,
            "refused": dict(self.refused),
            "api_batches": self.api_batches,
            "api_errors": self.api_errors,
            "delivered": self.delivered,
            "queue": {"add": self.queue_add, "remove": self.queue_remove},
            "rotations": self.rotations,
            "direct_origin": self.direct_origin,
        }

    def prometheus(self) -> str:
        """The counters in Prometheus' text exposition format."""
        out: list[str] = []

        def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP cfban_{name} {text}")
            out.append(f"# TYPE cfban_{name} {kind}")
            out.extend(f"cfban_{name}{labels} {value:g}" for labels, value in samples)

        def by(label: str, counts: Counter[str]) -> list[tuple[str, float]]:
            return [(f'{{{label}="{key}"}}', n) for key, n in sorted(counts.items())]

        metric("lines_read_total", "counter", "Log lines read.", [("", self.lines)])
        metric("bad_lines_total", "counter", "Lines that could not be processed.",
               [("", self.bad_lines)])  # fmt: skip
        metric("failures_total", "counter", "Failures matched.", by("jail", self.failures))
        metric("bans_total", "counter", "Bans decided.", by("jail", self.bans))
        metric("unbans_total", "counter", "Entries removed at Cloudflare.", [("", self.unbans)])
        metric("refused_total", "counter", "Bans refused by the guards.",
               by("reason", self.refused))  # fmt: skip
        metric("api_batches_total", "counter", "Delivery rounds that reached Cloudflare.",
               [("", self.api_batches)])  # fmt: skip
        metric("api_errors_total", "counter", "Cloudflare operations that failed.",
               [("", self.api_errors)])  # fmt: skip
        metric("queue_depth", "gauge", "Operations waiting for Cloudflare.",
               [('{op="add"}', self.queue_add), ('{op="remove"}', self.queue_remove)])  # fmt: skip
        age = 0.0 if self.oldest_queued_at is None else self.now() - self.oldest_queued_at
        metric("oldest_queued_age_seconds", "gauge",
               "Age of the oldest operation waiting for Cloudflare (0 when none).",
               [("", max(0.0, age))])  # fmt: skip
        requests = [
            (f'{{method="{m}",route="{r}",status="{s}"}}', float(n))
            for (m, r, s), n in sorted(request_counts().items())
        ]
        metric("api_requests_total", "counter",
               "Requests sent to the Cloudflare API, by method, route and status.",
               requests)  # fmt: skip
        self._cloudflare_metrics(metric)
        return "\n".join(out) + "\n"

    def _cloudflare_metrics(self, metric: _Emit) -> None:
        figures = self.cloudflare() if self.cloudflare is not None else {}
        budgets: list[tuple[str, dict[str, Any]]] = []
        for name in ("budget", "list_writes"):
            found = figures.get(name)
            if isinstance(found, dict):
                budgets.append((name, found))
        metric("budget_left", "gauge", "Requests cfban may still send in the current window.",
               [(f'{{budget="{n}"}}', float(b.get("left", 0))) for n, b in budgets])  # fmt: skip
        metric("budget_limit", "gauge", "cfban's share of each Cloudflare request budget.",
               [(f'{{budget="{n}"}}', float(b.get("limit", 0))) for n, b in budgets])  # fmt: skip
        budget = figures.get("budget")
        paused = float(budget.get("paused_for", 0)) if isinstance(budget, dict) else 0.0
        metric("api_paused_seconds", "gauge",
               "Seconds left of a pause Cloudflare asked for (429).", [("", paused)])  # fmt: skip
        listed = figures.get("list")
        if isinstance(listed, dict):
            metric("list_items", "gauge", "Items in the IP list.",
                   [("", float(listed.get("items", 0)))])  # fmt: skip
            metric("list_capacity", "gauge", "Items the IP list may hold.",
                   [("", float(listed.get("capacity", 0)))])  # fmt: skip
            metric("list_fill_ratio", "gauge", "Items in the IP list over its capacity.",
                   [("", float(listed.get("fill", 0)))])  # fmt: skip
        problem = figures.get("problem")
        kind = problem.get("kind") if isinstance(problem, dict) else None
        metric("delivery_problem", "gauge",
               "1 for the kind of problem delivery is waiting on, 0 for the others.",
               [(f'{{kind="{k}"}}', float(k == kind)) for k in KINDS])  # fmt: skip
        since = float(problem.get("since", 0)) if isinstance(problem, dict) else None
        metric("delivery_problem_seconds", "gauge",
               "How long the current delivery problem has lasted (0 when none).",
               [("", 0.0 if since is None else max(0.0, self.now() - since))])  # fmt: skip


def serve_metrics(address: str, render: Callable[[], str]) -> ThreadingHTTPServer:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; return the server.

    Raises:
        OSError: the address cannot be bound.
    """
    host, _, port = address.rpartition(":")

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
