"""Network namespaces for the origin-lock tests: an "origin" and client namespaces on veth pairs.

Every address comes from the benchmarking range 198.18.0.0/15, and every packet stays
between the namespaces created here: the host's own namespace is never given an address on
these links. ``NetLab.close()`` kills what it started and deletes the namespaces (which takes
the veth pairs with them); the fixture calls it in a ``finally``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.nginx import HTTP_TEMPLATE

_KEEPALIVE_CLIENT = r"""
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
for line in sys.stdin:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: origin\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            print("closed", flush=True)
            sys.exit(0)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                  if h.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(4096)
    print(head.split(b"\r\n")[0].split()[1].decode(), flush=True)
"""


def run(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@dataclass
class Client:
    """A client namespace linked to the origin: its address and the origin's on that link."""

    netns: str
    address: str
    origin_address: str
    address6: str
    origin_address6: str


@dataclass
class NetLab:
    """An origin namespace, client namespaces, and nginx listening on port 80 in the origin."""

    prefix: str
    workdir: Path
    origin: str = ""
    clients: dict[str, Client] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    # What was started here, with the signal that stops it (nginx: graceful QUIT).
    _processes: list[tuple[subprocess.Popen[str], int]] = field(default_factory=list)

    def add_namespace(self, name: str) -> str:
        netns = f"{self.prefix}-{name}"
        run("ip", "netns", "add", netns)
        self._namespaces.append(netns)
        self.exec(netns, "ip", "link", "set", "lo", "up")
        return netns

    def exec(self, netns: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", netns, *args, **kwargs)  # type: ignore[arg-type]

    def add_client(self, name: str, subnet: int) -> Client:
        """A namespace ``name`` on link 198.18.<subnet>.0/24 and 2001:2:<subnet>::/64.

        The origin is .1 (::1) on the link, the client .2 (::2); both in benchmarking ranges.
        """
        netns = self.add_namespace(name)
        here, there = f"o{subnet}-{os.getpid() % 10000}", f"c{subnet}-{os.getpid() % 10000}"
        run("ip", "link", "add", here, "netns", self.origin, "type", "veth", "peer", "name",
            there, "netns", netns)  # fmt: skip
        origin_address, address = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
        self.exec(self.origin, "ip", "addr", "add", f"{origin_address}/24", "dev", here)
        self.exec(self.origin, "ip", "link", "set", here, "up")
        self.exec(netns, "ip", "addr", "add", f"{address}/24", "dev", there)
        origin_address6, address6 = f"2001:2:{subnet}::1", f"2001:2:{subnet}::2"
        # nodad: usable at once, no duplicate address detection to wait for.
        self.exec(self.origin, "ip", "addr", "add", f"{origin_address6}/64", "dev", here, "nodad")
        self.exec(netns, "ip", "addr", "add", f"{address6}/64", "dev", there, "nodad")
        self.exec(netns, "ip", "link", "set", there, "up")
        client = Client(netns, address, origin_address, address6, origin_address6)
        self.clients[name] = client
        return client

    def start_nginx(self, nginx: str, netns: str) -> None:
        """nginx in ``netns``, listening on port 80 of every address, IPv4 and IPv6."""
        prefix = self.workdir / f"nginx-{netns}"
        for sub in ("logs", "html", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        (prefix / "html" / "index.html").write_text("hello\n")
        conf = prefix / "nginx.conf"
        text = HTTP_TEMPLATE.format(
            user="user root;\n", prefix=prefix, port=80, http_extra="", server_extra=""
        ).replace("listen 127.0.0.1:80;", "listen 80; listen [::]:80;")
        conf.write_text(text)
        cmd = ["ip", "netns", "exec", netns, nginx, "-p", str(prefix), "-c", str(conf)]
        run(*cmd, "-t")
        nginx_proc = subprocess.Popen(
            [*cmd, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._processes.append((nginx_proc, signal.SIGQUIT))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listening = self.exec(netns, "ss", "-Htln", "sport = :80", check=False)
            if listening.stdout.strip():
                return
            time.sleep(0.05)
        raise AssertionError(f"nginx did not start listening in {netns}")

    def http_status(self, client: Client, port: int = 80, *, ipv6: bool = False) -> str:
        """GET / from ``client`` to the origin: the HTTP status, or "000" when no connection."""
        host = f"[{client.origin_address6}]" if ipv6 else client.origin_address
        proc = self.exec(
            client.netns,
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
            "--connect-timeout", "1", "--max-time", "3", f"http://{host}:{port}/",
            check=False, timeout=10,
        )  # fmt: skip
        return proc.stdout.strip() or "000"

    def keepalive(self, client: Client) -> KeptOpen:
        """One TCP connection from ``client`` kept open; each ``.get()`` sends a request."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", client.netns, sys.executable, "-c", _KEEPALIVE_CLIENT,
             client.origin_address, "80"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._processes.append((proc, signal.SIGTERM))
        return KeptOpen(proc)

    def close(self) -> None:
        for proc, stop in self._processes:
            if proc.poll() is None:
                proc.send_signal(stop)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        for netns in reversed(self._namespaces):
            run("ip", "netns", "del", netns, check=False)


@dataclass
class KeptOpen:
    """A client process holding one TCP connection to the origin."""

    proc: subprocess.Popen[str]

    def get(self) -> str:
        """Send one request on the open connection; its status ("closed" if it was closed)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("get\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if not line:
            assert self.proc.stderr is not None
            return "failed: " + self.proc.stderr.read()[-300:]
        return line
