"""The deployment files in deploy/: quadlets, the Butane config, the plain systemd unit.

- Quadlet files may only use keys podman's quadlet generator knows (the key lists below are
  the ``[Container]`` and ``[Volume]`` options of podman-systemd.unit(5), podman 5.x); their
  ``[Unit]``/``[Service]``/``[Install]`` sections are handed to systemd, so they are checked
  with ``systemd-analyze verify`` when it is installed.
- ``cfban.bu`` is checked against the shape of Butane's Fedora CoreOS spec (variant
  ``fcos``, version 1.5.0) and must embed exactly the files in deploy/ (no drift).
- ``cfban.service`` goes through ``systemd-analyze verify``, or a structural check without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cfban.config import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

# podman-systemd.unit(5), podman 5.x: the [Container] options.
CONTAINER_KEYS = frozenset(
    """
    AddCapability AddDevice AddHost Annotation AutoUpdate CgroupsMode ContainerName
    ContainersConfModule DNS DNSOption DNSSearch DropCapability Entrypoint Environment
    EnvironmentFile EnvironmentHost Exec ExposeHostPort GIDMap GlobalArgs Group GroupAdd
    HealthCmd HealthInterval HealthLogDestination HealthMaxLogCount HealthMaxLogSize
    HealthOnFailure HealthRetries HealthStartPeriod HealthStartupCmd HealthStartupInterval
    HealthStartupRetries HealthStartupSuccess HealthStartupTimeout HealthTimeout HostName IP
    IP6 Image Label LogDriver LogOpt Mask Memory Mount Network NetworkAlias NoNewPrivileges
    Notify PidsLimit Pod PodmanArgs PublishPort Pull ReadOnly ReadOnlyTmpfs ReloadCmd
    ReloadSignal RemapGid RemapUid RemapUidSize RemapUsers Retry RetryDelay Rootfs RunInit
    SeccompProfile Secret SecurityLabelDisable SecurityLabelFileType SecurityLabelLevel
    SecurityLabelNested SecurityLabelType ServiceName ShmSize StartWithPod StopSignal
    StopTimeout SubGIDMap SubUIDMap Sysctl Timezone Tmpfs UIDMap Ulimit Unmask User UserNS
    VolatileTmp Volume WorkingDir
    """.split()
)
# podman-systemd.unit(5), podman 5.x: the [Volume] options.
VOLUME_KEYS = frozenset(
    """
    ContainersConfModule Copy Device Driver GlobalArgs Group Image Label Options PodmanArgs
    ServiceName Type User VolumeName
    """.split()
)
# The [Install] keys quadlet applies itself (it "enables" the generated unit).
QUADLET_INSTALL_KEYS = frozenset({"Alias", "WantedBy", "RequiredBy", "UpheldBy"})
QUADLET_SECTIONS = {
    ".container": ("Container", CONTAINER_KEYS),
    ".volume": ("Volume", VOLUME_KEYS),
}
SYSTEMD_SECTIONS = ("Unit", "Service", "Install")

Entry = tuple[str, str, str]  # (section, key, value)


def parse_unit(text: str) -> list[Entry]:
    """systemd unit syntax: [Section], Key=Value (repeatable), #/; comments, ``\\`` joins."""
    entries: list[Entry] = []
    section = ""
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"line {number}: bad section header {line!r}"
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not Key=Value: {line!r}"
        assert section, f"line {number}: {key} outside any section"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key.strip()), f"line {number}: {key!r}"
        entries.append((section, key.strip(), value.strip()))
    assert not pending, "file ends inside a continued line"
    return entries


def values(entries: list[Entry], section: str, key: str) -> list[str]:
    return [v for s, k, v in entries if s == section and k == key]


def systemd_part(entries: list[Entry], exec_start: str = "/bin/true") -> str:
    """The sections systemd itself reads, as a .service unit ``systemd-analyze`` can load."""
    out: list[str] = []
    for section in SYSTEMD_SECTIONS:
        lines = [f"{k}={v}" for s, k, v in entries if s == section]
        if section == "Service" and not any(line.startswith("ExecStart=") for line in lines):
            lines.insert(0, f"ExecStart={exec_start}")
        if lines or section == "Service":
            out += [f"[{section}]", *lines, ""]
    return "\n".join(out)


