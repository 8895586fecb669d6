"""Helpers for the container tests: podman with the settings these machines need, a local
Debian base image made with debootstrap (built once per machine and kept), and an offline
build context for the ``Containerfile``.

The machines the tests run on have no registry access for images, no CAP_SYS_RESOURCE and
hybrid cgroups, so podman runs with runc, lowered ulimits and no network namespace, and every
image comes from local storage (``--pull=never``).
"""

from __future__ import annotations

import fcntl
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/cfban-test-base:bookworm"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")
DEFAULT_MIRROR = "http://deb.debian.org/debian"

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"

[engine]
runtime = "runc"
"""


@dataclass(frozen=True)
class Podman:
    """Runs podman with a given ``CONTAINERS_CONF``; every call has a timeout."""

    program: str
    env: dict[str, str]

    def run(
        self,
        *args: str,
        timeout: float = 60,
        check: bool = True,
        stdin: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``; raises with podman's stderr when ``check`` and it fails."""
        proc = subprocess.run(
            [self.program, *args],
            env=self.env,
            input=None if stdin is None else stdin.decode(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
            )
        return proc

    def image_exists(self, name: str) -> bool:
        """True when ``name`` is in local storage."""
        return self.run("image", "exists", name, check=False, timeout=30).returncode == 0


def make_podman(program: str, workdir: Path) -> Podman:
    """A :class:`Podman` using a ``containers.conf`` written into ``workdir``."""
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    return Podman(program=program, env=env)


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (for the main archive)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in sources.read_text(encoding="utf-8").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith((" ", "#")):
                    fields[key.strip()] = value.strip()
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    return DEFAULT_MIRROR


def ensure_base_image(podman: Podman, debootstrap: str) -> tuple[str, float]:
    """Make the local Debian base image unless it exists; returns (name, seconds spent).

    A lock file keeps two test processes from building it at the same time.
    """
    lock_path = Path(tempfile.gettempdir()) / "cfban-test-base.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if podman.image_exists(BASE_IMAGE):
            return BASE_IMAGE, 0.0
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="cfban-rootfs-", dir="/var/tmp") as tmp:
            rootfs = Path(tmp) / "rootfs"
            proc = subprocess.run(
                [
                    debootstrap,
                    "--variant=minbase",
                    "--include=" + ",".join(BASE_PACKAGES),
                    SUITE,
                    str(rootfs),
                    debian_mirror(),
                ],
                capture_output=True,
                text=True,
                timeout=420,
                check=False,
            )
            if proc.returncode != 0:
                raise AssertionError(f"debootstrap failed:\n{proc.stdout[-3000:]}{proc.stderr}")
            shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
            tar = subprocess.run(
                ["tar", "-C", str(rootfs), "-c", "."],
                capture_output=True,
                timeout=120,
                check=True,
            )
            imported = subprocess.run(
                [podman.program, "import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
                env=podman.env,
                input=tar.stdout,
                capture_output=True,
                timeout=120,
                check=False,
            )
            if imported.returncode != 0:
                raise AssertionError(f"podman import failed: {imported.stderr.decode()[-2000:]}")
        return BASE_IMAGE, time.monotonic() - started


def _ignore_patterns() -> list[str]:
    path = REPO / ".containerignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [
        line.strip().removeprefix("**/")
        for line in lines
        if line.strip() and not line.startswith("#")
    ]


def make_context(dest: Path) -> Path:
    """Copy the checkout into ``dest`` as the build context, minus ``.containerignore``."""
    patterns = _ignore_patterns()

    def ignore(directory: str, names: Sequence[str]) -> set[str]:
        rel = Path(directory).relative_to(REPO)
        skipped = set()
        for name in names:
            path = str(rel / name) if str(rel) != "." else name
            if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns):
                skipped.add(name)
        return skipped

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def build_wheels(dest: Path) -> Path:
    """Wheels for cfban's dependencies and its build backend, made with the host's pip.

    The host pip can reach the package index (or its local wheel cache); the image build
    then needs no network at all.
    """
    wheels = dest / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(wheels),
            str(REPO),
            "hatchling",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"pip wheel failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    # cfban's own wheel is built inside the image, from the checkout.
    for own in wheels.glob("cfban-*.whl"):
        own.unlink()
    return wheels


def directory_size(path: Path) -> int:
    """Bytes under ``path`` (for reporting only)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
