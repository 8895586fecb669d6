"""Real fail2ban (Debian's package) with a private configuration directory, for tests.

The stock configuration is copied, the Debian default jail (sshd, which cannot start on a
machine without /var/log/auth.log) is removed, and socket, pid file, database and log live in
the temporary directory, so the system's fail2ban is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

STOCK = Path("/etc/fail2ban")


class Fail2ban:
    """One fail2ban-server driven through ``fail2ban-client -c CONFDIR``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "conf"
        self.run_dir = root / "run"
        shutil.copytree(STOCK, self.conf)
        (self.conf / "jail.d" / "defaults-debian.conf").unlink(missing_ok=True)
        self.run_dir.mkdir()
        (self.conf / "fail2ban.local").write_text(
            "[Definition]\nloglevel = INFO\n"
            f"logtarget = {self.run_dir / 'fail2ban.log'}\n"
            f"socket = {self.run_dir / 'fail2ban.sock'}\n"
            f"pidfile = {self.run_dir / 'fail2ban.pid'}\n"
            f"dbfile = {self.run_dir / 'fail2ban.sqlite3'}\n"
            "allowipv6 = auto\n"
        )

    def client(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["fail2ban-client", "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, env: dict[str, str] | None = None) -> None:
        checked = self.client("-t")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        started = subprocess.run(
            ["fail2ban-client", "-c", str(self.conf), "start"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert started.returncode == 0, started.stdout + started.stderr + self.log()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.client("ping", timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("fail2ban did not answer ping:\n" + self.log())

    def stop(self) -> None:
        self.client("stop", timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (self.run_dir / "fail2ban.sock").exists():
            time.sleep(0.1)

    def log(self) -> str:
        path = self.run_dir / "fail2ban.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def banned(self, jail: str) -> list[str]:
        out = self.client("get", jail, "banip")
        return out.stdout.split() if out.returncode == 0 else []
