"""The emulator as a real HTTP server on loopback (stdlib ``ThreadingHTTPServer``).

``with serve(emulator) as base_url:`` starts it on ``127.0.0.1`` (port 0 = any free port) in a
background thread and yields ``http://127.0.0.1:PORT/client/v4``; leaving the block stops it,
waking any request parked in a fault delay. A dropped connection is a socket closed without a
byte of answer; a timeout holds the socket for the fault's delay, then closes it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._emulator import BASE_PATH, Emulator
from ._envelope import Drop

logger = logging.getLogger(__name__)


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one emulator."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator
        self.stopping = threading.Event()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{BASE_PATH}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls
    server: EmulatorServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        stopping = self.server.stopping
        outcome = self.server.emulator.process(
            self.command, self.path, headers, body, sleep=stopping.wait
        )
        if isinstance(outcome, Drop):
            if outcome.kind == "timeout":
                stopping.wait(outcome.delay)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self.send_response(outcome.status)
            for name, value in outcome.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(outcome.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(outcome.body)
        except OSError:  # the client gave up (e.g. timed out during a slow answer)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


@contextmanager
def serve(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``emulator`` over HTTP on loopback; yields the base URL."""
    server = EmulatorServer((host, port), emulator)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.base_url
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
