"""Real nginx (Debian's package) on loopback, for end-to-end tests.

``NginxServer`` writes a self-contained configuration under a temporary prefix (pid, temp
paths and logs inside it, so nothing of the system is touched), checks it with ``nginx -t``
and runs the master in the foreground until ``stop()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

HTTP_TEMPLATE = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    access_log off;
{http_extra}
    server {{
        listen 127.0.0.1:{port};
        server_name cfban-test;
        root {prefix}/html;
{server_extra}
        location / {{ }}
    }}
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxServer:
    """One nginx master in the foreground, configured under ``prefix``."""

    def __init__(
        self, nginx: str, prefix: Path, *, http_extra: str = "", server_extra: str = ""
    ) -> None:
        self.nginx = nginx
        self.prefix = prefix
        self.port = free_port()
        for sub in ("logs", "html", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        (prefix / "html" / "index.html").write_text("hello\n")
        os.chmod(prefix, 0o755)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            HTTP_TEMPLATE.format(
                user="user root;\n" if os.geteuid() == 0 else "",  # pytest's tmp is 0700
                prefix=prefix,
                port=self.port,
                http_extra=http_extra,
                server_extra=server_extra,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def test_config(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the configuration."""
        return subprocess.run(
            [self.nginx, "-t", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self) -> None:
        checked = self.test_config()
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(
            [self.nginx, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("nginx did not start listening")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def get(self, path: str, *, source: str = "127.0.0.1", **headers: str) -> int:
        """GET ``path`` from the loopback address ``source``; return the status."""
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, timeout=10, trust_env=False) as client:
            return client.get(self.url + path, headers=headers).status_code
