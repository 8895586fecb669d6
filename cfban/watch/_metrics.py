"""Counters of the daemon, shown by ``cfban status`` and, optionally, to Prometheus."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
        return "\n".join(out) + "\n"


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