def systemd_verify(unit_dir: Path, name: str, text: str) -> str:
    """``systemd-analyze verify`` output for unit ``name`` with ``text`` (skip if absent)."""
    program = shutil.which("systemd-analyze")
    if program is None:
        pytest.skip("systemd-analyze is not installed")
    path = unit_dir / name
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [program, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return f"rc={proc.returncode}\n{proc.stdout}{proc.stderr}".strip()


def quadlet_files() -> list[Path]:
    return sorted(p for p in DEPLOY.iterdir() if p.suffix in QUADLET_SECTIONS)


@pytest.fixture(scope="module")
def butane() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "cfban.bu").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def butane_files(butane: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from butane.get("storage", {}).get("files", [])


# ---- quadlets ------------------------------------------------------------------------


def test_quadlet_files_present() -> None:
    names = {p.name for p in quadlet_files()}
    assert {"cfban.container", "nginx.container", "cfban-state.volume"} <= names
    assert "nginx-logs.volume" in names


@pytest.mark.parametrize("path", quadlet_files(), ids=lambda p: p.name)
def test_quadlet_keys_exist(path: Path) -> None:
    entries = parse_unit(path.read_text(encoding="utf-8"))
    own_section, allowed = QUADLET_SECTIONS[path.suffix]
    sections = {s for s, _, _ in entries}
    assert own_section in sections
    assert sections <= {own_section, *SYSTEMD_SECTIONS}, sections
    unknown = [k for s, k, _ in entries if s == own_section and k not in allowed]
    assert not unknown, f"not podman quadlet [{own_section}] keys: {unknown}"
    install = [k for s, k, _ in entries if s == "Install"]
    assert set(install) <= QUADLET_INSTALL_KEYS, install
    if path.suffix == ".container":
        assert len(values(entries, "Container", "Image")) == 1


@pytest.mark.parametrize("path", quadlet_files(), ids=lambda p: p.name)
def test_quadlet_systemd_sections_verify(path: Path, tmp_path: Path) -> None:
    entries = parse_unit(path.read_text(encoding="utf-8"))
    output = systemd_verify(tmp_path, path.stem + ".service", systemd_part(entries))
    assert output == "rc=0", output


def test_verify_reports_unknown_keys(tmp_path: Path) -> None:
    """The check above would notice a mistake: systemd-analyze reports an unknown key."""
    output = systemd_verify(tmp_path, "bad.service", "[Service]\nExecStart=/bin/true\nBogus=1\n")
    assert "Bogus" in output


def test_cfban_container_runs_hardened() -> None:
    entries = parse_unit((DEPLOY / "cfban.container").read_text(encoding="utf-8"))

    def get(key: str) -> list[str]:
        return values(entries, "Container", key)

    assert get("ReadOnly") == ["true"]
    assert get("User") == ["10001"]
    assert get("NoNewPrivileges") == ["true"]
    assert get("DropCapability") == ["ALL"]
    assert get("HealthCmd") == ["cfban health"]
    assert values(entries, "Service", "RestartPreventExitStatus") == ["78"]
    # The token: a podman secret mounted as a file, readable by cfban only, and named in
    # CFBAN_API_TOKEN_FILE.
    (secret,) = get("Secret")
    name, *options = secret.split(",")
    opts = dict(option.split("=", 1) for option in options)
    assert opts["type"] == "mount"
    assert (opts["uid"], opts["mode"]) == ("10001", "0400")
    target = opts.get("target", name)
    target = target if target.startswith("/") else f"/run/secrets/{target}"
    assert f"CFBAN_API_TOKEN_FILE={target}" in get("Environment")
    # No secret value anywhere in the unit.
    assert not any("CLOUDFLARE_API_TOKEN" in v for v in get("Environment"))


def _volumes(path: Path) -> dict[str, tuple[str, list[str]]]:
    entries = parse_unit(path.read_text(encoding="utf-8"))
    out = {}
    for spec in values(entries, "Container", "Volume"):
        source, target, *rest = spec.split(":")
        out[target] = (source, rest[0].split(",") if rest else [])
    return out


def test_log_volume_is_shared_with_nginx() -> None:
    cfban = _volumes(DEPLOY / "cfban.container")
    nginx = _volumes(DEPLOY / "nginx.container")
    source, options = cfban["/var/log/nginx"]
    assert source.endswith(".volume") and (DEPLOY / source).exists()
    assert nginx["/var/log/nginx"][0] == source
    assert "ro" in options
    # SELinux: a volume used by two containers needs the shared label (z), not Z.
    assert "z" in options and "z" in nginx["/var/log/nginx"][1]
    # The nginx image's log paths are symlinks to stdout/stderr: they must not be copied in.
    assert "nocopy" in nginx["/var/log/nginx"][1]
    state_source, _ = cfban["/var/lib/cfban"]
    assert (DEPLOY / state_source).exists()
    assert cfban["/etc/cfban/cfban.toml"][1][0] == "ro"


def test_bundled_container_config_is_valid() -> None:
    settings = load_settings(DEPLOY / "cfban.toml", env={})
    assert settings.dry_run
    assert settings.jails
    for jail in settings.jails.values():
        assert all(p.startswith("/var/log/nginx/") for p in jail.logpath)


# ---- Butane (Fedora CoreOS, fcos 1.5.0) --------------------------------------------------

BUTANE_TOP = {
    *("variant", "version", "ignition", "storage", "systemd", "passwd"),
    *("kernel_arguments", "boot_device", "grub"),
}
BUTANE_STORAGE = {"disks", "raid", "filesystems", "files", "directories", "links", "luks", "trees"}
BUTANE_FILE = {"path", "overwrite", "contents", "append", "mode", "user", "group"}
BUTANE_CONTENTS = {"compression", "http_headers", "source", "inline", "local", "verification"}
BUTANE_DIRECTORY = {"path", "overwrite", "mode", "user", "group"}
BUTANE_UNIT = {"name", "enabled", "mask", "contents", "contents_local", "dropins"}
UNIT_SUFFIXES = (".service", ".socket", ".target", ".timer", ".path", ".mount", ".slice")


def test_butane_shape(butane: dict[str, Any]) -> None:
    assert butane["variant"] == "fcos"
    assert butane["version"] == "1.5.0"
    assert set(butane) <= BUTANE_TOP, set(butane) - BUTANE_TOP
    storage = butane["storage"]
    assert set(storage) <= BUTANE_STORAGE
    paths = []
    for entry in storage.get("files", []):
        assert set(entry) <= BUTANE_FILE, entry.keys()
        assert entry["path"].startswith("/")
        assert isinstance(entry["mode"], int) and 0 <= entry["mode"] <= 0o7777
        contents = entry["contents"]
        assert set(contents) <= BUTANE_CONTENTS, contents.keys()
        assert sum(k in contents for k in ("source", "inline", "local")) == 1, entry["path"]
        if "local" in contents:
            assert not Path(contents["local"]).is_absolute()
        paths.append(entry["path"])
    for entry in storage.get("directories", []):
        assert set(entry) <= BUTANE_DIRECTORY and entry["path"].startswith("/")
        assert isinstance(entry["mode"], int)
        paths.append(entry["path"])
    assert len(paths) == len(set(paths)), "a path is listed twice"
    for unit in butane["systemd"]["units"]:
        assert set(unit) <= BUTANE_UNIT, unit.keys()
        assert unit["name"].endswith(UNIT_SUFFIXES)
        assert isinstance(unit.get("enabled", False), bool)
        assert isinstance(unit["contents"], str)


def test_butane_units_verify(butane: dict[str, Any], tmp_path: Path) -> None:
    for unit in butane["systemd"]["units"]:
        output = systemd_verify(tmp_path, unit["name"], unit["contents"])
        assert output == "rc=0", f"{unit['name']}: {output}"


def test_butane_embeds_deploy_files_unchanged(butane: dict[str, Any]) -> None:
    """Every quadlet and the config in deploy/ are in the Butane config, byte for byte."""
    inline = {
        Path(entry["path"]).name: (entry["path"], entry["mode"], entry["contents"]["inline"])
        for entry in butane_files(butane)
        if "inline" in entry["contents"]
    }
    for path in [*quadlet_files(), DEPLOY / "cfban.toml"]:
        if path.name.startswith("cfban-origin"):
            continue  # the origin lock's Butane fragment: tests/test_origin_deploy.py
        assert path.name in inline, f"{path.name} is missing from cfban.bu"
        target, mode, text = inline[path.name]
        assert text == path.read_text(encoding="utf-8"), f"cfban.bu's {path.name} drifted"
        assert mode == 0o644
        if path.suffix in QUADLET_SECTIONS:
            assert target == f"/etc/containers/systemd/{path.name}"
    # The token file comes from outside (butane --files-dir) and only root may read it.
    (token,) = [e for e in butane_files(butane) if "token" in e["path"]]
    assert "local" in token["contents"] and token["mode"] == 0o600


# ---- the plain systemd unit ----------------------------------------------------------


def test_plain_unit(tmp_path: Path) -> None:
    text = (DEPLOY / "cfban.service").read_text(encoding="utf-8")
    entries = parse_unit(text)
    assert values(entries, "Service", "RestartPreventExitStatus") == ["78"]
    (exec_start,) = values(entries, "Service", "ExecStart")
    assert exec_start.split()[1:] == ["watch"]
    assert "CFBAN_API_TOKEN_FILE=%d/cloudflare_api_token" in values(
        entries, "Service", "Environment"
    )
    assert values(entries, "Service", "DynamicUser") == ["yes"]
    assert values(entries, "Install", "WantedBy") == ["multi-user.target"]
    if shutil.which("systemd-analyze") is None:
        return  # the structural checks above are all there is
    # verify wants ExecStart to exist: point it at an executable that does.
    here = text.replace(exec_start.split()[0], shutil.which("true") or "/bin/true")
    output = systemd_verify(tmp_path, "cfban.service", here)
    assert output == "rc=0", output
