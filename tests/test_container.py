"""The container image, built from the checkout and run with real podman.

Builds the ``Containerfile`` offline on a local Debian base image (see
``tests/container_support.py``), then runs the image the way deploy/ does: read-only root,
non-root user, state in the volume, config and logs mounted read-only, the API token as a
podman secret file. Run with ``-s`` to see the build time and the image size.

The ``watch``/``health`` checks need those commands in the image: they skip on a developer
machine while the commands are missing, and fail under ``CFBAN_REQUIRE_REAL=1``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_REAL, require_path, require_program
from tests.container_support import (
    REPO,
    Podman,
    build_wheels,
    ensure_base_image,
    make_context,
    make_podman,
)

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.timeout(600)]

IMAGE_REPO = "localhost/cfban-test"
UID = "10001"
EXAMPLE_LOG = REPO / "examples" / "access.log"

# One jail over the mounted example log; bans long enough to stay active for years, so that
# the dated example lines still lead to bans. The example log uses documentation addresses,
# which cfban refuses as ban targets unless CFBAN_ALLOW_TEST_NETS=1.
WATCH_CONFIG = """\
[cloudflare]
zone_id = "0123456789abcdef0123456789abcdef"
api_url = "http://127.0.0.1:9/client/v4"

[jails.nginx-probes]
filter = "nginx-probes"
logpath = ["/logs/access.log"]
maxretry = 1
findtime = "520w"
bantime = "520w"
"""


@dataclass(frozen=True)
class Built:
    """The image under test and how it was made."""

    podman: Podman
    image: str
    workdir: Path
    tag: str
    log: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    program = require_program("podman")
    debootstrap = require_program("debootstrap")
    require_program("runc")
    log = require_path(EXAMPLE_LOG, "the bundled example log")
    workdir = tmp_path_factory.mktemp("container")
    workdir.chmod(0o755)
    podman = make_podman(program, workdir)

    base, base_seconds = ensure_base_image(podman, debootstrap)
    context = make_context(workdir / "context")
    started = time.monotonic()
    build_wheels(context)
    wheel_seconds = time.monotonic() - started

    tag = secrets.token_hex(4)
    image = f"{IMAGE_REPO}:{tag}"
    started = time.monotonic()
    podman.run(
        "build",
        "--pull=never",
        "--network",
        "none",
        "--format",
        "docker",
        "--layers=false",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-f",
        str(REPO / "Containerfile"),
        "-t",
        image,
        str(context),
        timeout=300,
    )
    build_seconds = time.monotonic() - started
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", image).stdout)
    print(
        f"\ncontainer: base image {base} "
        f"({'cached' if not base_seconds else f'made in {base_seconds:.1f} s'}), "
        f"wheels {wheel_seconds:.1f} s, image build {build_seconds:.1f} s, "
        f"image size {size / 1e6:.0f} MB"
    )
    # The mounts must be readable by the container's unprivileged user.
    mounted_log = workdir / "access.log"
    shutil.copyfile(log, mounted_log)
    mounted_log.chmod(0o644)
    yield Built(podman=podman, image=image, workdir=workdir, tag=tag, log=mounted_log)

    names = podman.run(
        "ps", "-a", "--filter", f"name=cfban-test-{tag}", "--format", "{{.Names}}", check=False
    ).stdout.split()
    for name in names:
        podman.run("rm", "-f", "-v", name, check=False, timeout=60)
    podman.run("secret", "rm", f"cfban-test-{tag}", check=False)
    podman.run("volume", "rm", "-f", f"cfban-test-{tag}", check=False)
    podman.run("rmi", "-f", image, check=False, timeout=60)


def _run(built: Built, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``podman run`` of the image: read-only root, no healthcheck timers, removed after."""
    return built.podman.run(
        "run",
        "--pull=never",
        "--rm",
        "--read-only",
        "--no-healthcheck",
        *args,
        check=False,
        timeout=timeout,
    )


def _require_watch(built: Built) -> None:
    proc = _run(built, built.image, "watch", "--help")
    if proc.returncode == 0 and "--exit-idle" in proc.stdout:
        return
    message = "`cfban watch` is not in the image yet"
    if REQUIRE_REAL:
        pytest.fail(message)
    pytest.skip(message)


def _config(built: Built) -> Path:
    path = built.workdir / "cfban.toml"
    path.write_text(WATCH_CONFIG, encoding="utf-8")
    path.chmod(0o644)
    return path


def test_image_metadata(built: Built) -> None:
    info = json.loads(built.podman.run("image", "inspect", built.image).stdout)[0]
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["cfban"]
    assert config["Cmd"] == ["watch"]
    assert "/var/lib/cfban" in config["Volumes"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["CFBAN_STATE_DIR"] == "/var/lib/cfban"
    assert env["CFBAN_CONFIG"] == "/etc/cfban/cfban.toml"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    labels = config["Labels"]
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    healthcheck = info.get("Healthcheck") or config.get("Healthcheck")
    assert healthcheck is not None, "HEALTHCHECK missing (build with --format docker)"
    assert healthcheck["Test"] == ["CMD", "cfban", "health"]


def test_help_runs_read_only_as_non_root(built: Built) -> None:
    proc = _run(built, built.image, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Cloudflare" in proc.stdout
    who = _run(built, "--entrypoint", "id", built.image, "-u")
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == UID
    assert who.stdout.strip() != "0"


def test_bundled_filter_over_mounted_log(built: Built) -> None:
    proc = _run(
        built,
        "-v",
        f"{built.log}:/logs/access.log:ro",
        built.image,
        "test-filter",
        "nginx-probes",
        "/logs/access.log",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    lines = len(built.log.read_text(encoding="utf-8").splitlines())
    assert result["lines"] == lines
    assert 0 < result["matched"] < lines
    assert all(match["ip"] for match in result["matches"])


def test_watch_dry_run_read_only(built: Built) -> None:
    _require_watch(built)
    volume = f"cfban-test-{built.tag}"
    common = ("-v", f"{volume}:/var/lib/cfban", "-v", f"{_config(built)}:/etc/cfban/cfban.toml:ro")
    proc = _run(
        built,
        *common,
        "-v",
        f"{built.log}:/logs/access.log:ro",
        "-e",
        "CFBAN_ALLOW_TEST_NETS=1",
        built.image,
        "watch",
        "--from-start",
        "--exit-idle",
        "2",
        timeout=90,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "dry run" in output
    assert "would ban" in output
    # The state went to the volume (the root filesystem is read-only): read it back.
    status = _run(built, *common, "--entrypoint", "cat", built.image, "/var/lib/cfban/status.json")
    assert status.returncode == 0, status.stderr
    metrics = json.loads(status.stdout)["metrics"]
    assert metrics["lines"] == len(built.log.read_text(encoding="utf-8").splitlines())
    assert sum(metrics["bans"].values()) > 0


def test_health_and_secret_token(built: Built) -> None:
    _require_watch(built)
    podman = built.podman
    token = "cfbantest-" + secrets.token_hex(16)
    token_file = built.workdir / "token"
    token_file.write_text(token, encoding="utf-8")
    secret = f"cfban-test-{built.tag}"
    podman.run("secret", "create", secret, str(token_file))
    token_file.unlink()
    name = f"cfban-test-{built.tag}-daemon"
    podman.run(
        "run",
        "--pull=never",
        "-d",
        "--name",
        name,
        "--read-only",
        # podman before 4.4 mounts secrets before the /run tmpfs of --read-only and fails
        # on the read-only root; a tmpfs at /run/secrets avoids that everywhere.
        "--tmpfs",
        "/run/secrets",
        "--secret",
        f"{secret},type=mount,target=cloudflare_api_token,uid={UID},gid={UID},mode=0400",
        "-e",
        "CFBAN_API_TOKEN_FILE=/run/secrets/cloudflare_api_token",
        "-e",
        "CFBAN_ALLOW_TEST_NETS=1",
        "-v",
        f"{_config(built)}:/etc/cfban/cfban.toml:ro",
        "-v",
        f"{built.log}:/logs/access.log:ro",
        built.image,
        "watch",
        "--from-start",
    )
    try:
        deadline = time.monotonic() + 30
        health = podman.run("exec", name, "cfban", "health", check=False)
        while health.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            health = podman.run("exec", name, "cfban", "health", check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        # The image's HEALTHCHECK itself, as podman runs it.
        check = podman.run("healthcheck", "run", name, check=False)
        assert check.returncode == 0, check.stdout + check.stderr

        # The token reached cfban (no dry run) and is readable only by it...
        seen = podman.run("exec", name, "cat", "/run/secrets/cloudflare_api_token").stdout
        assert seen.strip() == token
        mode = podman.run("exec", name, "stat", "-c", "%a %u", "/run/secrets/cloudflare_api_token")
        assert mode.stdout.split() == ["400", UID]
        # ...and appears nowhere else: not in inspect, the process list, any process's
        # command line or environment, nor the logs.
        places = {
            "podman inspect": podman.run("inspect", name).stdout,
            "podman top": podman.run("top", name, "user", "pid", "args").stdout,
            "/proc/*/cmdline and environ": podman.run(
                "exec",
                name,
                "sh",
                "-c",
                "cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ | tr '\\0' '\\n'",
            ).stdout,
            "podman logs": (logs := podman.run("logs", name)).stdout + logs.stderr,
        }
        assert "cfban watch" in places["podman top"]
        assert "dry run" not in places["podman logs"]
        for where, text in places.items():
            assert text.strip(), where
            assert token not in text, f"the API token leaks into {where}"
    finally:
        podman.run("rm", "-f", "-v", name, check=False, timeout=60)
        podman.run("secret", "rm", secret, check=False)
